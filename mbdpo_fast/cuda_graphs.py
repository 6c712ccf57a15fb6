"""CUDA-graph replay of the planner call (`cudagraphs=true`): removes the per-launch CPU cost of
the ~300 small kernels of each denoising step, which dominates eager planning at E=1 (measured
108 ms per plan on an H100 VM, benchmarks/results/issue2_online_gpu.md).

The graph reads the model's parameters and running statistics in place, so optimiser steps,
Polyak updates and checkpoint loads (all in-place) are seen by later replays. Random numbers come
from PyTorch's graph-safe CUDA generator: a replay consumes the same Philox offsets as an eager
call from the same generator state (tests/test_cuda.py compares the two).
"""
from __future__ import annotations

import torch


class GraphedAct:
    """agent.act for a fixed number of environments and mode, captured once and replayed."""

    def __init__(self, agent, num_envs: int, eval_mode: bool, task: torch.Tensor | None = None, warmup: int = 2):
        dev = agent.device
        if dev.type != "cuda":
            raise RuntimeError("cudagraphs=true needs a CUDA device")
        cfg = agent.cfg
        self.obs = torch.zeros(num_envs, cfg.obs_dim, device=dev)
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
