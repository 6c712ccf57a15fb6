"""CUDA-graph replay of the planner call and of the update (`cudagraphs=true`): removes the
per-launch CPU cost of their hundreds of small kernels, which dominates eager planning at E=1
(measured 108 ms per plan on an H100 VM, 25 ms graphed: benchmarks/results/paper_mode_h100/README.md).

The graph reads the model's parameters and running statistics in place, so optimiser steps,
Polyak updates and checkpoint loads (all in-place) are seen by later replays. Random numbers come
from PyTorch's graph-safe CUDA generator: a replay consumes the same Philox offsets as an eager
call from the same generator state (tests/test_cuda.py compares the two).
"""
from __future__ import annotations

import torch

from .config import uses_pixels


class GraphedAct:
    """agent.act for a fixed number of environments and mode, captured once and replayed."""

    def __init__(self, agent, num_envs: int, eval_mode: bool, task: torch.Tensor | None = None, warmup: int = 2):
        dev = agent.device
        if dev.type != "cuda":
            raise RuntimeError("cudagraphs=true needs a CUDA device")
        cfg = agent.cfg
        self.obs = torch.zeros(num_envs, *cfg.obs_shape, device=dev,
                               dtype=torch.uint8 if uses_pixels(cfg) else torch.float32)
        self.plan = torch.zeros(num_envs, cfg.horizon, cfg.action_dim, device=dev)
        self.first = torch.zeros(num_envs, dtype=torch.bool, device=dev)
        self.task = task
        fn = lambda: agent.plan_eager(self.obs, self.plan, self.first, self.task, eval_mode)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.action_out, self.plan_out = fn()

    def __call__(self, obs: torch.Tensor, plan: torch.Tensor, first: torch.Tensor | None):
        self.obs.copy_(obs)
        self.plan.copy_(plan)
        if first is None:
            self.first.zero_()
        else:
            self.first.copy_(first)
        self.graph.replay()
        return self.action_out.clone(), self.plan_out.clone()


class GraphedUpdate:
    """agent.update_step captured once (forward, backward, both optimiser steps, Polyak and the
    running statistics) and replayed on static batch tensors. Needs capturable optimisers
    (the agent creates them so under cudagraphs=true) and a sync-free step (percentiles by sort,
    not torch.quantile). Construction runs `warmup` real updates on the first batch on a side
    stream (allocations and autotuning), then puts parameters, buffers and optimiser states back
    in place (same storage) and captures, so every call is exactly one update from the state the
    agent had (tests/test_cuda.py compares it with the eager update)."""

    def __init__(self, agent, batch, warmup: int = 3):
        if agent.device.type != "cuda":
            raise RuntimeError("cudagraphs=true needs a CUDA device")
        self.static = [t.clone() for t in (batch.obs, batch.action, batch.reward, batch.terminated)]
        fn = lambda: agent._update_fn(*self.static, None)
        saved = _snapshot(agent)
        side = torch.cuda.Stream(agent.device)
        side.wait_stream(torch.cuda.current_stream(agent.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream(agent.device).wait_stream(side)
        _restore(agent, saved)
        self.graph = torch.cuda.CUDAGraph()
        agent.optim.zero_grad(set_to_none=True)
        agent.pi_optim.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.out = fn()

    def __call__(self, batch) -> dict:
        for dst, src in zip(self.static, (batch.obs, batch.action, batch.reward, batch.terminated)):
            dst.copy_(src)
        self.graph.replay()
        return self.out


def _optimisers(agent):
    return (agent.optim, agent.pi_optim)


def _snapshot(agent) -> dict:
    """Copies of every tensor an update writes: parameters, buffers, optimiser states."""
    m = agent.model
    return {"tensors": [t.detach().clone() for t in list(m.parameters()) + list(m.buffers())],
            "optim": [{id(p): {k: v.clone() for k, v in st.items() if torch.is_tensor(v)} for p, st in o.state.items()}
                      for o in _optimisers(agent)]}


@torch.no_grad()
def _restore(agent, saved: dict) -> None:
    """Writes the snapshot back into the same storage (a captured graph keeps the addresses).
    Optimiser states created by the warm-up are zeroed: Adam with step 0 and zero moments is a
    fresh Adam."""
    m = agent.model
    for dst, src in zip(list(m.parameters()) + list(m.buffers()), saved["tensors"]):
        dst.copy_(src)
    for opt, before in zip(_optimisers(agent), saved["optim"]):
        for p, st in opt.state.items():
            old = before.get(id(p), {})
            for k, v in st.items():
                if torch.is_tensor(v):
                    v.copy_(old[k]) if k in old else v.zero_()
