"""The JS consistency term, the CVaR term and calibration, against hand-checked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from r2v_agent.router.calibration import apply_isotonic, fit_isotonic, fit_temperature  # noqa: E402
from r2v_agent.training.losses import cvar_of_groups, js_divergence  # noqa: E402


def _log(p: list[float]) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64).log()


def test_js_is_zero_for_equal_distributions() -> None:
    logits = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(logits, -1)
    assert torch.allclose(js_divergence(logp, logp), torch.zeros(4), atol=1e-7)


def test_js_is_symmetric_and_bounded_by_log2() -> None:
    gen = torch.Generator().manual_seed(1)
    logp = torch.log_softmax(3 * torch.randn(64, 11, generator=gen), -1)
    logq = torch.log_softmax(3 * torch.randn(64, 11, generator=gen), -1)
    pq, qp = js_divergence(logp, logq), js_divergence(logq, logp)
    assert torch.allclose(pq, qp, atol=1e-6)
    assert bool((pq >= 0).all()) and bool((pq <= math.log(2) + 1e-9).all())
    assert float(pq.max()) > 0.05  # random distributions do differ


def test_js_by_hand() -> None:
    # P = (1, 0), Q = (0, 1): disjoint supports reach the bound log 2
    eps = 1e-30
    assert float(js_divergence(_log([1 - eps, eps]), _log([eps, 1 - eps]))) == pytest.approx(
        math.log(2), rel=1e-6
    )
    # P = (0.5, 0.5), Q = (1, 0): M = (0.75, 0.25)
    # KL(P||M) = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25); KL(Q||M) = ln(1/0.75)
    expected = 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2) + math.log(4 / 3))
    assert float(js_divergence(_log([0.5, 0.5]), _log([1 - eps, eps]))) == pytest.approx(
        expected, rel=1e-6
    )


def test_js_masked_mean() -> None:
    logp = _log([0.5, 0.5]).expand(3, 2)
    logq = torch.stack([_log([0.5, 0.5]), _log([0.9, 0.1]), _log([0.5, 0.5])])
    mask = torch.tensor([0, 1, 0])
    assert float(js_divergence(logp, logq, mask)) == pytest.approx(
        float(js_divergence(logp[1], logq[1]))
    )


def test_cvar_of_groups_by_hand() -> None:
    losses = torch.tensor([0.1, 0.3, 0.8, 0.6, 0.0, 0.2])
    groups = torch.tensor([1, 1, 2, 2, 3, 3])  # group means 0.2, 0.7, 0.1
    value, active = cvar_of_groups(losses, groups, alpha=0.34)  # worst ceil(1.02) = 2 groups
    assert float(value) == pytest.approx((0.7 + 0.2) / 2)
    assert active
    value, active = cvar_of_groups(losses, groups, alpha=1.0)
    assert float(value) == pytest.approx((0.2 + 0.7 + 0.1) / 3)
    assert not active  # every group: nothing beyond the mean of group means


def test_cvar_term_has_gradient_only_through_the_worst_groups() -> None:
    losses = torch.tensor([0.1, 0.3, 0.8, 0.6], requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1])
    value, _ = cvar_of_groups(losses, groups, alpha=0.5)
    value.backward()
    assert losses.grad.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.5])


def test_isotonic_calibration_is_monotone_and_fits_rates() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 1, 0, 1, 1, 1])
    kx, ky = fit_isotonic(p, y)
    assert np.all(np.diff(ky) >= 0)
    # blocks: {0.1}->0, {0.2,0.3}->0.5, {0.4,0.5,0.6}->1
    assert ky.tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert apply_isotonic(np.array([0.25]), kx, ky)[0] == pytest.approx(0.5)


def test_temperature_scaling_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    assert fit_temperature(3.0 * true_logit, y) == pytest.approx(3.0, rel=0.15)
