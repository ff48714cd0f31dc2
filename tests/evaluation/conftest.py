"""Fixtures of the evaluation tests: a small fabricated set of the train stage's outputs and their inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SLOPE, INTERCEPT = 0.8, 10.0
"""The planted regression to the mean: predicted = 0.8 · age + 10 + noise (Cole's correction undoes it)."""

INPUT_SHAPE = (8, 12, 48)


def _bracket(age: float) -> int:
    return int(min(80, max(30, 10 * round(age / 10))))


@pytest.fixture()
def fabricated(tmp_path: Path) -> Path:
    """A folder holding reports/train, interim, raw, processed and models/spine-age as the pipeline would leave them.

    60 subjects: 30 train, 20 validation, 10 test (the first five scanned twice) and 10 abnormal,
    two of which look 20 years older than they are.
    """
    from spineage.atomic import write_json_atomic
    from spineage.models.spine_age import SpineAgeNet
    from spineage.training.checkpoint import save_checkpoint
    from spineage.training.settings import TrainingSettings

    rng = np.random.default_rng(3)
    rows = []
    splits = ["train"] * 30 + ["validation"] * 20 + ["test"] * 10 + ["full_test_abnormal"] * 10
    for number, split in enumerate(splits, start=1):
        age = float(rng.uniform(26, 80))
        sessions = 2 if split == "test" and number <= 55 else 1
        for session in range(1, sessions + 1):
            scan_age = age + (session - 1) * 1.5
            predicted = SLOPE * scan_age + INTERCEPT + rng.normal(0, 1.5)
            if split == "full_test_abnormal" and number > 68:
                predicted += 20.0
            rows.append({
                "series_id": f"mri-{number:05d}-{session}", "subject_id": f"sub-{number:05d}", "split": split,
                "age": round(scan_age, 2), "predicted_age": round(predicted, 3), "sex": "F" if number % 2 else "M",
                "bracket": _bracket(scan_age),
            })
    table = pd.DataFrame(rows)
    table["baseline_mean_age"] = table.loc[table.split == "train", "age"].mean()

    root = tmp_path / "pipeline"
    (root / "reports" / "train").mkdir(parents=True)
    table[["series_id", "split", "age", "predicted_age", "baseline_mean_age"]].to_csv(root / "reports" / "train" / "predictions.csv", index=False)
    (root / "interim").mkdir()
    table[["series_id", "subject_id", "age", "sex", "bracket", "split"]].to_csv(root / "interim" / "cohort.csv", index=False)
    findings = pd.DataFrame({
        "series_id": ["mri-00069-1", "mri-00069-1", "mri-00070-1", "mri-00001-1"],
        "level": ["L4", "", "C5", "L1"], "condition": ["disc_bulge", "spinal_stenosis", "extrusion", "fracture"],
        "severity": ["severe", "present", "moderate", "present"], "negated": [False, False, False, True], "source": "report",
    })
    findings.to_parquet(root / "interim" / "findings.parquet", index=False)
    (root / "raw").mkdir()
    bio = {s: float(a + (p - (SLOPE * a + INTERCEPT))) for s, a, p in zip(table.series_id, table.age, table.predicted_age)}
    (root / "raw" / "ground_truth.json").write_text(json.dumps({"series_bio_age": bio}))

    processed = root / "processed"
    processed.mkdir()
    for series_id in table.series_id:
        np.save(processed / f"{series_id}.npy", rng.random(INPUT_SHAPE).astype(np.float16))
    manifest = table[["series_id", "split", "age"]].assign(status="ok", file=table.series_id + ".npy", spacing="4x3x4")
    manifest.to_csv(processed / "manifest.csv", index=False)

    import torch

    settings = TrainingSettings(crop_shape=None, input_shape=INPUT_SHAPE, channels=(4, 4, 8, 8, 8), head_channels=4)
    torch.manual_seed(0)
    net = SpineAgeNet(input_shape=INPUT_SHAPE, channels=settings.channels, head_channels=settings.head_channels)
    model = root / "models" / "spine-age"
    save_checkpoint(model / "best.pt", {"model": net.state_dict(), "epoch": 0, "val_mae": 1.0})
    save_checkpoint(model / "checkpoint.pt", {"settings": settings.as_params(), "epoch": 0, "finished": True})
    write_json_atomic(root / "reports" / "train" / "metrics.json", {"model_uri": "models:/spine-age-mri/1", "run_id": "not-logged"})
    return root


def register_candidate(root: Path, store: str) -> tuple[str, str]:
    """A training run and a registered version spine-age-mri/1 in the MLflow ``store``; writes them into reports/train/metrics.json."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.create_experiment("spine-age-mri", artifact_location=(root / "mlartifacts").as_uri())
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("spine-age-mri")
    version = client.create_model_version("spine-age-mri", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    uri = f"models:/spine-age-mri/{version.version}"
    (root / "reports" / "train" / "metrics.json").write_text(json.dumps({"model_uri": uri, "run_id": run.info.run_id}))
    return run.info.run_id, uri
