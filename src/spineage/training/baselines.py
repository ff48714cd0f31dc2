"""Baselines beside the spine-age CNN: what a trivial and a simple model reach on the same splits.

A test MAE means little on its own: the CNN is worth its compute only by what it
adds over

* :func:`mean_age_baseline`: every series is given the train split's mean age
  (the MAE of knowing nothing about the scan);
* :func:`ridge_baseline`: ridge regression of age on the normalised intensity
  quartiles inside the vertebrae, discs and canal that the preprocess stage
  records in ``manifest.csv`` (marrow fat brightens the vertebrae and
  desiccation darkens the discs with age). Features are standardised on the
  train split (a missing value, e.g. a label map without canal labels, takes the
  train mean); the model is fitted on train, and its ``alpha`` is the one of
  :data:`RIDGE_ALPHAS` with the lowest validation MAE (the first on a tie).

Both use the splits the CNN uses (``train`` to fit, ``validation`` to choose,
the rest to report) and are deterministic.

Example:
    >>> table = pd.DataFrame({"split": ["train", "train", "validation", "test"], "age": [40.0, 60.0, 45.0, 70.0]})
    >>> baseline = mean_age_baseline(table)
    >>> baseline.predicted.tolist(), split_maes(baseline.predicted, table)
    ([50.0, 50.0, 50.0, 50.0], {'train_mae': 10.0, 'validation_mae': 5.0, 'test_mae': 20.0})
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from spineage.errors import UserError

MEAN_AGE, RIDGE_INTENSITY = "mean_age", "ridge_intensity"
"""Names of the baselines (keys of ``metrics.json``'s ``baselines`` block)."""

RIDGE_ALPHAS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
"""The ridge penalties tried on the validation split (on standardised features)."""

INTENSITY_FEATURE_PREFIXES: tuple[str, ...] = ("p25_", "median_", "p75_")
"""How the manifest names the structure intensities (``spineage.imaging.preprocess.INTENSITY_FEATURES``:
``median_vertebra``, ``p25_disc``, ...). Matched by name so that training does not import the imaging code."""

_TRAINING_SPLITS = ("train", "validation")
_NORMAL_SPLITS = (*_TRAINING_SPLITS, "test")
"""The normal cohort's splits, whose MAEs the CNN's metrics name ``<split>_mae`` (the others ``mae_<split>``)."""


@dataclass
class Baseline:
    """One baseline's predictions.

    Args:
        name: ``mean_age`` or ``ridge_intensity``.
        predicted: predicted age (years) of every row of the table it was fitted on, same index.
        settings: what was chosen or used (the ridge's ``alpha`` and ``features``).
    """

    name: str
    predicted: pd.Series
    settings: dict[str, Any] = field(default_factory=dict)


def intensity_feature_columns(columns: Iterable[str]) -> list[str]:
    """The structure-intensity columns among ``columns`` (a manifest's), in their order."""
    return [c for c in columns if str(c).startswith(INTENSITY_FEATURE_PREFIXES)]


def _split_rows(table: pd.DataFrame, split: str) -> np.ndarray:
    rows = (table["split"] == split).to_numpy()
    if not rows.any():
        raise UserError(f"Expected series in the {split} split to fit the baselines, found none")
    return rows


def mean_age_baseline(table: pd.DataFrame) -> Baseline:
    """Every series predicted at the train split's mean age.

    Args:
        table: one row per series with ``split`` and ``age``.

    Raises:
        UserError: if the train split is empty.
    """
    train = _split_rows(table, "train")
    mean = float(table["age"].to_numpy(float)[train].mean())
    return Baseline(MEAN_AGE, pd.Series(mean, index=table.index, dtype=float), {"train_mean_age": round(mean, 4)})


def ridge_baseline(table: pd.DataFrame, features: Sequence[str], alphas: Sequence[float] = RIDGE_ALPHAS) -> Baseline:
    """Ridge regression of age on ``features``: standardised on train, fitted on train, alpha chosen on validation.

    Args:
        table: one row per series with ``split``, ``age`` and the feature columns (numbers; NaN
            where missing).
        features: the feature columns; one without any value in the train split is left out.
        alphas: the penalties tried.

    Returns:
        The predictions of every row, with the chosen ``alpha`` and the ``features`` used.

    Raises:
        UserError: if the train or validation split is empty, or no feature has a value in train.
    """
    from sklearn.linear_model import Ridge

    train, validation = (_split_rows(table, split) for split in _TRAINING_SPLITS)
    values = table[list(features)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    used = [i for i in range(values.shape[1]) if np.isfinite(values[train, i]).any()]
    if not used:
        raise UserError(f"Expected values of at least one of {list(features)} in the train split, found none")
    values = values[:, used]
    centre = np.nanmean(np.where(np.isfinite(values[train]), values[train], np.nan), axis=0)
    values = np.where(np.isfinite(values), values, centre)  # a missing value adds nothing after centring
    scale = values[train].std(axis=0)
    standardised = (values - centre) / np.where(scale > 0, scale, 1.0)
    ages = table["age"].to_numpy(float)
    best: tuple[float, float, Any] | None = None
    for alpha in alphas:
        model = Ridge(alpha=float(alpha)).fit(standardised[train], ages[train])
        mae = float(np.mean(np.abs(model.predict(standardised[validation]) - ages[validation])))
        if best is None or mae < best[0]:
            best = (mae, float(alpha), model)
    assert best is not None
    _, alpha, model = best
    predicted = pd.Series(model.predict(standardised), index=table.index, dtype=float)
    return Baseline(RIDGE_INTENSITY, predicted, {"alpha": alpha, "features": [features[i] for i in used]})


def split_maes(predicted: pd.Series | np.ndarray, table: pd.DataFrame, splits: Iterable[str] | None = None) -> dict[str, float]:
    """MAE (years) of ``predicted`` against ``table.age`` per split, named as the CNN's in ``metrics.json``.

    ``train_mae``, ``validation_mae`` and ``test_mae`` for the normal cohort's splits,
    ``mae_<split>`` for the others (``mae_full_test_abnormal``); splits without series are left out.

    Args:
        predicted: one age per row of ``table``.
        table: ``split`` and ``age`` per series.
        splits: the splits to report (default: all of ``table``'s, train, validation and test first).
    """
    errors = np.abs(np.asarray(predicted, float) - table["age"].to_numpy(float))
    names = table["split"].to_numpy()
    if splits is None:
        present = list(pd.unique(names))
        splits = [s for s in _NORMAL_SPLITS if s in present] + [s for s in present if s not in _NORMAL_SPLITS]
    maes = {}
    for split in splits:
        rows = names == split
        if rows.any():
            key = f"{split}_mae" if split in _NORMAL_SPLITS else f"mae_{split}"
            maes[key] = float(errors[rows].mean())
    return maes


def fit_baselines(table: pd.DataFrame) -> dict[str, Baseline]:
    """The mean-age baseline, and the ridge baseline when ``table`` holds intensity features.

    Args:
        table: the usable manifest rows (``split``, ``age`` and the manifest's feature columns).
    """
    baselines = {MEAN_AGE: mean_age_baseline(table)}
    features = intensity_feature_columns(table.columns)
    if features and table.loc[table["split"] == "train", features].notna().any().any():
        baselines[RIDGE_INTENSITY] = ridge_baseline(table, features)
    return baselines
