"""Out-of-fold spine ages of the train split: what ``evaluate.fit_on: train_cv`` fits the bias correction on.

The radiograph paper fits Beheshti's correction by 10-fold cross-validation on the
training set rather than on a held-back split. Here the train series the candidate
was trained on are dealt into ``cv_folds`` folds of whole subjects
(:func:`spineage.training.data.subject_folds`); for each fold the same network, with
the candidate's own training settings, is trained again on the other folds (the
validation split still deciding the learning rate and early stopping) and predicts
the fold it never saw. Every train series is so predicted exactly once by a network
that did not train on it: ``cv_folds`` extra trainings, a job for a GPU machine.

Each fold's training is an MLflow run of the experiment :data:`CV_EXPERIMENT`, never
registered; its checkpoints are thrown away.

Example:
    >>> from spineage.training.settings import TrainingSettings
    >>> train = pd.DataFrame({"series_id": ["a-1", "b-1"], "subject_id": ["a", "b"]})
    >>> out_of_fold = out_of_fold_spine_ages(Path("data/processed"), train, TrainingSettings(), 10)  # doctest: +SKIP
    >>> out_of_fold.predictions.columns.tolist()  # doctest: +SKIP
    ['series_id', 'fold', 'age', 'predicted_age']
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.errors import UserError
from spineage.training.data import HELD_OUT, TrainFold, subject_folds
from spineage.training.settings import TrainingSettings

CV_EXPERIMENT = "bias-correction-cv"
"""The MLflow experiment of the cross-validation trainings (never registered)."""


@dataclass
class OutOfFold:
    """Out-of-fold predictions of the train split.

    Args:
        predictions: one row per train series: ``series_id``, ``fold`` (0-based), ``age``, ``predicted_age``.
        folds: the number of folds.
        run_ids: the MLflow run of each fold's training, in fold order.
    """

    predictions: pd.DataFrame
    folds: int
    run_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Plain values for metrics.json: folds, series and subjects per fold, the out-of-fold MAE, the runs."""
        rows = self.predictions
        by_fold = rows.groupby("fold")
        return {
            "folds": self.folds,
            "n": len(rows),
            "series_per_fold": [int(by_fold.size().get(f, 0)) for f in range(self.folds)],
            "out_of_fold_mae": float(np.mean(np.abs(rows["predicted_age"] - rows["age"]))),
            "experiment": CV_EXPERIMENT,
            "run_ids": list(self.run_ids),
        }


def out_of_fold_spine_ages(
    processed: Path, train: pd.DataFrame, settings: TrainingSettings, folds: int, *, run_name: str = "bias-correction-cv",
    progress: bool = True,
) -> OutOfFold:
    """Train the network ``folds`` times, each on all folds but one, and predict the one left out.

    Args:
        processed: the preprocess stage's folder (arrays and manifest.csv).
        train: the train series the candidate trained on, with ``series_id`` and ``subject_id``.
        settings: the candidate's training settings (its seed deals the folds); its
            ``train_fraction`` is not applied again: ``train`` is already the series it kept.
        folds: the number of folds (``evaluate.cv_folds``).
        run_name: the MLflow runs' name stem (``<run_name>-fold<i>of<k>``).
        progress: progress bars.

    Returns:
        The :class:`OutOfFold` predictions, one per series of ``train``.

    Raises:
        UserError: for fewer subjects than folds, or a series the arrays do not hold.
    """
    from tqdm import tqdm

    from spineage.training.stage import RunTracking, train_spine_age

    series = train["series_id"].astype(str).tolist()
    fold_of = subject_folds(series, dict(zip(series, train["subject_id"].astype(str))), folds, settings.seed)
    settings = settings.with_overrides(train_fraction=1.0)
    frames, run_ids = [], []
    with tempfile.TemporaryDirectory(prefix="spineage-train-cv-") as scratch:
        for fold in tqdm(range(folds), desc="bias-correction folds", unit="fold", disable=not progress, file=sys.stderr):
            held_out = tuple(s for s in series if fold_of[s] == fold)
            kept = tuple(s for s in series if fold_of[s] != fold)
            folder = Path(scratch) / f"fold-{fold + 1}"
            result = train_spine_age(
                processed, settings, folder / "model", folder / "reports", progress=progress,
                tracking=RunTracking(experiment=CV_EXPERIMENT, register=False, run_name=f"{run_name}-fold{fold + 1}of{folds}"),
                fold=TrainFold(train=kept, held_out=held_out),
            )
            predicted = pd.read_csv(folder / "reports" / "predictions.csv", dtype={"series_id": str, "split": str})
            predicted = predicted[predicted["split"] == HELD_OUT]
            absent = sorted(set(held_out) - set(predicted["series_id"]))
            if absent:
                raise UserError(
                    f"Expected arrays of every train series in {Path(processed) / 'manifest.csv'} for the bias-correction "
                    f"cross-validation, found {len(absent)} missing (e.g. {absent[:3]})"
                )
            frames.append(predicted[["series_id", "age", "predicted_age"]].assign(fold=fold))
            if result is not None:
                run_ids.append(result.run_id)
    predictions = pd.concat(frames, ignore_index=True)[["series_id", "fold", "age", "predicted_age"]]
    return OutOfFold(predictions.sort_values("series_id").reset_index(drop=True), folds, run_ids)
