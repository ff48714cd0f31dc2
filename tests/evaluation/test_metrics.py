"""MAE, WMAE, R² and r against values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spineage.evaluation.metrics import (
    age_metrics,
    metrics_by_group,
    r_squared,
    weighted_mae,
)


def test_wmae_is_the_mean_of_the_per_bracket_maes_not_the_mae() -> None:
    # Bracket 30: errors 1, 1, 1, 1 (MAE 1); bracket 70: error 5 (MAE 5). MAE = 9/5 = 1.8; WMAE = (1 + 5)/2 = 3.
    age = np.array([30.0, 31.0, 32.0, 33.0, 70.0])
    predicted = np.array([31.0, 30.0, 33.0, 32.0, 65.0])
    bracket = np.array([30, 30, 30, 30, 70])
    assert weighted_mae(age, predicted, bracket) == pytest.approx(3.0)
    figures = age_metrics(pd.DataFrame({"age": age, "bracket": bracket}), predicted)
    assert figures["mae"] == pytest.approx(1.8)
    assert figures["wmae"] == pytest.approx(3.0)
    assert figures["mean_gap"] == pytest.approx(-5 / 5)
    assert figures["n"] == 5


def test_series_without_a_bracket_are_left_out_of_wmae() -> None:
    assert weighted_mae(np.array([30.0, 90.0]), np.array([32.0, 60.0]), np.array([30, np.nan])) == pytest.approx(2.0)


def test_r_squared_by_hand() -> None:
    # SS_res = 4 + 0 + 4 = 8, SS_tot = 100 + 0 + 100 = 200.
    assert r_squared(np.array([40.0, 50.0, 60.0]), np.array([42.0, 50.0, 58.0])) == pytest.approx(0.96)
    # Predicting the mean is R² 0; worse than the mean is negative.
    assert r_squared(np.array([40.0, 60.0]), np.array([50.0, 50.0])) == pytest.approx(0.0)
    assert r_squared(np.array([40.0, 60.0]), np.array([60.0, 40.0])) < 0
    assert math.isnan(r_squared(np.array([50.0, 50.0]), np.array([49.0, 51.0])))


def test_gap_sd_and_pearson_r() -> None:
    table = pd.DataFrame({"age": [40.0, 50.0, 60.0, 70.0], "bracket": [40, 50, 60, 70]})
    figures = age_metrics(table, np.array([41.0, 49.0, 63.0, 69.0]))
    assert figures["sd_gap"] == pytest.approx(np.std([1, -1, 3, -1], ddof=1))
    assert figures["r"] == pytest.approx(np.corrcoef([40, 50, 60, 70], [41, 49, 63, 69])[0, 1])


def test_metrics_by_group_splits_by_every_key() -> None:
    table = pd.DataFrame({
        "age": [30.0, 32.0, 30.0, 70.0], "bracket": [30, 30, 30, 70], "sex": ["F", "F", "M", "M"],
        "predicted": [31.0, 34.0, 36.0, 70.0],
    })
    groups = metrics_by_group(table, "predicted", ["bracket", "sex"])
    assert groups[["bracket", "sex", "n"]].values.tolist() == [[30, "F", 2], [30, "M", 1], [70, "M", 1]]
    assert groups["mae"].tolist() == pytest.approx([1.5, 6.0, 0.0])
