"""The processed gate: valid arrays pass; bad shapes, NaN, empty masks, missing series and ages fail readably."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.config import ValidationSettings
from spineage.errors import UserError
from spineage.imaging.preprocess import PreprocessSettings
from spineage.imaging.stage import MANIFEST_COLUMNS
from spineage.validation.gate import GateResult
from spineage.validation.processed import validate_processed_arrays
from tests.params_file import write_params

SETTINGS = PreprocessSettings(shape=(4, 5, 6), target_spacing_mm=(4.0, 3.0, 4.0))
VALIDATION = ValidationSettings(age_min=18, age_max=100)
SERIES = ("mri-1", "mri-2", "mri-3", "mri-4", "mri-5")
SPLITS = ("train", "train", "validation", "test", "full_test_other")


def write_processed(folder: Path) -> tuple[Path, Path]:
    """Four usable series with valid arrays and one excluded with its reason, plus their cohort.csv."""
    processed = folder / "processed"
    processed.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index, (series, split) in enumerate(zip(SERIES, SPLITS)):
        row = {column: "" for column in MANIFEST_COLUMNS}
        row.update(series_id=series, split=split, age=f"{40 + 5 * index:g}", shape="4x5x6", spacing="4x3x4",
                   input_hash="0" * 16, settings_hash="1" * 16, label_source="label")
        if series == "mri-5":
            row.update(status="excluded", flags="empty_mask", reason="empty_mask: no whole spine labels in the label map")
        else:
            array = np.where(rng.random((4, 5, 6)) > 0.5, rng.random((4, 5, 6)), 0).astype(np.float16)
            np.save(processed / f"{series}.npy", array)
            row.update(status="ok", file=f"{series}.npy")
        rows.append(row)
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(processed / "manifest.csv", index=False)
    cohort = folder / "cohort.csv"
    pd.DataFrame({"series_id": SERIES, "age": [40, 45, 50, 55, 60], "split": SPLITS}).to_csv(cohort, index=False)
    return processed, cohort


def test_valid_arrays_pass(tmp_path: Path) -> None:
    processed, cohort = write_processed(tmp_path)
    report = tmp_path / "processed.json"
    result = validate_processed_arrays(processed, cohort, SETTINGS, VALIDATION, report)
    assert result.success, result.failure_lines()
    assert result.tables == {"manifest.csv": 5, "cohort.csv": 5}
    saved = json.loads(report.read_text())
    assert saved["success"] is True and saved["settings"]["shape"] == [4, 5, 6]


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> GateResult:
    """One fault per series: NaN, wrong shape, float32 and empty, a missing file; an excluded series without a
    reason; an age of 150 in train; and a cohort series the manifest lacks."""
    folder = tmp_path_factory.mktemp("processed")
    processed, cohort = write_processed(folder)
    array = np.load(processed / "mri-1.npy")
    array[0, 0, 0] = np.nan
    np.save(processed / "mri-1.npy", array)
    np.save(processed / "mri-2.npy", np.ones((4, 5, 7), np.float16))
    np.save(processed / "mri-3.npy", np.zeros((4, 5, 6), np.float32))
    (processed / "mri-4.npy").unlink()
    manifest = pd.read_csv(processed / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[manifest["series_id"] == "mri-5", "reason"] = ""
    manifest.loc[manifest["series_id"] == "mri-2", "age"] = "150"
    manifest.loc[manifest["series_id"] == "mri-3", "spacing"] = "4x4x4"
    manifest.to_csv(processed / "manifest.csv", index=False)
    table = pd.read_csv(cohort)
    pd.concat([table, pd.DataFrame({"series_id": ["mri-6"], "age": [70], "split": ["train"]})]).to_csv(cohort, index=False)
    return validate_processed_arrays(processed, cohort, SETTINGS, VALIDATION)


def test_each_fault_is_one_readable_line(broken: GateResult) -> None:
    assert not broken.success
    assert broken.failure_lines() == [
        ("FAILED manifest.csv reason: expect_column_values_to_not_be_null (an excluded or failed series says why) "
         "on 1 of 1 rows, e.g. 'mri-5'"),
        ("FAILED manifest.csv array_found: expect_column_values_to_be_in_set (the array of a usable series exists and "
         "loads) on 1 of 4 rows, e.g. 'mri-4.npy' (mri-4)"),
        ("FAILED manifest.csv array_shape: expect_column_values_to_be_in_set (the array is 4x5x6 voxels (preprocess.shape)) "
         "on 1 of 4 rows, e.g. '4x5x7' (mri-2)"),
        ("FAILED manifest.csv array_dtype: expect_column_values_to_be_in_set (the array is float16) on 1 of 4 rows, "
         "e.g. 'float32' (mri-3)"),
        ("FAILED manifest.csv spacing: expect_column_values_to_be_in_set (recorded at 4x3x4 mm "
         "(preprocess.target_spacing_mm)) on 1 of 4 rows, e.g. '4x4x4' (mri-3)"),
        ("FAILED manifest.csv non_finite_voxels: expect_column_values_to_be_between (no NaN or Inf voxel) on 1 of 4 rows, "
         "e.g. 1 (mri-1)"),
        ("FAILED manifest.csv nonzero_voxels: expect_column_values_to_be_between (a non-empty mask (at least one non-zero "
         "voxel)) on 1 of 4 rows, e.g. 0 (mri-3)"),
        ("FAILED manifest.csv age_years: expect_column_values_to_be_between (age between 18 and 100 years "
         "(validation.age_min/age_max) in split train) on 1 of 2 rows, e.g. 150 (mri-2)"),
        ("FAILED cohort.csv in_manifest: expect_column_values_to_be_in_set (every cohort MRI series is in the manifest "
         "(processed, or excluded with a reason)) on 1 of 6 MRI series, e.g. 'mri-6'"),
    ]


def test_a_missing_manifest_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "processed").mkdir()
    with pytest.raises(UserError, match="Expected manifest.csv in .* \\(written by `spineage preprocess`\\)"):
        validate_processed_arrays(tmp_path / "processed", tmp_path / "cohort.csv", SETTINGS, VALIDATION)


def test_the_cli_gate_exits_1_on_bad_arrays_and_2_on_a_missing_folder(tmp_path: Path) -> None:
    processed, cohort = write_processed(tmp_path)
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "preprocess": {"shape": [4, 5, 6]}})
    report = tmp_path / "processed.json"
    arguments = ["validate", "processed", "--processed", str(processed), "--cohort", str(cohort), "--params", str(params),
                 "--report", str(report)]
    runner = CliRunner()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("validate processed: all ")
    np.save(processed / "mri-1.npy", np.full((4, 5, 6), np.inf, np.float16))
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("FAILED manifest.csv non_finite_voxels")
    assert json.loads(report.read_text())["failed"] == 1
    result = runner.invoke(app, [*arguments[:3], str(tmp_path / "absent"), *arguments[4:]])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("error: Expected a processed folder at")
