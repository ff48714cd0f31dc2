"""The radiograph gate: a good tiny cohort passes; bad outcomes, unreadable or colour images and a cohort too young fail readably.

Each real gate run needs Great Expectations (about 3 s to import, then under a second a run here): three runs in all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.config import ValidationSettings
from spineage.errors import UserError
from spineage.radiograph.gate import (
    FRAX_COLUMNS,
    IMAGES,
    OUTCOME_COLUMNS,
    OUTCOMES,
    radiograph_checks,
    radiograph_facts,
    validate_radiograph_cohort,
)
from spineage.radiograph.settings import RadiographSettings
from spineage.validation.gate import GateResult
from tests.radiograph.test_preprocess import spine_picture, write_png, write_radiograph_cohort

SETTINGS = RadiographSettings(image_shape=(64, 32))
VALIDATION = ValidationSettings(age_min=18, age_max=100)


def _run(raw: Path, report: Path, settings: RadiographSettings = SETTINGS) -> tuple[GateResult, dict]:
    result = validate_radiograph_cohort(raw, settings, VALIDATION, report, progress=False)
    return result, json.loads(report.read_text())


def _failure(result: GateResult, table: str, column: str | None):
    [failure] = [o for o in result.failures if (o.check.table, o.check.column) == (table, column)]
    return failure


def test_a_good_cohort_passes_and_the_report_says_so(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw", xrays=4, vfas=2)
    result, written = _run(raw, tmp_path / "radiograph.json")
    assert result.success, result.failure_lines()
    assert result.tables == {IMAGES: 6, OUTCOMES: 6}  # the MRI row is not a radiograph
    assert written["success"] is True and written["failed"] == 0 and written["evaluated"] > 25
    assert written["settings"]["derivation_min_age"] == 40.0
    assert any("FRAX columns absent" in note for note in written["notes"])


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> tuple[GateResult, dict]:
    """A cohort with bad outcomes (negative follow-up, flag 2, T-score -9, FRAX 120 %, a missing column),
    one corrupt and one colour image."""
    folder = tmp_path_factory.mktemp("broken")
    raw = write_radiograph_cohort(folder / "raw", xrays=4, vfas=2)
    outcomes = pd.read_csv(raw / "outcomes.csv", dtype=str, keep_default_na=False)
    outcomes.loc[1, "followup_years"] = "-2.5"
    outcomes.loc[2, "death"] = "2"
    outcomes.loc[3, "bmd_t_lumbar"] = "-9"
    outcomes["frax_hip_spine"] = ["3.5", "120", "1", "2", "0", "7"]
    outcomes.drop(columns="bmd_t_total_hip").to_csv(raw / "outcomes.csv", index=False)
    (raw / "images" / "xr-02.png").write_bytes(b"not a png at all")
    grey = spine_picture(96, 64, seed=9, bits=8)
    write_png(raw / "images" / "vfa-06.png", np.stack([grey, grey, 255 - grey], axis=-1))
    return _run(raw, folder / "radiograph.json")


def test_bad_outcomes_fail_with_a_line_naming_each_column(broken) -> None:
    result, written = broken
    lines = "\n".join(result.failure_lines())
    assert ("FAILED outcomes.csv: expect_table_columns_to_match_set (the columns the outcome analyses need are present):"
            " 1 of the 11 required columns missing, e.g. missing bmd_t_total_hip") in lines, lines
    for column, count, example in (("followup_years", 1, "-2.5 (sub-02)"), ("death", 1, "2 (sub-03)"),
                                   ("bmd_t_lumbar", 1, "-9 (sub-04)"), ("frax_hip_spine", 1, "120 (sub-02)")):
        failure = _failure(result, OUTCOMES, column)
        assert failure.unexpected_count == count
        assert failure.line().startswith(f"FAILED outcomes.csv {column}: ") and example in failure.line(), failure.line()
    assert written["success"] is False


def test_a_corrupt_or_colour_image_fails_naming_the_file_and_the_problem(broken) -> None:
    result, _ = broken
    readable = _failure(result, IMAGES, "readable").line()
    assert readable.startswith("FAILED radiographs readable: expect_column_values_to_be_in_set (the image reads as a 2D greyscale picture")
    assert " on 2 of 6 rows" in readable
    assert "'images/xr-02.png'/'expected a PNG or DICOM image, found an unreadable" in readable
    assert "'images/vfa-06.png'/'expected a greyscale image, found a colour RGB image' (vfa-06)" in readable
    ndim = _failure(result, IMAGES, "ndim")
    assert ndim.unexpected_count == 1 and "3 (vfa-06)" in ndim.line()  # the corrupt file has no header to count channels
    # Nothing else failed: the other images and the ages are fine.
    assert {(o.check.table, o.check.column) for o in result.failures} == {
        (OUTCOMES, None), (OUTCOMES, "followup_years"), (OUTCOMES, "death"), (OUTCOMES, "bmd_t_lumbar"),
        (OUTCOMES, "frax_hip_spine"), (IMAGES, "readable"), (IMAGES, "ndim"),
    }


def test_a_cohort_without_a_subject_at_the_derivation_age_fails(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw", xrays=3, vfas=1, ages=(20.0, 38.0))
    result, written = _run(raw, tmp_path / "radiograph.json")
    assert [(o.check.column, o.check.expectation_type) for o in result.failures] == [("age", "expect_column_max_to_be_between")]
    line = result.failure_lines()[0]
    assert "radiograph.derivation_min_age (40 years)" in line and "observed 38" in line, line
    assert written["success"] is False


def test_a_cohort_without_outcomes_cannot_be_validated_and_the_report_says_why(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw", xrays=1, vfas=0)
    (raw / "outcomes.csv").unlink()
    report = tmp_path / "radiograph.json"
    report.write_text(json.dumps({"success": True}))  # an earlier success must not survive
    with pytest.raises(UserError, match=r"Expected outcomes.csv \(the radiograph branch's outcomes\) in the raw cohort"):
        validate_radiograph_cohort(raw, SETTINGS, VALIDATION, report, progress=False)
    written = json.loads(report.read_text())
    assert written["success"] is False and "Expected outcomes.csv" in written["error"]


def test_image_facts_and_checks_without_great_expectations(tmp_path: Path) -> None:
    write_png(tmp_path / "xr.png", spine_picture(120, 64, seed=1, bits=16))
    assert radiograph_facts(tmp_path, "xr.png") == {
        "image_inside": True, "readable": True, "read_problem": None, "ndim": 2, "rows": 120, "cols": 64, "bit_depth": 16,
    }
    outside = radiograph_facts(tmp_path, "../xr.png")
    assert outside["image_inside"] is False and outside["readable"] is None  # neither looked up nor opened
    missing = radiograph_facts(tmp_path, "gone.png")
    assert missing["readable"] is False and "no such file" in missing["read_problem"]

    checks = radiograph_checks(RadiographSettings(derivation_min_age=45), VALIDATION)
    [columns] = [c.kwargs["column_set"] for c in checks if c.expectation == "ExpectTableColumnsToMatchSet"]
    assert columns == list(OUTCOME_COLUMNS) and not set(FRAX_COLUMNS) & set(columns)  # FRAX optional
    [oldest] = [c for c in checks if c.expectation == "ExpectColumnMaxToBeBetween"]
    assert oldest.kwargs == {"min_value": 45}
    bounds = {c.column: (c.kwargs.get("min_value"), c.kwargs.get("max_value")) for c in checks
              if c.expectation == "ExpectColumnValuesToBeBetween"}
    assert bounds["bmd_t_femoral_neck"] == (-7.0, 5.0) and bounds["fracture_followup_years"] == (0, None)
    assert bounds["rows"] == bounds["cols"] == (64, 8192) and bounds["age"] == (18, 100)
    assert bounds["frax_major_spine"] == (0, 100)
