"""The feature gate: valid vectors pass; wrong columns, bad values and missing series fail readably."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.findings.features import LEVEL_COLUMNS, REGION_COLUMNS
from spineage.validation.gate import GateResult
from spineage.validation.vectors import read_vector_tables, validate_feature_vectors

from .conftest import tiny_tables, write_cohort, write_vectors


def test_valid_vectors_pass(raw: Path, interim: Path, tmp_path: Path) -> None:
    report = tmp_path / "features.json"
    result = validate_feature_vectors(interim, raw, report)
    assert result.success, result.failure_lines()
    assert result.tables == {"level_vectors.parquet": 3, "region_vectors.parquet": 3, "sessions.csv MRI series": 3}
    assert json.loads(report.read_text())["success"] is True


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> GateResult:
    """Vectors with 214 level columns, and region vectors holding a negative count, a NaN and a half."""
    folder = tmp_path_factory.mktemp("features")
    raw = write_cohort(folder / "raw", tiny_tables())
    interim = write_vectors(folder / "interim", raw)
    level = pd.read_parquet(interim / "level_vectors.parquet")
    level.drop(columns="L4__disc_bulge").to_parquet(interim / "level_vectors.parquet")
    region = pd.read_parquet(interim / "region_vectors.parquet").astype(np.float64)
    region.loc["mri-1-1", "lumbar__disc_bulge__mild"] = -1
    region.loc["mri-1-2", "cervical__protrusion__mild"] = np.nan
    region.loc["mri-2-1", "thoracic__extrusion__moderate"] = 0.5
    region.to_parquet(interim / "region_vectors.parquet")
    return validate_feature_vectors(interim, raw, folder / "features.json")


def _failure(result: GateResult, table: str, column: str | None):
    [failure] = [o for o in result.failures if (o.check.table, o.check.column) == (table, column)]
    return failure


def test_a_table_with_214_columns_fails_naming_the_missing_one(broken: GateResult) -> None:
    failure = _failure(broken, "level_vectors.parquet", None)
    assert failure.check.expectation_type == "expect_table_columns_to_match_ordered_list"
    line = failure.line()
    assert "found 214 columns where 215 were expected" in line and "missing L4__disc_bulge" in line, line


def test_a_negative_count_fails_naming_series_and_column(broken: GateResult) -> None:
    [failure] = [o for o in broken.failures if o.check.expectation_type == "expect_column_values_to_be_between"]
    assert failure.check.table == "region_vectors.parquet values" and failure.unexpected_count == 1
    assert failure.element_count == 3 * len(REGION_COLUMNS)
    assert "on 1 of 201 values, e.g. -1 (mri-1-1 lumbar__disc_bulge__mild)" in failure.line(), failure.line()


def test_nan_and_fractions_fail(broken: GateResult) -> None:
    lines = "\n".join(broken.failure_lines())
    assert "expect_column_values_to_not_be_null (no NaN) on 1 of 201 values, e.g. NaN (mri-1-2 cervical__protrusion__mild)" in lines
    assert "is_whole_number: expect_column_values_to_be_in_set (a whole number) on 1 of 201 values, e.g. 0.5 (mri-2-1" in lines


def test_only_the_broken_things_fail(broken: GateResult) -> None:
    assert len(broken.failures) == 4, broken.failure_lines()
    assert not broken.success and broken.summary().startswith("validate features: 4 of ")


def test_a_missing_mri_series_fails(raw: Path, interim: Path) -> None:
    region = pd.read_parquet(interim / "region_vectors.parquet")
    region.drop(index="mri-2-1").to_parquet(interim / "region_vectors.parquet")
    result = validate_feature_vectors(interim, raw)
    [failure] = result.failures
    assert failure.check.table == "sessions.csv MRI series" and failure.unexpected_count == 1
    assert failure.line().endswith("(every MRI series has a row in region_vectors.parquet) on 1 of 3 MRI series, e.g. 'mri-2-1'")


def test_a_stale_or_duplicated_series_fails(raw: Path, interim: Path) -> None:
    level = pd.read_parquet(interim / "level_vectors.parquet")
    stale = level.iloc[[0, 0]].set_axis(pd.Index(["mri-9-9", "mri-1-1"], name="series_id"))
    pd.concat([level, stale]).to_parquet(interim / "level_vectors.parquet")
    result = validate_feature_vectors(interim, raw)
    failed = {(o.check.column, o.check.expectation_type, o.unexpected_count) for o in result.failures}
    assert failed == {
        ("series_in_sessions", "expect_column_values_to_be_in_set", 1),
        ("series_id", "expect_column_values_to_be_unique", 2),
    }


def test_vectors_are_read_in_long_form(raw: Path, interim: Path) -> None:
    tables = {table.name: table for table in read_vector_tables(interim, raw)}
    assert list(tables["level_vectors.parquet"].frame.columns) == list(LEVEL_COLUMNS)
    values = tables["level_vectors.parquet values"].frame
    assert len(values) == 3 * len(LEVEL_COLUMNS)
    assert values.set_index(["series_id", "column"]).loc[("mri-1-1", "L5__desiccation"), "value"] == 4


def test_missing_inputs_are_user_errors(raw: Path, interim: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Expected an interim folder"):
        read_vector_tables(tmp_path / "absent", raw)
    (interim / "region_vectors.parquet").unlink()
    with pytest.raises(UserError, match="Expected region_vectors.parquet in .*written by the findings stage"):
        read_vector_tables(interim, raw)
    (interim / "region_vectors.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="Expected a Parquet table in"):
        read_vector_tables(interim, raw)
    pd.read_parquet(interim / "level_vectors.parquet").reset_index(drop=True).to_parquet(interim / "region_vectors.parquet")
    with pytest.raises(UserError, match="Expected a series_id index"):
        read_vector_tables(interim, raw)
