"""The radiograph model: subject-grouped derivation splits, a tiny training registered in MLflow, the correction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.radiograph.evaluate import evaluate_xray_model
from spineage.radiograph.settings import RadiographSettings
from spineage.radiograph.train import assign_radiograph_splits, read_radiograph_manifest, train_xray_model
from tests.mlflow_store import fresh_store

TINY = RadiographSettings(seed=3, image_shape=(64, 32), model="efficientnet-b0", batch_size=8, max_epochs=2, min_epochs=1,
                          age_bins=(20.0, 100.0, 2.0), augment_shift_pixels=2, threads=1)


def write_processed(folder: Path, n_subjects: int = 40, seed: int = 0) -> Path:
    """A preprocessed radiograph folder: a radiograph per subject (brighter with age), a VFA for the 65+."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_subjects):
        subject, age, sex = f"sub-{i:03d}", float(rng.uniform(30, 85)), "F" if i % 2 else "M"
        for modality in ["xray_lat"] + (["dxa_vfa"] if age >= 65 else []):
            series = f"{'xr' if modality == 'xray_lat' else 'vfa'}-{i:03d}"
            image = np.clip(rng.normal(age / 100, 0.05, TINY.image_shape), 0, 1).astype(np.float16)
            np.save(folder / f"{series}.npy", image)
            rows.append({"series_id": series, "subject_id": subject, "modality": modality, "age": round(age, 2), "sex": sex,
                         "status": "ok", "reason": "", "file": f"{series}.npy"})
    rows.append({"series_id": "xr-bad", "subject_id": "sub-bad", "modality": "xray_lat", "age": 50.0, "sex": "F",
                 "status": "failed", "reason": "unreadable", "file": ""})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_splits_are_by_subject_and_the_vfa_of_seen_subjects_is_never_external(tmp_path: Path) -> None:
    manifest = read_radiograph_manifest(write_processed(tmp_path / "processed"))
    assert "xr-bad" not in set(manifest.series_id)
    split = assign_radiograph_splits(manifest, TINY)
    by_subject = manifest.assign(split=split).groupby("subject_id")["split"].agg(set)
    derivation = {"train", "validation", "test"}
    assert all(len(s & derivation) <= 1 for s in by_subject)
    assert set(split[(manifest.modality == "xray_lat") & (manifest.age < 40)]) <= {"younger"}
    seen = set(manifest.subject_id[split.isin(["train", "validation"])])
    vfa = manifest.modality == "dxa_vfa"
    assert (split[vfa & manifest.subject_id.isin(seen)] == "external_seen").all()
    assert (split[vfa & ~manifest.subject_id.isin(seen)] == "external").all()
    counts = split[split.isin(derivation)].value_counts(normalize=True)
    assert counts["train"] == pytest.approx(0.6, abs=0.15)
    # same seed, same splits; shuffled rows do not change any image's split
    shuffled = manifest.sample(frac=1, random_state=1)
    again = assign_radiograph_splits(shuffled.reset_index(drop=True), TINY)
    assert dict(zip(shuffled.series_id, again)) == dict(zip(manifest.series_id, split))


def test_a_tiny_training_registers_a_candidate_and_the_correction_is_stored(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    store = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    processed = write_processed(tmp_path / "processed")
    metrics = train_xray_model(processed, TINY, tmp_path / "model", tmp_path / "train", progress=False)
    assert metrics["model_uri"] == "models:/spine-age-xray/1" and metrics["epochs"] == 2
    # both baselines beside the network: the images brighten with age, so the pixel ridge beats the mean age
    assert metrics["ridge_pixels_mae_test"] < metrics["baseline_mae_test"]
    assert (tmp_path / "model" / "best.pt").is_file()
    predictions = pd.read_csv(tmp_path / "train" / "predictions.csv")
    assert len(predictions) == len(read_radiograph_manifest(processed))
    assert predictions.predicted_age.between(20, 100).all()
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_model_version_by_alias("spine-age-xray", "candidate").version) == "1"

    result = evaluate_xray_model(tmp_path / "train", tmp_path / "evaluate", TINY)
    table = pd.read_csv(tmp_path / "evaluate" / "predictions.csv")
    assert list(table.columns) == ["series_id", "subject_id", "modality", "sex", "split", "age", "predicted_age", "corrected_age", "age_difference"]
    assert np.allclose(table.age_difference, table.corrected_age - table.age, atol=2e-3)
    # Beheshti on validation: the corrected difference has no linear trend with age there
    validation = table[table.split == "validation"]
    assert abs(np.polyfit(validation.age, validation.age_difference, 1)[0]) < 1e-3
    tags = client.get_model_version("spine-age-xray", "1").tags
    assert tags["data_manifest_sha256"] == metrics["data_version"]["manifest_sha256"]
    run_metrics = client.get_run(metrics["run_id"]).data.metrics
    assert run_metrics["eval_test_corrected_mae"] == pytest.approx(result["test"]["corrected"]["mae"])
    assert tags["bias_correction_method"] == "beheshti" and float(tags["bias_correction_slope"]) == pytest.approx(result["bias_correction"]["slope"])
    test = table[table.split == "test"]
    assert result["accelerated_threshold"] == pytest.approx(np.quantile(test.age_difference, 2 / 3), abs=2e-3)
    assert json.loads((tmp_path / "evaluate" / "metrics.json").read_text())["test"]["n"] == len(test)

    # an external cohort scored by the registered version and its stored correction, nothing refitted
    from spineage.evaluation.bias import BiasCorrection, apply_bias_correction
    from spineage.radiograph.score import score_radiographs
    from tests.radiograph.test_preprocess import write_radiograph_cohort

    raw = write_radiograph_cohort(tmp_path / "raw", xrays=12, vfas=3)
    scored = score_radiographs(raw, tmp_path / "scored", "models:/spine-age-xray@candidate", TINY)
    table = pd.read_csv(tmp_path / "scored" / "predictions.csv")
    assert scored["images"] == len(table) == 15 and scored["model_uri"] == "models:/spine-age-xray/1"
    assert set(table.split) <= {"test", "younger", "external"} and (table.split[table.modality == "dxa_vfa"] == "external").all()
    assert (table.split[(table.modality == "xray_lat") & (table.age < 40)] == "younger").all()
    stored = BiasCorrection.from_dict(result["bias_correction"])
    assert np.allclose(table.corrected_age, apply_bias_correction(stored, table.predicted_age.to_numpy(), table.age.to_numpy()), atol=2e-3)
    # the command finds the candidate in the configured store by itself (no --model)
    from typer.testing import CliRunner

    from spineage.cli import app

    outcome = CliRunner().invoke(app, ["radiograph", "score", "--raw", str(raw), "--out", str(tmp_path / "cli"),
                                       "--params", str(Path(__file__).parents[2] / "params.yaml")])
    assert outcome.exit_code == 0, outcome.output
    assert "models:/spine-age-xray/1" in outcome.output and (tmp_path / "cli" / "predictions.csv").is_file()


def test_too_few_derivation_subjects_is_a_user_error(tmp_path: Path) -> None:
    manifest = read_radiograph_manifest(write_processed(tmp_path / "processed", n_subjects=8))
    with pytest.raises(UserError, match="at least 10 subjects"):
        assign_radiograph_splits(manifest, TINY)
