"""The gate's plumbing without Great Expectations: checks, lines, JSON, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spineage.config import ValidationSettings, parse_params
from spineage.errors import UserError
from spineage.validation.gate import Check, GateResult, Outcome, Table, run_gate, write_gate_result


def test_checks_name_their_expectation_as_gx_reports_it() -> None:
    check = Check("t.csv", "ExpectColumnValuesToBeBetween", "age in range", column="age")
    assert check.expectation_type == "expect_column_values_to_be_between"
    pair = Check("t.csv", "ExpectColumnPairValuesToBeInSet", "pairs", kwargs={"column_A": "a", "column_B": "b"}, only_where=("c", ("x",)))
    assert pair.needed_columns() == {"a", "b", "c"}


def _result(*outcomes: Outcome) -> GateResult:
    return GateResult("raw", "data/raw", {"t.csv": 4}, outcomes, settings={"age_min": 18.0})


def test_lines_say_what_where_how_many_and_examples() -> None:
    check = Check("t.csv", "ExpectColumnValuesToBeInSet", "sex is F or M", column="sex")
    failed = Outcome(check, success=False, element_count=4, unexpected_count=3, examples=("'X' (s1)", "'Y' (s2)", "'Z' (s3)", "'W' (s4)"))
    assert failed.line() == "FAILED t.csv sex: expect_column_values_to_be_in_set (sex is F or M) on 3 of 4 rows, e.g. 'X' (s1); 'Y' (s2); 'Z' (s3)"
    broken = Outcome(check, success=False, evaluated=False, detail="Column values must be of one type.")
    assert broken.line().endswith("could not be evaluated: Column values must be of one type.")
    result = _result(failed, Outcome(check, success=True), Outcome(check, success=True, evaluated=False, detail="skipped"))
    assert result.failure_lines() == [failed.line()]
    assert result.summary(Path("r.json")) == "validate raw: 1 of 2 expectations failed on data/raw; result in r.json"


def test_the_json_result_is_written_atomically_and_summarises_long_value_sets(tmp_path: Path) -> None:
    check = Check("t.csv", "ExpectColumnValuesToBeInSet", "known", column="id", kwargs={"value_set": [f"id{i}" for i in range(100)]})
    path = write_gate_result(_result(Outcome(check, success=True, element_count=4, unexpected_count=0)), tmp_path / "deep" / "r.json")
    written = json.loads(path.read_text())
    assert written["expectations"][0]["kwargs"] == {"value_set": "<100 values>"}
    assert written["success"] is True and written["settings"] == {"age_min": 18.0}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="Expected to write the validation result to"):
        write_gate_result(_result(), tmp_path / "file" / "r.json")


def test_a_check_on_an_absent_column_is_skipped_not_failed() -> None:
    table = Table("t.csv", pd.DataFrame({"id": ["a"]}))
    result = run_gate("raw", [table], [Check("t.csv", "ExpectColumnValuesToNotBeNull", "never empty", column="height")], source="memory")
    [outcome] = result.outcomes
    assert outcome.success and not outcome.evaluated and "no column height" in outcome.detail
    with pytest.raises(ValueError, match="known tables"):
        run_gate("raw", [table], [Check("u.csv", "ExpectColumnValuesToNotBeNull", "x", column="id")], source="memory")


def test_validation_settings_are_checked() -> None:
    assert parse_params({}).validation == ValidationSettings(18.0, 100.0)
    assert parse_params({"validation": {"age_min": 25}}).validation.age_min == 25.0
    with pytest.raises(UserError, match="age_min below"):
        parse_params({"validation": {"age_min": 50, "age_max": 40}})
    with pytest.raises(UserError, match=r"found \['age_maximum'\]"):
        parse_params({"validation": {"age_maximum": 40}})
    with pytest.raises(UserError, match="Expected a number for validation.age_max"):
        parse_params({"validation": {"age_max": "old"}})
