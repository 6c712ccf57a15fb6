"""Where the reference MBDPO code and a plain reading of the method differ (docs/algorithm.md, "The
reference code and the method"): each difference pinned on small, hand-checkable inputs, under the
default (the reference's behaviour, except the energy pairing) and under its switch."""
import math

import pytest
import torch

from mbdpo_fast import functional as fn
from mbdpo_fast import planner as planner_mod
from mbdpo_fast.agent import MBDPO, reference_pairing
from mbdpo_fast.batch import Batch
from mbdpo_fast.config import default_config, resolve_tasks
from mbdpo_fast.errors import ConfigError
from mbdpo_fast.diffusion import mc_score, weight_all
from mbdpo_fast.planner import DiffusionPlanner
from mbdpo_fast.task_registry import MT30, MT80
from mbdpo_fast.world_model import WorldModel

from conftest import nontrivial, tiny_config


def energy_calls(agent, monkeypatch):
    """Record (z, a, task) of every energy-head call."""
    calls, real = [], agent.model.energy

    def spy(z, a, task=None):
        calls.append((z.detach().clone(), a.detach().clone(), None if task is None else task.clone()))
        return real(z, a, task)
    monkeypatch.setattr(agent.model, "energy", spy)
    return calls


# --- 1. energy positives ----------------------------------------------------------------------
def test_reference_pairing_by_hand():
    """a[t, b] = 10 t + b at H=3, B=4: the reference pairs row r = t*B + b of the time-major latents
    with row r of the batch-major actions, i.e. a[r % H, r // H]."""
    a = (10 * torch.arange(3).view(3, 1) + torch.arange(4).view(1, 4)).float()
    expected = torch.tensor([[0, 10, 20, 1], [11, 21, 2, 12], [22, 3, 13, 23]]).float()
    torch.testing.assert_close(reference_pairing(a.unsqueeze(-1)).squeeze(-1), expected)
    assert int((reference_pairing(a) == a).sum()) == 2  # only (0, 0) and (2, 3) keep their own action


def test_reference_pairing_aligns_2_of_768_at_paper_shapes():
    H, B = 3, 256
    ids = torch.arange(H * B).view(H, B)
    assert int((reference_pairing(ids) == ids).sum()) == 2


@pytest.mark.parametrize("pairing", ["aligned", "reference"])
def test_energy_positives_follow_the_pairing(pairing, monkeypatch):
    torch.manual_seed(0)
    agent = MBDPO(tiny_config(energy_pairing=pairing))
    calls = energy_calls(agent, monkeypatch)
    z = torch.rand(3, 5, 16)
    a_pos = torch.rand(3, 5, 3) * 2 - 1
    agent.energy_loss(z, a_pos, None)
    pos_z, pos_a, _ = calls[0]
    torch.testing.assert_close(pos_z, z)
    torch.testing.assert_close(pos_a, a_pos if pairing == "aligned" else reference_pairing(a_pos))
    if pairing == "reference":
        assert not torch.equal(pos_a, a_pos)


def test_reference_pairing_moves_the_task_with_the_action(monkeypatch):
    """Multi-task: the reference repeats each batch element's task H times batch-major, so the task
    index travels with the (mis-paired) action."""
    torch.manual_seed(0)
    cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b", "c"], energy_pairing="reference")
    agent = MBDPO(cfg, action_dims=[5, 2, 3], episode_lengths=[500, 500, 500])
    calls = energy_calls(agent, monkeypatch)
    task = torch.tensor([0, 1, 2, 1])
    agent.energy_loss(torch.rand(3, 4, 16), torch.rand(3, 4, 5), task)
    _, _, pos_task = calls[0]
    expected = task.repeat_interleave(3).view(3, 4)  # row r = t*B + b holds task[r // H]
    torch.testing.assert_close(pos_task, expected)


# --- 2. the noisy hard negative ---------------------------------------------------------------
@pytest.mark.parametrize("center", ["policy", "replay"])
def test_noisy_negative_centre(center, monkeypatch):
    """With the noise scale at 0 the noisy candidate is its centre exactly: the policy's action
    (candidate 0, the reference) or the replay action."""
    torch.manual_seed(0)
    agent = MBDPO(tiny_config(energy_neg_center=center, energy_neg_noise=0.0))
    calls = energy_calls(agent, monkeypatch)
    a_pos = torch.rand(3, 6, 3) * 2 - 1
    agent.energy_loss(torch.rand(3, 6, 16), a_pos, None)
    _, cands, _ = calls[1]
    torch.testing.assert_close(cands[1], cands[0] if center == "policy" else a_pos)
    assert not torch.allclose(cands[0], a_pos)


# --- 3. the policy's scaled entropy -----------------------------------------------------------
def policy_with(log_std_value: float, mean_raw: float, A: int, **cfg):
    """A WorldModel and a policy-head output with mean mean_raw and log_std exactly log_std_value
    (raw log-std = atanh((log_std + 10) / 6 - 1))."""
    m = WorldModel(tiny_config(action_dim=A, **cfg))
    raw_ls = math.atanh((log_std_value + 10) / 6 - 1)
    return m, torch.cat([torch.full((1, A), mean_raw), torch.full((1, A), raw_ls)], dim=-1)


def test_scaled_entropy_by_hand():
    """eps = (1, -2), log_std = -4: log N = (-0.5 + 4 - c) + (-2 + 4 - c), c = ln(2 pi) / 2;
    scaled entropy = -2 log N (the tanh correction cancels in the reference's expression)."""
    m, raw = policy_with(-4.0, 0.3, 2)
    eps = torch.tensor([[1.0, -2.0]])
    _, info = m.pi_from_head(raw, eps=eps)
    c = 0.5 * math.log(2 * math.pi)
    log_n = (-0.5 + 4 - c) + (-2 + 4 - c)
    assert info["scaled_entropy"].item() == pytest.approx(-2 * log_n, rel=1e-6)
    # the reference's own expression: -log_prob * (scaled_log_prob / (log_prob + 1e-8))
    u = 0.3 + eps * math.exp(-4.0)
    log_prob = log_n - torch.log(torch.relu(1 - torch.tanh(u) ** 2) + 1e-6).sum()
    reference = -log_prob * (2 * log_n / (log_prob + 1e-8))
    assert info["scaled_entropy"].item() == pytest.approx(reference.item(), rel=1e-6)


def test_scaled_entropy_with_tanh_correction():
    m, raw = policy_with(-4.0, 0.3, 2, entropy_tanh_correction=True)
    eps = torch.tensor([[1.0, -2.0]])
    _, info = m.pi_from_head(raw, eps=eps)
    c = 0.5 * math.log(2 * math.pi)
    log_n = (-0.5 + 4 - c) + (-2 + 4 - c)
    u = 0.3 + eps * math.exp(-4.0)
    log_det = torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum().item()
    assert info["scaled_entropy"].item() == pytest.approx(-(2 * log_n - log_det), rel=1e-5)
    assert abs(log_det) > 0.1  # the two settings differ visibly here


def test_scaled_entropy_multitask_counts_the_constant_over_padded_dims():
    """Action dims (2 of 3 used): eps and log_std are masked to 0 in the padded dim, which still
    adds -ln(2 pi)/2 to log N (TD-MPC2's sum over all dims); the scale is the 2 used dims."""
    cfg = tiny_config(obs_dim=7, action_dim=3, tasks=["a", "b"])
    m = WorldModel(cfg, action_dims=[3, 2])
    raw_ls = math.atanh((-4.0 + 10) / 6 - 1)
    raw = torch.tensor([[0.3, 0.3, 0.3, raw_ls, raw_ls, raw_ls]])
    eps = torch.tensor([[1.0, -2.0, 5.0]])
    _, info = m.pi_from_head(raw, task=torch.tensor([1]), eps=eps)
    c = 0.5 * math.log(2 * math.pi)
    log_n = (-0.5 + 4 - c) + (-2 + 4 - c) - c
    assert info["scaled_entropy"].item() == pytest.approx(-2 * log_n, rel=1e-6)


# --- 4. energy statistics: biased standard deviation ------------------------------------------
def test_energy_stats_use_the_biased_std():
    """Logits (1, 2, 3): mean 2, biased std sqrt(2/3) (the unbiased one would be 1); from (0, 1)
    with momentum 0.99: mu = 0.02, sigma = 0.99 + 0.01 sqrt(2/3)."""
    agent = MBDPO(tiny_config())
    agent.update_energy_stats(torch.tensor([1.0, 2.0, 3.0]))
    assert agent.model.energy_mu.item() == pytest.approx(0.02, rel=1e-6)
    assert agent.model.energy_sigma.item() == pytest.approx(0.99 + 0.01 * math.sqrt(2 / 3), rel=1e-6)


# --- 5., 7., 8. the score loss ----------------------------------------------------------------
def batch_for(cfg, B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.horizon
    return Batch(obs=torch.randn(H + 1, B, cfg.obs_dim, generator=g),
                 action=torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                 reward=torch.rand(H, B, 1, generator=g), terminated=torch.zeros(H, B, 1))


def test_score_target_reads_the_energy_stats_of_this_update(monkeypatch):
    """The contrastive loss moves (mu_F, sigma_F) before the score target is computed."""
    torch.manual_seed(0)
    agent = MBDPO(tiny_config(score_net=True))
    nontrivial(agent.model)
    seen, real = [], agent.score_loss

    def spy(zs0, task):
        seen.append((agent.model.energy_mu.clone(), agent.model.energy_sigma.clone()))
        return real(zs0, task)
    monkeypatch.setattr(agent, "score_loss", spy)
    agent.update(batch_for(agent.cfg))
    (mu, sigma), = seen
    assert mu.item() != 0.0 and sigma.item() != 1.0  # already moved from their initial values
    assert torch.equal(mu, agent.model.energy_mu) and torch.equal(sigma, agent.model.energy_sigma)


@pytest.mark.parametrize("detach", [False, True])
def test_score_loss_reaches_the_encoder_unless_detached(detach):
    torch.manual_seed(0)
    agent = MBDPO(tiny_config(score_net=True, score_detach_latent=detach))
    m = agent.model
    z0 = m.encode(torch.randn(8, 7))
    agent.score_loss(z0, None).backward()
    enc_grad = [p.grad for p in m.encoder_parameters()]
    if detach:
        assert all(g is None for g in enc_grad)
    else:
        assert any(g is not None and g.abs().sum() > 0 for g in enc_grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.score_head.parameters())


def test_score_loss_uses_the_first_batch_element(monkeypatch):
    torch.manual_seed(0)
    agent = MBDPO(tiny_config(score_net=True))
    seen, real = [], agent.model.score

    def spy(z, x_flat, tau, task=None):
        seen.append(z.detach().clone())
        return real(z, x_flat, tau, task)
    monkeypatch.setattr(agent.model, "score", spy)
    z0 = torch.rand(8, 16)
    agent.score_loss(z0, None)
    torch.testing.assert_close(seen[0], z0[:1])


# --- 6. the time embedding --------------------------------------------------------------------
def test_time_embedding_frequencies_run_from_1_to_1e_minus_4():
    """dim 64, half 32: f_k = exp(-k ln(1e4) / 31), so f_0 = 1 and f_31 = 1e-4 exactly."""
    e = fn.sinusoidal_embedding(torch.tensor([1000.0]), 64)[0]
    assert e[0].item() == pytest.approx(math.sin(1000.0), abs=1e-4)
    assert e[31].item() == pytest.approx(math.sin(0.1), rel=1e-4)  # 1000 * 1e-4
    assert e[63].item() == pytest.approx(math.cos(0.1), rel=1e-4)
    assert e[32].item() == pytest.approx(math.cos(1000.0), abs=1e-4)


# --- 9. the planner with the score network on -------------------------------------------------
def test_score_net_planner_denoises_with_the_network_by_hand():
    """planner_score=auto with score_net=true: x <- (x + (1 - abar) s_theta(z0, x, tau)) / sqrt(alpha)
    from x = sqrt(abar[K-1]) * 0 (episode start), tau = K-1..1."""
    torch.manual_seed(0)
    cfg = tiny_config(score_net=True)
    model = WorldModel(cfg)
    for p in model.score_head.parameters():
        torch.nn.init.normal_(p, std=0.3)
    p = DiffusionPlanner(cfg, model)
    z0 = torch.rand(2, 16)
    _, plan = p.plan(z0, p.initial_plan(2), eval_mode=True)
    sch = p.schedule
    x = torch.zeros(2, cfg.horizon, cfg.action_dim)
    for tau in range(sch.steps - 1, 0, -1):
        s = model.score(z0, x.reshape(2, -1), torch.full((2,), float(tau))).view_as(x)
        x = (x + (1 - sch.abar[tau]) * s) / math.sqrt(sch.alphas[tau])
    torch.testing.assert_close(plan, x.clamp(-1, 1))


def test_score_net_with_mc_planner_rolls_out(monkeypatch):
    cfg = tiny_config(score_net=True, planner_score="mc")
    calls, real = [], planner_mod.imagined_value
    monkeypatch.setattr(planner_mod, "imagined_value", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = WorldModel(cfg)
    p = DiffusionPlanner(cfg, model)
    p.plan(model.encode(torch.randn(2, 7)), p.initial_plan(2), eval_mode=True)
    assert len(calls) == cfg.diffusion_steps - 1


def test_network_planner_needs_the_score_net():
    with pytest.raises(ConfigError, match="planner_score=network needs score_net=true"):
        tiny_config(planner_score="network")


# --- 10. small constants ----------------------------------------------------------------------
def test_score_denominator_guard():
    """s = (-x + sqrt(abar) target) / (1 - abar + 1e-8): at 1 - abar = 1e-6 the guard is 1%."""
    abar = 1 - 1e-6
    s = mc_score(torch.zeros(1), torch.ones(1), abar)
    assert s.item() == pytest.approx(math.sqrt(abar) / (1e-6 + 1e-8), rel=1e-6)
    assert s.item() < 0.995 * math.sqrt(abar) / 1e-6


def test_score_target_weights_by_hand():
    """Values (0, 1e-4, 2e-4): unbiased std 1e-4, logits (v - 1e-4) / (1e-4 + 1e-6) / T at T = 0.5,
    i.e. +-1.98 (the guard is visible at this spread); constant values (std 0) give equal weights,
    not NaN."""
    cand = torch.tensor([[0.0, 1.0, 2.0]]).view(1, 3, 1, 1)
    out = weight_all(torch.tensor([[0.0, 1e-4, 2e-4]]), cand, 0.5)
    logits = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) * 1e-4 / (1e-4 + 1e-6) / 0.5
    w = torch.softmax(logits, 0)
    expected = (w * torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)).sum().item()
    assert out.item() == pytest.approx(expected, rel=1e-5)
    unguarded = torch.softmax(torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64), 0)
    assert abs(out.item() - (unguarded * torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)).sum().item()) > 1e-3
    flat = weight_all(torch.full((1, 3), 7.0), cand, 0.5)
    assert flat.item() == pytest.approx(1.0, rel=1e-6)


# --- 11. the task embedding's size ------------------------------------------------------------
TINY = dict(model_size=1, enc_dim=32, mlp_dim=32, latent_dim=16, num_q=3, num_samples=32, num_elites=4,
            num_pi_trajs=4, diffusion_steps=4, batch_size=16, device="cpu", work_dir="unused")


def test_task_dim_is_64_for_mt30_and_96_otherwise():
    assert resolve_tasks(default_config(task="mt30", **TINY)).task_dim == 64
    assert resolve_tasks(default_config(task="mt80", **TINY)).task_dim == 96
    assert resolve_tasks(default_config(tasks=list(MT30), **TINY)).task_dim == 64
    assert resolve_tasks(default_config(tasks=list(MT80[:40]), **TINY)).task_dim == 96
    assert resolve_tasks(default_config(tasks=["walker-walk", "cheetah-run"], **TINY)).task_dim == 96
    assert resolve_tasks(default_config(task="mt30", task_dim=32, **TINY)).task_dim == 32
    assert tiny_config().task_dim == 0  # single task: no embedding
    m = WorldModel(resolve_tasks(default_config(task="mt30", **TINY)))
    assert tuple(m.task_emb.weight.shape) == (30, 64)
