"""Environment worker processes run single-threaded (OpenMP/BLAS/torch), so that E workers and the
trainer's torch threads do not oversubscribe the cores; the trainer's own settings are left as they were."""
import os

from mbdpo_fast.envs.cpu import SINGLE_THREAD_ENV, single_threaded_children
from mbdpo_fast.envs.cpu.vector import AsyncVecEnv


def test_single_threaded_children_restores_the_parent_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with single_threaded_children():
        assert all(os.environ[k] == "1" for k in SINGLE_THREAD_ENV)
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ


def worker_threads(env) -> list[int]:
    """Thread counts of the env's worker processes, read from /proc."""
    procs = env.vec.processes
    return [len(os.listdir(f"/proc/{p.pid}/task")) for p in procs]


def test_dm_control_workers_run_one_compute_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    # spawn: each worker is a fresh interpreter started with the environment of this moment (the
    # forkserver's server would be one too, unless an earlier test in this process started it)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    env = AsyncVecEnv("cartpole-balance", 2, seed=0, context="spawn")
    try:
        # gymnasium builds a copy in this process for the spaces: the trainer keeps its threads
        assert torch.get_num_threads() == 2
        env.reset(seed=0)
        for pid in [p.pid for p in env.vec.processes]:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            assert b"OMP_NUM_THREADS=1" in environ and b"OPENBLAS_NUM_THREADS=1" in environ, pid
        # a worker holds its main thread plus at most a few helper threads (no pool per core)
        assert all(n <= 4 for n in worker_threads(env)), worker_threads(env)
    finally:
        env.close()
        torch.set_num_threads(before)
    assert os.environ["OMP_NUM_THREADS"] == "4"


def test_in_process_environments_leave_the_trainers_threads_alone():
    """E = 1 (the paper's mode) runs dm_control in this process: its torch threads stay as set."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        env = AsyncVecEnv("cartpole-balance", 1, seed=0, asynchronous=False)
        env.reset(seed=0)
        assert torch.get_num_threads() == 2
        env.close()
    finally:
        torch.set_num_threads(before)
