"""The radiograph branch end to end on the ci phantom: gate, preprocess, train, evaluate, outcomes, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from tests.mlflow_store import fresh_store
from tests.params_file import write_params


@pytest.mark.slow
def test_the_branch_runs_end_to_end_on_the_ci_profile(tmp_path: Path, monkeypatch) -> None:
    from spineage.config import parse_params
    from spineage.synth.generate import generate_cohort

    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    raw = tmp_path / "raw"
    generate_cohort(raw, parse_params({}).synth, seed=5, profile="ci", n_subjects=60, workers=1, progress=False)
    params = write_params(tmp_path / "params.yaml", {"radiograph": {
        "image_shape": [64, 32], "max_epochs": 2, "min_epochs": 1, "batch_size": 8, "threads": 1}})
    reports = tmp_path / "reports" / "radiograph"
    runner = CliRunner()

    def run(*words: str) -> str:
        result = runner.invoke(app, ["radiograph", *words])
        assert result.exit_code == 0, result.output
        return result.output

    run("validate", "--raw", str(raw), "--report", str(reports / "validation.json"), "--params", str(params))
    assert json.loads((reports / "validation.json").read_text())["success"] is True
    run("preprocess", "--raw", str(raw), "--out", str(tmp_path / "processed"), "--reports", str(reports / "preprocess"), "--params", str(params))
    run("train", "--processed", str(tmp_path / "processed"), "--out", str(tmp_path / "model"), "--reports", str(reports / "train"), "--params", str(params))
    run("evaluate", "--train-reports", str(reports / "train"), "--reports", str(reports), "--params", str(params))
    output = run("outcomes", "--predictions", str(reports / "predictions.csv"), "--metrics", str(reports / "metrics.json"),
                 "--raw", str(raw), "--reports", str(reports / "outcomes"))
    predictions = pd.read_csv(reports / "predictions.csv")
    sessions = pd.read_csv(raw / "sessions.csv")
    assert len(predictions) == sessions.modality.isin(["xray_lat", "dxa_vfa"]).sum()
    assert set(predictions.split) <= {"train", "validation", "test", "external", "external_seen", "younger"}
    truth = json.loads((reports / "outcomes" / "truth_recovery.json").read_text())
    assert truth["planted_truth"] is True and "subjects" in output
    # a bad outcomes table stops the gate with a line naming the column
    outcomes = pd.read_csv(raw / "outcomes.csv")
    outcomes.loc[0, "followup_years"] = -1.0
    outcomes.to_csv(raw / "outcomes.csv", index=False)
    result = runner.invoke(app, ["radiograph", "validate", "--raw", str(raw), "--report", str(reports / "bad.json"), "--params", str(params)])
    assert result.exit_code != 0 and "followup_years" in result.output
