"""CUDA checks (skipped without a GPU): device placement, CPU/GPU agreement, a training update."""
import pytest
import torch

from mbdpo_fast.agent import MBDPO, Batch
from mbdpo_fast.world_model import WorldModel

from conftest import tiny_config

pytestmark = pytest.mark.cuda


def test_world_model_heads_agree_between_cpu_and_cuda():
    torch.manual_seed(0)
    cfg = tiny_config(mlp_dim=256, latent_dim=128, enc_dim=128)
    cpu = WorldModel(cfg)
    for w in cpu.qs.weights:
        torch.nn.init.normal_(w, std=0.05)
    torch.nn.init.normal_(cpu.reward_head[-1].weight, std=0.05)
    gpu = WorldModel(cfg).cuda()
    gpu.load_state_dict(cpu.state_dict())
    obs, a = torch.randn(512, 7), torch.rand(512, 3) * 2 - 1
    z_c, z_g = cpu.encode(obs), gpu.encode(obs.cuda())
    # fp32 matmuls (TF32 off by default): agreement at ~1e-5
    torch.testing.assert_close(z_g.cpu(), z_c, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu.next(z_g, a.cuda()).cpu(), cpu.next(z_c, a), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu.decode(gpu.reward(z_g, a.cuda())).cpu(), cpu.decode(cpu.reward(z_c, a)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.Q(z_g, a.cuda()).cpu(), cpu.Q(z_c, a), rtol=1e-4, atol=1e-4)


def test_update_and_plan_on_cuda():
    torch.manual_seed(0)
    cfg = tiny_config(device="cuda", score_net=True)
    agent = MBDPO(cfg)
    H, B = cfg.horizon, 32
    batch = Batch(obs=torch.randn(H + 1, B, 7, device="cuda"), action=torch.rand(H, B, 3, device="cuda") * 2 - 1,
                  reward=torch.rand(H, B, 1, device="cuda"), terminated=torch.zeros(H, B, 1, device="cuda"))
    first = agent.update(batch)
    for _ in range(30):
        last = agent.update(batch)
    assert all(v.device.type == "cuda" for v in last.values())
    assert last["consistency_loss"] < first["consistency_loss"]
    action, plan = agent.act(torch.randn(4, 7, device="cuda"), agent.planner.initial_plan(4))
    assert action.device.type == "cuda" and torch.isfinite(plan).all()
