"""The split-conformal normative range: its quantile by hand, and its coverage on synthetic residuals."""

from __future__ import annotations

import numpy as np
import pytest

from spineage.errors import UserError
from spineage.evaluation.conformal import calibrate_normative_range, empirical_coverage


def test_the_half_width_is_the_finite_sample_conformal_quantile() -> None:
    # n = 21, coverage 0.9: the ceil((n + 1) · 0.9) = 20th smallest |residual| (signs do not matter).
    residuals = np.arange(1, 22, dtype=float) * np.where(np.arange(21) % 2, -1, 1)
    normative = calibrate_normative_range(residuals, 0.9)
    assert normative.half_width == pytest.approx(20.0)
    assert normative.n_calibration == 21
    assert normative.sag_range(np.array([50.0])).tolist() == [[-20.0, 20.0]]
    assert normative.age_range(np.array([50.0])).tolist() == [[30.0, 70.0]]
    assert normative.atypical(np.array([50.0, 50.0, 50.0]), np.array([29.0, 30.0, 70.5])).tolist() == [True, False, True]


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_coverage_on_fresh_normal_residuals_sits_at_nominal(coverage: float) -> None:
    rng = np.random.default_rng(42)
    achieved = []
    for _ in range(40):  # the guarantee is on average over calibration sets
        normative = calibrate_normative_range(rng.standard_t(5, 200) * 3.0, coverage)
        age = rng.uniform(30, 80, 2000)
        corrected = age + rng.standard_t(5, 2000) * 3.0
        achieved.append(empirical_coverage(normative, corrected, age))
    assert coverage <= np.mean(achieved) <= coverage + 0.02


def test_shifted_series_are_flagged_far_more_often() -> None:
    rng = np.random.default_rng(1)
    normative = calibrate_normative_range(rng.normal(0, 3, 300), 0.9)
    age = rng.uniform(30, 80, 2000)
    normal_flagged = 1 - empirical_coverage(normative, age + rng.normal(0, 3, 2000), age)
    shifted_flagged = 1 - empirical_coverage(normative, age + 8 + rng.normal(0, 3, 2000), age)
    assert normal_flagged == pytest.approx(0.1, abs=0.03)
    assert shifted_flagged > 0.6


def test_too_few_calibration_series_for_the_coverage_are_refused() -> None:
    with pytest.raises(UserError, match="at least 19 validation series"):
        calibrate_normative_range(np.ones(10), 0.95)
