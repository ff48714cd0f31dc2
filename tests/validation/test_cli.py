"""``spineage validate raw|features``: exit codes, what is printed, the JSON result, a fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.config import parse_params
from spineage.synth.generate import generate_cohort
from tests.params_file import write_params

from .conftest import tiny_tables, write_cohort, write_vectors

runner = CliRunner()


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml", {"seed": 1, "validation": {"age_min": 18, "age_max": 100}})


def test_a_passing_gate_prints_one_line_and_writes_its_result(raw: Path, params: Path, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "validation" / "raw.json"
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(params), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("validate raw: all ")
    assert result.stderr == ""
    assert json.loads(report.read_text())["success"] is True


def test_a_failing_gate_exits_1_with_one_line_per_failure(tmp_path: Path, params: Path) -> None:
    tables = tiny_tables()
    tables["sessions.csv"].loc[2, "age"] = 150
    tables["participants.csv"].loc[1, "sex"] = "X"
    raw = write_cohort(tmp_path / "raw", tables)
    report = tmp_path / "raw.json"
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(params), "--report", str(report)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "FAILED participants.csv sex: expect_column_values_to_be_in_set (sex is F or M) on 1 of 3 rows, e.g. 'X' (sub-2)",
        "FAILED sessions.csv age: expect_column_values_to_be_between (age between 18 and 100 years, "
        "validation.age_min/age_max) on 1 of 5 rows, e.g. 150 (mri-2-1)",
        f"validate raw: 2 of {json.loads(report.read_text())['evaluated']} expectations failed on {raw}; result in {report}",
    ]
    assert "Traceback" not in result.output and result.stdout == ""
    assert json.loads(report.read_text())["failed"] == 2


def test_the_age_range_is_read_from_params(raw: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "strict.yaml", {"validation": {"age_min": 60}})
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(params), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "age between 60 and 100 years" in result.stderr and "on 2 of 5 rows" in result.stderr


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["validate", "raw", "--data", "{tmp}/absent"], "error: Expected a raw-cohort folder at {tmp}/absent, found nothing there"),
        (["validate", "raw", "--data", "{tmp}", "--params", "{tmp}/none.yaml"], "error: Expected a params file at {tmp}/none.yaml"),
        (["validate", "features", "--interim", "{tmp}/absent", "--data", "{tmp}"], "error: Expected an interim folder at {tmp}/absent"),
    ],
    ids=["no raw folder", "no params file", "no interim folder"],
)
def test_missing_inputs_exit_2_with_one_line(tmp_path: Path, params: Path, arguments: list[str], message: str) -> None:
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    if "--params" not in arguments:
        arguments += ["--params", str(params)]
    result = runner.invoke(app, arguments + ["--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message.format(tmp=tmp_path)) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_bad_validation_settings_exit_2(raw: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "bad.yaml", {"validation": {"age_min": 90, "age_max": 30}})
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(params), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "Expected validation.age_min below validation.age_max, found 90 and 30" in result.stderr


def test_the_feature_gate_fails_on_a_negative_count(raw: Path, interim: Path, params: Path, tmp_path: Path) -> None:
    region = pd.read_parquet(interim / "region_vectors.parquet")
    region.loc["mri-2-1", "cervical__extrusion__moderate"] = -1
    region.to_parquet(interim / "region_vectors.parquet")
    report = tmp_path / "features.json"
    arguments = ["validate", "features", "--interim", str(interim), "--data", str(raw), "--params", str(params), "--report", str(report)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "FAILED region_vectors.parquet values value: expect_column_values_to_be_between "
        "(a count of levels or a flag, between 0 and 13) on 1 of 201 values, e.g. -1 (mri-2-1 cervical__extrusion__moderate)"
    )
    assert json.loads(report.read_text())["success"] is False


def test_help_does_not_import_great_expectations() -> None:
    code = "import sys\nfrom spineage.cli import app\nprint('great_expectations' in sys.modules, 'spineage.validation.gate' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


@pytest.fixture(scope="module")
def ci_cohort(tmp_path_factory) -> Path:
    """The generated phantom cohort of the ci profile (40 subjects)."""
    out = tmp_path_factory.mktemp("ci") / "raw"
    generate_cohort(out, parse_params({}).synth, seed=20251121, profile="ci", workers=2, progress=False)
    return out


@pytest.mark.slow
def test_the_generated_ci_cohort_passes_both_gates(ci_cohort: Path, params: Path, tmp_path: Path) -> None:
    raw_report = tmp_path / "raw.json"
    result = runner.invoke(app, ["validate", "raw", "--data", str(ci_cohort), "--params", str(params), "--report", str(raw_report)])
    assert result.exit_code == 0, result.output
    written = json.loads(raw_report.read_text())
    assert written["tables"]["participants.csv"] == 40 and written["skipped"] == 0 and written["notes"] == []
    interim = write_vectors(tmp_path / "interim", ci_cohort)
    arguments = ["validate", "features", "--interim", str(interim), "--data", str(ci_cohort), "--params", str(params),
                 "--report", str(tmp_path / "features.json")]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("validate features: all 16 expectations passed")
