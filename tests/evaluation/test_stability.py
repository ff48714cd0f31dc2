"""ICC(2,1) against Shrout & Fleiss' (1979) worked example, and the pairing of repeat scans."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from spineage.evaluation.stability import (
    icc_2_1,
    repeat_scan_pairs,
    repeat_scan_stability,
)

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges. Their Table 4 gives ICC(2,1) = 0.29
# (ICC(1,1) = 0.17, ICC(3,1) = 0.71); the 95 % CI of ICC(2,1) by McGraw & Wong's F-based formula is 0.02 to 0.76.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def _long(ratings: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(target, judge, value) for target, row in enumerate(ratings) for judge, value in enumerate(row)],
        columns=["target", "judge", "rating"],
    )


def test_icc_2_1_is_shrout_and_fleiss_worked_example() -> None:
    figures = icc_2_1(_long(SHROUT_FLEISS), "target", "judge", "rating")
    assert figures["icc"] == pytest.approx(0.29, abs=0.005)
    assert figures["ci_low"] == pytest.approx(0.02, abs=0.01)
    assert figures["ci_high"] == pytest.approx(0.76, abs=0.01)
    assert figures["n"] == 6


def test_a_systematic_shift_between_sessions_lowers_absolute_agreement() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(30, 80, 40)
    same = [[t + rng.normal(0, 1), t + rng.normal(0, 1)] for t in truth]
    shifted = [[a, b + 10] for a, b in same]
    agreeing = icc_2_1(_long(same), "target", "judge", "rating")["icc"]
    assert agreeing > 0.97
    assert icc_2_1(_long(shifted), "target", "judge", "rating")["icc"] < agreeing - 0.1


def test_fewer_than_three_subjects_give_no_icc() -> None:
    figures = icc_2_1(_long(SHROUT_FLEISS[:2]), "target", "judge", "rating")
    assert math.isnan(figures["icc"]) and figures["n"] == 2


def test_only_subjects_never_trained_on_are_paired() -> None:
    table = pd.DataFrame({
        "series_id": ["a-1", "a-2", "b-1", "b-2", "c-1", "c-2", "c-3", "d-1"],
        "subject_id": ["a", "a", "b", "b", "c", "c", "c", "d"],
        "split": ["test", "full_test_abnormal", "train", "train", "validation", "validation", "validation", "test"],
        "age": [40.0, 42.0, 50.0, 51.0, 60.0, 61.5, 63.0, 30.0],
        "sex": ["F", "F", "M", "M", "M", "M", "M", "F"],
        "corrected_age": [41.0, 43.0, 50.0, 51.0, 59.0, 60.0, 62.0, 30.0],
    })
    pairs = repeat_scan_pairs(table)
    assert pairs["series_id"].tolist() == ["a-1", "a-2", "c-1", "c-2"]  # b trained on, d once, c's third scan left out
    assert pairs["session"].tolist() == [1, 2, 1, 2]
    assert pairs.drop_duplicates("subject_id")["years_between"].tolist() == pytest.approx([2.0, 1.5])
    stability = repeat_scan_stability(table)
    assert stability["all"]["n"] == 2 and stability["women"]["n"] == 1 and stability["men"]["n"] == 1
    assert stability["all"]["mean_years_between"] == pytest.approx(1.75)
