"""Training data: reading the manifest's arrays, resizing, shifting, and augmentation that a resume repeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.training.data import (
    AugmentedVolumes,
    SeriesVolumes,
    load_splits,
    resize_volume,
    shift_volume,
)


def write_processed(folder: Path, splits: dict[str, int], shape=(4, 6, 8)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows, rng = [], np.random.default_rng(0)
    for split, count in splits.items():
        for i in range(count):
            series = f"mri-{split}-{i}"
            np.save(folder / f"{series}.npy", rng.uniform(0, 1, shape).astype(np.float16))
            rows.append({"series_id": series, "split": split, "age": 30.0 + i, "status": "ok", "file": f"{series}.npy"})
    rows.append({"series_id": "mri-gone", "split": "train", "age": 50.0, "status": "excluded", "file": ""})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_usable_series_are_read_per_split_and_resized(tmp_path: Path) -> None:
    splits = load_splits(write_processed(tmp_path, {"train": 3, "validation": 2, "test": 1}), (2, 3, 4))
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "validation": 2, "test": 1}
    assert splits["train"].shape == (2, 3, 4) and splits["train"].volumes.dtype == np.float16
    assert splits["train"].ages.tolist() == [30.0, 31.0, 32.0]


def test_an_empty_validation_split_or_a_bad_array_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="series in the validation split"):
        load_splits(write_processed(tmp_path / "a", {"train": 2}))
    folder = write_processed(tmp_path / "b", {"train": 2, "validation": 1})
    (folder / "mri-train-1.npy").write_bytes(b"not an array")
    with pytest.raises(UserError, match="readable array for mri-train-1"):
        load_splits(folder)
    np.save(folder / "mri-train-1.npy", np.zeros((4, 6, 9), np.float16))
    with pytest.raises(UserError, match="shape"):
        load_splits(folder)


def test_area_resizing_keeps_the_mean_and_shifting_fills_with_zeros() -> None:
    volume = np.arange(4 * 4 * 8, dtype=np.float16).reshape(4, 4, 8)
    assert resize_volume(volume, (2, 2, 4)).astype(np.float64).mean() == pytest.approx(volume.astype(np.float64).mean(), rel=1e-3)
    shifted = shift_volume(np.ones((3, 3, 3), np.float32), (1, 0, -2))
    assert shifted[0].sum() == 0 and shifted[:, :, 1:].sum() == 0 and shifted.sum() == 2 * 3 * 1


def test_augmentation_depends_only_on_seed_epoch_and_series() -> None:
    volumes = SeriesVolumes(["a", "b"], np.array([40.0, 60.0], np.float32), np.random.default_rng(1).uniform(0.1, 1, (2, 4, 6, 8)).astype(np.float16))
    first, second = AugmentedVolumes(volumes, seed=5), AugmentedVolumes(volumes, seed=5)
    first.set_epoch(3)
    second.set_epoch(3)
    assert np.array_equal(first[1][0].numpy(), second[1][0].numpy())
    second.set_epoch(4)
    assert not np.array_equal(first[1][0].numpy(), second[1][0].numpy())
    plain = AugmentedVolumes(volumes, augment=False)
    image, age = plain[0]
    assert image.shape == (1, 4, 6, 8) and float(age) == 40.0
    assert np.array_equal(image[0].numpy(), volumes.volumes[0].astype(np.float32))


def test_fitting_to_the_network_crops_the_centre_then_resizes(tmp_path: Path) -> None:
    from spineage.training.data import fit_to_network

    volume = np.zeros((8, 4, 4), np.float16)
    volume[2:6] = 1.0  # the spine in the central sagittal slices, masked zeros beside it
    cropped = fit_to_network(volume, crop_shape=(4, 4, 4))
    assert cropped.shape == (4, 4, 4) and float(cropped.min()) == 1.0
    both = fit_to_network(volume, crop_shape=(4, 99, 99), input_shape=(4, 2, 2))
    assert both.shape == (4, 2, 2) and float(both.min()) == 1.0
    assert fit_to_network(volume, input_shape=(4, 4, 4)).astype(np.float32).mean() == pytest.approx(0.5)
    splits = load_splits(write_processed(tmp_path, {"train": 1, "validation": 1}), (2, 3, 4), crop_shape=(2, 6, 8))
    assert splits["validation"].shape == (2, 3, 4)


def _train_series(subjects: int, repeats_every: int = 3) -> tuple[list[str], dict[str, str]]:
    series, owner = [], {}
    for number in range(subjects):
        for session in range(1, 3 if number % repeats_every == 0 else 2):
            series_id = f"mri-{number:05d}-{session}"
            series.append(series_id)
            owner[series_id] = f"sub-{number:05d}"
    return series, owner


def test_a_train_subsample_takes_whole_subjects_by_the_seed() -> None:
    from spineage.training.data import MIN_TRAIN_SERIES, train_subsample

    series, owner = _train_series(300)
    tenth = train_subsample(series, owner, 0.1, seed=5)
    assert int(np.ceil(0.1 * len(series))) <= len(tenth) <= int(np.ceil(0.1 * len(series))) + 1
    kept_subjects = {owner[s] for s in tenth}
    assert sorted(tenth) == sorted(s for s in series if owner[s] in kept_subjects)  # a subject's repeats stay together
    assert tenth == train_subsample(series, owner, 0.1, seed=5)
    assert set(tenth) != set(train_subsample(series, owner, 0.1, seed=6))
    assert set(train_subsample(series, owner, 0.01, seed=5)) <= set(tenth)  # a smaller share is a subset
    assert len(train_subsample(series, owner, 0.001, seed=5)) >= MIN_TRAIN_SERIES
    assert train_subsample(series, owner, 1.0, seed=5) == series
    with pytest.raises(UserError, match="subject for every train series"):
        train_subsample(series, {}, 0.5, seed=5)


def test_load_splits_leaves_out_the_train_series_not_kept(tmp_path: Path) -> None:
    write_processed(tmp_path, {"train": 4, "validation": 2})
    everything = load_splits(tmp_path)
    kept = everything["train"].series_ids[1:3]
    splits = load_splits(tmp_path, train_series=kept)
    assert splits["train"].series_ids == kept
    assert splits["validation"].series_ids == everything["validation"].series_ids


def test_subject_folds_keep_subjects_whole_follow_the_seed_and_not_the_row_order() -> None:
    from spineage.training.data import subject_folds

    series, owner = _train_series(53)
    folds = subject_folds(series, owner, 5, seed=7)
    assert set(folds) == set(series)  # every train series out of fold exactly once
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    for subject in set(owner.values()):
        assert len({folds[s] for s in series if owner[s] == subject}) == 1  # a subject's repeats share a fold
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 2  # balanced up to one subject's series
    shuffled = list(np.random.default_rng(0).permutation(series))
    assert subject_folds(shuffled, owner, 5, seed=7) == folds  # the order of the rows does not matter
    assert subject_folds(series, owner, 5, seed=8) != folds
    assert subject_folds(series, owner, 5, seed=7) == folds


def test_subject_folds_refuse_fewer_subjects_than_folds_and_unknown_subjects() -> None:
    from spineage.training.data import subject_folds

    series, owner = _train_series(4)
    with pytest.raises(UserError, match="at least 5 train subjects") as error:
        subject_folds(series, owner, 5, seed=1)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="subject for every train series"):
        subject_folds(series, {}, 2, seed=1)


def test_load_splits_moves_a_folds_held_out_series_out_of_train(tmp_path: Path) -> None:
    from spineage.training.data import HELD_OUT

    write_processed(tmp_path, {"train": 5, "validation": 2})
    everything = load_splits(tmp_path)
    train = everything["train"].series_ids
    splits = load_splits(tmp_path, train_series=train[:3], held_out=train[3:])
    assert splits["train"].series_ids == train[:3]
    assert splits[HELD_OUT].series_ids == train[3:]
    assert splits["validation"].series_ids == everything["validation"].series_ids
    with pytest.raises(ValueError, match="also a train series"):
        load_splits(tmp_path, train_series=train[:4], held_out=train[3:])
