"""``spineage radiograph evaluate``: bias correction and the per-image table of the radiograph branch.

As the radiograph paper: Beheshti's correction (the age difference regressed on age;
``radiograph.bias_correction``) is fitted on the derivation validation split and applied
to every image, including the external VFA set; it is logged to the training run and
stored as tags of the registered version (what inference applies,
:func:`spineage.evaluation.stage.stored_bias_correction`).

Writes ``predictions.csv`` (one row per image: series_id, subject_id, modality, split, age,
predicted_age, corrected_age, age_difference = corrected - age), and ``metrics.json``: MAE,
r and the mean difference raw and corrected per scored split beside the mean-age
baseline, the correction, and the threshold of an *accelerated* spine age (the
``accelerated_quantile`` of the derivation test set's age difference: the top tertile).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.radiograph.settings import RadiographSettings
from spineage.radiograph.train import METRICS, PREDICTIONS, SCORED_SPLITS, TEST, VALIDATION

COLUMNS: tuple[str, ...] = ("series_id", "subject_id", "modality", "sex", "split", "age", "predicted_age", "corrected_age", "age_difference")


def _figures(rows: pd.DataFrame, baseline: float) -> dict[str, Any]:
    ridge = rows["baseline_ridge_pixels"] if "baseline_ridge_pixels" in rows else None
    raw, corrected = rows["predicted_age"] - rows["age"], rows["age_difference"]
    r = lambda a, b: float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and np.std(a) > 0 and np.std(b) > 0 else None  # noqa: E731
    return {
        "n": int(len(rows)),
        "raw": {"mae": float(raw.abs().mean()), "mean_difference": float(raw.mean()), "r": r(rows["predicted_age"], rows["age"])},
        "corrected": {"mae": float(corrected.abs().mean()), "mean_difference": float(corrected.mean()), "r": r(rows["corrected_age"], rows["age"])},
        "baseline_mean_age_mae": float((baseline - rows["age"]).abs().mean()),
        "baseline_ridge_pixels_mae": float((ridge - rows["age"]).abs().mean()) if ridge is not None else None,
    }


def evaluate_xray_model(train_reports: str | Path, reports: str | Path, settings: RadiographSettings, *, log_mlflow: bool = True) -> dict[str, Any]:
    """Correct the radiograph spine ages, write the per-image table and the metrics, store the correction with the model.

    Raises:
        UserError: for missing training outputs, or a validation split too small to fit the correction.
    """
    from spineage.evaluation.bias import apply_bias_correction, fit_bias_correction

    train_reports, reports = Path(train_reports), Path(reports)
    path = train_reports / PREDICTIONS
    if not path.is_file():
        raise UserError(f"Expected the radiograph training's predictions at {path} (run `spineage radiograph train` first), found no such file")
    predictions = pd.read_csv(path, dtype={"series_id": str, "subject_id": str, "split": str, "modality": str, "sex": str})
    train_metrics = json.loads((train_reports / METRICS).read_text()) if (train_reports / METRICS).is_file() else {}
    validation = predictions[predictions["split"] == VALIDATION]
    correction = fit_bias_correction(settings.bias_correction, validation["predicted_age"].to_numpy(), validation["age"].to_numpy(), VALIDATION)
    predictions["corrected_age"] = apply_bias_correction(correction, predictions["predicted_age"].to_numpy(), predictions["age"].to_numpy())
    predictions["age_difference"] = predictions["corrected_age"] - predictions["age"]
    test = predictions[predictions["split"] == TEST]
    if len(test) < 3:
        raise UserError(f"Expected at least 3 derivation test images to set the accelerated threshold, found {len(test)}")
    threshold = float(np.quantile(test["age_difference"], settings.accelerated_quantile))
    baseline = float(train_metrics.get("baseline_mean_age", predictions.loc[predictions["split"] == "train", "age"].mean()))
    metrics: dict[str, Any] = {
        "bias_correction": correction.as_dict(),
        "accelerated_threshold": threshold,
        "accelerated_quantile": settings.accelerated_quantile,
        "model_uri": train_metrics.get("model_uri", ""),
        "run_id": train_metrics.get("run_id", ""),
        **{name: _figures(predictions[predictions["split"] == name], baseline) for name in SCORED_SPLITS if (predictions["split"] == name).any()},
    }
    reports.mkdir(parents=True, exist_ok=True)
    write_atomic(reports / PREDICTIONS, lambda p: predictions[list(COLUMNS)].to_csv(p, index=False, float_format="%.3f"))
    if log_mlflow and metrics["run_id"] and metrics["model_uri"]:
        from spineage.evaluation.stage import log_to_candidate

        # as eval_test_raw_mae, eval_test_corrected_mae, ... (what the promotion gate reads)
        log_to_candidate(metrics["run_id"], metrics["model_uri"], {TEST: metrics.get(TEST, {})}, correction.as_tags())
    write_json_atomic(reports / METRICS, metrics)
    return metrics
