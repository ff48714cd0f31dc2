"""``fit_on: train_cv`` on the fabricated train outputs, the fold trainings replaced by a stand-in that records them.

The stand-in "predicts" each held-out series with the planted regression to the mean
(predicted = 0.8 · age + 10), so Cole's correction fitted on the out-of-fold
predictions must find exactly that slope and intercept, on every train series.
The real trainings run in tests/training/test_bias_correction_cv.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from spineage.evaluation.settings import EvaluationSettings
from spineage.evaluation.stage import EvaluationInputs, evaluate_spine_age
from spineage.training.data import HELD_OUT
from tests.evaluation.conftest import INTERCEPT, SLOPE


@pytest.fixture()
def fold_trainings(monkeypatch) -> list[dict]:
    """Replace train_spine_age by a stand-in; returns the record of its calls."""
    import spineage.training.stage as training

    calls: list[dict] = []

    def stand_in(processed, settings, out_dir, reports_dir, *, progress=True, tracking, fold):
        calls.append({"settings": settings, "tracking": tracking, "train": set(fold.train), "held_out": set(fold.held_out)})
        manifest = pd.read_csv(Path(processed) / "manifest.csv", dtype={"series_id": str}).set_index("series_id")
        ages = manifest.loc[list(fold.held_out), "age"].to_numpy(float)
        rows = pd.DataFrame({"series_id": list(fold.held_out), "split": HELD_OUT, "age": ages, "predicted_age": SLOPE * ages + INTERCEPT})
        Path(reports_dir).mkdir(parents=True)
        rows.to_csv(Path(reports_dir) / "predictions.csv", index=False)
        return SimpleNamespace(run_id=f"run-{len(calls)}")

    monkeypatch.setattr(training, "train_spine_age", stand_in)
    return calls


def _inputs(root: Path) -> EvaluationInputs:
    return EvaluationInputs(root / "reports" / "train", root / "interim", root / "raw", root / "models" / "spine-age", root / "processed")


def test_train_cv_fits_on_every_train_series_out_of_fold(fabricated: Path, tmp_path: Path, fold_trainings: list[dict]) -> None:
    settings = EvaluationSettings(fit_on="train_cv", cv_folds=3, gradcam_cases=0)
    result = evaluate_spine_age(_inputs(fabricated), settings, tmp_path / "e", log_mlflow=False)

    train = set(pd.read_csv(fabricated / "reports" / "train" / "predictions.csv", dtype={"series_id": str}).query("split == 'train'").series_id)
    assert len(fold_trainings) == 3
    held_out = [call["held_out"] for call in fold_trainings]
    assert sorted(s for fold in held_out for s in fold) == sorted(train)  # every train series out of fold exactly once
    for call in fold_trainings:
        assert call["train"] == train - call["held_out"] and call["held_out"]
        assert call["tracking"].experiment == "bias-correction-cv" and call["tracking"].register is False
        assert call["settings"].channels == (4, 4, 8, 8, 8)  # the model's own settings (its checkpoint.pt)

    correction = result.metrics["bias_correction"]
    assert (correction["split"], correction["n"], correction["folds"]) == ("train_cv", len(train), 3)
    assert correction["slope"] == pytest.approx(SLOPE, abs=1e-6) and correction["intercept"] == pytest.approx(INTERCEPT, abs=1e-4)
    assert correction["cross_validation"]["run_ids"] == ["run-1", "run-2", "run-3"]
    assert correction["cross_validation"]["series_per_fold"] == [len(fold) for fold in held_out]
    assert json.loads((tmp_path / "e" / "bias_correction.json").read_text())["split"] == "train_cv"
    assert str(result).startswith(f"cole correction fitted by 3-fold cross-validation on train (train_cv, n {len(train)});")


def test_the_default_fits_on_validation_without_training(fabricated: Path, tmp_path: Path, fold_trainings: list[dict]) -> None:
    result = evaluate_spine_age(_inputs(fabricated), EvaluationSettings(gradcam_cases=0), tmp_path / "e", log_mlflow=False)
    assert fold_trainings == []
    assert result.metrics["bias_correction"]["split"] == "validation" and "folds" not in result.metrics["bias_correction"]
    assert str(result).startswith("cole correction; ")
