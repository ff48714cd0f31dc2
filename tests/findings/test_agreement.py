"""Tests of the reader-against-truth comparison: strict and lenient matches, what takes part, the rates."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from spineage.findings.agreement import (
    Agreement,
    affirmed,
    compare_findings,
    mismatches,
    reader_agreement,
)

COLUMNS = ["series_id", "level", "condition", "severity"]


def findings(*rows: tuple, **flags: list[bool]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=COLUMNS).assign(**flags)


TRUTH = findings(
    ("a", "L4", "disc_bulge", "mild"),
    ("a", "L5", "disc_bulge", "moderate"),
    ("b", "C5", "protrusion", "moderate"),
    ("b", "C3", "desiccation", "mild"),
    ("b", "", "scoliosis", "present"),
)


def test_identical_tables_agree_fully():
    for rule in ("strict", "lenient"):
        result = compare_findings(TRUTH, TRUTH.copy(), rule)
        assert result.overall == Agreement(tp=5, fn=0, fp=0)
        assert (result.overall.precision, result.overall.recall, result.overall.f1) == (1.0, 1.0, 1.0)


def test_one_missed_one_extra_one_wrong_grade():
    read = findings(
        ("a", "L4", "disc_bulge", "mild"),
        ("a", "L5", "disc_bulge", "severe"),  # wrong grade
        ("b", "C5", "protrusion", "moderate"),
        ("b", "", "scoliosis", "present"),
        ("b", "C6", "annular_fissure", "present"),  # extra; the C3 desiccation is missed
    )
    strict, lenient = compare_findings(TRUTH, read, "strict"), compare_findings(TRUTH, read, "lenient")
    assert strict.overall == Agreement(tp=3, fn=2, fp=2)
    assert strict.overall.precision == strict.overall.recall == pytest.approx(3 / 5)
    assert lenient.overall == Agreement(tp=4, fn=1, fp=1)
    assert lenient.overall.f1 == pytest.approx(0.8)
    assert strict.per_condition["disc_bulge"] == Agreement(tp=1, fn=1, fp=1)
    assert lenient.per_condition["disc_bulge"] == Agreement(tp=2, fn=0, fp=0)
    assert strict.per_condition["desiccation"].precision is None and strict.per_condition["desiccation"].recall == 0.0
    assert strict.per_condition["annular_fissure"].precision == 0.0 and strict.per_condition["annular_fissure"].recall is None
    # Conditions in vocabulary order, only those found on either side.
    assert list(strict.per_condition) == ["disc_bulge", "protrusion", "desiccation", "annular_fissure", "scoliosis"]


def test_the_same_finding_in_another_series_or_level_is_no_match():
    read = findings(("b", "L4", "disc_bulge", "mild"), ("a", "L3", "disc_bulge", "moderate"))
    truth = findings(("a", "L4", "disc_bulge", "mild"), ("a", "L5", "disc_bulge", "moderate"))
    assert compare_findings(truth, read, "lenient").overall == Agreement(tp=0, fn=2, fp=2)


def test_negated_and_unmapped_rows_are_no_findings_and_duplicates_count_once():
    truth = findings(("a", "L4", "disc_bulge", "mild"), ("a", "", "fracture", "present"), negated=[False, True])
    read = findings(
        ("a", "L4", "disc_bulge", "mild"),
        ("a", "L4", "disc_bulge", "mild"),  # written twice in the report
        ("a", "", "fracture", "present"),  # "no fracture"
        ("a", "", "", ""),  # text the reader could not map
        negated=[False, False, True, False],
        mapped=[True, True, True, False],
    )
    assert len(affirmed(read)) == 2
    assert compare_findings(truth, read, "strict").overall == Agreement(tp=1, fn=0, fp=0)
    # Affirmed on one side, negated on the other: a miss, not a match.
    flipped = read.assign(negated=[True, True, False, False])
    assert compare_findings(truth, flipped, "strict").overall == Agreement(tp=0, fn=1, fp=1)


def test_nothing_read_or_nothing_true():
    empty = findings()
    nothing_read = compare_findings(TRUTH, empty, "strict").overall
    assert (nothing_read.precision, nothing_read.recall, nothing_read.f1) == (None, 0.0, 0.0)
    nothing_true = compare_findings(empty, TRUTH, "strict").overall
    assert (nothing_true.precision, nothing_true.recall) == (0.0, None)
    both_empty = compare_findings(empty, empty, "strict")
    assert both_empty.overall == Agreement(0, 0, 0) and both_empty.per_condition == {}
    assert both_empty.overall.f1 is None


def test_reader_agreement_is_plain_json_with_both_rules():
    read = findings(("a", "L4", "disc_bulge", "moderate"))
    result = reader_agreement(TRUTH, read)
    assert set(result) == {"strict", "lenient"}
    text = json.dumps(result, allow_nan=False)  # None, never NaN, where a rate is undefined
    back = json.loads(text)
    assert back["strict"]["overall"] == {"truth": 5, "predicted": 1, "tp": 0, "fn": 5, "fp": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert back["lenient"]["overall"]["precision"] == 1.0 and back["lenient"]["overall"]["recall"] == 0.2
    assert back["lenient"]["per_condition"]["scoliosis"]["precision"] is None


def test_table_has_overall_last_and_nan_for_undefined_rates():
    read = findings(("a", "L4", "disc_bulge", "mild"))
    table = compare_findings(TRUTH, read, "strict").table()
    assert table.index[-1] == "overall" and table.index.name == "condition"
    assert table.loc["disc_bulge", "precision"] == 1.0 and table.loc["disc_bulge", "recall"] == 0.5
    assert math.isnan(table.loc["scoliosis", "precision"]) and table.loc["scoliosis", "recall"] == 0.0
    assert table.loc["overall", ["truth", "predicted", "tp"]].tolist() == [5, 1, 1]


def test_mismatches_name_the_side():
    read = findings(("a", "L4", "disc_bulge", "mild"), ("a", "L5", "disc_bulge", "severe"))
    wrong = mismatches(TRUTH[TRUTH.series_id == "a"], read, "strict")
    assert sorted(zip(wrong.side, wrong.severity)) == [("extra", "severe"), ("missed", "moderate")]
    assert mismatches(TRUTH[TRUTH.series_id == "a"], read, "lenient").empty


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="match rule among"):
        compare_findings(TRUTH, TRUTH, "loose")
