"""Numerics: two-hot regression, SimNorm, discount rule, policy squashing and entropy scaling."""
import math

import pytest
import torch

from mbdpo_fast import functional as fn
from mbdpo_fast.config import discount_for

NB, VMIN, VMAX = 101, -10.0, 10.0


def test_symlog_symexp_inverse():
    x = torch.randn(1000, dtype=torch.float64) * 100
    torch.testing.assert_close(fn.symexp(fn.symlog(x)), x, rtol=1e-10, atol=1e-10)


def test_two_hot_round_trip_and_shape():
    bins = fn.bin_centers(NB, VMIN, VMAX)
    x = torch.cat([torch.randn(500) * 50, torch.tensor([0.0, -3.3, 1e-3, 999.0])])
    p = fn.two_hot(x, NB, VMIN, VMAX)
    assert p.shape == (x.numel(), NB)
    torch.testing.assert_close(p.sum(-1), torch.ones(x.numel()))
    assert ((p > 0).sum(-1) <= 2).all()
    nz = [torch.nonzero(row).flatten() for row in p]
    assert all(len(i) < 2 or int(i[1] - i[0]) == 1 for i in nz), "mass on non-adjacent bins"
    # Decoding the two-hot distribution (as logits) gives x back.
    back = fn.two_hot_inv(torch.log(p + 1e-30), bins).squeeze(-1)
    torch.testing.assert_close(back, x, rtol=1e-4, atol=1e-4)


def test_two_hot_clamps_outside_range():
    bins = fn.bin_centers(NB, VMIN, VMAX)
    x = torch.tensor([1e7, -1e7])
    back = fn.two_hot_inv(torch.log(fn.two_hot(x, NB, VMIN, VMAX) + 1e-30), bins).squeeze(-1)
    torch.testing.assert_close(back, torch.tensor([math.expm1(10.0), -math.expm1(10.0)]), rtol=1e-4, atol=0)


def test_soft_ce_is_minimised_by_the_two_hot_target():
    x = torch.randn(64, 1) * 5
    target = fn.two_hot(x.squeeze(-1), NB, VMIN, VMAX)
    perfect = fn.soft_ce(torch.log(target + 1e-12), x, NB, VMIN, VMAX)
    other = fn.soft_ce(torch.randn(64, NB), x, NB, VMIN, VMAX)
    assert perfect.shape == (64, 1)
    assert (perfect < other).all()


def test_decode_of_zero_logits_is_zero():
    bins = fn.bin_centers(NB, VMIN, VMAX)
    assert fn.two_hot_inv(torch.zeros(3, NB), bins).abs().max() < 1e-5


def test_simnorm_groups_are_softmaxes():
    x = torch.randn(5, 4, 24)
    y = fn.simnorm(x, 8)
    assert y.shape == x.shape
    g = y.view(5, 4, 3, 8)
    torch.testing.assert_close(g.sum(-1), torch.ones(5, 4, 3))
    torch.testing.assert_close(g, torch.softmax(x.view(5, 4, 3, 8), -1))


@pytest.mark.parametrize("L,expected", [(500, 0.99), (1000, 0.995), (100, 0.95), (50, 0.95), (250, 0.98)])
def test_discount_rule(L, expected):
    assert discount_for(L) == pytest.approx(expected)


def test_discount_rule_formula_between_clips():
    for L in [120, 150, 300, 400, 600, 900]:
        frac = L / 5
        assert discount_for(L) == pytest.approx(min(max((frac - 1) / frac, 0.95), 0.995))


def test_log_std_squash_range():
    raw = torch.linspace(-50, 50, 1001)
    ls = fn.squash_log_std(raw, -10, 2)
    assert ls.min() >= -10 and ls.max() <= 2
    assert fn.squash_log_std(torch.zeros(1), -10, 2).item() == pytest.approx(-4.0)


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(32, 6), torch.rand(32, 6) - 2
    eps = torch.randn(32, 6)
    u = mean + eps * log_std.exp()
    ours = fn.gaussian_log_prob(eps, log_std) - fn.tanh_log_det(u)
    base = torch.distributions.Normal(mean, log_std.exp())
    dist = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    ref = dist.log_prob(torch.tanh(u).clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1, keepdim=True)
    # Agreement up to the 1e-6 inside the log-det (ours) vs TanhTransform's exact form.
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=1e-2)


def test_masked_log_prob_ignores_padded_dims():
    eps, log_std = torch.randn(10, 5), torch.randn(10, 5)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    full = fn.gaussian_log_prob(eps[:, :3], log_std[:, :3])
    torch.testing.assert_close(fn.gaussian_log_prob(eps, log_std, mask), full)


def test_sinusoidal_embedding():
    e = fn.sinusoidal_embedding(torch.tensor([0.0, 3.0, 19.0]), 64)
    assert e.shape == (3, 64)
    torch.testing.assert_close(e[0], torch.cat([torch.zeros(32), torch.ones(32)]))
    assert not torch.allclose(e[1], e[2])
    # an odd size is padded with one zero (the score head's input width is time_embed_dim)
    odd = fn.sinusoidal_embedding(torch.tensor([2.0]), 7)
    assert odd.shape == (1, 7) and odd[0, -1] == 0
    torch.testing.assert_close(odd[0, :6], fn.sinusoidal_embedding(torch.tensor([2.0]), 6)[0])




def test_mish_from_one_exponential_equals_torch_mish():
    """functional.mish_exp against float64 Mish over the whole fp32 range that matters (and its
    extremes), values and gradients; torch's own fp32 Mish is held to the same bounds."""
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.randn(100_000) * 4,
                   torch.tensor([0.0, -0.0, 19.99, 20.0, 20.01, 88.0, 89.0, -88.0, 1e30, -1e30])])
    ref = torch.nn.functional.mish(x.double())
    got = fn.mish_exp(x)
    assert torch.isfinite(got).all()
    err = (got.double() - ref).abs()
    assert (err <= 2e-6 + 3e-7 * ref.abs()).all(), float((err / (ref.abs() + 1e-30)).max())
    xg = x[(x.abs() < 50)].clone().requires_grad_(True)
    fn.mish_exp(xg).sum().backward()
    xd = xg.detach().double().requires_grad_(True)
    torch.nn.functional.mish(xd).sum().backward()
    assert ((xg.grad.double() - xd.grad).abs() <= 1e-5).all()


def test_policy_pre_tanh_masks_the_padded_dims():
    raw, eps = torch.randn(4, 6), torch.randn(4, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]]).expand(4, 3)
    pre, mean, log_std, e = fn.policy_pre_tanh(raw, eps, mask, -10.0, 2.0)
    assert (pre[:, 2] == 0).all() and (mean[:, 2] == 0).all() and (log_std[:, 2] == 0).all() and (e[:, 2] == 0).all()
    want = raw[:, :2] + eps[:, :2] * fn.squash_log_std(raw[:, 3:5], -10.0, 2.0).exp()
    torch.testing.assert_close(pre[:, :2], want)
