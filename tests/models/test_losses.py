"""The age losses: bin centres, expectation decoding, soft labels, the mean-variance loss, regression losses, AgeLoss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spineage.models.losses import (
    LOSS_NAMES,
    AgeLoss,
    age_bin_centres,
    expected_age,
    mean_variance_loss,
    regression_loss,
    soft_age_labels,
)
from spineage.models.spine_age import SpineAgeNet

BINS = torch.tensor([20.0, 25.0, 40.0, 70.0])
"""Uneven bins, so that a wrong index or an even-spacing assumption shows."""

SMALL = {"input_shape": (8, 8, 16), "channels": (2, 2, 4, 4, 4), "head_channels": 4}
"""A tiny SpineAgeNet."""


def test_loss_names() -> None:
    assert LOSS_NAMES == ("mse", "smooth_l1", "mean_variance")


# Bin centres ---------------------------------------------------------------------------------


def test_age_bin_centres_include_both_ends() -> None:
    centres = age_bin_centres(18, 100)
    assert centres.dtype == torch.float32
    assert centres.numel() == 83
    assert centres[0].item() == 18.0 and centres[-1].item() == 100.0
    assert torch.allclose(centres[1:] - centres[:-1], torch.ones(82))


def test_age_bin_centres_fractional_width_keeps_high() -> None:
    # 0.1 is not exact in binary: a naive floor would lose the last centre.
    centres = age_bin_centres(20.0, 21.0, 0.1)
    assert centres.numel() == 11
    assert centres[-1].item() == pytest.approx(21.0)


def test_age_bin_centres_stop_below_an_off_grid_high() -> None:
    assert age_bin_centres(20, 29, 4).tolist() == [20.0, 24.0, 28.0]


@pytest.mark.parametrize(("low", "high", "width"), [(50, 50, 1), (60, 50, 1), (20, 80, 0), (20, 80, -1)])
def test_age_bin_centres_reject_bad_ranges(low: float, high: float, width: float) -> None:
    with pytest.raises(ValueError, match="Expected"):
        age_bin_centres(low, high, width)


# Expectation decoding ------------------------------------------------------------------------


def test_expected_age_of_uniform_logits_is_the_bin_mean() -> None:
    ages = expected_age(torch.full((3, 4), 0.7), BINS)
    assert ages.shape == (3,)
    assert torch.allclose(ages, torch.full((3,), float(BINS.mean())))


@pytest.mark.parametrize("k", range(4))
def test_expected_age_of_a_peaked_logit_is_that_bin(k: int) -> None:
    logits = torch.zeros(2, 4)
    logits[:, k] = 50.0
    assert torch.allclose(expected_age(logits, BINS), BINS[k].expand(2), atol=1e-4)


def test_expected_age_weights_each_row_by_its_own_softmax() -> None:
    logits = torch.tensor([[0.0, math.log(3.0), -1e4, -1e4], [-1e4, -1e4, 0.0, 0.0]])
    # Row 0: p = (1/4, 3/4) on 20 and 25; row 1: halfway between 40 and 70.
    assert torch.allclose(expected_age(logits, BINS), torch.tensor([23.75, 55.0]))


def test_expected_age_of_bfloat16_logits_is_float32() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    ages = expected_age(logits.bfloat16(), BINS)
    assert ages.dtype == torch.float32
    # Only the bf16 rounding of the logits differs (about 3 significant digits).
    assert torch.allclose(ages, expected_age(logits.bfloat16().float(), BINS))
    assert torch.allclose(ages, expected_age(logits, BINS), atol=0.5)


def test_expected_age_rejects_a_bin_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"Expected logits of shape \(batch, 4\).*found \(2, 3\)"):
        expected_age(torch.zeros(2, 3), BINS)


# Soft labels ---------------------------------------------------------------------------------


def test_soft_labels_split_between_neighbours() -> None:
    labels = soft_age_labels(torch.tensor([20.0, 25.0, 30.0, 55.0, 70.0, 10.0, 90.0]), BINS)
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # on the first centre
            [0.0, 1.0, 0.0, 0.0],  # on an inner centre
            [0.0, 2 / 3, 1 / 3, 0.0],  # 30 = 25 + 5/15 of the way to 40
            [0.0, 0.0, 0.5, 0.5],
            [0.0, 0.0, 0.0, 1.0],  # on the last centre
            [1.0, 0.0, 0.0, 0.0],  # clamped below
            [0.0, 0.0, 0.0, 1.0],  # clamped above
        ]
    )
    assert torch.allclose(labels, expected, atol=1e-6)
    # The label's expectation is the (clamped) age itself.
    assert torch.allclose((labels * BINS).sum(1), torch.tensor([20.0, 25.0, 30.0, 55.0, 70.0, 20.0, 70.0]))


# Mean-variance loss --------------------------------------------------------------------------


def test_cross_entropy_on_a_bin_centre_is_minus_log_p_of_that_bin() -> None:
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.5], [1.0, 0.0, -0.5, 0.2]])
    ages = torch.tensor([40.0, 25.0])
    loss = mean_variance_loss(logits, ages, BINS, lambda_mean=0.0, lambda_variance=0.0)
    log_p = torch.log_softmax(logits, dim=1)
    assert loss.item() == pytest.approx(-(log_p[0, 2] + log_p[1, 1]).item() / 2, rel=1e-6)


def test_cross_entropy_between_centres_uses_the_soft_label() -> None:
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.5]])
    loss = mean_variance_loss(logits, torch.tensor([55.0]), BINS, lambda_mean=0.0, lambda_variance=0.0)
    log_p = torch.log_softmax(logits, dim=1)[0]
    assert loss.item() == pytest.approx(-(0.5 * log_p[2] + 0.5 * log_p[3]).item(), rel=1e-6)


def test_mean_variance_loss_against_a_numpy_computation() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 4))
    ages = np.array([22.0, 40.0, 61.0])
    bins = BINS.double().numpy()
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = soft_age_labels(torch.as_tensor(ages), BINS).numpy()
    cross_entropy = -(labels * np.log(p)).sum(1).mean()
    mean = (p * bins).sum(1)
    variance = (p * (bins - mean[:, None]) ** 2).sum(1).mean()
    expected = cross_entropy + 0.3 * ((mean - ages) ** 2).mean() / 2 + 0.07 * variance
    loss = mean_variance_loss(torch.as_tensor(logits), torch.as_tensor(ages), BINS, lambda_mean=0.3, lambda_variance=0.07)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_mean_variance_loss_defaults_are_the_papers_weights() -> None:
    logits, ages = torch.tensor([[0.1, 0.4, -0.3, 0.0]]), torch.tensor([33.0])
    assert mean_variance_loss(logits, ages, BINS).item() == pytest.approx(
        mean_variance_loss(logits, ages, BINS, lambda_mean=0.2, lambda_variance=0.05).item()
    )


def test_mean_variance_loss_gradcheck_in_float64() -> None:
    logits = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    ages = torch.tensor([21.0, 33.0, 64.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: mean_variance_loss(x, ages, BINS, 0.2, 0.05), (logits,))


def test_mean_variance_loss_of_bfloat16_logits_is_float32_with_float32_gradients() -> None:
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(2)).bfloat16().requires_grad_()
    loss = mean_variance_loss(logits, torch.tensor([30.0, 50.0]), BINS)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


def _sgd(logits: torch.Tensor, objective, steps: int, lr: float) -> torch.Tensor:
    logits = logits.clone().requires_grad_()
    for _ in range(steps):
        value = objective(logits)
        (grad,) = torch.autograd.grad(value, logits)
        logits = (logits - lr * grad).detach().requires_grad_()
    return logits.detach()


def _term(lambda_mean: float, lambda_variance: float, ages: torch.Tensor):
    """One term of the loss alone: the loss with it minus the loss without (the cross-entropy cancels)."""

    def objective(logits: torch.Tensor) -> torch.Tensor:
        return mean_variance_loss(logits, ages, BINS, lambda_mean, lambda_variance) - mean_variance_loss(
            logits, ages, BINS, 0.0, 0.0
        )

    return objective


def _spread(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, dim=1)
    mean = (p * BINS).sum(1, keepdim=True)
    return (p * (BINS - mean) ** 2).sum(1)


def test_sgd_on_the_full_loss_lowers_it_and_moves_the_expectation_to_the_target() -> None:
    start = torch.tensor([[0.0, 0.0, 0.0, 3.0], [3.0, 0.0, 0.0, 0.0]])  # near 70 and near 20
    ages = torch.tensor([30.0, 55.0])

    def objective(logits: torch.Tensor) -> torch.Tensor:
        return mean_variance_loss(logits, ages, BINS)

    end = _sgd(start, objective, steps=30, lr=0.01)
    assert objective(end) < objective(start)
    before, after = expected_age(start, BINS), expected_age(end, BINS)
    assert ((after - ages).abs() < (before - ages).abs()).all()


def test_the_mean_term_pushes_the_expectation_toward_the_target() -> None:
    start = torch.tensor([[0.0, 0.0, 0.0, 2.0], [2.0, 0.0, 0.0, 0.0]])
    ages = torch.tensor([30.0, 55.0])
    end = _sgd(start, _term(1.0, 0.0, ages), steps=20, lr=1e-3)
    before, after = expected_age(start, BINS), expected_age(end, BINS)
    # Down from the high start, up from the low one, and closer in both.
    assert after[0] < before[0] and after[1] > before[1]
    assert ((after - ages).abs() < 0.5 * (before - ages).abs()).all()


def test_the_variance_term_shrinks_the_spread() -> None:
    start = torch.zeros(2, 4)  # as spread as it gets
    ages = torch.tensor([30.0, 55.0])
    end = _sgd(start, _term(0.0, 1.0, ages), steps=20, lr=1e-3)
    assert (_spread(end) < 0.5 * _spread(start)).all()


def test_mean_variance_loss_rejects_an_age_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"Expected ages of shape \(2,\), found \(3,\)"):
        mean_variance_loss(torch.zeros(2, 4), torch.zeros(3), BINS)


# Regression losses ---------------------------------------------------------------------------


def test_mse_against_hand_computation() -> None:
    # Targets (65 - 50) / 15 = 1 and 0; errors 0.5 and -0.5 -> 0.25.
    output = torch.tensor([[1.5], [-0.5]])
    ages = torch.tensor([65.0, 50.0])
    assert regression_loss(output, ages, 50.0, 15.0, "mse").item() == pytest.approx(0.25)
    assert regression_loss(output[:, 0], ages, 50.0, 15.0, "mse").item() == pytest.approx(0.25)


@pytest.mark.parametrize(("beta", "expected"), [(1.0, (0.5 * 0.25 + 2.5) / 2), (2.0, (0.5 * 0.25 / 2 + 2.0) / 2)])
def test_smooth_l1_against_hand_computation(beta: float, expected: float) -> None:
    # Standardised errors 0.5 (quadratic: 0.5 e^2 / beta) and 3.0 (linear: |e| - beta / 2).
    output = torch.tensor([[0.5], [3.0]])
    ages = torch.tensor([40.0, 40.0])
    assert regression_loss(output, ages, 40.0, 10.0, "smooth_l1", beta=beta).item() == pytest.approx(expected)


def test_regression_loss_of_bfloat16_output_is_float32() -> None:
    loss = regression_loss(torch.tensor([[1.0]], dtype=torch.bfloat16), torch.tensor([50.0]), 50.0, 15.0)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(1.0)


def test_regression_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"Expected a regression output .* found \(2, 3\)"):
        regression_loss(torch.zeros(2, 3), torch.zeros(2), 50.0, 15.0)
    with pytest.raises(ValueError, match="found 'huber'"):
        regression_loss(torch.zeros(2, 1), torch.zeros(2), 50.0, 15.0, kind="huber")
    with pytest.raises(ValueError, match=r"Expected ages of shape \(2,\)"):
        regression_loss(torch.zeros(2, 1), torch.zeros(2, 1), 50.0, 15.0)


# AgeLoss -------------------------------------------------------------------------------------


def test_age_loss_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"^Expected a loss in mse, smooth_l1, mean_variance, found 'x'$"):
        AgeLoss("x")


@pytest.mark.parametrize("bins", [None, [50.0], [60.0, 50.0]])
def test_age_loss_mean_variance_needs_increasing_bins(bins: list[float] | None) -> None:
    with pytest.raises(ValueError, match="age bins"):
        AgeLoss("mean_variance", age_bins=None if bins is None else torch.tensor(bins))


def test_age_loss_matches_the_functions() -> None:
    raw, ages = torch.tensor([[0.2], [-1.0]]), torch.tensor([52.0, 31.0])
    assert AgeLoss("mse", age_mean=45.0, age_sd=12.0)(raw, ages).item() == pytest.approx(
        regression_loss(raw, ages, 45.0, 12.0, "mse").item()
    )
    assert AgeLoss("smooth_l1", age_mean=45.0, age_sd=2.0, beta=0.5)(raw, ages).item() == pytest.approx(
        regression_loss(raw, ages, 45.0, 2.0, "smooth_l1", beta=0.5).item()
    )
    logits = torch.tensor([[0.1, 0.4, -0.3, 0.0], [1.0, -1.0, 0.5, 0.2]])
    mv = AgeLoss("mean_variance", age_bins=BINS, lambda_mean=0.1, lambda_variance=0.3)
    assert mv(logits, ages).item() == pytest.approx(mean_variance_loss(logits, ages, BINS, 0.1, 0.3).item())


def test_for_model_takes_the_models_standardisation_and_bins() -> None:
    regression = AgeLoss.for_model("smooth_l1", SpineAgeNet(**SMALL, age_mean=61.0, age_sd=9.0), beta=0.3)
    assert (regression.name, regression.age_mean, regression.age_sd, regression.beta) == ("smooth_l1", 61.0, 9.0, 0.3)
    mv = AgeLoss.for_model("mean_variance", SpineAgeNet(**SMALL, age_bins=[20.0, 45.0, 80.0]), lambda_mean=0.4)
    assert mv.age_bins.tolist() == [20.0, 45.0, 80.0] and mv.lambda_mean == 0.4


def test_for_model_rejects_a_head_mismatch() -> None:
    with pytest.raises(ValueError, match="found a model with a regression head"):
        AgeLoss.for_model("mean_variance", SpineAgeNet(**SMALL))
    for name in ("mse", "smooth_l1"):
        with pytest.raises(ValueError, match="found a model with a mean-variance head over 3 age bins"):
            AgeLoss.for_model(name, SpineAgeNet(**SMALL, age_bins=[20.0, 45.0, 80.0]))
