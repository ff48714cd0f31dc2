"""Tests of the splits: grouped by subject, stratified by sex x bracket, abnormal series in the full test set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.cohort.splits import (
    FULL_TEST_ABNORMAL,
    FULL_TEST_OTHER,
    FULL_TEST_SPLITS,
    SPLITS,
    assign_splits,
)

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def synthetic_cohort(n_subjects: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Subjects with one or two series, sexes, brackets and about 35 % abnormal series."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        sex = "F" if rng.uniform() < 0.5 else "M"
        bracket = int(rng.choice([30, 40, 50, 60, 70, 80], p=[0.1, 0.28, 0.27, 0.2, 0.11, 0.04]))
        for session in range(1 + int(rng.uniform() < 0.1)):
            rows.append(dict(series_id=f"mri-{i}-{session}", subject_id=f"sub-{i}", sex=sex, bracket=bracket,
                             normal=bool(rng.uniform() > 0.35)))
    table = pd.DataFrame(rows)
    table["bracket"] = table["bracket"].astype("Int64")
    table.loc[table.index[:5], "bracket"] = pd.NA  # outside the age brackets
    table.loc[table.index[:5], "normal"] = False
    return table


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    table = synthetic_cohort()
    return table.assign(split=assign_splits(table, FRACTIONS, seed=7))


def test_every_series_gets_a_known_split(cohort: pd.DataFrame):
    assert set(cohort["split"]) <= set(SPLITS)
    assert (cohort.loc[cohort["bracket"].isna(), "split"] == FULL_TEST_OTHER).all()


def test_abnormal_series_are_never_trained_or_validated_on(cohort: pd.DataFrame):
    abnormal = cohort[~cohort["normal"] & cohort["bracket"].notna()]
    assert (abnormal["split"] == FULL_TEST_ABNORMAL).all()
    assert cohort.loc[cohort["split"].isin(["train", "validation"]), "normal"].all()


def test_no_subject_in_two_splits(cohort: pd.DataFrame):
    side = cohort["split"].where(~cohort["split"].isin(FULL_TEST_SPLITS), "full test")
    assert (side.groupby(cohort["subject_id"]).nunique() == 1).all()
    # A subject whose repeat scan is abnormal has its normal scan in the test split.
    mixed = cohort.groupby("subject_id")["normal"].agg(lambda n: n.any() and not n.all())
    mixed_rows = cohort[cohort["subject_id"].isin(mixed[mixed].index) & cohort["normal"]]
    assert len(mixed_rows) and (mixed_rows["split"] == "test").all()


def test_fractions_and_stratification_are_respected(cohort: pd.DataFrame):
    normal = cohort[cohort["split"].isin(["train", "validation", "test"])]
    shares = normal["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.03)
    assert shares["validation"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.03)
    trained = normal[normal["split"] == "train"]
    for (sex, bracket), stratum in normal.groupby(["sex", "bracket"]):
        share = (stratum["split"] == "train").mean()
        assert share == pytest.approx(0.8, abs=0.06 + 2 / len(stratum)), (sex, bracket)
    # Sex and bracket mixes of train match the normal series.
    mix = pd.crosstab(trained["sex"], trained["bracket"], normalize=True)
    overall = pd.crosstab(normal["sex"], normal["bracket"], normalize=True)
    assert (mix - overall).abs().to_numpy().max() < 0.02


def test_same_seed_same_splits_and_another_seed_other_splits():
    table = synthetic_cohort(500, seed=3)
    first = assign_splits(table, FRACTIONS, seed=11)
    assert first.equals(assign_splits(table, FRACTIONS, seed=11))
    assert not first.equals(assign_splits(table, FRACTIONS, seed=12))


def test_docstring_example_and_a_cohort_without_normal_series():
    table = pd.DataFrame({"series_id": ["a", "b"], "subject_id": ["s1", "s2"], "sex": ["F", "M"],
                          "bracket": pd.array([40, pd.NA], dtype="Int64"), "normal": [False, False]})
    assert assign_splits(table, FRACTIONS, seed=0).tolist() == [FULL_TEST_ABNORMAL, FULL_TEST_OTHER]
