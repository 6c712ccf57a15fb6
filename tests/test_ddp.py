"""Data-parallel updates: torchrun with 2 CPU processes (gloo) against single-process gradients."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_cases import build_agent, full_batch, shard

HERE = Path(__file__).parent


def grads_of(agent):
    return {n: p.grad.clone() for n, p in agent.model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(HERE / "ddp_worker.py"), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return {name: [torch.load(out / f"{name}_rank{r}.pt") for r in range(2)] for name in ("random", "deterministic")}


def assert_close_dicts(a, b, atol, rtol):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=rtol), f"{k}: max diff {(a[k] - b[k]).abs().max():.3g}"


@pytest.mark.slow
def test_replicas_stay_identical(ddp_results):
    for name, (r0, r1) in ddp_results.items():
        assert_close_dicts(r0["grads"], r1["grads"], 0, 0)
        assert_close_dicts(r0["state"], r1["state"], 0, 0)  # parameters, targets and statistics


def emulate_data_parallel(agent, shards, seeds):
    """One data-parallel update in one process, step by step as each DDP process runs it: per
    shard (its own RNG stream), the world-model loss and its gradients; their mean steps the world
    model; per shard (its stream continued, its own Q-scale update), the policy loss on that
    shard's latents; the mean of those gradients steps the policy. Returns the gradients."""
    m = agent.model
    m.train()
    wm_params = m.encoder_parameters() + m.model_parameters()
    wm_grads, latents, streams = [], [], []
    for b, seed in zip(shards, seeds):
        torch.manual_seed(seed)
        agent.optim.zero_grad(set_to_none=True)
        total, _, zs = agent.world_model_losses(b.obs, b.action, b.reward, b.terminated, b.task)
        total.backward()
        wm_grads.append([p.grad.clone() for p in wm_params])
        latents.append(zs.detach())
        streams.append(torch.get_rng_state())
    for i, p in enumerate(wm_params):
        p.grad = (wm_grads[0][i] + wm_grads[1][i]) / 2
    agent.optim.step()
    q_scale = m.q_scale.clone()
    pi_grads = []
    for b, zs, stream in zip(shards, latents, streams):
        torch.set_rng_state(stream)
        m.q_scale.copy_(q_scale)
        agent.pi_optim.zero_grad(set_to_none=True)
        loss, _ = agent.pi_loss(zs, b.task)
        loss.backward()
        pi_grads.append([p.grad.clone() for p in m.pi_parameters()])
    for i, p in enumerate(m.pi_parameters()):
        p.grad = (pi_grads[0][i] + pi_grads[1][i]) / 2
    return grads_of(agent)


@pytest.mark.slow
def test_ddp_gradients_match_a_single_process_emulation(ddp_results):
    """With randomness (dropout, random Q heads, stochastic policy): the 2-process gradients equal
    those of `emulate_data_parallel` with the workers' seeds (fp32 sums in another order: 1e-6)."""
    agent = build_agent("random")
    batch = full_batch(agent.cfg)
    ref = emulate_data_parallel(agent, [shard(batch, r, 2) for r in range(2)], [100, 101])
    assert len(ref) == sum(1 for p in agent.model.parameters() if p.requires_grad)
    assert_close_dicts(ddp_results["random"][0]["grads"], ref, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_ddp_update_equals_the_full_batch_update(ddp_results):
    """Deterministic scenario: 2 processes x 8 samples == 1 process x 16 samples (gradients to
    1e-5: fp32 sums in another order, and the pinned policy std e^-20)."""
    agent = build_agent("deterministic")
    torch.manual_seed(100)
    metrics = agent.update(full_batch(agent.cfg))
    assert_close_dicts(ddp_results["deterministic"][0]["grads"], grads_of(agent), atol=1e-5, rtol=1e-4)
    # the DDP processes' losses are their shard's; their mean is the full batch's loss
    for k in ("consistency_loss", "reward_loss", "value_loss", "energy_loss"):
        mean = (ddp_results["deterministic"][0]["metrics"][k] + ddp_results["deterministic"][1]["metrics"][k]) / 2
        assert torch.allclose(mean, metrics[k], atol=1e-5, rtol=1e-4), k
