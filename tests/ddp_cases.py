"""Shared by tests/test_ddp.py and tests/ddp_worker.py: the agents and batches the DDP test compares.

'random': the tiny multi-task agent as configured everywhere else (dropout, 3 Q heads, a
stochastic policy): its update draws random numbers, so a 2-process update is compared with the
mean of the two half-batch updates computed in one process with the same seeds.
'deterministic': at initialisation, with dropout 0, 2 Q heads and the policy's std pinned to
e^-20, the update draws no randomness that matters (zero-initialised Q/energy outputs make TD
targets and hard negatives independent of the draws), so the 2-process update must equal one
update on the whole batch."""
import torch

from mbdpo_fast.agent import MBDPO
from mbdpo_fast.batch import Batch
from mbdpo_fast.config import default_config, resolve_tasks

SCENARIOS = ("random", "deterministic")
BASE = dict(model_size=1, enc_dim=32, mlp_dim=32, latent_dim=16, num_q=3, num_samples=16, num_elites=4,
            num_pi_trajs=4, diffusion_steps=4, batch_size=16, device="cpu", work_dir="unused",
            grad_clip_norm=1e6, tasks=["cheetah-run", "pendulum-swingup"])
DETERMINISTIC = dict(dropout=0.0, num_q=2, log_std_min=-20.0, log_std_max=-20.0)


def build_agent(name: str) -> MBDPO:
    kw = dict(BASE, **(DETERMINISTIC if name == "deterministic" else {}))
    torch.manual_seed(0)
    return MBDPO(resolve_tasks(default_config(**kw)))


def full_batch(cfg, B: int = 16) -> Batch:
    g = torch.Generator().manual_seed(1)
    H = cfg.horizon
    return Batch(torch.randn(H + 1, B, cfg.obs_dim, generator=g), torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                 torch.rand(H, B, 1, generator=g), torch.zeros(H, B, 1), torch.arange(B) % 2)


def shard(b: Batch, rank: int, world: int) -> Batch:
    n = b.obs.shape[1] // world
    s = slice(rank * n, (rank + 1) * n)
    return Batch(b.obs[:, s], b.action[:, s], b.reward[:, s], b.terminated[:, s], b.task[s])
