"""The evaluate stage on a small fabricated set of the train stage's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.evaluation.settings import EvaluationSettings
from spineage.evaluation.stage import (
    PREDICTION_COLUMNS,
    EvaluationInputs,
    evaluate_spine_age,
    stored_bias_correction,
)
from tests.evaluation.conftest import SLOPE, register_candidate
from tests.mlflow_store import fresh_store
from tests.params_file import write_params


def _inputs(root: Path, gradcam: bool = False) -> EvaluationInputs:
    return EvaluationInputs(
        root / "reports" / "train", root / "interim", root / "raw",
        root / "models" / "spine-age" if gradcam else None, root / "processed" if gradcam else None,
    )


def test_the_correction_removes_the_planted_bias_and_every_series_gets_a_range(fabricated: Path, tmp_path: Path) -> None:
    out = tmp_path / "evaluate"
    result = evaluate_spine_age(_inputs(fabricated), EvaluationSettings(large_gap_years=12.0), out, log_mlflow=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics

    correction = metrics["bias_correction"]
    assert correction["method"] == "cole" and correction["split"] == "validation" and correction["n"] == 20
    assert correction["slope"] == pytest.approx(SLOPE, abs=0.05)

    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions.columns.tolist() == list(PREDICTION_COLUMNS)
    assert len(predictions) == 75 and predictions["series_id"].is_unique
    test = predictions[predictions.split == "test"]
    raw_trend = np.polyfit(test.age, test.predicted_age - test.age, 1)[0]
    corrected_trend = np.polyfit(test.age, test.sag, 1)[0]
    assert raw_trend == pytest.approx(SLOPE - 1, abs=0.05)
    assert abs(corrected_trend) < 0.05
    assert metrics["test"]["corrected"]["mae"] < metrics["test"]["raw"]["mae"]
    assert metrics["test"]["raw"]["n"] == 15 and metrics["full_test"]["raw"]["n"] == 25
    assert set(metrics["test"]["baselines"]) == {"mean_age"}
    assert np.allclose(predictions.sag, predictions.corrected_age - predictions.age, atol=2e-3)
    inside = (predictions.age >= predictions.age_low) & (predictions.age <= predictions.age_high)
    assert (predictions.atypical_for_age == ~inside).all()
    assert np.allclose(predictions.sag_high, -predictions.sag_low, atol=2e-3)

    normative = metrics["normative_range"]
    assert normative["n_calibration"] == 20 and normative["coverage_nominal"] == 0.9
    assert normative["coverage_test"] >= 0.8
    # The two abnormal series planted 20 years older are flagged and listed with their findings.
    flagged = set(predictions.loc[predictions.atypical_for_age & (predictions.split == "full_test_abnormal"), "series_id"])
    assert {"mri-00069-1", "mri-00070-1"} <= flagged
    gaps = pd.read_csv(out / "large_gaps.csv").set_index("series_id")
    assert {"mri-00069-1", "mri-00070-1"} <= set(gaps.index)
    assert (gaps["sag"].abs() > 12.0).all()
    assert gaps.loc["mri-00069-1", "findings"] == "L4 disc_bulge severe; spinal_stenosis present"

    stability = metrics["repeat_scans"]["all"]
    assert stability["n"] == 5 and stability["mean_years_between"] == pytest.approx(1.5, abs=0.01)
    assert stability["icc"] > 0.9
    truth = metrics["truth"]["test"]
    assert truth["sag_vs_planted_gap_r"] > 0.9  # the fabricated planted gap is the prediction's noise
    assert set(metrics["by_bracket_sex"]) == {"test", "full_test"}
    for name in ("predicted_vs_age.png", "error_by_bracket_sex.png", "by_bracket_sex.csv", "bias_correction.json"):
        assert (out / name).stat().st_size > 0


def test_beheshti_is_chosen_by_the_settings(fabricated: Path, tmp_path: Path) -> None:
    result = evaluate_spine_age(_inputs(fabricated), EvaluationSettings(bias_correction="beheshti"), tmp_path / "e", log_mlflow=False)
    assert result.metrics["bias_correction"]["method"] == "beheshti"
    assert result.metrics["bias_correction"]["slope"] == pytest.approx(SLOPE - 1, abs=0.05)


def test_train_cv_without_the_model_and_arrays_is_refused_in_one_line(fabricated: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--model.*--processed.*10 extra trainings") as error:
        evaluate_spine_age(_inputs(fabricated), EvaluationSettings(fit_on="train_cv"), tmp_path / "e", log_mlflow=False)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "e").exists()


def test_a_series_missing_from_the_cohort_table_is_a_user_error(fabricated: Path, tmp_path: Path) -> None:
    cohort = pd.read_csv(fabricated / "interim" / "cohort.csv")
    cohort.iloc[1:].to_csv(fabricated / "interim" / "cohort.csv", index=False)
    with pytest.raises(UserError, match="every predicted series in the cohort table"):
        evaluate_spine_age(_inputs(fabricated), EvaluationSettings(), tmp_path / "e", log_mlflow=False)


def test_the_cli_refuses_a_fit_on_test_with_one_line(fabricated: Path, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"evaluate": {"fit_on": "test"}})
    result = CliRunner().invoke(app, [
        "evaluate", "--train-reports", str(fabricated / "reports" / "train"), "--interim", str(fabricated / "interim"),
        "--reports", str(tmp_path / "e"), "--params", str(params), "--no-mlflow",
    ])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "fitted on the test split" in result.output


@pytest.mark.slow
def test_the_stage_logs_to_the_candidate_and_draws_grad_cam(fabricated: Path, tmp_path: Path, monkeypatch) -> None:
    import mlflow

    store = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    run_id, model_uri = register_candidate(fabricated, store)
    params = write_params(tmp_path / "params.yaml", {"evaluate": {"gradcam_cases": 1}})
    out = tmp_path / "evaluate"
    result = CliRunner().invoke(app, [
        "evaluate", "--train-reports", str(fabricated / "reports" / "train"), "--interim", str(fabricated / "interim"),
        "--raw", str(fabricated / "raw"), "--model", str(fabricated / "models" / "spine-age"),
        "--processed", str(fabricated / "processed"), "--reports", str(out), "--params", str(params),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gradcam"]["block"] == 2  # input 8 x 12 x 48: block 2 is 2 x 3 x 12 = 72 cells, block 3 only 12
    assert len(metrics["gradcam"]["series"]) == 3
    assert (out / "gradcam.png").stat().st_size > 0

    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    run = client.get_run(run_id)
    assert run.data.metrics["eval_test_corrected_mae"] == pytest.approx(metrics["test"]["corrected"]["mae"])
    assert run.data.tags["bias_correction_method"] == "cole"
    assert run.data.tags["bias_correction_n"] == "20"
    version_tags = client.get_model_version("spine-age-mri", model_uri.rsplit("/", 1)[1]).tags
    assert version_tags["bias_correction_split"] == "validation"
    assert float(version_tags["normative_range_half_width"]) == pytest.approx(metrics["normative_range"]["half_width"])
    # Inference reads back exactly the correction the stage applied.
    correction = stored_bias_correction(model_uri)
    assert correction.as_dict() == json.loads((out / "bias_correction.json").read_text())


def test_an_unknown_training_run_is_a_user_error(fabricated: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    with pytest.raises(UserError, match="Expected the training run not-logged"):
        evaluate_spine_age(_inputs(fabricated), EvaluationSettings(), tmp_path / "e")
