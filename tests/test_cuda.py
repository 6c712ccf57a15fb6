"""CUDA checks (skipped without a GPU): CPU/GPU agreement, a training update, graphed planner."""
import pytest
import torch

from mbdpo_fast.agent import MBDPO
from mbdpo_fast.batch import Batch
from mbdpo_fast.world_model import WorldModel

from conftest import tiny_config

pytestmark = pytest.mark.cuda


def rel_err(out, ref):
    out, ref = out.double().cpu(), ref.double().cpu()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def test_world_model_heads_agree_between_cpu_and_cuda():
    """fp32 on both sides (TF32 off by default): relative error far under 1e-4."""
    torch.manual_seed(0)
    cfg = tiny_config(mlp_dim=256, latent_dim=128, enc_dim=128)
    cpu = WorldModel(cfg)
    for w in cpu.qs.weights:
        torch.nn.init.normal_(w, std=0.05)
    torch.nn.init.normal_(cpu.reward_head[-1].weight, std=0.05)
    gpu = WorldModel(cfg).cuda()
    gpu.load_state_dict(cpu.state_dict())
    cpu.eval(), gpu.eval()  # Q dropout would otherwise differ between the two
    obs, a = torch.randn(512, 7), torch.rand(512, 3) * 2 - 1
    z_c, z_g = cpu.encode(obs), gpu.encode(obs.cuda())
    errs = {
        "encode": rel_err(z_g, z_c),
        "next": rel_err(gpu.next(z_g, a.cuda()), cpu.next(z_c, a)),
        "reward": rel_err(gpu.decode(gpu.reward(z_g, a.cuda())), cpu.decode(cpu.reward(z_c, a))),
        "Q": rel_err(gpu.Q(z_g, a.cuda()), cpu.Q(z_c, a)),
    }
    assert max(errs.values()) < 1e-4, errs


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


@pytest.mark.parametrize("eval_mode", [True, False])
def test_graphed_planner_matches_eager_for_the_same_rng_state(eval_mode):
    torch.manual_seed(0)
    cfg = tiny_config(device="cuda", cudagraphs=True, num_samples=512, num_elites=64, num_pi_trajs=24,
                      diffusion_steps=20, mlp_dim=128, latent_dim=64)
    agent = MBDPO(cfg)
    for w in agent.model.qs.weights:  # non-trivial values so that elites differ
        torch.nn.init.normal_(w, std=0.05)
    torch.nn.init.normal_(agent.model.reward_head[-1].weight, std=0.05)
    obs = torch.randn(1, 7, device="cuda")
    prev = torch.rand(1, cfg.horizon, 3, device="cuda") * 2 - 1
    first = torch.tensor([False], device="cuda")
    agent.act(obs, prev, first, eval_mode=eval_mode)  # capture (consumes random numbers)
    for seed in range(3):
        torch.cuda.manual_seed(seed)
        a_eager, p_eager = agent.plan_eager(obs, prev, first, None, eval_mode)
        torch.cuda.manual_seed(seed)
        a_graph, p_graph = agent.act(obs, prev, first, eval_mode=eval_mode)
        assert rel_err(p_graph, p_eager) < 1e-5 and rel_err(a_graph, a_eager) < 1e-5
    # parameters are read in place: an optimiser-like in-place change is seen by the replay
    with torch.no_grad():
        agent.model.reward_head[-1].weight.mul_(3.0)
    torch.cuda.manual_seed(5)
    a_eager, p_eager = agent.plan_eager(obs, prev, first, None, eval_mode)
    torch.cuda.manual_seed(5)
    a_graph, p_graph = agent.act(obs, prev, first, eval_mode=eval_mode)
    assert rel_err(p_graph, p_eager) < 1e-5


def _cuda_batch(cfg, B, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    H = cfg.horizon
    return Batch(obs=torch.randn(H + 1, B, 7, device="cuda", generator=g),
                 action=torch.rand(H, B, 3, device="cuda", generator=g) * 2 - 1,
                 reward=torch.rand(H, B, 1, device="cuda", generator=g), terminated=torch.zeros(H, B, 1, device="cuda"))


@pytest.mark.parametrize("compile", [False, True])
def test_graphed_update_matches_eager_update(compile):
    """cudagraphs=true (and compile) against the eager update from identical states and random
    numbers, over several updates on fresh batches (the capture's warm-up is undone)."""
    torch.manual_seed(0)
    eager = MBDPO(tiny_config(device="cuda"))
    graphed = MBDPO(tiny_config(device="cuda", cudagraphs=True, compile=compile))
    graphed.model.load_state_dict(eager.model.state_dict())
    for step in range(4):
        batch = _cuda_batch(eager.cfg, 64, step)
        torch.cuda.manual_seed(100 + step)
        out_e = eager.update(batch)
        torch.cuda.manual_seed(100 + step)
        out_g = graphed.update(batch)
        for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss", "pi_loss", "q_scale"):
            assert rel_err(out_g[k], out_e[k]) < 1e-4, (step, k, float(out_g[k]), float(out_e[k]))
    for (name, p_e), p_g in zip(eager.model.named_parameters(), graphed.model.parameters()):
        assert rel_err(p_g, p_e) < 1e-4, name
    assert int(graphed.optim.state[next(iter(graphed.model.model_parameters()))]["step"]) == 4


def test_bf16_flags_on_cuda_stay_close_to_fp32():
    torch.manual_seed(0)
    fp32 = MBDPO(tiny_config(device="cuda", mlp_dim=128, latent_dim=64))
    fast = MBDPO(tiny_config(device="cuda", mlp_dim=128, latent_dim=64, bf16_update=True, bf16_plan=True,
                             cudagraphs=True, compile=True))
    fast.model.load_state_dict(fp32.model.state_dict())
    batch = _cuda_batch(fp32.cfg, 256, 0)
    torch.cuda.manual_seed(1)
    out32 = fp32.update(batch)
    torch.cuda.manual_seed(1)
    out16 = fast.update(batch)
    for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss"):
        assert rel_err(out16[k], out32[k]) < 2e-2, (k, float(out16[k]), float(out32[k]))
    action, plan = fast.act(torch.randn(8, 7, device="cuda"), fast.planner.initial_plan(8))
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all() and plan.abs().max() <= 1


def test_multitask_bf16_update_with_gradient_checkpointing_on_cuda():
    """mt80 shapes, bf16 autocast: recomputing activations changes nothing beyond bf16 noise, and
    the peak memory of the update does not grow."""
    from mbdpo_fast.config import default_config, resolve_tasks

    def run(ckpt):
        torch.manual_seed(0)
        cfg = resolve_tasks(default_config(task="mt80", model_size=5, device="cuda", work_dir="unused",
                                            bf16_update=True, grad_checkpoint=ckpt))
        agent = MBDPO(cfg)
        g = torch.Generator(device="cuda").manual_seed(0)
        B, H = 256, cfg.horizon
        batch = Batch(torch.randn(H + 1, B, cfg.obs_dim, device="cuda", generator=g),
                      torch.rand(H, B, cfg.action_dim, device="cuda", generator=g) * 2 - 1,
                      torch.rand(H, B, 1, device="cuda", generator=g), torch.zeros(H, B, 1, device="cuda"),
                      torch.randint(80, (B,), device="cuda", generator=g))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.manual_seed(1)
        out = agent.update(batch)
        torch.cuda.synchronize()
        return out, torch.cuda.max_memory_allocated()

    (plain, mem_plain), (ckpt, mem_ckpt) = run(False), run(True)
    for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss", "pi_loss"):
        assert rel_err(ckpt[k], plain[k]) < 1e-2, (k, float(ckpt[k]), float(plain[k]))
    assert mem_ckpt <= mem_plain


def test_grouped_rollout_on_cuda_equals_reference_and_its_graphed_compiled_plan_runs():
    """The grouped rollout (fused_rollout=true, kernels=torch) on the GPU: one step's values equal
    the reference planner's (fp32, TF32 off), and the compiled step captured in a CUDA graph
    plans as the eager grouped step does for the same random numbers."""
    from mbdpo_fast.planner import DiffusionPlanner
    from conftest import nontrivial

    torch.manual_seed(0)
    over = dict(device="cuda", num_samples=256, num_elites=32, num_pi_trajs=16, diffusion_steps=6, mlp_dim=128,
                latent_dim=64)
    cfg = tiny_config(**over)
    model = nontrivial(WorldModel(cfg)).cuda().eval()
    ref, grouped = DiffusionPlanner(cfg, model), DiffusionPlanner(tiny_config(fused_rollout=True, **over), model)
    E, N, H, A = 2, 256, cfg.horizon, 3
    z0 = model.encode(torch.randn(E, 7, device="cuda")).detach()
    noise = ref.draw_noise(E, "cuda")
    cand = torch.rand(E, N, H, A, device="cuda") * 2 - 1
    with torch.no_grad():
        v1, c1 = ref.rollouts.step_values(cand.clone(), ref.rollouts.prepare(z0, None, ref.gamma_rows(None, E), None), noise)
        v2, c2 = grouped.rollouts.step_values(cand, grouped.rollouts.prepare(z0, None, grouped.gamma_rows(None, E), None),
                                              noise)
    assert rel_err(v2, v1) < 1e-5 and rel_err(c2, c1) < 1e-6
    agent = MBDPO(tiny_config(fused_rollout=True, compile=True, cudagraphs=True, **over))
    agent.model.load_state_dict(model.state_dict())
    obs, prev = torch.randn(1, 7, device="cuda"), torch.rand(1, H, A, device="cuda") * 2 - 1
    first = torch.tensor([False], device="cuda")
    agent.act(obs, prev, first)  # compile and capture
    torch.cuda.manual_seed(3)
    a_eager, p_eager = agent.plan_eager(obs, prev, first, None, False)
    torch.cuda.manual_seed(3)
    a_graph, p_graph = agent.act(obs, prev, first)
    assert rel_err(p_graph, p_eager) < 1e-5
