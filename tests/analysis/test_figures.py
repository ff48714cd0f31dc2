"""The figures: PNGs written, and the bootstrap band of Figure 7 the same for the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spineage.analysis.figures import (
    lowess_band,
    plot_odds_forest,
    plot_sag_by_age_and_work,
    sag_by_age_and_work_curves,
)
from spineage.analysis.odds import gap_group_odds_ratios
from spineage.analysis.settings import SagSettings

PNG = b"\x89PNG\r\n\x1a\n"
FAST = SagSettings(bootstrap_samples=25)


def _table(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 80, n)
    work = rng.choice(["sedentary", "moderate", "heavy"], n)
    return pd.DataFrame({"age": age, "sag": 0.05 * (age - 55) + 1.5 * (work == "heavy") + rng.normal(0, 1, n),
                         "work": work, "fracture": rng.integers(0, 2, n), "scoliosis": 0})


def test_the_forest_plot_is_a_png_even_with_nan_rows_or_none_at_all(tmp_path: Path) -> None:
    table = _table()
    table.loc[:9, "sag"] = 8.0
    table.loc[10:19, "sag"] = -8.0
    odds = gap_group_odds_ratios(table, SagSettings())
    assert odds["odds_ratio"].isna().any()  # scoliosis: no series has it
    path = plot_odds_forest(odds, tmp_path / "odds.png")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    empty = plot_odds_forest(odds.iloc[0:0], tmp_path / "empty.png", high_gap_years=5, low_gap_years=-5)
    assert empty.read_bytes().startswith(PNG)


def test_the_sag_by_age_and_work_figure_is_a_png(tmp_path: Path) -> None:
    path = plot_sag_by_age_and_work(_table(), FAST, tmp_path / "fig7.png", seed=1)
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    # without lifestyle: one group, the curve through every series (the same as the all-False work curve)
    one = plot_sag_by_age_and_work(_table().drop(columns="work"), FAST, tmp_path / "one.png", seed=1)
    assert one.read_bytes().startswith(PNG) and one.read_bytes() != path.read_bytes()
    curves = sag_by_age_and_work_curves(_table().assign(work="unknown"), FAST, seed=1)
    assert set(curves["demanding"]) == {False}


def test_the_bootstrap_band_is_fixed_by_the_seed() -> None:
    table = _table()
    first = sag_by_age_and_work_curves(table, FAST, seed=3)
    again = sag_by_age_and_work_curves(table, FAST, seed=3)
    other = sag_by_age_and_work_curves(table, FAST, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["band_low"], other["band_low"], equal_nan=True)
    np.testing.assert_allclose(first["sag"], other["sag"])  # the curve itself draws nothing at random
    assert set(first["demanding"]) == {False, True}
    inside = first.dropna(subset=["band_low"])
    assert (inside["band_low"] <= inside["band_high"]).all()
    # demanding work (moderate and heavy here) is planted 1.5 y per heavy share above sedentary
    mid = first[(first["age"] > 45) & (first["age"] < 65)]
    assert mid.loc[mid["demanding"], "sag"].mean() > mid.loc[~mid["demanding"], "sag"].mean()


def test_the_lowess_follows_a_line_and_does_not_extrapolate() -> None:
    age = np.linspace(30, 70, 50)
    curve, low, _ = lowess_band(age, 2.0 + 0.1 * age, np.array([25.0, 40.0, 60.0, 75.0]), 0.5, 10, np.random.default_rng(0))
    assert np.isnan(curve[[0, 3]]).all() and np.isnan(low[[0, 3]]).all()
    np.testing.assert_allclose(curve[1:3], [6.0, 8.0], atol=1e-6)
    np.testing.assert_allclose(low[1:3], [6.0, 8.0], atol=1e-6)  # a noiseless line: every resample agrees
    _, none_low, none_high = lowess_band(age, age, np.array([40.0]), 0.5, 0, np.random.default_rng(0))
    assert np.isnan(none_low).all() and np.isnan(none_high).all()
