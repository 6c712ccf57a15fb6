"""Run by tests/test_ddp.py under `torchrun --nproc_per_node=2`: one DDP update per scenario on this
rank's half of a fixed batch; saves gradients, parameters and metrics to OUT/<scenario>_rank<r>.pt."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_cases import SCENARIOS, build_agent, full_batch, shard  # noqa: E402

from mbdpo_fast.distributed import init_distributed  # noqa: E402


def main(out: str) -> None:
    ctx = init_distributed("cpu")
    assert ctx is not None and ctx.world_size == 2, "launch with torchrun --nproc_per_node=2"
    for name in SCENARIOS:
        agent = build_agent(name)
        agent.enable_ddp(ctx)
        torch.manual_seed(100 + ctx.rank)
        metrics = agent.update(shard(full_batch(agent.cfg), ctx.rank, ctx.world_size))
        torch.save({"grads": {n: p.grad.clone() for n, p in agent.model.named_parameters() if p.grad is not None},
                    "state": agent.model.state_dict(), "metrics": {k: v.clone() for k, v in metrics.items()}},
                   Path(out) / f"{name}_rank{ctx.rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
