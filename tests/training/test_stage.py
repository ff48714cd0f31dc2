"""The train stage on the ci phantom cohort: learning, MLflow run and registry, resume, errors, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.training.checkpoint import BEST, CHECKPOINT, load_checkpoint
from spineage.training.stage import MODEL_NAME, noise_floor, train_spine_age
from tests.mlflow_store import fresh_store
from tests.params_file import write_params
from tests.training.conftest import TINY


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> str:
    uri = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def train(ci_cohort: Path, folder: Path, settings=TINY, **kwargs):
    kwargs.setdefault("ground_truth", ci_cohort / "raw" / "ground_truth.json")
    return train_spine_age(ci_cohort / "processed", settings, folder / "model", folder / "reports", progress=False, **kwargs)


def test_a_few_epochs_lower_the_loss_and_write_predictions_for_every_series(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    settings = replace(TINY, max_epochs=4, min_epochs=4)
    result = train(ci_cohort, tmp_path, settings)

    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    predictions = pd.read_csv(tmp_path / "reports" / "predictions.csv")
    manifest = pd.read_csv(ci_cohort / "processed" / "manifest.csv")
    assert sorted(predictions.series_id) == sorted(manifest.series_id[manifest.status.isin(["ok", "flagged"])])
    assert predictions.predicted_age.notna().all()
    test = predictions[predictions.split == "test"]
    assert result.test_mae == pytest.approx(np.mean(np.abs(test.predicted_age - test.age)), abs=1e-2)
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["test_mae"] == pytest.approx(result.test_mae)
    assert metrics["noise_floor"] == pytest.approx(result.noise_floor) and result.noise_floor > 0
    assert metrics["model_uri"] == result.model_uri
    assert (tmp_path / "model" / BEST).is_file() and load_checkpoint(tmp_path / "model" / CHECKPOINT)["finished"] is True

    # The baselines, on the same series and splits, in metrics.json, predictions.csv and the summary line.
    train_ages = predictions.age[predictions.split == "train"]
    assert np.allclose(predictions.baseline_mean_age, train_ages.mean(), atol=1e-3)
    baselines = metrics["baselines"]
    assert set(baselines) == {"mean_age", "ridge_intensity"}
    assert baselines["mean_age"]["test_mae"] == pytest.approx(np.mean(np.abs(train_ages.mean() - test.age)), abs=1e-2)
    ridge = baselines["ridge_intensity"]
    assert ridge["test_mae"] == pytest.approx(np.mean(np.abs(test.baseline_ridge_intensity - test.age)), abs=1e-2)
    assert {"validation_mae", "test_mae", "alpha", "features"} <= set(ridge) and "median_vertebra" in ridge["features"]
    assert ridge["test_mae"] < baselines["mean_age"]["test_mae"]  # the intensities carry age on the phantom
    assert result.baseline_test_mae == {"mean_age": baselines["mean_age"]["test_mae"], "ridge_intensity": ridge["test_mae"]}
    assert f"test MAE {result.test_mae:.2f} y (ridge baseline {ridge['test_mae']:.2f} y, mean-age baseline" in str(result)
    # Against the planted biological age (the phantom's answer key).
    bio = json.loads((ci_cohort / "raw" / "ground_truth.json").read_text())["series_bio_age"]
    test_bio = test.series_id.map(bio)
    assert metrics["test_mae_vs_biological_age"] == pytest.approx(np.mean(np.abs(test.predicted_age - test_bio)), abs=1e-2)
    planted = predictions.series_id.map(bio) - predictions.age
    expected_r = np.corrcoef(predictions.predicted_age - predictions.age, planted)[0, 1]
    assert metrics["raw_gap_vs_planted_gap_r_all"] == pytest.approx(expected_r, abs=1e-3)
    assert -1 <= metrics["raw_gap_vs_planted_gap_r"] <= 1
    for name in baselines:
        assert {"test_mae_vs_biological_age", "raw_gap_vs_planted_gap_r", "raw_gap_vs_planted_gap_r_all"} <= set(baselines[name])


def test_the_run_is_logged_and_the_model_registered_as_candidate(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    import mlflow
    import mlflow.pytorch

    from spineage.models.spine_age import SpineAgeNet

    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"success": True}))
    first = train(ci_cohort, tmp_path / "a", gate_report=gate)
    segmenter = tmp_path / "spine-seg"
    segmenter.mkdir()
    (segmenter / "MLmodel").write_text("a stand-in for the segmenter the arrays were masked with\n")
    second = train(ci_cohort, tmp_path / "b", replace(TINY, loss="mean_variance", age_bins=(10.0, 100.0, 2.0)),
                   preprocessing={"segmentation_model": str(segmenter)})

    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, "candidate").version) == second.version == "2"
    run = client.get_run(first.run_id)
    assert run.data.params["loss"] == "mse" and run.data.params["data_manifest_sha256"]
    assert run.data.tags["git_commit"]
    assert {"train_loss", "train_mae", "val_loss", "val_mae", "test_mae", "noise_floor"} <= set(run.data.metrics)
    assert {"test_mae_vs_biological_age", "raw_gap_vs_planted_gap_r", "raw_gap_vs_planted_gap_r_all",
            "baseline_mean_age_test_mae", "baseline_ridge_intensity_test_mae", "baseline_ridge_intensity_validation_mae",
            "baseline_ridge_intensity_raw_gap_vs_planted_gap_r"} <= set(run.data.metrics)
    metrics = json.loads((tmp_path / "a" / "reports" / "metrics.json").read_text())
    assert run.data.metrics["baseline_ridge_intensity_test_mae"] == pytest.approx(metrics["baselines"]["ridge_intensity"]["test_mae"])
    assert len(client.get_metric_history(first.run_id, "val_mae")) == TINY.max_epochs
    artifacts = [a.path for a in client.list_artifacts(first.run_id, "validation")]
    assert artifacts == ["validation/gate.json"]

    loaded = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}@candidate", map_location="cpu")
    assert isinstance(loaded, SpineAgeNet) and loaded.mean_variance and loaded.input_shape == TINY.input_shape
    # The network names the segmenter its arrays were masked with, and its bytes.
    from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY, hash_inputs

    assert loaded.preprocessing[SEGMENTER_IDENTITY_KEY] == f"{segmenter}#sha256={hash_inputs(segmenter, None)}"
    from spineage.training.data import load_splits
    from spineage.training.stage import predict_ages

    test = load_splits(ci_cohort / "processed", TINY.input_shape, TINY.crop_shape)["test"]
    written = pd.read_csv(tmp_path / "b" / "reports" / "predictions.csv").set_index("series_id").predicted_age
    assert predict_ages(loaded, test, channels_last=False) == pytest.approx(written.loc[test.series_ids].to_numpy(), abs=2e-3)


def test_resume_after_an_interruption_gives_the_weights_of_an_uninterrupted_run(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    whole = train(ci_cohort, tmp_path / "whole")

    def interrupt(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ci_cohort, tmp_path / "cut", on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "cut" / "model" / CHECKPOINT)["epoch"] == 1
    resumed = train(ci_cohort, tmp_path / "cut", resume=True)

    assert resumed.run_id == load_checkpoint(tmp_path / "cut" / "model" / CHECKPOINT)["run_id"]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in whole.history], rel=1e-6)
    for name in (CHECKPOINT, BEST):
        ours = load_checkpoint(tmp_path / "cut" / "model" / name)["model"]
        theirs = load_checkpoint(tmp_path / "whole" / "model" / name)["model"]
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_resume_refuses_a_missing_finished_or_different_run(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    with pytest.raises(UserError, match="Expected a training checkpoint"):
        train(ci_cohort, tmp_path, resume=True)
    train(ci_cohort, tmp_path, replace(TINY, max_epochs=1, min_epochs=1))
    with pytest.raises(UserError, match="unfinished run"):
        train(ci_cohort, tmp_path, replace(TINY, max_epochs=1, min_epochs=1), resume=True)
    state = load_checkpoint(tmp_path / "model" / CHECKPOINT)
    state["finished"] = False
    torch.save(state, tmp_path / "model" / CHECKPOINT)
    with pytest.raises(UserError, match="channels changed"):
        train(ci_cohort, tmp_path, replace(TINY, channels=(4, 4, 8, 8, 16)), resume=True)


def test_bad_inputs_are_one_line_errors(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--processed", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"), "--reports", str(tmp_path / "r")])
    assert missing.exit_code == 2 and "Expected the preprocess manifest" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    bad_loss = runner.invoke(app, ["train", "--processed", str(ci_cohort / "processed"), "--loss", "l3"])
    assert bad_loss.exit_code == 2 and "Expected train.loss among" in bad_loss.output
    params = write_params(tmp_path / "params.yaml", {"train": {"batch_size": 0}})
    bad_value = runner.invoke(app, ["train", "--processed", str(ci_cohort / "processed"), "--params", str(params)])
    assert bad_value.exit_code == 2 and "train.batch_size" in bad_value.output
    with pytest.raises(UserError, match="within train.age_bins"):
        train(ci_cohort, tmp_path, replace(TINY, loss="mean_variance", age_bins=(60.0, 100.0, 1.0)))
    assert not (tmp_path / "reports" / "metrics.json").exists()


def test_a_run_that_trained_no_epoch_registers_nothing_and_overwrites_nothing(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    import mlflow

    train(ci_cohort, tmp_path, replace(TINY, max_epochs=1, min_epochs=1))
    kept = {path: path.read_bytes() for path in [*(tmp_path / "model").iterdir(), *(tmp_path / "reports").iterdir()]}
    # Settings built in code skip the params checks; the stage itself refuses to register an untrained model.
    with pytest.raises(UserError, match="Expected at least one trained epoch with a finite validation MAE, found 0 epochs"):
        train(ci_cohort, tmp_path, replace(TINY, max_epochs=0))
    assert {path: path.read_bytes() for path in kept} == kept
    client = mlflow.MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")] == ["1"]
    assert str(client.get_model_version_by_alias(MODEL_NAME, "candidate").version) == "1"


def test_without_an_answer_key_the_truth_figures_are_left_out_and_without_intensities_the_ridge(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    import shutil

    processed = tmp_path / "processed"
    shutil.copytree(ci_cohort / "processed", processed)
    manifest = pd.read_csv(processed / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.drop(columns=[c for c in manifest.columns if c.startswith(("p25_", "median_", "p75_"))]).to_csv(processed / "manifest.csv", index=False)
    settings = replace(TINY, max_epochs=1, min_epochs=1)
    result = train_spine_age(processed, settings, tmp_path / "model", tmp_path / "reports", ground_truth=None, progress=False)
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert not {"test_mae_vs_biological_age", "raw_gap_vs_planted_gap_r", "raw_gap_vs_planted_gap_r_all"} & set(metrics)
    assert metrics["noise_floor"] is None
    assert list(metrics["baselines"]) == ["mean_age"] and "raw_gap_vs_planted_gap_r" not in metrics["baselines"]["mean_age"]
    assert "ridge baseline" not in str(result) and "mean-age baseline" in str(result)


def test_the_noise_floor_is_the_mean_gap_between_biological_and_chronological_age(tmp_path: Path) -> None:
    truth = tmp_path / "ground_truth.json"
    truth.write_text(json.dumps({"series_bio_age": {"a": 50.0, "b": 38.0}}))
    assert noise_floor(truth, ["a", "b", "c"], np.array([48.0, 40.0, 30.0])) == pytest.approx(2.0)
    assert np.isnan(noise_floor(tmp_path / "none.json", ["a"], np.array([48.0])))


@pytest.mark.slow
def test_two_processes_train_with_ddp_and_log_one_run_and_one_version(ci_cohort: Path, tmp_path: Path, store: str) -> None:
    import mlflow

    params = write_params(tmp_path / "params.yaml", {"seed": 7, "train": {
        "batch_size": 4, "max_epochs": 2, "min_epochs": 2, "input_shape": [8, 12, 48],
        "channels": [4, 4, 8, 8, 8], "head_channels": 4, "threads": 1,
    }})
    command = [
        sys.executable, "-m", "spineage", "train", "--nproc", "2", "--params", str(params),
        "--processed", str(ci_cohort / "processed"), "--out", str(tmp_path / "model"), "--reports", str(tmp_path / "reports"),
        "--raw", str(ci_cohort / "raw"), "--gate", str(tmp_path / "no-gate.json"),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ), cwd=tmp_path, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "models:/spine-age-mri/1" in finished.stdout

    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)  # this process may point elsewhere
    runs = client.search_runs([client.get_experiment_by_name("spine-age-mri").experiment_id])
    assert len(runs) == 1 and runs[0].data.params["world_size"] == "2"
    assert [str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")] == ["1"]
    assert len(pd.read_csv(tmp_path / "reports" / "history.csv")) == 2


def test_the_data_version_is_dvc_md5_of_the_processed_folder_and_the_manifest_hash(tmp_path: Path, monkeypatch) -> None:
    from spineage.training.stage import data_version

    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    (processed / "manifest.csv").write_text("series_id,split\n")
    lock = tmp_path / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  preprocess:\n    outs:\n    - path: data/processed\n      md5: abc123.dir\n")
    monkeypatch.chdir(tmp_path)
    version = data_version(Path("data/processed"), lock)
    assert version["dvc_md5"] == "abc123.dir" and len(version["manifest_sha256"]) == 16
    (processed / "manifest.csv").write_text("series_id,split\nmri-1,train\n")
    assert data_version(Path("data/processed"), tmp_path / "none.lock") == {"manifest_sha256": data_version(Path("data/processed"))["manifest_sha256"]}
    assert data_version(Path("data/processed"))["manifest_sha256"] != version["manifest_sha256"]


def test_channels_last_keeps_1x1x1_kernels_in_the_layout_their_gradients_come_in() -> None:
    from spineage.models.spine_age import SpineAgeNet
    from spineage.training.stage import to_channels_last

    net = to_channels_last(SpineAgeNet(input_shape=(8, 8, 16), channels=(2, 2, 4, 4, 4), head_channels=4))
    assert net.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    reduce = net.reduce[0].weight
    net(torch.rand(2, 1, 8, 8, 16).contiguous(memory_format=torch.channels_last_3d)).sum().backward()
    # DDP warns and copies every step when a parameter's strides differ from its gradient's.
    assert reduce.stride() == reduce.grad.stride()
