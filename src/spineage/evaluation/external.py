"""``spineage score``: a whole raw cohort scored by a registered spine-age model and its stored bias correction.

An external test set, as the MRI paper's full test set was: every MRI series of a raw
cohort the network never saw is preprocessed as the training arrays were (the
preprocess stage's code, with the segmenter named by ``preprocess.segmentation_model``),
fed to the registered network, and corrected with the coefficients the evaluate stage
stored on that model version — nothing is fitted here.

Outputs in ``out``:

* ``cohort.csv``: the scored series (split ``external``), the preprocess stage's input;
* ``processed/``: the arrays and their manifest (incremental, as the preprocess stage);
* ``predictions.csv``: series_id, subject_id, split, age, sex, predicted_age,
  corrected_age, sag, status, flags (the evaluate stage's columns where they overlap);
* ``metrics.json``: the model version, the correction, counts, MAE raw and corrected.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.errors import UserError

EXTERNAL_SPLIT = "external"
MATCHED_PREPROCESSING = ("shape", "target_spacing_mm", "dilation_mm", "region", "normalisation", "percentiles")
"""Preprocess settings a scored array must share with the model's training arrays."""


@dataclass(frozen=True)
class ScoringResult:
    """What ``spineage score`` did: counts and the MAE of the scored series."""

    metrics: dict[str, Any]

    def __str__(self) -> str:
        m = self.metrics
        return (
            f"{m['scored']} of {m['series']} MRI series scored by {m['model_uri']} "
            f"(MAE raw {m['mae_raw']:.2f}, corrected {m['mae_corrected']:.2f} y; {m['seconds']:.0f} s)"
        )


def external_cohort_table(raw: str | Path) -> pd.DataFrame:
    """Every MRI series of a raw cohort with subject, age and sex, split ``external``.

    Raises:
        UserError: for a missing table or column, or a series whose subject has no sex.
    """
    from spineage.raw_cohort import read_mri_series, read_participants

    sessions = read_mri_series(raw, ("series_id", "subject_id", "age"))
    sexes = read_participants(raw).set_index("subject_id")["sex"]
    table = sessions[["series_id", "subject_id", "age"]].copy()
    table["age"] = pd.to_numeric(table["age"], errors="coerce")
    if table["age"].isna().any():
        bad = sessions.loc[table["age"].isna(), "age"].iloc[0]
        raise UserError(f"Expected a numeric age for every MRI series in {Path(raw) / 'sessions.csv'}, found {bad!r}")
    table["sex"] = table["subject_id"].map(sexes)
    if table["sex"].isna().any():
        missing = table.loc[table["sex"].isna(), "subject_id"].iloc[0]
        raise UserError(f"Expected every MRI subject in participants.csv, found {missing!r} missing")
    table["split"] = EXTERNAL_SPLIT
    if table.empty:
        raise UserError(f"Expected MRI series in {Path(raw) / 'sessions.csv'}, found none")
    return table.reset_index(drop=True)


def load_registered_module(model_uri: str) -> tuple[Any, str]:
    """A registered torch network (on the CPU, eval mode) and its URI pinned to a version.

    Raises:
        UserError: for an unregistered URI or alias.
    """
    from spineage.registry.tracking import configure_mlflow, pinned_model_uri

    configure_mlflow()
    import mlflow
    import mlflow.pytorch

    pinned = pinned_model_uri(model_uri)
    try:
        net = mlflow.pytorch.load_model(pinned, map_location="cpu")
    except mlflow.exceptions.MlflowException as error:
        raise UserError(f"Expected a registered model at {model_uri}, found: {str(error).splitlines()[0]}") from None
    return net.eval(), pinned


def load_registered_network(model_uri: str) -> tuple[Any, str, tuple[int, int, int] | None]:
    """The registered spine-age network, its pinned URI, and the crop its training run read the arrays with.

    Raises:
        UserError: for an unregistered URI or alias.
    """
    import mlflow

    net, pinned = load_registered_module(model_uri)
    crop = None
    if pinned.startswith("models:/"):
        name, version = pinned[len("models:/"):].split("/", 1)
        client = mlflow.MlflowClient()
        run = client.get_run(client.get_model_version(name, version).run_id)
        text = run.data.params.get("crop_shape", "None")
        value = ast.literal_eval(text) if text not in ("", "None") else None
        crop = tuple(int(v) for v in value) if value else None
    return net, pinned, crop


def check_preprocessing(model_preprocessing: dict[str, Any], settings: Any) -> None:
    """Refuse preprocess settings that would make arrays unlike the ones the network was trained on.

    Raises:
        UserError: naming the first setting that differs.
    """
    for key in MATCHED_PREPROCESSING:
        if key not in model_preprocessing:
            continue
        trained, used = model_preprocessing[key], getattr(settings, key)
        same = (
            np.allclose(np.asarray(trained, float), np.asarray(used, float))
            if isinstance(trained, (list, tuple, int, float)) and not isinstance(trained, bool)
            else str(trained) == str(used)
        )
        if not same:
            raise UserError(f"Expected preprocess.{key} as the model was trained with ({trained!r}), found {used!r}")


def score_cohort(raw: str | Path, out: str | Path, model_uri: str, preprocess_settings: Any, *, workers: int | None = None) -> ScoringResult:
    """Preprocess every MRI series of ``raw``, predict with the registered model, correct with its stored correction.

    Args:
        raw: the raw cohort to score (sessions.csv, participants.csv, the images).
        out: folder for cohort.csv, processed/, predictions.csv and metrics.json.
        model_uri: a registered spine-age model (``models:/spine-age-mri@candidate``).
        preprocess_settings: the preprocess section (its segmenter masks the scans).
        workers: preprocessing processes (default: the settings').

    Raises:
        UserError: for a bad input, preprocessing unlike the model's, or a model without a stored correction.
    """
    from spineage.evaluation.bias import apply_bias_correction
    from spineage.evaluation.stage import stored_bias_correction
    from spineage.imaging.stage import build_processed
    from spineage.training.data import load_series, read_manifest
    from spineage.training.stage import predict_ages

    started = time.perf_counter()
    raw, out = Path(raw), Path(out)
    net, pinned, crop = load_registered_network(model_uri)
    check_preprocessing(getattr(net, "preprocessing", {}) or {}, preprocess_settings)
    correction = stored_bias_correction(pinned)
    table = external_cohort_table(raw)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "cohort.csv", lambda path: table.to_csv(path, index=False))
    summary = build_processed(raw, out / "cohort.csv", out / "processed", out / "preprocess", preprocess_settings, workers=workers)
    manifest = read_manifest(out / "processed")
    volumes = load_series(out / "processed", manifest, input_shape=tuple(net.input_shape), crop_shape=crop)
    predicted = predict_ages(net, volumes, batch_size=16, precision="float32")
    scored = pd.DataFrame({"series_id": volumes.series_ids, "predicted_age": predicted.astype(float)})
    scored = table.merge(scored, on="series_id", how="left")
    full_manifest = pd.read_csv(out / "processed" / "manifest.csv", dtype=str, keep_default_na=False).set_index("series_id")
    scored["status"] = scored["series_id"].map(full_manifest["status"])
    scored["flags"] = scored["series_id"].map(full_manifest["flags"]) if "flags" in full_manifest else ""
    scored["corrected_age"] = apply_bias_correction(correction, scored["predicted_age"].to_numpy(float), scored["age"].to_numpy(float))
    scored["sag"] = scored["corrected_age"] - scored["age"]
    columns = ["series_id", "subject_id", "split", "age", "sex", "predicted_age", "corrected_age", "sag", "status", "flags"]
    write_atomic(out / "predictions.csv", lambda path: scored[columns].to_csv(path, index=False, float_format="%.3f"))
    ok = scored["predicted_age"].notna()
    metrics = {
        "model_uri": pinned,
        "bias_correction": correction.as_dict(),
        "crop_shape": list(crop) if crop else None,
        "series": int(len(scored)),
        "subjects": int(scored["subject_id"].nunique()),
        "scored": int(ok.sum()),
        "preprocess": str(summary),
        "mae_raw": float(np.mean(np.abs(scored.loc[ok, "predicted_age"] - scored.loc[ok, "age"]))),
        "mae_corrected": float(np.mean(np.abs(scored.loc[ok, "corrected_age"] - scored.loc[ok, "age"]))),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "metrics.json", metrics)
    return ScoringResult(metrics)
