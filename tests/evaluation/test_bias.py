"""Cole's and Beheshti's corrections against least squares worked by hand, and the refusal to fit on test."""

from __future__ import annotations

import numpy as np
import pytest

from spineage.errors import UserError
from spineage.evaluation.bias import (
    BiasCorrection,
    apply_bias_correction,
    fit_bias_correction,
)

# Worked by hand: mean age 45, mean predicted 44.5, Sxx = 500, Sxy(predicted) = 280, Sxy(gap) = -220.
AGE = np.array([30.0, 40.0, 50.0, 60.0])
PREDICTED = np.array([36.0, 41.0, 49.0, 52.0])


def test_cole_fits_predicted_on_age_and_inverts_it() -> None:
    correction = fit_bias_correction("cole", PREDICTED, AGE, "validation")
    assert correction.slope == pytest.approx(0.56)
    assert correction.intercept == pytest.approx(19.3)
    assert (correction.method, correction.split, correction.n) == ("cole", "validation", 4)
    corrected = apply_bias_correction(correction, PREDICTED)  # Cole's needs no chronological age
    assert corrected == pytest.approx([(36 - 19.3) / 0.56, (41 - 19.3) / 0.56, (49 - 19.3) / 0.56, (52 - 19.3) / 0.56])
    assert corrected[0] == pytest.approx(29.821428571)


def test_beheshti_fits_the_gap_on_age_and_subtracts_it() -> None:
    correction = fit_bias_correction("beheshti", PREDICTED, AGE, "validation")
    assert correction.slope == pytest.approx(-0.44)
    assert correction.intercept == pytest.approx(19.3)
    corrected = apply_bias_correction(correction, PREDICTED, AGE)
    assert corrected == pytest.approx([36 - 6.1, 41 - 1.7, 49 + 2.7, 52 + 7.1])
    # The corrected gap no longer trends with age on the series it was fitted on.
    assert np.polyfit(AGE, corrected - AGE, 1)[0] == pytest.approx(0.0, abs=1e-9)


def test_cole_removes_a_planted_regression_to_the_mean() -> None:
    rng = np.random.default_rng(0)
    age = rng.uniform(25, 85, 400)
    predicted = 0.7 * age + 15 + rng.normal(0, 2, 400)
    correction = fit_bias_correction("cole", predicted, age, "validation")
    assert correction.slope == pytest.approx(0.7, abs=0.02)
    raw_trend = np.polyfit(age, predicted - age, 1)[0]
    corrected_trend = np.polyfit(age, apply_bias_correction(correction, predicted) - age, 1)[0]
    assert raw_trend == pytest.approx(-0.3, abs=0.02)
    assert abs(corrected_trend) < 0.02


@pytest.mark.parametrize("split", ["test", "full_test_abnormal", "full_test_other", "full_test"])
def test_fitting_on_a_test_split_is_refused(split: str) -> None:
    with pytest.raises(UserError, match="fitted on the test split") as error:
        fit_bias_correction("cole", PREDICTED, AGE, split)
    assert "\n" not in str(error.value)


def test_predictions_that_do_not_follow_age_are_refused_by_cole() -> None:
    with pytest.raises(UserError, match="positive slope"):
        fit_bias_correction("cole", PREDICTED[::-1], AGE, "validation")


def test_too_few_series_and_unknown_methods_are_refused() -> None:
    with pytest.raises(UserError, match="at least 3"):
        fit_bias_correction("cole", PREDICTED[:2], AGE[:2], "validation")
    with pytest.raises(UserError, match="among"):
        fit_bias_correction("lowess", PREDICTED, AGE, "validation")


def test_beheshti_needs_ages_to_apply() -> None:
    correction = fit_bias_correction("beheshti", PREDICTED, AGE, "validation")
    with pytest.raises(UserError, match="chronological ages"):
        apply_bias_correction(correction, PREDICTED)


def test_tags_carry_the_correction_exactly() -> None:
    correction = fit_bias_correction("beheshti", PREDICTED + np.pi / 100, AGE, "validation")
    tags = correction.as_tags()
    assert all(isinstance(v, str) for v in tags.values())
    assert set(tags) == {f"bias_correction_{k}" for k in ("method", "slope", "intercept", "split", "n")}
    back = BiasCorrection.from_tags({**tags, "unrelated": "x"})
    assert back == correction
    assert apply_bias_correction(back, PREDICTED, AGE) == pytest.approx(apply_bias_correction(correction, PREDICTED, AGE), abs=0)


def test_incomplete_tags_are_a_user_error() -> None:
    tags = fit_bias_correction("cole", PREDICTED, AGE, "validation").as_tags()
    del tags["bias_correction_slope"]
    with pytest.raises(UserError, match="method, slope, intercept"):
        BiasCorrection.from_tags(tags)
