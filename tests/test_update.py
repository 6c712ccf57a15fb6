"""The update of docs/algorithm.md section 5."""
import torch

from mbdpo_fast import functional as fn
from mbdpo_fast.agent import MBDPO
from mbdpo_fast.batch import Batch

from conftest import tiny_config


def fixed_batch(cfg, B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.horizon
    return Batch(obs=torch.randn(H + 1, B, cfg.obs_dim, generator=g),
                 action=torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                 reward=torch.rand(H, B, 1, generator=g) * 2,
                 terminated=torch.zeros(H, B, 1))


def test_repeated_updates_reduce_world_model_loss():
    torch.manual_seed(0)
    cfg = tiny_config()
    agent = MBDPO(cfg)
    batch = fixed_batch(cfg)
    first = agent.update(batch)
    for _ in range(60):
        last = agent.update(batch)
    for key in ("consistency_loss", "reward_loss", "energy_loss"):
        assert last[key] < first[key], key
    assert all(torch.isfinite(v).all() for v in last.values())


def test_energy_loss_picks_the_hardest_negative(monkeypatch):
    torch.manual_seed(0)
    cfg = tiny_config()
    agent = MBDPO(cfg)
    m = agent.model
    torch.nn.init.normal_(m.energy_head[-1].weight, std=1.0)
    calls = []
    real = m.energy

    def spy(z, a, task=None):
        out = real(z, a, task)
        calls.append((a.detach().clone(), out.detach().clone()))
        return out
    monkeypatch.setattr(m, "energy", spy)
    z = m.encode(torch.randn(3, 16, 7)).detach()
    a_pos = torch.rand(3, 16, 3) * 2 - 1
    loss, logits = agent.energy_loss(z, a_pos, None)
    (pos_a, f_pos), (cands, f_cands), (neg_a, f_neg) = calls
    assert cands.shape == (3, 3, 16, 3)
    best = f_cands.argmax(0).squeeze(-1)  # [H, B]
    expected_neg = torch.gather(cands, 0, best.unsqueeze(0).unsqueeze(-1).expand(1, 3, 16, 3)).squeeze(0)
    torch.testing.assert_close(neg_a, expected_neg)
    # the chosen negative has the highest logit of the three candidates
    torch.testing.assert_close(f_neg, f_cands.max(0).values)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(loss, 0.5 * (bce(f_pos, torch.ones_like(f_pos)) + bce(f_neg, torch.zeros_like(f_neg))))
    assert logits.numel() == 2 * 3 * 16
    # the noisy candidate is the policy's action (the first candidate) plus 0.5 N(0,1), clipped
    assert cands[1].abs().max() <= 1 and (cands[1] - cands[0]).std() > 0.2
    assert cands[2].abs().max() <= 1


def test_target_heads_move_by_tau_and_stats_update():
    torch.manual_seed(0)
    cfg = tiny_config()
    agent = MBDPO(cfg)
    m = agent.model
    with torch.no_grad():
        for p in m.qs.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = [t.clone() for t in m.target_qs.parameters()]
    mu0, sig0 = m.energy_mu.clone(), m.energy_sigma.clone()
    out = agent.update(fixed_batch(cfg))
    for b, t, p in zip(before, m.target_qs.parameters(), m.qs.parameters()):
        torch.testing.assert_close(t, b + cfg.tau * (p - b))
    # energy statistics moved by (1 - momentum) toward the batch statistics
    assert not torch.equal(m.energy_sigma, sig0) or not torch.equal(m.energy_mu, mu0)
    assert out["q_scale"] >= 1.0


def test_running_scale_update_rule():
    torch.manual_seed(0)
    cfg = tiny_config()
    agent = MBDPO(cfg)
    m = agent.model
    with torch.no_grad():  # make Q values spread so that p95 - p5 > 1
        for w in m.qs.weights:
            torch.nn.init.normal_(w, std=0.5)
    captured = {}
    real_q = m.Q

    def spy(z, a, task=None, mode="all", target=False, detach=False):
        out = real_q(z, a, task, mode=mode, target=target, detach=detach)
        if detach:
            captured["q0"] = out[0].detach().clone()
        return out
    m.Q = spy
    zs = m.encode(torch.randn(4, 64, 7)).detach()
    agent.update_pi(zs, None)
    q0 = captured["q0"].flatten()
    spread = (torch.quantile(q0, 0.95) - torch.quantile(q0, 0.05)).clamp_min(1.0)
    torch.testing.assert_close(m.q_scale, torch.lerp(torch.ones(()), spread, cfg.tau))


def test_td_target_uses_min_of_first_two_target_heads():
    cfg = tiny_config(num_q=3)
    agent = MBDPO(cfg)
    m = agent.model
    bins = m.bins
    values = [2.0, 0.5, -7.0]  # head 2 is lowest but is not one of the first two
    with torch.no_grad():
        m.target_qs.weights[-1].zero_()
        for q, v in enumerate(values):
            logits = torch.full((cfg.num_bins,), -1e4)
            logits[torch.argmin((bins - fn.symlog(torch.tensor(v))).abs())] = 0.0
            m.target_qs.biases[-1][q].copy_(logits)
    next_z = m.encode(torch.randn(3, 5, 7))
    reward = torch.rand(3, 5, 1)
    term = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1).expand(3, 5, 1)
    y = agent.td_target(next_z, reward, term, None)
    q_min = fn.symexp(bins[torch.argmin((bins - fn.symlog(torch.tensor(0.5))).abs())])
    torch.testing.assert_close(y, reward + cfg.discount * (1 - term) * q_min, rtol=1e-4, atol=1e-4)


def test_score_loss_path_runs_and_trains_the_score_net():
    torch.manual_seed(0)
    cfg = tiny_config(score_net=True)
    agent = MBDPO(cfg)
    before = [p.clone() for p in agent.model.score_head.parameters()]
    out = agent.update(fixed_batch(cfg))
    assert "score_loss" in out and torch.isfinite(out["score_loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.model.score_head.parameters()))


def test_episodic_update_trains_termination():
    torch.manual_seed(0)
    cfg = tiny_config(episodic=True)
    agent = MBDPO(cfg)
    batch = fixed_batch(cfg)
    batch.terminated[-1] = 1.0
    first = agent.update(batch)["termination_loss"]
    for _ in range(30):
        last = agent.update(batch)["termination_loss"]
    assert last < first


def test_multitask_update_runs_with_per_task_discounts():
    torch.manual_seed(0)
    cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b"])
    agent = MBDPO(cfg, action_dims=[5, 2], episode_lengths=[500, 100])
    torch.testing.assert_close(agent.discounts, torch.tensor([0.99, 0.95]))
    b = fixed_batch(cfg, B=8)
    b.task = torch.tensor([0, 1] * 4)
    b.action = b.action * agent.model.action_mask(b.task)
    out = agent.update(b)
    assert all(torch.isfinite(v).all() for v in out.values())
