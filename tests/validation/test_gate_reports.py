"""A gate that cannot run, or does not finish, never leaves an earlier success behind for the next stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.validation.gate import GATE_RUNNING, GateResult
from tests.params_file import write_params

from .test_processed_gate import write_processed

runner = CliRunner()

STALE_SUCCESS = {"gate": "stale", "success": True, "failed": 0, "evaluated": 75}


def _arguments(gate: str, tmp_path: Path, raw: Path, params: Path, report: Path) -> list[str]:
    """A run of ``gate`` on inputs that pass."""
    if gate == "raw":
        inputs = ["--data", str(raw)]
    elif gate == "features":
        from .conftest import write_vectors

        inputs = ["--interim", str(write_vectors(tmp_path / "interim", raw)), "--data", str(raw)]
    else:
        processed, cohort = write_processed(tmp_path)
        inputs = ["--processed", str(processed), "--cohort", str(cohort)]
    return ["validate", gate, *inputs, "--params", str(params), "--report", str(report)]


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return write_params(tmp_path / "params.yaml", {"seed": 1, "preprocess": {"shape": [4, 5, 6]}})


@pytest.mark.parametrize("gate, missing", [("raw", "--data"), ("features", "--interim"), ("processed", "--processed")])
def test_a_missing_input_replaces_an_earlier_success_with_a_failure(tmp_path: Path, raw: Path, params: Path, gate: str, missing: str) -> None:
    report = tmp_path / "reports" / f"{gate}.json"
    arguments = _arguments(gate, tmp_path, raw, params, report)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["success"] is True
    position = arguments.index(missing) + 1
    arguments[position] = str(tmp_path / "absent")
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    written = json.loads(report.read_text())
    assert written["success"] is False and written["gate"] == gate
    assert written["error"] == result.stderr.strip().removeprefix("error: ")
    assert str(tmp_path / "absent") in written["error"]
    assert sorted(p.name for p in report.parent.iterdir()) == [report.name], "a temporary file was left behind"


def test_a_bad_params_file_replaces_an_earlier_success_too(tmp_path: Path, raw: Path) -> None:
    report = tmp_path / "raw.json"
    report.write_text(json.dumps(STALE_SUCCESS))
    bad = write_params(tmp_path / "bad.yaml", {"validation": {"age_min": 90, "age_max": 30}})
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(bad), "--report", str(report)])
    assert result.exit_code == 2
    written = json.loads(report.read_text())
    assert written["success"] is False and "age_min below validation.age_max" in written["error"]


def test_a_gate_that_does_not_finish_leaves_a_failure_not_the_earlier_success(tmp_path: Path, raw: Path, params: Path, monkeypatch) -> None:
    import spineage.validation.raw as raw_gate

    report = tmp_path / "raw.json"
    report.write_text(json.dumps(STALE_SUCCESS))
    seen: list[dict] = []

    def killed(*args, **kwargs):
        seen.append(json.loads(report.read_text()))  # what the next stage would read while the gate runs
        raise KeyboardInterrupt

    monkeypatch.setattr(raw_gate, "validate_raw_cohort", killed)
    result = runner.invoke(app, ["validate", "raw", "--data", str(raw), "--params", str(params), "--report", str(report)])
    assert result.exit_code != 0
    assert seen[0]["success"] is False and seen[0]["error"] == GATE_RUNNING
    assert json.loads(report.read_text()) == seen[0]


def test_a_result_that_could_not_run_never_succeeds() -> None:
    result = GateResult.could_not_run("raw", "data/raw", "Expected a raw-cohort folder at data/raw, found nothing there")
    assert result.success is False and result.checked == () and result.failure_lines() == []
    assert result.summary(Path("r.json")) == (
        "validate raw: could not run on data/raw: Expected a raw-cohort folder at data/raw, found nothing there; result in r.json"
    )
    assert result.to_dict()["error"].startswith("Expected a raw-cohort folder")
