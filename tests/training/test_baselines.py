"""The baselines beside the CNN: the mean-age predictor and ridge on structure intensities, on known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.imaging.preprocess import INTENSITY_FEATURES
from spineage.imaging.stage import MANIFEST_COLUMNS
from spineage.training.baselines import (
    MEAN_AGE,
    RIDGE_ALPHAS,
    RIDGE_INTENSITY,
    fit_baselines,
    intensity_feature_columns,
    mean_age_baseline,
    ridge_baseline,
    split_maes,
)
from spineage.training.stage import truth_figures

SPLITS = ["train"] * 240 + ["validation"] * 40 + ["test"] * 40 + ["full_test_abnormal"] * 30


def cohort(noise_sd: float = 0.5, signal: bool = True, seed: int = 0) -> pd.DataFrame:
    """Series whose age is a linear function of two features on very different scales (or of none), plus noise."""
    rng = np.random.default_rng(seed)
    n = len(SPLITS)
    marrow, disc, unrelated = rng.normal(0.3, 0.1, n), rng.normal(80.0, 15.0, n), rng.normal(0.0, 1.0, n)
    age = 55.0 + 12.0 * rng.standard_normal(n) if not signal else 20.0 + 150.0 * marrow - 0.4 * disc + 40.0
    age = age + noise_sd * rng.standard_normal(n)
    return pd.DataFrame({"series_id": [f"s{i}" for i in range(n)], "split": SPLITS, "age": age,
                         "median_vertebra": marrow, "median_disc": disc, "median_canal": unrelated})


FEATURES = ["median_vertebra", "median_disc", "median_canal"]


def test_the_mean_age_baseline_predicts_the_train_mean_and_its_mae_is_the_hand_computed_one() -> None:
    table = pd.DataFrame({"split": ["train", "train", "train", "validation", "validation", "test", "full_test_abnormal"],
                          "age": [30.0, 50.0, 70.0, 45.0, 58.0, 80.0, 20.0]})
    baseline = mean_age_baseline(table)
    assert baseline.name == MEAN_AGE and baseline.predicted.tolist() == [50.0] * 7
    assert split_maes(baseline.predicted, table) == {
        "train_mae": pytest.approx(40 / 3), "validation_mae": pytest.approx(6.5), "test_mae": 30.0, "mae_full_test_abnormal": 30.0,
    }


def test_ridge_recovers_a_linear_age_signal_and_beats_the_mean() -> None:
    table = cohort(noise_sd=0.5)
    ridge = ridge_baseline(table, FEATURES)
    maes = split_maes(ridge.predicted, table)
    mean = split_maes(mean_age_baseline(table).predicted, table)
    # Noise of SD 0.5 has a mean absolute value of 0.40: ridge should sit at that floor, the mean far above.
    assert maes["test_mae"] < 0.5 and maes["mae_full_test_abnormal"] < 0.5
    assert mean["test_mae"] > 10 * maes["test_mae"]
    assert ridge.settings == {"alpha": min(RIDGE_ALPHAS), "features": FEATURES}  # little noise, little shrinkage
    # The fitted function is the planted one (the noise aside), on series it never saw.
    planted = 60.0 + 150.0 * table.median_vertebra - 0.4 * table.median_disc
    unseen = (table.split != "train").to_numpy()
    assert np.abs(ridge.predicted - planted)[unseen].max() < 0.3


def test_ridge_on_features_without_signal_shrinks_to_about_the_mean() -> None:
    table = cohort(signal=False)
    ridge = ridge_baseline(table, FEATURES)
    assert ridge.settings["alpha"] == max(RIDGE_ALPHAS)
    mean = mean_age_baseline(table).predicted
    assert np.abs(ridge.predicted - mean).max() < 1.0
    assert split_maes(ridge.predicted, table)["test_mae"] == pytest.approx(split_maes(mean, table)["test_mae"], rel=0.05)


def test_ridge_is_deterministic_and_fills_missing_values_with_the_train_mean() -> None:
    table = cohort()
    first, second = ridge_baseline(table, FEATURES), ridge_baseline(table, FEATURES)
    pd.testing.assert_series_equal(first.predicted, second.predicted)
    gaps = table.copy()
    gaps.loc[gaps.index[-1], "median_vertebra"] = np.nan  # a series without a vertebra in view
    gaps["median_canal"] = np.nan  # a label map without canal labels: the feature is left out
    ridge = ridge_baseline(gaps, FEATURES)
    assert ridge.settings["features"] == ["median_vertebra", "median_disc"] and ridge.predicted.notna().all()
    filled = table.copy()
    filled.loc[filled.index[-1], "median_vertebra"] = table.median_vertebra[table.split == "train"].mean()
    assert ridge.predicted.iloc[-1] == pytest.approx(ridge_baseline(filled, ["median_vertebra", "median_disc"]).predicted.iloc[-1])
    with pytest.raises(UserError, match="Expected values of at least one"):
        ridge_baseline(gaps, ["median_canal"])
    with pytest.raises(UserError, match="validation split"):
        ridge_baseline(table[table.split != "validation"], FEATURES)


def test_fit_baselines_uses_the_manifest_intensity_columns_when_there_are_any() -> None:
    assert intensity_feature_columns(MANIFEST_COLUMNS) == list(INTENSITY_FEATURES)  # the contract with preprocess
    table = cohort()
    fitted = fit_baselines(table)
    assert set(fitted) == {MEAN_AGE, RIDGE_INTENSITY} and fitted[RIDGE_INTENSITY].settings["features"] == FEATURES
    assert set(fit_baselines(table.drop(columns=FEATURES))) == {MEAN_AGE}  # an older manifest: the mean only


def test_truth_figures_find_a_planted_gap_and_no_gap_where_none_was_planted() -> None:
    table = cohort()
    rng = np.random.default_rng(1)
    planted = rng.normal(0.0, 3.0, len(table))
    bio = dict(zip(table.series_id, table.age + planted))
    tracking = table.age + planted + rng.normal(0.0, 1.0, len(table))  # reads biological age, with error
    figures = truth_figures(tracking, table, bio)
    test = (table.split == "test").to_numpy()
    assert figures["test_mae_vs_biological_age"] == pytest.approx(np.mean(np.abs(tracking - table.age - planted)[test]))
    assert figures["raw_gap_vs_planted_gap_r"] > 0.8 and figures["raw_gap_vs_planted_gap_r_all"] > 0.9
    blind = truth_figures(table.age + rng.normal(0.0, 3.0, len(table)), table, bio)  # right on average, blind to the gap
    assert abs(blind["raw_gap_vs_planted_gap_r_all"]) < 0.15
    none = truth_figures(tracking, table, {})
    assert all(np.isnan(v) for v in none.values())
