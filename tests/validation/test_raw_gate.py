"""The raw-cohort gate: a valid cohort passes; each kind of bad table fails with a readable line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from spineage.config import ValidationSettings
from spineage.errors import UserError
from spineage.validation.gate import GateResult
from spineage.validation.raw import raw_checks, read_raw_tables, validate_raw_cohort

from .conftest import tiny_tables, write_cohort

SETTINGS = ValidationSettings()


def test_the_tiny_cohort_passes(raw: Path, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "raw.json"
    result = validate_raw_cohort(raw, SETTINGS, report)
    assert result.success, result.failure_lines()
    assert result.failure_lines() == []
    assert result.tables == {"participants.csv": 3, "sessions.csv": 5, "findings.csv": 7, "lifestyle.csv": 3, "outcomes.csv": 3}
    summary = result.summary(report)
    assert summary.startswith("validate raw: all ") and "passed" in summary and "\n" not in summary
    written = json.loads(report.read_text())
    assert written["success"] is True and written["failed"] == 0
    assert written["evaluated"] == len(result.checked) > 40
    assert written["settings"] == {"age_min": 18.0, "age_max": 100.0}
    assert list(report.parent.iterdir()) == [report], "the temporary file was left behind"


def _set(table: str, row: int, column: str, value) -> Callable[[dict[str, pd.DataFrame]], None]:
    def breaking(tables: dict[str, pd.DataFrame]) -> None:
        tables[table][column] = tables[table][column].astype(object)
        tables[table].loc[row, column] = value

    return breaking


def _duplicate_series(tables: dict[str, pd.DataFrame]) -> None:
    sessions = tables["sessions.csv"]
    tables["sessions.csv"] = pd.concat([sessions, sessions.iloc[[1]]], ignore_index=True)


def _remove_file(path: str) -> Callable[[dict[str, pd.DataFrame]], None]:
    def breaking(tables: dict[str, pd.DataFrame]) -> None:
        tables.setdefault("_remove", []).append(path)  # type: ignore[arg-type]

    return breaking


# (what is broken, the change, table, column, expectation, rows failing, an example in the line).
# Each fault breaks a different row and expectation, so that one run of the gate over a cohort
# holding all of them must report each fault, on its own line, and nothing else.
FAULTS = [
    ("age 150", _set("sessions.csv", 2, "age", 150), "sessions.csv", "age", "expect_column_values_to_be_between", 1, "150 (mri-2-1)"),
    ("age not a number", _set("sessions.csv", 0, "age", "fifty"), "sessions.csv", "age (as written)", "expect_column_values_to_match_regex", 1, "'fifty' (mri-1-1)"),
    ("sex X", _set("participants.csv", 1, "sex", "X"), "participants.csv", "sex", "expect_column_values_to_be_in_set", 1, "'X' (sub-2)"),
    ("duplicate series id", _duplicate_series, "sessions.csv", "series_id", "expect_column_values_to_be_unique", 2, "'mri-1-2'"),
    ("unknown subject", _set("sessions.csv", 4, "subject_id", "sub-99"), "sessions.csv", "subject_in_participants", "expect_column_values_to_be_in_set", 1, "'sub-99' (vfa-3)"),
    ("unknown modality", _set("sessions.csv", 3, "modality", "ct"), "sessions.csv", "modality", "expect_column_values_to_be_in_set", 1, "'ct' (xr-2)"),
    ("missing image file", _remove_file("images/xr-2.png"), "sessions.csv", "image_exists", "expect_column_values_to_be_in_set", 1, "'images/xr-2.png' (xr-2)"),
    ("missing label file", _remove_file("labels/mri-1-1.nii.gz"), "sessions.csv", "label_exists", "expect_column_values_to_be_in_set", 1, "'labels/mri-1-1.nii.gz' (mri-1-1)"),
    ("unknown condition", _set("findings.csv", 0, "condition", "disc_herniation"), "findings.csv", "condition", "expect_column_values_to_be_in_set", 1, "'disc_herniation' (mri-1-1 L4)"),
    ("wrong severity", _set("findings.csv", 3, "severity", "severe"), "findings.csv", "condition/severity", "expect_column_values_to_be_in_set", 1, "'extrusion/severe' (mri-2-1 C5)"),
    ("level S1", _set("findings.csv", 1, "level", "S1"), "findings.csv", "level", "expect_column_values_to_be_in_set", 1, "'S1' (mri-1-1)"),
    ("degenerative finding without level", _set("findings.csv", 2, "level", ""), "findings.csv", "level", "expect_column_values_to_not_be_null", 1, "empty (mri-1-2)"),
    ("finding for an unknown series", _set("findings.csv", 4, "series_id", "mri-9-9"), "findings.csv", "series_in_sessions", "expect_column_values_to_be_in_set", 1, "'mri-9-9' (T8)"),
    ("negative packs", _set("lifestyle.csv", 0, "packs_per_day", -1), "lifestyle.csv", "packs_per_day", "expect_column_values_to_be_between", 1, "-1 (sub-1)"),
    ("alcohol 8 days a week", _set("lifestyle.csv", 2, "alcohol_days_per_week", 8), "lifestyle.csv", "alcohol_days_per_week", "expect_column_values_to_be_between", 1, "8 (sub-3)"),
    ("sedentary 25 hours", _set("lifestyle.csv", 1, "sedentary_hours_per_day", 25), "lifestyle.csv", "sedentary_hours_per_day", "expect_column_values_to_be_between", 1, "25 (sub-2)"),
    ("unknown work", _set("lifestyle.csv", 1, "work", "office"), "lifestyle.csv", "work", "expect_column_values_to_be_in_set", 1, "'office' (sub-2)"),
    ("death 2", _set("outcomes.csv", 0, "death", 2), "outcomes.csv", "death", "expect_column_values_to_be_in_set", 1, "2 (sub-1)"),
    ("T-score 25", _set("outcomes.csv", 2, "bmd_t_lumbar", 25), "outcomes.csv", "bmd_t_lumbar", "expect_column_values_to_be_between", 1, "25 (sub-3)"),
]


def write_broken_cohort(folder: Path, faults) -> Path:
    """The tiny cohort with ``faults`` applied (table changes, then file removals)."""
    tables = tiny_tables()
    for fault in faults:
        fault[1](tables)
    removed = tables.pop("_remove", [])
    write_cohort(folder, tables)
    for path in removed:
        (folder / path).unlink()
    return folder


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> tuple[GateResult, dict]:
    """The gate's result on a cohort holding every fault of FAULTS, and its JSON result."""
    folder = tmp_path_factory.mktemp("broken")
    result = validate_raw_cohort(write_broken_cohort(folder / "raw", FAULTS), SETTINGS, folder / "raw.json")
    return result, json.loads((folder / "raw.json").read_text())


def test_a_broken_cohort_fails_with_one_line_per_fault_and_nothing_else(broken) -> None:
    result, written = broken
    assert not result.success
    assert sorted((o.check.table, o.check.column, o.check.expectation_type) for o in result.failures) == sorted(
        (fault[2], fault[3], fault[4]) for fault in FAULTS
    )
    lines = result.failure_lines()
    assert len(lines) == len(FAULTS) and all(line.startswith("FAILED ") and "\n" not in line for line in lines)
    assert result.summary().startswith(f"validate raw: {len(FAULTS)} of {len(result.checked)} expectations failed")
    assert written["success"] is False and written["failed"] == len(FAULTS)


@pytest.mark.parametrize(
    "table, column, expectation, count, example",
    [fault[2:] for fault in FAULTS],
    ids=[fault[0] for fault in FAULTS],
)
def test_each_fault_is_named_with_its_count_and_an_example(broken, table: str, column: str, expectation: str, count: int, example: str) -> None:
    result, written = broken
    [failure] = [o for o in result.failures if (o.check.table, o.check.column, o.check.expectation_type) == (table, column, expectation)]
    assert failure.unexpected_count == count
    line = failure.line()
    assert line.startswith(f"FAILED {table} {column}: {expectation} (")
    assert f" on {count} of " in line and example in line, line
    [entry] = [e for e in written["expectations"] if (e["table"], e["column"], e["expectation"]) == (table, column, expectation)]
    assert entry["success"] is False and entry["unexpected_count"] == count and entry["examples"]


def test_a_pathology_takes_no_degenerative_grade(tmp_path: Path) -> None:
    tables = tiny_tables()
    _set("findings.csv", 6, "severity", "near_complete")(tables)
    result = validate_raw_cohort(write_cohort(tmp_path / "raw", tables), SETTINGS)
    assert [(o.check.column, o.unexpected_count) for o in result.failures] == [("condition/severity", 1)]
    assert "'spondylolisthesis/near_complete' (mri-2-1 L5)" in result.failure_lines()[0]


def test_a_missing_required_column_is_reported_once(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["participants.csv"] = tables["participants.csv"].drop(columns="sex")
    result = validate_raw_cohort(write_cohort(tmp_path / "raw", tables), SETTINGS)
    [failure] = result.failures
    assert failure.check.expectation_type == "expect_table_columns_to_match_set"
    assert "missing sex" in failure.line() and failure.line().startswith("FAILED participants.csv: ")
    skipped = [o for o in result.outcomes if not o.evaluated and o.check.table == "participants.csv"]
    assert {o.check.column for o in skipped} == {"sex"}


def test_optional_tables_may_be_absent(tmp_path: Path) -> None:
    tables = tiny_tables()
    del tables["lifestyle.csv"], tables["outcomes.csv"]
    result = validate_raw_cohort(write_cohort(tmp_path / "raw", tables), SETTINGS)
    assert result.success and set(result.tables) == {"participants.csv", "sessions.csv", "findings.csv"}
    assert any("lifestyle.csv absent" in note for note in result.notes)


def test_reports_can_stand_in_for_findings(tmp_path: Path) -> None:
    tables = tiny_tables()
    del tables["findings.csv"]
    raw = write_cohort(tmp_path / "raw", tables)
    with pytest.raises(UserError, match="findings.csv or a reports/ folder"):
        read_raw_tables(raw)
    (raw / "reports").mkdir()
    tables_read, notes = read_raw_tables(raw)
    assert "findings.csv" not in {table.name for table in tables_read} and "reports/" in notes[0]


@pytest.mark.parametrize("missing", ["participants.csv", "sessions.csv"])
def test_a_missing_table_is_a_user_error(raw: Path, missing: str) -> None:
    (raw / missing).unlink()
    with pytest.raises(UserError, match=f"Expected {missing} in the raw cohort"):
        read_raw_tables(raw)


def test_a_missing_folder_or_empty_table_is_a_user_error(tmp_path: Path, raw: Path) -> None:
    with pytest.raises(UserError, match="Expected a raw-cohort folder at .*nothing there"):
        read_raw_tables(tmp_path / "absent")
    (raw / "participants.csv").write_text("")
    with pytest.raises(UserError, match="Expected a CSV table with a header row at .*participants.csv, found an empty file"):
        read_raw_tables(raw)


def test_checks_are_plain_data_built_without_great_expectations(raw: Path) -> None:
    tables, _ = read_raw_tables(raw)
    checks = raw_checks(tables, SETTINGS)
    assert {check.table for check in checks} == {table.name for table in tables}
    assert all(check.expectation.startswith("Expect") for check in checks)
    sessions = next(table.frame for table in tables if table.name == "sessions.csv")
    assert sessions["image_exists"].tolist() == [True] * 5
    assert sessions["label_exists"].tolist() == [True, None, True, None, None]


def test_an_empty_cohort_fails(tmp_path: Path) -> None:
    tables = {name: frame.iloc[0:0] for name, frame in tiny_tables().items()}
    result = validate_raw_cohort(write_cohort(tmp_path / "raw", tables), SETTINGS)
    assert result.failure_lines() == [
        "FAILED participants.csv: expect_table_row_count_to_be_between (at least one row): observed 0",
        "FAILED sessions.csv: expect_table_row_count_to_be_between (at least one row): observed 0",
    ]
