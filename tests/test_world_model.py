"""World model: shapes, initialisation, presets, multi-task masks, policy prior, ensemble."""
import pytest
import torch

from mbdpo_fast.config import MODEL_SIZE, default_config, resolve
from mbdpo_fast.layers import EnsembleMLP
from mbdpo_fast.world_model import WorldModel

from conftest import tiny_config


def mlp_params(i, hidden, o, normed_out=False):
    dims = [i, *hidden]
    n = sum(a * b + b + 2 * b for a, b in zip(dims[:-1], dims[1:]))  # linear + LayerNorm
    return n + dims[-1] * o + o + (2 * o if normed_out else 0)


def analytic_count(size, obs, A, task_dim=0, ntask=0, episodic=False):
    p = MODEL_SIZE[size]
    L, M, E = p["latent_dim"], p["mlp_dim"], p["enc_dim"]
    za = L + A + task_dim
    n = mlp_params(obs + task_dim, [E] * max(p["num_enc_layers"] - 1, 1), L, normed_out=True)
    n += mlp_params(za, [M, M], L, normed_out=True)  # dynamics
    n += mlp_params(za, [M, M], 101)  # reward
    n += mlp_params(za, [M, M], 1)  # energy F
    n += mlp_params(L + task_dim, [M, M], 2 * A)  # policy prior
    n += p["num_q"] * mlp_params(za, [M, M], 101)  # Q ensemble
    if episodic:
        n += mlp_params(L + task_dim, [M, M], 1)
    return n + ntask * task_dim


@pytest.mark.parametrize("size", sorted(MODEL_SIZE))
def test_preset_parameter_counts(size):
    """cheetah-run shapes (obs 17, A 6). Sizes 5..317 land within 15% of their names. Preset 1 is
    1.41M: TD-MPC2's own '1M' preset counts 1.44M under the same architecture on its mt80 shapes
    (see test_presets_match_tdmpc2_on_mt80), so that name is nominal."""
    cfg = resolve(default_config(model_size=size), 17, 6)
    with torch.device("meta"):
        model = WorldModel(cfg)
    n = model.num_parameters()
    assert n == analytic_count(size, 17, 6)
    if size == 1:
        assert 1.3e6 < n < 1.5e6
    else:
        assert abs(n / (size * 1e6) - 1) <= 0.15, f"{n / 1e6:.2f}M vs {size}M"


@pytest.mark.parametrize("size", [19, 48, 317])
def test_presets_match_tdmpc2_on_mt80(size):
    """Without F, on mt80 shapes (80 tasks, obs 39, A 6, 96-d embedding) the model is TD-MPC2's:
    its 19/48/317M presets come out at their names within 3%."""
    cfg = resolve(default_config(model_size=size, tasks=[f"t{i}" for i in range(80)]), 39, 6)
    with torch.device("meta"):
        model = WorldModel(cfg)
    p = MODEL_SIZE[size]
    energy = mlp_params(p["latent_dim"] + 6 + 96, [p["mlp_dim"]] * 2, 1)
    assert sum(q.numel() for q in model.energy_head.parameters()) == energy
    n = model.num_parameters() - energy
    assert n == analytic_count(size, 39, 6, 96, 80) - energy
    assert abs(n / (size * 1e6) - 1) <= 0.03


def test_shapes_single_task():
    cfg = tiny_config(obs_dim=7, action_dim=3, episodic=True, score_net=True)
    m = WorldModel(cfg)
    obs = torch.randn(4, 5, 7)
    z = m.encode(obs)
    assert z.shape == (4, 5, 16)
    torch.testing.assert_close(z.view(4, 5, 2, 8).sum(-1), torch.ones(4, 5, 2))  # SimNorm groups
    a = torch.rand(4, 5, 3) * 2 - 1
    assert m.next(z, a).shape == (4, 5, 16)
    assert m.reward(z, a).shape == (4, 5, 101)
    assert m.energy(z, a).shape == (4, 5, 1)
    assert m.termination(z).shape == (4, 5, 1)
    assert m.Q(z, a, mode="all").shape == (3, 4, 5, 101)
    assert m.Q(z, a, mode="avg").shape == (4, 5, 1)
    assert m.Q(z, a, mode="min", target=True).shape == (4, 5, 1)
    act, info = m.pi(z)
    assert act.shape == (4, 5, 3) and act.abs().max() < 1
    assert info["scaled_entropy"].shape == (4, 5, 1)
    s = m.score(z[0], torch.randn(5, cfg.horizon * 3), torch.full((5,), 4.0))
    assert s.shape == (5, cfg.horizon * 3)


def test_zero_initialised_heads_predict_zero():
    m = WorldModel(tiny_config())
    z, a = m.encode(torch.randn(10, 7)), torch.rand(10, 3)
    assert m.decode(m.reward(z, a)).abs().max() < 1e-5
    assert m.energy(z, a).abs().max() == 0
    assert m.Q(z, a, mode="avg").abs().max() < 1e-5
    for w in m.target_qs.weights:
        assert not w.requires_grad


def test_ensemble_head_selection_matches_full():
    ens = EnsembleMLP(5, 6, [8, 8], 4, dropout=0.0)
    for w in ens.weights:
        torch.nn.init.normal_(w)
    x = torch.randn(3, 7, 6)
    full = ens(x)
    heads = torch.tensor([3, 1])
    torch.testing.assert_close(ens(x, heads=heads), full[heads])
    # each head equals an independent MLP built from its weights
    h = x
    for i in range(3):
        h = h @ ens.weights[i][2] + ens.biases[i][2]
        if i < 2:
            h = torch.nn.functional.mish(torch.nn.functional.layer_norm(h, (8,)) * ens.ln_weights[i][2] + ens.ln_biases[i][2])
    torch.testing.assert_close(full[2], h)


def test_detached_q_gives_no_parameter_gradients():
    m = WorldModel(tiny_config())
    for w in m.qs.weights:
        torch.nn.init.normal_(w, std=0.1)
    z = torch.randn(6, 16, requires_grad=True)
    a = torch.rand(6, 3)
    m.Q(z, a, mode="avg", detach=True).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.qs.parameters())


@pytest.mark.parametrize("tanh_correction", [False, True])
def test_policy_entropy_is_scaled_by_action_dims(tanh_correction):
    """Default (the reference's): scaled_entropy = -A log N(eps; 0, std); with
    entropy_tanh_correction=true: -(A log N - sum log(1 - tanh(u)^2)); A the (unmasked) dims."""
    torch.manual_seed(3)
    m = WorldModel(tiny_config(action_dim=4, entropy_tanh_correction=tanh_correction))
    z = m.encode(torch.randn(256, 7))
    torch.manual_seed(11)
    a, info = m.pi(z)
    torch.manual_seed(11)
    mean, raw = m.pi_head(z).chunk(2, -1)
    from mbdpo_fast import functional as fn
    log_std = fn.squash_log_std(raw, -10, 2)
    eps = torch.randn_like(mean)
    u = mean + eps * log_std.exp()
    expected = -4 * fn.gaussian_log_prob(eps, log_std)
    if tanh_correction:
        expected = expected + fn.tanh_log_det(u)
    torch.testing.assert_close(info["scaled_entropy"], expected)
    torch.testing.assert_close(a, torch.tanh(u))


def test_multitask_masks_and_embedding():
    cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b", "c"])
    assert cfg.multitask
    m = WorldModel(cfg, action_dims=[5, 2, 3])
    task = torch.tensor([0, 1, 2, 1])
    z = m.encode(torch.randn(4, 9), task)
    assert z.shape == (4, 16)
    a, info = m.pi(z, task)
    assert (a[1, 2:] == 0).all() and (a[2, 3:] == 0).all() and (a[0] != 0).all()
    # entropy scaling uses the unmasked dims: task 1 has 2 dims
    assert m.action_mask(task).sum(-1).tolist() == [5, 2, 3, 2]
    # embedding max norm 1
    m.task_emb.weight.data.mul_(100)
    m.encode(torch.randn(3, 9), torch.tensor([0, 1, 2]))
    assert m.task_emb.weight.norm(dim=-1).max() <= 1 + 1e-5
    # time-major inputs with a per-sample task vector
    zs = m.encode(torch.randn(3, 4, 9), task)
    assert zs.shape == (3, 4, 16)
    with pytest.raises(ValueError):
        m.encode(torch.randn(4, 9))


def test_soft_update_moves_target_by_tau():
    m = WorldModel(tiny_config())
    with torch.no_grad():
        for p in m.qs.parameters():
            p.add_(torch.randn_like(p))
    before = [t.clone() for t in m.target_qs.parameters()]
    m.soft_update_target(0.01)
    for b, t, p in zip(before, m.target_qs.parameters(), m.qs.parameters()):
        torch.testing.assert_close(t, b + 0.01 * (p - b))
