"""Spine segmentation: label merging, settings, grids, a tiny training run logged to MLflow, prediction, TotalSpineSeg."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spineage.errors import UserError
from spineage.imaging.segmentation import (
    CLASS_CODES,
    CLASS_NAMES,
    DISC_CODE,
    MODEL_NAME,
    VERTEBRA_CODE,
    SegmentationSettings,
    classes_to_working_grid,
    dice_per_class,
    image_to_working_grid,
    merge_spine_labels,
    parse_segmentation_settings,
    segment_volume,
    spine_mask_from_segmentation,
    split_subjects,
    totalspineseg_to_phantom,
)
from spineage.labels import LABEL_NAMES
from tests.mlflow_store import fresh_store

TINY = SegmentationSettings(
    working_spacing_mm=(4.0, 4.0, 4.0),
    patch_size=(16, 16, 16),
    channels=(4, 8, 16),
    epochs=4,
    batch_size=2,
    learning_rate=0.01,
    validation_fraction=0.25,
    max_scans=10,
    mixed_precision=True,
    seed=3,
)
"""Settings small enough for a training run of a few seconds on 16 x 16 x 32 volumes."""


def tiny_spine(seed: int, shape: tuple[int, int, int] = (16, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """A blocky spine in phantom codes: vertebrae and discs stacked along Z, the canal behind with the cord inside."""
    rng = np.random.default_rng(seed)
    image = np.full(shape, 300.0)
    labels = np.zeros(shape, dtype=np.uint8)
    z, level = int(rng.integers(0, 3)), 0
    while z < shape[2]:
        labels[4:12, 3:9, z : z + 4] = level + 1  # vertebra
        labels[4:12, 3:9, z + 4 : z + 6] = level + 31  # the disc below it
        z, level = z + 6, level + 1
    labels[6:10, 10:13, :] = 60
    labels[7:9, 11:12, :] = 61
    merged = merge_spine_labels(labels)
    image[merged == 1] = 500.0
    image[merged == 2] = 900.0
    image[merged == 3] = 1000.0
    image[merged == 4] = 450.0
    image += rng.normal(0, 20, shape)
    return image.astype(np.int16), labels


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def write_labelled_cohort(folder: Path, n_subjects: int = 5) -> Path:
    """A raw cohort of tiny labelled MRI (and one radiograph row, which must be ignored)."""
    import pandas as pd

    rows = []
    for i in range(n_subjects):
        image, labels = tiny_spine(i)
        write_nifti(folder / "images" / f"mri-{i}.nii.gz", image)
        write_nifti(folder / "labels" / f"mri-{i}.nii.gz", labels)
        rows.append(dict(series_id=f"mri-{i}", subject_id=f"sub-{i}", age=50, modality="mri_t2_sag",
                         image=f"images/mri-{i}.nii.gz", label=f"labels/mri-{i}.nii.gz", site="a", scanner="s"))
    rows.append(dict(series_id="xr-0", subject_id="sub-0", age=50, modality="xray_lat", image="images/xr-0.png",
                     label="", site="a", scanner="s"))
    pd.DataFrame(rows).to_csv(folder / "sessions.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run into a temporary MLflow store: (result, raw folder, tracking URI)."""
    from spineage.imaging.segmentation import train_segmentation

    folder = tmp_path_factory.mktemp("segmentation")
    raw = write_labelled_cohort(folder / "raw")
    uri = fresh_store(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        result = train_segmentation(raw, TINY, progress=False)
    return result, raw, uri


@pytest.fixture
def tracking(trained, monkeypatch):
    """The trained run's tracking store, set for the test."""
    from spineage.registry.tracking import configure_mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained[2])
    configure_mlflow()
    return trained


# --------------------------------------------------------------------------- labels and settings


def test_every_phantom_code_merges_into_its_class() -> None:
    codes = np.array(sorted(LABEL_NAMES))
    merged = merge_spine_labels(codes)
    expected = {name: 1 if code <= 27 else 2 if 31 <= code <= 56 else 3 if code == 60 else 4 for code, name in LABEL_NAMES.items()}
    assert dict(zip((LABEL_NAMES[c] for c in codes), merged.tolist())) == expected
    assert merge_spine_labels(np.array([0, 28, 30, 57, 59, 62, 255])).tolist() == [0] * 7
    # The segmentation's own codes merge back into the same classes (a round trip).
    assert merge_spine_labels(np.array(CLASS_CODES)).tolist() == list(range(len(CLASS_NAMES)))
    assert merge_spine_labels(np.zeros((2, 3, 4), np.int16)).shape == (2, 3, 4)


def test_spine_mask_keeps_the_classes_asked_for() -> None:
    labels = np.array([0, 3, 27, 40, VERTEBRA_CODE, DISC_CODE, 60, 61, 99])
    assert spine_mask_from_segmentation(labels).tolist() == [False, True, True, True, True, True, True, True, False]
    assert spine_mask_from_segmentation(labels, ("disc",)).tolist() == [False, False, False, True, False, True, False, False, False]
    with pytest.raises(UserError, match="spine classes among"):
        spine_mask_from_segmentation(labels, ("bone",))


def test_dice_per_class_counts_overlap_and_absent_classes() -> None:
    truth = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    assert dice_per_class(truth, truth)["vertebra"] == 1.0
    scores = dice_per_class(np.array([0, 1, 0, 2, 2, 0, 0, 0]), truth)
    assert scores["vertebra"] == pytest.approx(2 / 3)
    assert scores["disc"] == 1.0
    assert scores["canal_csf"] == 0.0
    assert math.isnan(scores["cord"])


def test_params_yaml_has_a_valid_segmentation_section() -> None:
    from spineage.imaging.segmentation import load_segmentation_settings

    settings = load_segmentation_settings(Path(__file__).resolve().parents[2] / "params.yaml")
    assert settings.seed > 0
    assert len(settings.working_spacing_mm) == 3 and len(settings.patch_size) == 3
    assert settings.with_overrides(epochs=2, max_scans=None).epochs == 2


@pytest.mark.parametrize(
    "section, message",
    [
        ({"patch_size": [16, 60, 128]}, "multiple of 8"),
        ({"epochs": 0}, "segmentation.epochs between"),
        ({"epochs": 2.5}, "an integer for segmentation.epochs"),
        ({"working_spacing_mm": [4, 4]}, "3 numbers for segmentation.working_spacing_mm"),
        ({"mixed_precision": "yes"}, "true or false"),
        ({"dropout": 0.1}, "keys of the segmentation section"),
        ({"channels": [16]}, "at least two U-Net levels"),
    ],
)
def test_bad_settings_are_one_line_errors(section, message) -> None:
    with pytest.raises(UserError, match=message):
        parse_segmentation_settings(section)


def test_split_holds_out_whole_subjects_and_respects_max_scans() -> None:
    subjects = [f"s{i // 2}" for i in range(20)]  # 10 subjects, 2 scans each
    counts = {s: 2 for s in set(subjects)}
    train, held_out = split_subjects(subjects, counts, SegmentationSettings(max_scans=8, validation_fraction=0.25, seed=1))
    assert len(train) + len(held_out) == 4 and not set(train) & set(held_out)
    assert len(held_out) == 1
    assert split_subjects(subjects, counts, SegmentationSettings(max_scans=8, validation_fraction=0.25, seed=1)) == (train, held_out)
    with pytest.raises(UserError, match="at least 2 subjects"):
        split_subjects(["a", "a"], {"a": 2}, SegmentationSettings())


def test_working_grid_keeps_the_field_of_view_and_the_majority_class() -> None:
    image, labels = tiny_spine(0)
    work = image_to_working_grid(image, (2.0, 2.0, 2.0), (4.0, 4.0, 4.0))
    assert work.shape == (8, 8, 16) and work.dtype == np.float32
    assert -0.5 <= work.min() and work.max() <= 1.5
    # A block map at 4 mm, upsampled to 2 mm with one voxel in eight changed: the majority comes back.
    blocks = np.random.default_rng(0).integers(0, len(CLASS_NAMES), (4, 5, 6)).astype(np.uint8)
    fine = blocks.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    fine[::2, ::2, ::2] = (fine[::2, ::2, ::2] + 1) % len(CLASS_NAMES)
    coarse = classes_to_working_grid(fine, (2.0, 2.0, 2.0), (4.0, 4.0, 4.0))
    assert np.array_equal(coarse, blocks)
    assert np.array_equal(classes_to_working_grid(blocks, (4.0, 4.0, 4.0), (4.0, 4.0, 4.0)), blocks)

# --------------------------------------------------------------------------- training, MLflow, prediction


@pytest.mark.slow
def test_training_lowers_the_loss(trained) -> None:
    result = trained[0]
    assert len(result.loss_history) == TINY.epochs
    assert result.loss_history[-1] < result.loss_history[0]
    assert result.train_scans == 4 and result.held_out_scans == 1
    assert set(result.dice) == set(CLASS_NAMES[1:])


@pytest.mark.slow
def test_the_run_is_logged_and_a_candidate_version_registered(tracking) -> None:
    import mlflow

    result = tracking[0]
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == str(TINY.epochs) and run.data.params["batch_size"] == str(TINY.batch_size)
    assert run.data.params["held_out_scans"] == "1"
    for name in ("dice_vertebra", "dice_disc", "dice_mean", "train_loss", "val_dice_vertebra"):
        assert name in run.data.metrics, name
    assert run.data.metrics["dice_vertebra"] == pytest.approx(result.dice["vertebra"])
    assert len(client.get_metric_history(result.run_id, "train_loss")) == TINY.epochs
    version = client.get_model_version_by_alias(MODEL_NAME, "candidate")
    assert str(version.version) == result.version and version.run_id == result.run_id
    assert result.model_uri == f"models:/{MODEL_NAME}/{result.version}"
    # The artifacts stay beside the database, not in the working directory.
    assert not (Path.cwd() / "mlruns").exists() or (Path.cwd() / "mlruns").stat().st_mtime < run.info.start_time / 1000


@pytest.mark.slow
def test_the_model_loads_back_as_the_projects_module_by_alias(tracking) -> None:
    import mlflow.pyfunc
    import mlflow.pytorch
    import torch

    from spineage.models.spine_seg import SpineSegNet

    net = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}@candidate")
    assert isinstance(net, SpineSegNet)
    assert net.working_spacing == TINY.working_spacing_mm and net.patch_size == TINY.patch_size
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, len(CLASS_NAMES), 16, 16, 16)
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@candidate")
    output = served.predict(np.zeros((1, 1, 16, 16, 32), dtype=np.float32))
    assert output.shape == (1, len(CLASS_NAMES), 16, 16, 32)


@pytest.mark.slow
def test_segment_volume_answers_on_the_volumes_own_grid_with_known_codes(tracking, tmp_path: Path) -> None:
    from spineage.imaging.io import load_volume

    image, labels = tiny_spine(7, shape=(24, 24, 40))
    write_nifti(tmp_path / "scan.nii.gz", image, spacing=(3.0, 3.0, 3.0))
    volume = load_volume(tmp_path / "scan.nii.gz")
    segmentation = segment_volume(volume, f"models:/{MODEL_NAME}@candidate")
    assert segmentation.shape == volume.shape == (24, 24, 40)
    assert segmentation.dtype == np.uint8
    assert set(np.unique(segmentation)) <= set(CLASS_CODES)
    assert (segmentation == VERTEBRA_CODE).any()
    # Without a URI: the candidate (no production alias yet).
    assert np.array_equal(segment_volume(volume), segmentation)


@pytest.mark.slow
def test_cli_predict_writes_a_label_map_on_the_scan_grid(tracking, tmp_path: Path) -> None:
    import nibabel as nib

    from spineage.cli import app

    raw = tracking[1]
    out = tmp_path / "out" / "labels.nii.gz"
    result = CliRunner().invoke(app, ["segment", "predict", str(raw / "images" / "mri-0.nii.gz"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = nib.load(out)
    assert written.shape == (16, 16, 32)
    assert set(np.unique(np.asarray(written.dataobj))) <= set(CLASS_CODES)
    result = CliRunner().invoke(app, ["segment", "predict", str(raw / "images" / "mri-0.nii.gz"), "--out", str(out),
                                      "--model", f"models:/{MODEL_NAME}@production"])
    assert result.exit_code == 2 and "alias 'production'" in result.output


def test_zero_epochs_are_refused_on_the_command_line_and_register_nothing_in_code(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    from spineage.cli import app
    from spineage.imaging.segmentation import train_segmentation

    raw = write_labelled_cohort(tmp_path / "raw", n_subjects=4)
    result = CliRunner().invoke(app, ["segment", "train", "--raw", str(raw), "--epochs", "0"])
    assert result.exit_code == 2 and result.output.strip().startswith("error: Expected segmentation.epochs between 1 and")
    assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="Expected a trained segmentation network .*, found 0 epochs"):
        train_segmentation(raw, replace(TINY, epochs=0), progress=False)
    assert mlflow.MlflowClient().search_model_versions(f"name='{MODEL_NAME}'") == []


def test_training_on_a_folder_without_labels_is_a_one_line_error(tmp_path: Path) -> None:
    from spineage.cli import app

    result = CliRunner().invoke(app, ["segment", "train", "--raw", str(tmp_path)])
    assert result.exit_code == 2
    assert "sessions.csv" in result.output and "Traceback" not in result.output
    (tmp_path / "sessions.csv").write_text("series_id,subject_id,modality,image,label\nmri-0,s0,mri_t2_sag,images/a.nii.gz,\n")
    result = CliRunner().invoke(app, ["segment", "train", "--raw", str(tmp_path)])
    assert result.exit_code == 2 and "with a label map" in result.output


# --------------------------------------------------------------------------- TotalSpineSeg


def test_totalspineseg_absent_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    from spineage.cli import app
    from spineage.imaging.segmentation import segment_with_totalspineseg, totalspineseg_available

    monkeypatch.setenv("PATH", str(tmp_path))  # no totalspineseg command anywhere
    monkeypatch.delenv("TOTALSPINESEG_DATA", raising=False)
    assert not totalspineseg_available()
    with pytest.raises(UserError, match=r'pip install "totalspineseg\[nnunetv2\]"') as error:
        segment_with_totalspineseg(tmp_path / "scan.nii.gz")
    assert "\n" not in str(error.value)
    image, _ = tiny_spine(0)
    write_nifti(tmp_path / "scan.nii.gz", image)
    result = CliRunner().invoke(
        app, ["segment", "predict", str(tmp_path / "scan.nii.gz"), "--out", str(tmp_path / "l.nii.gz"), "--engine", "totalspineseg"]
    )
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "totalspineseg" in result.output


def test_totalspineseg_without_weights_is_unavailable(tmp_path: Path, monkeypatch) -> None:
    from spineage.imaging.segmentation import segment_with_totalspineseg, totalspineseg_available

    command = tmp_path / "bin" / "totalspineseg"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\nexit 1\n")
    command.chmod(0o755)
    monkeypatch.setenv("PATH", str(command.parent))
    monkeypatch.setenv("TOTALSPINESEG_DATA", str(tmp_path / "empty"))
    assert not totalspineseg_available()
    with pytest.raises(UserError, match="never downloads weights"):
        segment_with_totalspineseg(tmp_path / "scan.nii.gz")
    for dataset in ("Dataset101_TotalSpineSeg_step1", "Dataset102_TotalSpineSeg_step2"):
        (tmp_path / "empty" / "nnUNet" / "results" / "r20241115" / dataset / "trainer__plans__3d" / "fold_0").mkdir(parents=True)
    assert totalspineseg_available()


TOTALSPINESEG_CLASSES: dict[int, str] = {
    1: "spinal_cord", 2: "spinal_canal",
    **{10 + i: f"vertebrae_C{i}" for i in range(1, 8)},
    **{20 + i: f"vertebrae_T{i}" for i in range(1, 13)},
    **{40 + i: f"vertebrae_L{i}" for i in range(1, 6)},
    50: "sacrum",
    63: "disc_C2_C3", 64: "disc_C3_C4", 65: "disc_C4_C5", 66: "disc_C5_C6", 67: "disc_C6_C7", 71: "disc_C7_T1",
    **{71 + i: f"disc_T{i}_T{i + 1}" for i in range(1, 12)},
    91: "disc_T12_L1", 92: "disc_L1_L2", 93: "disc_L2_L3", 94: "disc_L3_L4", 95: "disc_L4_L5", 100: "disc_L5_S",
}
"""TotalSpineSeg's final (step2_output) classes as its README's "List of Classes" documents them."""


def phantom_code_of_totalspineseg_name(name: str) -> int:
    """The phantom code a TotalSpineSeg class name means, read from the name alone."""
    from spineage.labels import CANAL_LABEL, CORD_LABEL, SACRUM_LABEL, disc_label, vertebra_label

    if name in ("spinal_cord", "spinal_canal", "sacrum"):
        return {"spinal_cord": CORD_LABEL, "spinal_canal": CANAL_LABEL, "sacrum": SACRUM_LABEL}[name]
    kind, *levels = name.split("_")
    if kind == "vertebrae":
        return VERTEBRA_CODE if levels[0] == "C1" else vertebra_label(levels[0])
    return disc_label(levels[0])  # a disc is keyed by the vertebra above it


def test_totalspineseg_documented_label_map_maps_to_the_phantoms_codes() -> None:
    # A label map written in TotalSpineSeg's documented codes: one slab per class, background between.
    codes = sorted(TOTALSPINESEG_CLASSES)
    volume = np.zeros((3, 4, 2 * len(codes)), dtype=np.int16)
    for i, code in enumerate(codes):
        volume[:, :, 2 * i] = code
    mapped = totalspineseg_to_phantom(volume)
    assert mapped.shape == volume.shape and mapped.dtype == np.int16
    assert (mapped[:, :, 1::2] == 0).all()
    for i, code in enumerate(codes):
        expected = phantom_code_of_totalspineseg_name(TOTALSPINESEG_CLASSES[code])
        assert (mapped[:, :, 2 * i] == expected).all(), (code, TOTALSPINESEG_CLASSES[code])
    # Every vertebra (C1 included) and the sacrum become vertebra, every disc disc, and so on.
    merged = merge_spine_labels(mapped[0, 0, ::2])
    kinds = [TOTALSPINESEG_CLASSES[code].split("_")[0] for code in codes]
    expected_class = {"spinal": None, "vertebrae": 1, "sacrum": 1, "disc": 2}
    for kind, name, value in zip(kinds, (TOTALSPINESEG_CLASSES[c] for c in codes), merged):
        wanted = {"spinal_cord": 4, "spinal_canal": 3}.get(name, expected_class[kind])
        assert value == wanted, name
    # Codes TotalSpineSeg does not document stay background.
    assert totalspineseg_to_phantom(np.array([3, 7, 60, 99, 101])).tolist() == [0, 0, 0, 0, 0]


def test_totalspineseg_codes_map_to_the_phantoms() -> None:
    from spineage.labels import disc_label, vertebra_label

    codes = np.array([0, 1, 2, 11, 12, 17, 21, 32, 41, 45, 50, 63, 67, 71, 82, 91, 95, 100, 7])
    mapped = totalspineseg_to_phantom(codes)
    assert mapped.tolist() == [
        0, 61, 60, VERTEBRA_CODE, vertebra_label("C2"), vertebra_label("C7"), vertebra_label("T1"), vertebra_label("T12"),
        vertebra_label("L1"), vertebra_label("L5"), 27, disc_label("C2"), disc_label("C6"), disc_label("C7"),
        disc_label("T11"), disc_label("T12"), disc_label("L4"), disc_label("L5"), 0,
    ]
    # With an L6, the lumbosacral disc sits below L6.
    assert totalspineseg_to_phantom(np.array([46, 100])).tolist() == [vertebra_label("L6"), disc_label("L6")]


# --------------------------------------------------------------------------- confidence


def fixed_logit_net(strength: float):
    """A SpineSegNet whose logits favour vertebra in a central box by ``strength`` and background elsewhere."""
    import torch

    from spineage.models.spine_seg import SpineSegNet

    class Fixed(SpineSegNet):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(image.shape[0], 5, *image.shape[2:])
            logits[:, 0] = 4.0
            bright = image[:, 0] > 0.5
            logits[:, 1][bright] = 4.0 + strength
            return logits

    return Fixed(channels=(4, 8), working_spacing=(4.0, 4.0, 4.0), patch_size=(8, 8, 8)).eval()


def test_confidence_is_high_for_a_sure_network_and_lower_for_an_unsure_one() -> None:
    from types import SimpleNamespace

    from spineage.imaging.segmentation import segment_volume_with_confidence

    array = np.zeros((8, 12, 16), dtype=np.float32)
    array[2:6, 3:9, 4:12] = 100.0
    volume = SimpleNamespace(array=array, spacing=(4.0, 4.0, 4.0))
    sure_labels, sure = segment_volume_with_confidence(volume, fixed_logit_net(8.0))
    unsure_labels, unsure = segment_volume_with_confidence(volume, fixed_logit_net(0.2))
    assert sure > 0.99
    assert 0.5 < unsure < 0.6  # softmax of (4, 4.2, 0, 0, 0): the top class holds about 0.54
    np.testing.assert_array_equal(sure_labels, unsure_labels)  # the same argmax, different certainty
    assert set(np.unique(sure_labels)) == {0, VERTEBRA_CODE}
    assert (sure_labels == VERTEBRA_CODE).sum() > 0.5 * (array > 0).sum()
    np.testing.assert_array_equal(segment_volume(volume, fixed_logit_net(8.0)), sure_labels)


def test_mirrored_prediction_is_the_mean_of_both_views_and_answers_a_mirrored_scan_in_mirror() -> None:
    import torch

    from spineage.imaging.segmentation import predict_probabilities
    from spineage.models.spine_seg import SpineSegNet

    torch.manual_seed(0)
    net = SpineSegNet(channels=(4, 8), num_res_units=0, working_spacing=(4.0, 4.0, 4.0), patch_size=(8, 16, 16)).eval()
    image = np.random.default_rng(1).random((8, 16, 16)).astype(np.float32)
    one_way = predict_probabilities(net, image, mirror=False)
    other_way = predict_probabilities(net, image[::-1].copy(), mirror=False).flip(1)
    assert not torch.allclose(one_way, other_way, atol=1e-3), "a random network is not left-right symmetric"
    both = predict_probabilities(net, image)
    torch.testing.assert_close(both, (one_way + other_way) / 2)
    torch.testing.assert_close(predict_probabilities(net, image[::-1].copy()).flip(1), both)


def test_confidence_counts_only_the_kept_spine_pieces_and_is_zero_without_spine() -> None:
    from spineage.imaging.segmentation import spine_confidence

    probabilities = np.zeros((5, 1, 1, 10), dtype=np.float32)
    probabilities[0] = 1.0
    probabilities[:, 0, 0, 0:6] = np.array([0.1, 0.9, 0.0, 0.0, 0.0])[:, None]  # a large, sure spine piece
    probabilities[:, 0, 0, 8] = [0.4, 0.6, 0.0, 0.0, 0.0]  # a stray unsure voxel, under a quarter of it: left out
    assert spine_confidence(probabilities) == pytest.approx(0.9)
    assert spine_confidence(np.stack([np.ones((2, 2, 2))] + [np.zeros((2, 2, 2))] * 4)) == 0.0


@pytest.mark.slow
def test_segment_volume_runs_on_a_real_mri(tracking) -> None:
    from spineage.imaging.io import load_volume
    from tests.imaging.scans import NO_REALDATA, REAL_LUMBAR

    if not REAL_LUMBAR.is_file():
        pytest.skip(NO_REALDATA)
    volume = load_volume(REAL_LUMBAR)
    segmentation = segment_volume(volume, f"models:/{MODEL_NAME}@candidate")
    assert segmentation.shape == volume.shape
    assert set(np.unique(segmentation)) <= set(CLASS_CODES)


# --------------------------------------------------------------------------- training batches


def _tiny_scan(seed: int, synthesis: bool):
    from spineage.imaging.segmentation import _Scan
    from spineage.imaging.synthesis import tissue_map

    image, labels = tiny_spine(seed)
    classes = merge_spine_labels(labels)
    normalised = (image / 1000.0).astype(np.float32)
    tissues = tissue_map(normalised, classes, 3, (2, 2, 1, 1)) if synthesis else None
    foreground = [np.flatnonzero(classes == index) for index in range(1, len(CLASS_NAMES))]
    return _Scan(f"s{seed}", f"sub{seed}", normalised, classes, classes.shape, foreground, tissues)


@pytest.mark.parametrize("synthesis", [False, True])
def test_prefetched_batches_are_the_batches_of_the_seed_in_order(synthesis: bool) -> None:
    from spineage.imaging.segmentation import _prefetched, _training_batches
    from spineage.imaging.synthesis import synthesis_transform, tissue_classes

    settings = replace(TINY, epochs=2, batch_size=2, synthesis=synthesis, synthesis_background_tissues=3)
    scans = [_tiny_scan(seed, synthesis) for seed in range(3)]

    def batches():
        transform = None
        if synthesis:
            lookup = tissue_classes(3, (2, 2, 1, 1))
            transform = synthesis_transform(settings.patch_size, len(lookup), lookup, settings.synthesis_settings())
            transform.set_random_state(seed=5)
        return _training_batches(scans, settings, np.random.default_rng(5), transform, steps_per_epoch=2)

    direct = list(batches())
    with _prefetched(batches()) as ahead:
        fetched = list(ahead)
    assert len(direct) == len(fetched) == 4
    for one, other in zip(direct, fetched):
        for (image_a, label_a), (image_b, label_b) in zip(one, other):
            assert image_a.shape == tuple(settings.patch_size) == label_a.shape
            np.testing.assert_array_equal(image_a, image_b)
            np.testing.assert_array_equal(label_a, label_b)
    # Different steps see different crops.
    assert not np.array_equal(direct[0][0][0], direct[1][0][0])


def test_an_error_while_cutting_crops_reaches_the_training_loop() -> None:
    from spineage.imaging.segmentation import _prefetched

    def failing():
        yield 1
        raise ValueError("broken crop")

    with _prefetched(failing()) as ahead:
        assert next(ahead) == 1
        with pytest.raises(ValueError, match="broken crop"):
            next(ahead)


def test_cli_predict_with_levels_names_them_where_the_sacrum_is_in_view(tracking, tmp_path: Path, monkeypatch) -> None:
    import nibabel as nib

    import spineage.imaging.segmentation as segmentation
    from spineage.cli import app
    from spineage.labels import SACRUM_LABEL, UNLEVELLED_DISC, UNLEVELLED_VERTEBRA, disc_label, vertebra_label

    raw = tracking[1]
    scan = raw / "images" / "mri-0.nii.gz"
    shape = nib.load(scan).shape
    # The tiny trained network cannot find discs: stand in a column with a sacrum and three discs on the scan's grid.
    standin = np.zeros(shape, np.uint8)
    standin[4:12, 4:12, :8] = UNLEVELLED_VERTEBRA
    for z in (8, 14, 20):
        standin[4:12, 4:12, z] = UNLEVELLED_DISC
        standin[4:12, 4:12, z + 1 : z + 6] = UNLEVELLED_VERTEBRA
    monkeypatch.setattr(segmentation, "segment_volume", lambda volume, model_uri=None: standin)
    out = tmp_path / "levels.nii.gz"
    result = CliRunner().invoke(app, ["segment", "predict", str(scan), "--out", str(out), "--levels"])
    assert result.exit_code == 0, result.output
    assert "levels L3 to L5" in result.output
    written = np.asarray(nib.load(out).dataobj)
    codes = {SACRUM_LABEL, disc_label("L5"), disc_label("L4"), disc_label("L3"), vertebra_label("L5"), vertebra_label("L4")}
    assert codes <= set(np.unique(written)) and UNLEVELLED_DISC not in set(np.unique(written))
    assert not list(tmp_path.glob(".levels.nii.gz.*"))  # no temporary left behind
    standin[:, :, :8] = 0  # the field of view starts at the lowest disc: no sacrum to count from
    result = CliRunner().invoke(app, ["segment", "predict", str(scan), "--out", str(out), "--levels"])
    assert result.exit_code == 0, result.output
    assert "no levels; no sacrum in view" in result.output
    assert set(np.unique(np.asarray(nib.load(out).dataobj))) == {0, UNLEVELLED_VERTEBRA, UNLEVELLED_DISC}
