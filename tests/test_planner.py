"""Diffusion planner (docs/algorithm.md sections 3 and 4)."""
import math

import pytest
import torch

from mbdpo_fast import planner as planner_mod
from mbdpo_fast.diffusion import DiffusionSchedule, sample_candidates, score_update, weight_elites
from mbdpo_fast.planner import DiffusionPlanner, imagined_value
from mbdpo_fast.world_model import WorldModel

from conftest import tiny_config


def test_schedule_is_linear_beta_cumprod():
    s = DiffusionSchedule.linear(20, 1e-4, 1e-2)
    assert s.steps == 20
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(1e-2)
    assert all(b2 > b1 for b1, b2 in zip(s.betas, s.betas[1:]))
    assert s.abar[-1] == pytest.approx(math.prod(1 - b for b in s.betas))


def test_score_form_equals_closed_form():
    """Step 6: (x + (1-abar) s) / sqrt(alpha) == sqrt(abar[tau-1]) * abar_a, up to the reference's
    1e-8 in the score's denominator (1.4e-5 of |x| at the smallest noise level)."""
    s = DiffusionSchedule.linear(20, 1e-4, 1e-2)
    x, target = torch.randn(4, 3, 2, dtype=torch.float64), torch.rand(4, 3, 2, dtype=torch.float64)
    for tau in range(19, 0, -1):
        out = score_update(x, target, s.abar[tau], s.alphas[tau])
        torch.testing.assert_close(out, math.sqrt(s.abar[tau - 1]) * target, rtol=0, atol=2e-5 * x.abs().max().item())
        frac = (1 - s.abar[tau]) / (1 - s.abar[tau] + 1e-8)
        exact = (x + frac * (-x + math.sqrt(s.abar[tau]) * target)) / math.sqrt(s.alphas[tau])
        torch.testing.assert_close(out, exact)


class HandBuiltModel:
    """A world model with known pieces: r = sum(a), f = 0.5 (already normalised), z' = z + 1,
    Qavg = z[..., :1] + 10, termination logit = z[..., :1] - threshold."""

    def __init__(self, threshold=100.0):
        self.threshold = threshold

    def decode(self, x):
        return x

    def reward(self, z, a, task):
        return a.sum(-1, keepdim=True)

    def energy_bonus(self, z, a, task):
        return torch.full_like(z[..., :1], 0.5)

    def next(self, z, a, task):
        return z + 1

    def termination(self, z, task):
        return z[..., :1] - self.threshold

    def pi(self, z, task, eps=None, with_info=True):
        return torch.zeros(*z.shape[:-1], 2), {}

    def Q(self, z, a, task, mode, heads=None):
        assert mode == "avg"
        return z[..., :1] + 10


def test_value_of_a_sequence_matches_the_formula():
    z = torch.zeros(5, 4)
    actions = torch.rand(3, 5, 2)
    gamma, eta = 0.9, 0.01
    G = imagined_value(HandBuiltModel(), z, actions, None, torch.full((5, 1), gamma), eta, episodic=False)
    expected = sum(gamma ** t * (actions[t].sum(-1, keepdim=True) + eta * 0.5) for t in range(3)) + gamma ** 3 * (3 + 10)
    torch.testing.assert_close(G, expected)


def test_episodic_value_stops_after_predicted_termination():
    z = torch.zeros(5, 4)
    actions = torch.ones(3, 5, 2)
    # termination predicted once z >= 1.5, i.e. after the first step: only r_0 counts.
    G = imagined_value(HandBuiltModel(threshold=0.5), z, actions, None, torch.ones(5, 1), 0.0, episodic=True)
    torch.testing.assert_close(G, torch.full((5, 1), 2.0))


def test_energy_bonus_is_normalised_and_clipped():
    m = WorldModel(tiny_config())
    torch.nn.init.normal_(m.energy_head[-1].weight, std=5.0)
    m.energy_mu.fill_(0.3)
    m.energy_sigma.fill_(0.2)
    z, a = m.encode(torch.randn(64, 7)), torch.rand(64, 3)
    raw = m.energy(z, a)
    torch.testing.assert_close(m.energy_bonus(z, a), ((raw - 0.3) / 0.2).clamp(-5, 5))


def test_weight_elites_keeps_topk_with_temperature_softmax():
    torch.manual_seed(0)
    V = torch.randn(2, 100)
    cand = torch.rand(2, 100, 3, 2)
    target, w, idx = weight_elites(V, cand, num_elites=10, temperature=0.5)
    assert idx.shape == (2, 10)
    assert set(idx[0].tolist()) == set(torch.topk(V[0], 10).indices.tolist())
    l = (V - V.mean(1, keepdim=True)) / V.std(1, keepdim=True) / 0.5
    for e in range(2):
        expected_w = torch.softmax(l[e, idx[e]], 0)
        torch.testing.assert_close(w[e], expected_w)
        torch.testing.assert_close(target[e], (expected_w.view(-1, 1, 1) * cand[e, idx[e]]).sum(0))
    # lower temperature concentrates the weights
    _, w_cold, _ = weight_elites(V, cand, 10, 0.05)
    _, w_hot, _ = weight_elites(V, cand, 10, 5.0)
    ent = lambda p: -(p * p.log()).sum(-1)
    assert (ent(w_cold) < ent(w) ).all() and (ent(w) < ent(w_hot)).all()


def test_weight_elites_flat_values_use_unit_std():
    V = torch.full((1, 20), 3.0)
    cand = torch.rand(1, 20, 2, 2)
    _, w, _ = weight_elites(V, cand, 5, 0.5)
    torch.testing.assert_close(w, torch.full((1, 5), 0.2))


def test_candidates_are_clipped_around_the_scaled_iterate():
    x = torch.full((1, 3, 2), 0.2)
    c = sample_candidates(x, 0.999, 20000)
    assert c.abs().max() <= 1
    assert c.mean().item() == pytest.approx(0.2 / math.sqrt(0.999), abs=0.01)
    assert c.std().item() == pytest.approx(math.sqrt(0.001 / 0.999), rel=0.05)


def test_warm_start_shifts_the_previous_plan():
    p = DiffusionPlanner(tiny_config(), WorldModel(tiny_config()))
    prev = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 3, 3)
    m = p.warm_start(prev, first=torch.tensor([False, True]))
    torch.testing.assert_close(m[0, :2], prev[0, 1:])
    assert (m[0, 2] == 0).all() and (m[1] == 0).all()


def quadratic_value(target_seq):
    """A value that is a known function of the action sequence: -||a - a*||^2 (max at a*)."""
    def value(model, z, actions, task, gamma, eta, episodic, **noise):
        return -((actions - target_seq.unsqueeze(1)) ** 2).sum(dim=(0, 2)).unsqueeze(-1)
    return value


def test_plan_moves_toward_the_optimum(monkeypatch):
    torch.manual_seed(1)
    cfg = tiny_config(num_samples=512, num_elites=64, num_pi_trajs=24, diffusion_steps=20)
    model = WorldModel(cfg)
    a_star = torch.tensor([[0.6, -0.4, 0.2], [0.3, 0.5, -0.7], [-0.2, 0.1, 0.4]])  # [H, A]
    monkeypatch.setattr(planner_mod, "imagined_value", quadratic_value(a_star))
    p = DiffusionPlanner(cfg, model)
    z0 = model.encode(torch.randn(1, 7))
    action, plan, info = p.plan(z0, p.initial_plan(1), eval_mode=True, return_info=True)
    err = (info["targets"][:, 0] - a_star).norm(dim=(-2, -1))  # elite average per step
    initial = a_star.norm()  # the warm start is zero
    assert err.shape == (19,)
    assert err[-1] < 0.25 * initial
    assert err[-3:].mean() < err[:3].mean()
    assert (plan[0] - a_star).norm() < 0.25 * initial
    torch.testing.assert_close(action[0], plan[0, 0])


def test_eval_mode_has_no_action_noise_and_training_adds_005(monkeypatch):
    cfg = tiny_config()
    model = WorldModel(cfg)
    monkeypatch.setattr(planner_mod, "imagined_value", quadratic_value(torch.zeros(3, 3)))
    p = DiffusionPlanner(cfg, model)
    z0 = model.encode(torch.randn(512, 7))
    a_eval, plan_eval = p.plan(z0, p.initial_plan(512), eval_mode=True)
    torch.testing.assert_close(a_eval, plan_eval[:, 0])
    a_train, plan_train = p.plan(z0, p.initial_plan(512), eval_mode=False)
    noise = a_train - plan_train[:, 0]
    assert noise.abs().max() > 0
    assert noise.std().item() == pytest.approx(0.05, rel=0.1)


def test_masked_multitask_plan_zeroes_padded_dims():
    cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b"])
    model = WorldModel(cfg, action_dims=[5, 2])
    p = DiffusionPlanner(cfg, model, discounts=[0.99, 0.95])
    task = torch.tensor([0, 1, 1])
    z0 = model.encode(torch.randn(3, 9), task)
    action, plan = p.plan(z0, p.initial_plan(3), task=task)
    assert (plan[1:, :, 2:] == 0).all() and (action[1:, 2:] == 0).all()
    assert (action[0] != 0).all()


@pytest.mark.parametrize("planner_score", ["network", "auto"])
def test_network_score_uses_no_rollouts(monkeypatch, planner_score):
    """planner_score=network, and auto with score_net=true (the reference's behaviour)."""
    cfg = tiny_config(score_net=True, planner_score=planner_score)
    assert cfg.planner_score == "network"
    model = WorldModel(cfg)

    def forbidden(*a, **k):
        raise AssertionError("the network score must not roll out the world model")
    monkeypatch.setattr(planner_mod, "imagined_value", forbidden)
    monkeypatch.setattr(planner_mod, "policy_rollout", forbidden)
    p = DiffusionPlanner(cfg, model)
    z0 = model.encode(torch.randn(4, 7))
    action, plan = p.plan(z0, p.initial_plan(4), eval_mode=True)
    assert action.shape == (4, 3) and plan.shape == (4, 3, 3)
    assert torch.isfinite(plan).all()


def test_planner_survives_nan_values(monkeypatch):
    cfg = tiny_config()
    model = WorldModel(cfg)

    def nan_value(model, z, actions, *args, **noise):
        v = -actions.pow(2).sum(dim=(0, 2)).unsqueeze(-1)
        v[::3] = float("nan")
        return v
    monkeypatch.setattr(planner_mod, "imagined_value", nan_value)
    p = DiffusionPlanner(cfg, model)
    action, plan = p.plan(model.encode(torch.randn(2, 7)), p.initial_plan(2))
    assert torch.isfinite(plan).all() and torch.isfinite(action).all()


def test_per_row_noise_levels_match_the_scalar_path():
    x = torch.rand(2, 3, 2) - 0.5
    torch.manual_seed(4)
    a = sample_candidates(x, 0.9, 64)
    torch.manual_seed(4)
    b = sample_candidates(x, torch.tensor([0.9, 0.9]), 64)
    torch.testing.assert_close(a, b)
    c = sample_candidates(torch.zeros(2, 3, 2), torch.tensor([0.999, 0.5]), 20000)
    assert c[0].std().item() == pytest.approx(math.sqrt(0.001 / 0.999), rel=0.05)
    assert c[1].std().item() > 0.5  # much wider (then clipped)


def _slice_noise(noise: dict, e: int) -> dict:
    out = {}
    for k, v in noise.items():
        if k == "heads":
            out[k] = v
        elif k == "pi_roll":
            out[k] = v[:, e:e + 1]
        else:
            out[k] = v[e:e + 1]
    return out


@pytest.mark.parametrize("multitask", [False, True])
def test_batched_planner_equals_single_env_calls_with_the_same_noise(multitask):
    torch.manual_seed(0)
    if multitask:
        cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b"], num_samples=64, num_elites=8,
                          num_pi_trajs=4, diffusion_steps=6)
        model = WorldModel(cfg, action_dims=[5, 2])
        p = DiffusionPlanner(cfg, model, discounts=[0.99, 0.95])
        task = torch.tensor([0, 1, 1])
    else:
        cfg = tiny_config(num_samples=64, num_elites=8, num_pi_trajs=4, diffusion_steps=6)
        model = WorldModel(cfg)
        p = DiffusionPlanner(cfg, model)
        task = None
    for w in model.qs.weights:
        torch.nn.init.normal_(w, std=0.1)
    torch.nn.init.normal_(model.reward_head[-1].weight, std=0.1)
    torch.nn.init.normal_(model.energy_head[-1].weight, std=0.1)
    model.eval()
    E, A = 3, cfg.action_dim
    z0 = model.encode(torch.randn(E, cfg.obs_dim), task)
    prev = torch.rand(E, cfg.horizon, A) * 2 - 1
    first = torch.tensor([False, True, False])
    bank = {tau: p.draw_noise(E, "cpu") for tau in range(1, cfg.diffusion_steps)}
    bank[0] = {"action": torch.randn(E, A)}
    a_b, plan_b = p.plan(z0, prev, task=task, first=first, noise_fn=lambda tau, n: bank[tau])
    for e in range(E):
        t = task[e:e + 1] if task is not None else None
        a_s, plan_s = p.plan(z0[e:e + 1], prev[e:e + 1], task=t, first=first[e:e + 1],
                             noise_fn=lambda tau, n, e=e: _slice_noise(bank[tau], e))
        torch.testing.assert_close(plan_s[0], plan_b[e], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a_s[0], a_b[e], rtol=1e-5, atol=1e-5)
    # the noise matters: another draw gives another plan
    other = {tau: p.draw_noise(E, "cpu") for tau in range(1, cfg.diffusion_steps)}
    other[0] = bank[0]
    _, plan_o = p.plan(z0, prev, task=task, first=first, noise_fn=lambda tau, n: other[tau])
    assert not torch.allclose(plan_o, plan_b)
