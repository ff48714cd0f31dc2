"""``spineage radiograph score``: every radiograph and VFA image of a raw cohort scored by the registered model.

The radiograph counterpart of :mod:`spineage.evaluation.external`: the images are
preprocessed as the training images were (:func:`spineage.radiograph.preprocess.build_radiograph_arrays`,
with the image shape the model reads), predicted by the registered ``spine-age-xray``
version, and corrected with the coefficients the radiograph evaluation stored on it;
nothing is fitted. Splits follow the derivation's rules: radiographs at or above
``derivation_min_age`` are ``test``, younger ones ``younger``, VFA images ``external``,
so :mod:`spineage.radiograph.outcomes` analyses a scored cohort as it does the default run.

Outputs in ``out``: ``processed/`` (arrays and manifest), ``preprocess/summary.json``,
``predictions.csv`` (the evaluation's columns) and ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.radiograph.evaluate import COLUMNS
from spineage.radiograph.settings import RadiographSettings
from spineage.radiograph.train import EXTERNAL, PREDICTIONS, RADIOGRAPH, TEST, VFA, YOUNGER, load_images, predict_xray_ages, read_radiograph_manifest


def scored_splits(manifest: pd.DataFrame, settings: RadiographSettings) -> pd.Series:
    """``test`` for radiographs of the derivation ages, ``younger`` below them, ``external`` for VFA images."""
    split = pd.Series(YOUNGER, index=manifest.index, dtype=object)
    split[(manifest["modality"] == RADIOGRAPH) & (manifest["age"] >= settings.derivation_min_age)] = TEST
    split[manifest["modality"] == VFA] = EXTERNAL
    return split


def score_radiographs(raw: str | Path, out: str | Path, model_uri: str, settings: RadiographSettings) -> dict[str, Any]:
    """Preprocess, predict and correct every radiograph and VFA image of ``raw`` (module docstring).

    Raises:
        UserError: for a bad input, an unregistered model, or one without a stored correction.
    """
    from spineage.evaluation.bias import apply_bias_correction
    from spineage.evaluation.external import load_registered_module
    from spineage.evaluation.stage import stored_bias_correction
    from spineage.radiograph.preprocess import build_radiograph_arrays

    started = time.perf_counter()
    out = Path(out)
    net, pinned = load_registered_module(model_uri)
    correction = stored_bias_correction(pinned)
    settings = replace(settings, image_shape=tuple(net.image_shape))  # the images the model reads
    build_radiograph_arrays(raw, out / "processed", out / "preprocess", settings)
    manifest = read_radiograph_manifest(out / "processed")
    manifest["split"] = scored_splits(manifest, settings).to_numpy()
    images = load_images(out / "processed", manifest, settings.image_shape)
    manifest["predicted_age"] = predict_xray_ages(net, images)
    manifest["corrected_age"] = apply_bias_correction(correction, manifest["predicted_age"].to_numpy(float), manifest["age"].to_numpy(float))
    manifest["age_difference"] = manifest["corrected_age"] - manifest["age"]
    write_atomic(out / PREDICTIONS, lambda p: manifest[list(COLUMNS)].to_csv(p, index=False, float_format="%.3f"))
    metrics = {
        "model_uri": pinned, "bias_correction": correction.as_dict(), "images": int(len(manifest)),
        "by_split": {name: int(n) for name, n in manifest["split"].value_counts().items()},
        "mae_raw": float(np.mean(np.abs(manifest["predicted_age"] - manifest["age"]))),
        "mae_corrected": float(np.mean(np.abs(manifest["age_difference"]))),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "metrics.json", metrics)
    return metrics
