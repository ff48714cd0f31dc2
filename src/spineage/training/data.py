"""The preprocessed MRI arrays as training data: one split's volumes in memory, light augmentation.

The preprocess stage writes one float16 array per series and ``manifest.csv``
(series id, split, age, status, file). :func:`load_splits` reads the usable
series of each split once, resized to the network's input shape when that
differs. :class:`AugmentedVolumes` hands them to a ``DataLoader``; its random
draws depend only on (seed, epoch, series), so a resumed run sees exactly the
batches an uninterrupted one would.

Example:
    >>> volumes = SeriesVolumes(["a"], np.array([40.0], np.float32), np.zeros((1, 4, 4, 8), np.float16))
    >>> len(volumes), volumes.shape
    (1, (4, 4, 8))
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from spineage.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

USABLE_STATUSES: tuple[str, ...] = ("ok", "flagged")
"""Manifest statuses whose arrays the model may read (flagged scans were kept by the preprocess settings)."""

TRAINING_SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The normal cohort's splits: fitted on, early-stopped on, reported on."""

HELD_OUT = "held_out"
"""The split a cross-validation fold's held-out train series are loaded and predicted as (:class:`TrainFold`)."""


@dataclass
class SeriesVolumes:
    """The volumes of some series, in memory.

    Args:
        series_ids: one id per volume.
        ages: chronological age at the scan (years), float32.
        volumes: (series, X, Y, Z) float16 arrays.
    """

    series_ids: list[str]
    ages: np.ndarray
    volumes: np.ndarray

    def __len__(self) -> int:
        return len(self.series_ids)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels (X, Y, Z) of each volume."""
        return tuple(int(s) for s in self.volumes.shape[1:])


def read_manifest(processed_dir: str | Path) -> pd.DataFrame:
    """The preprocess manifest's usable rows (status ok or flagged).

    Raises:
        UserError: if the manifest is missing or lacks a column the training needs.
    """
    path = Path(processed_dir) / "manifest.csv"
    if not path.is_file():
        raise UserError(f"Expected the preprocess manifest at {path}, found nothing there (run spineage preprocess first)")
    manifest = pd.read_csv(path, dtype={"series_id": str, "split": str, "file": str, "status": str})
    missing = sorted({"series_id", "split", "age", "status", "file"} - set(manifest.columns))
    if missing:
        raise UserError(f"Expected columns series_id, split, age, status, file in {path}, found {missing} missing")
    return manifest[manifest.status.isin(USABLE_STATUSES)].reset_index(drop=True)


def manifest_hash(processed_dir: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of the preprocess manifest: the input data's version without DVC."""
    return hashlib.sha256((Path(processed_dir) / "manifest.csv").read_bytes()).hexdigest()[:16]


def resize_volume(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A float16 volume resized to ``shape`` (area averaging when shrinking, trilinear when growing)."""
    import torch
    import torch.nn.functional as F

    if tuple(volume.shape) == tuple(shape):
        return volume
    tensor = torch.from_numpy(np.asarray(volume, dtype=np.float32))[None, None]
    shrinking = all(new <= old for new, old in zip(shape, volume.shape))
    mode = "area" if shrinking else "trilinear"
    resized = F.interpolate(tensor, size=tuple(shape), mode=mode, **({} if shrinking else {"align_corners": False}))
    return resized[0, 0].numpy().astype(np.float16)


def centre_crop(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The central ``shape`` voxels of ``volume`` (a side larger than the volume's is kept whole)."""
    starts = [max(0, (side - want) // 2) for side, want in zip(volume.shape, shape)]
    return volume[tuple(slice(start, start + min(want, side)) for start, want, side in zip(starts, shape, volume.shape))]


def fit_to_network(
    volume: np.ndarray, crop_shape: tuple[int, int, int] | None = None, input_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """A preprocessed array as the network reads it: its centre cropped to ``crop_shape``, then resized to ``input_shape``.

    Cropping keeps the voxel size (the spine is narrow left-right, so the outer sagittal
    slices are mostly masked out); resizing averages voxels. Either may be None (skipped).
    """
    if crop_shape is not None:
        volume = centre_crop(volume, crop_shape)
    if input_shape is not None:
        volume = resize_volume(volume, input_shape)
    return volume


def load_series(
    processed_dir: str | Path, rows: pd.DataFrame, input_shape: tuple[int, int, int] | None = None,
    crop_shape: tuple[int, int, int] | None = None,
) -> SeriesVolumes:
    """Read the arrays of ``rows`` (manifest rows), fitted to the network by :func:`fit_to_network`.

    Raises:
        UserError: if an array is missing, unreadable, not 3D, or of another shape than the first.
    """
    processed_dir = Path(processed_dir)
    volumes, shape = [], None
    for row in rows.itertuples(index=False):
        path = processed_dir / str(row.file)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UserError(f"Expected a readable array for {row.series_id} at {path}, found an error: {error}") from None
        if array.ndim != 3:
            raise UserError(f"Expected a 3D array for {row.series_id} at {path}, found shape {array.shape}")
        array = fit_to_network(array, crop_shape, input_shape)
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise UserError(f"Expected every preprocessed array to have shape {shape}, found {array.shape} for {row.series_id}")
        volumes.append(array.astype(np.float16, copy=False))
    stacked = np.stack(volumes) if volumes else np.zeros((0, *(input_shape or (1, 1, 1))), np.float16)
    return SeriesVolumes(list(rows.series_id.astype(str)), rows.age.to_numpy(np.float32), stacked)


MIN_TRAIN_SERIES = 2
"""Fewest series a train subsample keeps: batch normalisation needs two per batch."""


def series_subjects(raw: str | Path) -> dict[str, str]:
    """The subject of each series, from the raw cohort's ``sessions.csv``.

    Raises:
        UserError: if sessions.csv is missing or lacks ``subject_id``.
    """
    from spineage.raw_cohort import read_sessions

    sessions = read_sessions(raw, ("series_id", "subject_id"))
    return dict(zip(sessions["series_id"].astype(str), sessions["subject_id"].astype(str)))


def _series_by_subject(train_series: Sequence[str], subjects: Mapping[str, str]) -> dict[str, list[str]]:
    """The train series of each subject, in the order given.

    Raises:
        UserError: for a train series without a subject.
    """
    missing = [s for s in train_series if s not in subjects]
    if missing:
        raise UserError(f"Expected a subject for every train series, found {len(missing)} without (e.g. {missing[:3]})")
    by_subject: dict[str, list[str]] = {}
    for series_id in train_series:
        by_subject.setdefault(str(subjects[series_id]), []).append(series_id)
    return by_subject


def train_subsample(train_series: list[str], subjects: dict[str, str], fraction: float, seed: int) -> list[str]:
    """The train series kept by ``train.train_fraction``: whole subjects in a seeded order until the share is reached.

    Subjects are shuffled by ``seed`` and taken whole (a subject's repeat scans stay
    together) until at least ``ceil(fraction × series)`` series, and never fewer than
    :data:`MIN_TRAIN_SERIES`, are kept. The same seed keeps the same subjects, and a
    smaller fraction keeps a subset of a larger one's.

    Args:
        train_series: the train split's series ids.
        subjects: the subject of each series (:func:`series_subjects`).
        fraction: share of the series to keep, in (0, 1]; 1 keeps all.
        seed: the run's seed.

    Returns:
        The kept series ids, in the order given.

    Raises:
        UserError: for a train series without a subject.

    Example:
        >>> series = ["a-1", "a-2", "b-1", "c-1", "d-1"]
        >>> subjects = {"a-1": "a", "a-2": "a", "b-1": "b", "c-1": "c", "d-1": "d"}
        >>> len(train_subsample(series, subjects, 1.0, seed=1))
        5
        >>> kept = train_subsample(series, subjects, 0.4, seed=1)
        >>> len(kept) >= 2 and (("a-1" in kept) == ("a-2" in kept))
        True
    """
    if fraction >= 1.0:
        return list(train_series)
    by_subject = _series_by_subject(train_series, subjects)
    order = sorted(by_subject)
    rng = np.random.default_rng([int(seed), 20251121])
    target = max(MIN_TRAIN_SERIES, int(np.ceil(fraction * len(train_series))))
    kept: set[str] = set()
    for index in rng.permutation(len(order)):
        if len(kept) >= target:
            break
        kept.update(by_subject[order[index]])
    return [s for s in train_series if s in kept]


@dataclass(frozen=True)
class TrainFold:
    """One fold of a cross-validation on the train split: the network trains on ``train`` and predicts ``held_out``.

    The held-out series are loaded as the split :data:`HELD_OUT` (:func:`load_splits`), so
    the train stage predicts them with the kept weights like every other split; the
    validation split still decides the learning rate and early stopping.

    Args:
        train: the train series trained on.
        held_out: the train series left out and predicted.
    """

    train: tuple[str, ...]
    held_out: tuple[str, ...]


def subject_folds(train_series: Sequence[str], subjects: Mapping[str, str], folds: int, seed: int) -> dict[str, int]:
    """The cross-validation fold (0 to ``folds`` − 1) of each train series: whole subjects, dealt by the seed.

    Subjects are sorted, shuffled by ``seed`` and dealt one by one to the fold holding the
    fewest series so far (the lowest-numbered on a tie), so a subject's repeat scans share
    a fold, the folds differ by at most one subject's series, and the folds depend on the
    seed and the set of series, not on the order they come in.

    Args:
        train_series: the train split's series ids.
        subjects: the subject of each series.
        folds: the number of folds (``evaluate.cv_folds``).
        seed: the run's seed.

    Returns:
        The fold of every series of ``train_series``.

    Raises:
        UserError: for a series without a subject, or fewer subjects than folds.

    Example:
        >>> subjects = {"a-1": "a", "a-2": "a", "b-1": "b", "c-1": "c", "d-1": "d"}
        >>> fold = subject_folds(list(subjects), subjects, 2, seed=1)
        >>> fold["a-1"] == fold["a-2"], sorted(set(fold.values()))
        (True, [0, 1])
    """
    by_subject = _series_by_subject(sorted({str(s) for s in train_series}), subjects)
    if len(by_subject) < folds:
        raise UserError(f"Expected at least {folds} train subjects for {folds} cross-validation folds (evaluate.cv_folds), found {len(by_subject)}")
    order = sorted(by_subject)
    rng = np.random.default_rng([int(seed), 20251122])
    sizes = [0] * folds
    fold_of: dict[str, int] = {}
    for index in rng.permutation(len(order)):
        members = by_subject[order[index]]
        fold = min(range(folds), key=lambda f: (sizes[f], f))
        sizes[fold] += len(members)
        fold_of.update((series_id, fold) for series_id in members)
    return fold_of


def load_splits(
    processed_dir: str | Path, input_shape: tuple[int, int, int] | None = None, crop_shape: tuple[int, int, int] | None = None,
    train_series: list[str] | None = None, held_out: Sequence[str] = (),
) -> dict[str, SeriesVolumes]:
    """Every usable series of the manifest, grouped by split (train, validation, test, and the others), fitted to the network.

    Args:
        processed_dir: the preprocess stage's folder.
        input_shape: see :func:`fit_to_network`.
        crop_shape: see :func:`fit_to_network`.
        train_series: the train series to load (e.g. :func:`train_subsample`); None for all.
            The others are left out, not moved to another split.
        held_out: train series loaded as the split :data:`HELD_OUT` instead (a cross-validation
            fold: predicted, never trained on); they must not be among ``train_series``.

    Raises:
        UserError: if the training or validation split is empty.
    """
    manifest = read_manifest(processed_dir)
    if held_out:
        held = set(held_out)
        if train_series is not None and held & set(train_series):
            raise ValueError(f"a held-out series is also a train series: {sorted(held & set(train_series))[:3]}")
        moved = (manifest["split"] == "train") & manifest["series_id"].astype(str).isin(held)
        manifest = manifest.assign(split=manifest["split"].where(~moved, HELD_OUT))
    if train_series is not None:
        keep = set(train_series)
        manifest = manifest[(manifest["split"] != "train") | manifest["series_id"].astype(str).isin(keep)].reset_index(drop=True)
    splits = {name: load_series(processed_dir, rows, input_shape, crop_shape) for name, rows in manifest.groupby("split", sort=False)}
    for name in ("train", "validation"):
        if name not in splits or len(splits[name]) == 0:
            raise UserError(f"Expected series in the {name} split of {Path(processed_dir) / 'manifest.csv'}, found none")
    return splits


def shift_volume(volume: np.ndarray, shift: tuple[int, int, int]) -> np.ndarray:
    """``volume`` moved by whole voxels along each axis, zeros filling in (no wrap-around)."""
    out = np.zeros_like(volume)
    source, target = [], []
    for offset, size in zip(shift, volume.shape):
        offset = int(np.clip(offset, -size, size))
        source.append(slice(max(0, -offset), size - max(0, offset)))
        target.append(slice(max(0, offset), size - max(0, -offset)))
    out[tuple(target)] = volume[tuple(source)]
    return out


class AugmentedVolumes:
    """A map-style dataset of (volume, age) with light augmentation for training.

    Per series and epoch: a random shift of up to ``shift_voxels`` per axis,
    a random intensity scale and offset inside the mask of up to ``intensity``,
    and a random left-right flip. Draws come from ``(seed, epoch, index)``.

    Args:
        volumes: the series.
        seed: the run's seed.
        augment: False for evaluation (volumes as they are).
        shift_voxels: largest shift per axis.
        intensity: largest relative intensity scale and offset.
        flip: random left-right flips.
    """

    def __init__(
        self, volumes: SeriesVolumes, seed: int = 0, augment: bool = True,
        shift_voxels: int = 2, intensity: float = 0.05, flip: bool = True,
    ) -> None:
        self.volumes = volumes
        self.seed = int(seed)
        self.augment = augment
        self.shift_voxels = int(shift_voxels)
        self.intensity = float(intensity)
        self.flip = flip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's augmentation (call before iterating, like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        volume = self.volumes.volumes[index].astype(np.float32)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            if self.shift_voxels:
                volume = shift_volume(volume, tuple(rng.integers(-self.shift_voxels, self.shift_voxels + 1, size=3)))
            if self.intensity:
                scale, offset = rng.uniform(-self.intensity, self.intensity, size=2)
                inside = volume != 0
                volume = np.where(inside, volume * (1.0 + scale) + offset, 0.0).astype(np.float32)
            if self.flip and rng.random() < 0.5:
                volume = np.ascontiguousarray(volume[::-1])
        return torch.from_numpy(volume)[None], torch.tensor(self.volumes.ages[index])
