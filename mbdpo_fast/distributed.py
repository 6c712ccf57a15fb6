"""Data-parallel updates with torch DDP, for processes launched by `torchrun`.

The update has two backward passes with separate optimisers (world model, then policy prior on
detached latents), so the agent is wrapped as two DDP modules whose forwards are those two losses:
`WorldModelLoss` registers every trained module except the policy head, `PolicyLoss` only the
policy head. DDP then averages each pass's gradients across processes during its backward, as
for any DDP model. The running statistics that the update keeps outside the optimisers (energy
mean/scale, Q scale) are averaged across processes after each update so that all replicas stay
identical; the target Q heads follow the (identical) online heads by Polyak averaging.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> DistContext | None:
    """Join the process group torchrun set up (None when not launched with several processes).
    CUDA: NCCL, one GPU per process (cuda:LOCAL_RANK); CPU (device=cpu or no GPU): gloo."""
    if not launched_by_torchrun():
        return None
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank, world, local, f"cuda:{local}" if use_cuda else "cpu")


class WorldModelLoss(nn.Module):
    """forward(obs, action, reward, term, task) = agent.world_model_losses(...); registers the
    modules that loss trains (the policy head is only used there without gradients)."""

    def __init__(self, agent):
        super().__init__()
        m = agent.model
        parts = {"encoder": m.encoder, "dynamics": m.dynamics, "reward_head": m.reward_head,
                 "energy_head": m.energy_head, "qs": m.qs, "termination_head": m.termination_head,
                 "score_head": m.score_head, "task_emb": m.task_emb}
        self.parts = nn.ModuleDict({k: v for k, v in parts.items() if v is not None})
        self._agent = [agent]  # a list: not registered as a submodule

    def forward(self, obs, action, reward, term, task):
        return self._agent[0].world_model_losses(obs, action, reward, term, task)


class PolicyLoss(nn.Module):
    """forward(zs, task) = agent.pi_loss(zs, task); registers only the policy head."""

    def __init__(self, agent):
        super().__init__()
        self.pi_head = agent.model.pi_head
        self._agent = [agent]

    def forward(self, zs, task):
        return self._agent[0].pi_loss(zs, task)


def wrap_agent(agent, ctx: DistContext) -> tuple[DDP, DDP]:
    """Broadcast rank 0's full state (parameters, target heads, statistics) and return the two
    DDP-wrapped losses. Call after any checkpoint is loaded."""
    for t in agent.model.state_dict().values():
        dist.broadcast(t, src=0)
    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DDP(WorldModelLoss(agent), device_ids=ids), DDP(PolicyLoss(agent), device_ids=ids)


@torch.no_grad()
def average_statistics(tensors: list[torch.Tensor], world_size: int) -> None:
    """Replace each scalar tensor by its mean over processes (one all-reduce)."""
    flat = torch.stack([t.reshape(()) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    for t, v in zip(tensors, flat):
        t.copy_(v)
