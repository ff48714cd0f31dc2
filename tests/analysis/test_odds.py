"""Figure 6's odds ratios against hand-computed 2 x 2 tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from spineage.analysis.odds import ODDS_COLUMNS, gap_group_odds_ratios, odds_ratio_2x2
from spineage.analysis.settings import SagSettings

Z = 1.959963984540054


def _groups(cases_high: int, n_high: int, cases_low: int, n_low: int, column: str = "fracture") -> pd.DataFrame:
    """n_high series at SAG +6, n_low at -6 and 10 in between (never counted), the first cases of each group flagged."""
    sag = [6.0] * n_high + [-6.0] * n_low + [0.0, 4.9, 5.0, -5.0, -4.9] * 2
    flag = [1] * cases_high + [0] * (n_high - cases_high) + [1] * cases_low + [0] * (n_low - cases_low) + [1] * 10
    return pd.DataFrame({"sag": sag, column: flag})


def test_the_odds_ratio_woolf_interval_and_fisher_p_match_the_hand_computation() -> None:
    odds = gap_group_odds_ratios(_groups(8, 20, 3, 25), SagSettings())
    assert odds.columns.tolist() == list(ODDS_COLUMNS)
    row = odds.set_index("variable").loc["fracture"]
    assert (row["cases_high"], row["n_high"], row["cases_low"], row["n_low"]) == (8, 20, 3, 25)
    log_or = math.log((8 * 22) / (12 * 3))
    se = math.sqrt(1 / 8 + 1 / 12 + 1 / 3 + 1 / 22)
    assert row["odds_ratio"] == pytest.approx((8 * 22) / (12 * 3), rel=1e-12)
    assert row["ci_low"] == pytest.approx(math.exp(log_or - Z * se), rel=1e-12)
    assert row["ci_high"] == pytest.approx(math.exp(log_or + Z * se), rel=1e-12)
    assert row["p"] == pytest.approx(fisher_exact([[8, 12], [3, 22]]).pvalue, rel=1e-12)


def test_a_zero_cell_adds_a_half_to_every_cell_but_fisher_uses_the_counts() -> None:
    row = odds_ratio_2x2(5, 12, 0, 15)
    a, b, c, d = 5.5, 7.5, 0.5, 15.5
    assert row["odds_ratio"] == pytest.approx(a * d / (b * c), rel=1e-12)
    half = Z * math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert row["ci_low"] == pytest.approx(math.exp(math.log(a * d / (b * c)) - half), rel=1e-12)
    assert row["ci_high"] == pytest.approx(math.exp(math.log(a * d / (b * c)) + half), rel=1e-12)
    assert row["p"] == pytest.approx(fisher_exact([[5, 7], [0, 15]]).pvalue, rel=1e-12)


def test_without_a_group_or_without_cases_there_is_no_ratio() -> None:
    empty = odds_ratio_2x2(0, 0, 3, 10)
    assert all(math.isnan(v) for v in empty.values())
    nobody = odds_ratio_2x2(0, 12, 0, 9)
    assert math.isnan(nobody["odds_ratio"]) and math.isnan(nobody["ci_low"]) and nobody["p"] == 1.0
    odds = gap_group_odds_ratios(pd.DataFrame({"sag": [0.0, 1.0, 6.0], "scoliosis": [1, 0, 1]}), SagSettings())
    row = odds.iloc[0]
    assert (row["n_high"], row["n_low"]) == (1, 0) and math.isnan(row["odds_ratio"]) and math.isnan(row["p"])


def test_a_degenerative_condition_counts_at_any_severity_in_any_region() -> None:
    table = pd.DataFrame({
        "sag": [7.0, 8.0, 9.0, -7.0, -8.0, -9.0],
        "cervical_desiccation": ["mild", "none", "none", "none", "none", "severe"],
        "lumbar_desiccation": ["none", "near_complete", "none", "none", "none", "none"],
    })
    row = gap_group_odds_ratios(table, SagSettings()).set_index("variable").loc["desiccation"]
    assert (row["cases_high"], row["n_high"], row["cases_low"], row["n_low"]) == (2, 3, 1, 3)
    assert row["odds_ratio"] == pytest.approx(4.0)


def test_the_thresholds_are_strict_and_come_from_the_settings() -> None:
    table = _groups(8, 20, 3, 25)
    wide = gap_group_odds_ratios(table, SagSettings(high_gap_years=5.5, low_gap_years=-5.5))
    assert (int(wide["n_high"].iloc[0]), int(wide["n_low"].iloc[0])) == (20, 25)
    narrow = gap_group_odds_ratios(table, SagSettings(high_gap_years=4.0, low_gap_years=-4.0))
    assert (int(narrow["n_high"].iloc[0]), int(narrow["n_low"].iloc[0])) == (20 + 4, 25 + 4)
    assert narrow.attrs == {"high_gap_years": 4.0, "low_gap_years": -4.0}
    assert np.isfinite(narrow["odds_ratio"]).all()
