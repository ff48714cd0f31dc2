"""``evaluate.fit_on: train_cv`` end to end on the ci phantom cohort: a tiny candidate, then 2 fold trainings.

The correction must be fitted on out-of-fold predictions of every train series the
candidate trained on (split ``train_cv``, n = those series), each fold's network must
train with the candidate's settings on the other fold only, and nothing but the
candidate may be registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.evaluation.cross_validation import CV_EXPERIMENT
from spineage.training.stage import MODEL_NAME, train_spine_age
from tests.mlflow_store import fresh_store
from tests.params_file import write_params
from tests.training.conftest import TINY


@pytest.mark.slow
def test_train_cv_fits_the_correction_on_out_of_fold_predictions_of_every_train_series(
    ci_cohort: Path, tmp_path: Path, monkeypatch,
) -> None:
    import mlflow

    store = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    candidate = train_spine_age(ci_cohort / "processed", TINY, tmp_path / "model", tmp_path / "train", progress=False)
    train_series = pd.read_csv(tmp_path / "train" / "predictions.csv", dtype={"series_id": str}).query("split == 'train'")
    # The ci cohort has 5 validation series: enough for an 80 % normative range. A 3-epoch tiny network
    # may predict nearly one age for all (Cole's correction refuses a flat slope); Beheshti's fits any.
    evaluate = {"fit_on": "train_cv", "cv_folds": 2, "bias_correction": "beheshti", "coverage": 0.8, "gradcam_cases": 0}
    params = write_params(tmp_path / "params.yaml", {"evaluate": evaluate})
    result = CliRunner().invoke(app, [
        "evaluate", "--train-reports", str(tmp_path / "train"), "--interim", str(ci_cohort / "interim"),
        "--raw", str(ci_cohort / "raw"), "--model", str(tmp_path / "model"), "--processed", str(ci_cohort / "processed"),
        "--reports", str(tmp_path / "evaluate"), "--params", str(params),
    ])
    assert result.exit_code == 0, result.output
    assert "beheshti correction fitted by 2-fold cross-validation on train" in result.output

    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    correction = metrics["bias_correction"]
    assert correction["split"] == "train_cv" and correction["folds"] == 2
    assert correction["n"] == len(train_series) > 4
    folds = correction["cross_validation"]
    assert sum(folds["series_per_fold"]) == len(train_series) and min(folds["series_per_fold"]) > 0
    assert folds["out_of_fold_mae"] > 0
    stored = json.loads((tmp_path / "evaluate" / "bias_correction.json").read_text())
    assert (stored["split"], stored["n"], stored["folds"]) == ("train_cv", len(train_series), 2)

    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    runs = client.search_runs([client.get_experiment_by_name(CV_EXPERIMENT).experiment_id])
    assert sorted(run.info.run_id for run in runs) == sorted(folds["run_ids"])
    trained_on = sorted(int(run.data.params["train_series"]) for run in runs)
    assert trained_on == sorted(len(train_series) - size for size in folds["series_per_fold"])  # never its own fold
    for run in runs:
        assert run.data.tags["registered"] == "false"
        assert (run.data.params["loss"], run.data.params["channels"]) == (TINY.loss, str(list(TINY.channels)))
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")] == [candidate.version]
    tags = client.get_model_version(MODEL_NAME, candidate.version).tags
    assert (tags["bias_correction_split"], tags["bias_correction_n"], tags["bias_correction_folds"]) == ("train_cv", str(len(train_series)), "2")
    assert float(tags["bias_correction_slope"]) == correction["slope"]
