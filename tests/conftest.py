import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MUJOCO_GL", "disable")
# MJX tasks compile for 20-80 s on a CPU; tests that build the same task twice (trainer runs,
# resume) reuse the first compilation from JAX's persistent cache.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mbdpo_fast_jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import pytest
import torch

from mbdpo_fast.config import default_config, resolve

# Under pytest-xdist (make test) the workers share the cores: one compute thread each, and the
# same for the processes the tests start (CLI runs, environment workers).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Without a GPU the Triton kernels run in Triton's interpreter (read when a kernel module is imported).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def tiny_config(obs_dim: int = 7, action_dim: int = 3, **overrides):
    """A run spec with a very small model and planner (fast CPU tests)."""
    base = dict(model_size=1, enc_dim=32, mlp_dim=32, latent_dim=16, num_q=3, num_samples=48,
                num_elites=8, num_pi_trajs=4, diffusion_steps=5, batch_size=16, buffer_size=2000,
                device="cpu", work_dir="unused")
    base.update(overrides)
    return resolve(default_config(**base), obs_dim, action_dim)


def nontrivial(model):
    """Random non-zero Q, reward and energy output layers (they start at zero), so that imagined
    values differ between candidates and elites are not ties."""
    for w in model.qs.weights:
        torch.nn.init.normal_(w, std=0.1)
    for head in (model.reward_head, model.energy_head):
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    return model


@pytest.fixture
def tiny_cfg():
    return tiny_config


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
