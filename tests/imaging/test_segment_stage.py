"""The ``segment`` stage (train on the cohort's train split, Dice on the others, a model folder) and ``preprocess.masks``."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.imaging.preprocess import PreprocessSettings, parse_preprocess_settings
from spineage.imaging.segmentation import (
    CLASS_CODES,
    CLASS_NAMES,
    HELD_OUT,
    MODEL_NAME,
    SERIES_COLUMNS,
    choose_scans,
)
from spineage.imaging.stage import build_processed, pin_segmentation_model
from tests.mlflow_store import fresh_store
from tests.params_file import write_params

from .scans import phantom_mri
from .test_segmentation import TINY, write_labelled_cohort

SPLITS = {0: "train", 1: "train", 2: "train", 3: "train", 4: "validation", 5: "validation", 6: "test", 7: "full_test_abnormal"}
"""Subject index -> split of the tiny cohort; subject 8 is labelled but not in the cohort."""

TRAIN_SERIES = ["mri-0", "mri-1", "mri-2", "mri-3"]
HELD_OUT_SERIES = ["mri-4", "mri-5", "mri-6", "mri-7"]


def write_split_cohort(folder: Path) -> tuple[Path, Path]:
    """A tiny labelled raw cohort (9 subjects) and its cohort.csv (8 of them, with :data:`SPLITS`)."""
    raw = write_labelled_cohort(folder / "raw", n_subjects=9)
    rows = [{"series_id": f"mri-{i}", "subject_id": f"sub-{i}", "age": 40 + i, "split": split} for i, split in SPLITS.items()]
    cohort = folder / "cohort.csv"
    pd.DataFrame(rows).to_csv(cohort, index=False)
    return raw, cohort


def tiny_params(path: Path) -> Path:
    """params.yaml with :data:`TINY` as its segmentation section (and its seed)."""
    section = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(TINY).items() if k != "seed"}
    return write_params(path, {"seed": TINY.seed, "segmentation": section})


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """``spineage segment train`` as dvc.yaml runs it, on the tiny cohort: (folder, raw, cohort, tracking URI, output)."""
    folder = tmp_path_factory.mktemp("segment-stage")
    raw, cohort = write_split_cohort(folder)
    uri = fresh_store(folder / "store")
    params = tiny_params(folder / "params.yaml")
    arguments = ["segment", "train", "--raw", str(raw), "--cohort", str(cohort), "--out", str(folder / "model"),
                 "--reports", str(folder / "reports"), "--params", str(params)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        result = CliRunner().invoke(app, arguments)
    return folder, raw, cohort, uri, result


# --------------------------------------------------------------------------- which series


def test_only_the_train_split_is_trained_on_and_the_other_splits_are_scored(tmp_path: Path) -> None:
    raw, cohort = write_split_cohort(tmp_path)
    chosen = choose_scans(raw, TINY, cohort)
    assert chosen.train.series_id.tolist() == TRAIN_SERIES
    assert sorted(chosen.held_out.series_id) == HELD_OUT_SERIES  # mri-8 is outside the cohort: neither
    assert dict(zip(chosen.held_out.series_id, chosen.held_out.split)) == {f"mri-{i}": SPLITS[i] for i in range(4, 8)}
    # At most evaluation_scans_per_split per split, a seeded sample; max_scans caps the training subjects.
    few = choose_scans(raw, replace(TINY, evaluation_scans_per_split=1, max_scans=2), cohort)
    assert few.held_out.split.value_counts().to_dict() == {"validation": 1, "test": 1, "full_test_abnormal": 1}
    assert len(few.train) == 2 and set(few.train.series_id) <= set(TRAIN_SERIES)
    assert few.held_out.series_id.tolist() == choose_scans(raw, replace(TINY, evaluation_scans_per_split=1, max_scans=2), cohort).held_out.series_id.tolist()


def test_a_train_split_subject_is_never_scored(tmp_path: Path) -> None:
    raw, cohort = write_split_cohort(tmp_path)
    sessions = pd.read_csv(raw / "sessions.csv", dtype=str, keep_default_na=False)
    repeat = sessions[sessions.series_id == "mri-0"].assign(series_id="mri-0-repeat")  # sub-0 again, put in test
    pd.concat([sessions, repeat]).to_csv(raw / "sessions.csv", index=False)
    table = pd.read_csv(cohort)
    pd.concat([table, pd.DataFrame([{"series_id": "mri-0-repeat", "subject_id": "sub-0", "age": 42, "split": "test"}])]).to_csv(cohort, index=False)
    chosen = choose_scans(raw, TINY, cohort)
    assert "mri-0-repeat" not in set(chosen.held_out.series_id) | set(chosen.train.series_id)


def test_no_labelled_train_series_or_no_cohort_is_a_one_line_error(tmp_path: Path) -> None:
    raw, cohort = write_split_cohort(tmp_path)
    table = pd.read_csv(cohort)
    table.assign(split=table.split.replace("train", "validation")).to_csv(cohort, index=False)
    with pytest.raises(UserError, match="labelled MRI series in the train split") as error:
        choose_scans(raw, TINY, cohort)
    assert "\n" not in str(error.value)
    result = CliRunner().invoke(app, ["segment", "train", "--raw", str(raw), "--cohort", str(tmp_path / "absent.csv")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "run `spineage cohort` first" in result.output


def test_an_out_folder_holding_other_files_is_refused_before_training(tmp_path: Path) -> None:
    raw, cohort = write_split_cohort(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["segment", "train", "--raw", str(raw), "--cohort", str(cohort), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "earlier model folder" in result.output
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- the stage's outputs


@pytest.mark.slow
def test_the_stage_trains_on_the_train_split_and_reports_dice_by_structure_and_split(stage) -> None:
    folder, _, _, _, result = stage
    assert result.exit_code == 0, result.output
    series = pd.read_csv(folder / "reports" / "series.csv", dtype={"series_id": str})
    assert list(series.columns) == list(SERIES_COLUMNS)
    assert series.loc[series.role == "train", "series_id"].tolist() == TRAIN_SERIES
    held_out = series[series.role == HELD_OUT]
    assert sorted(held_out.series_id) == HELD_OUT_SERIES
    assert not set(held_out.subject_id) & set(series.loc[series.role == "train", "subject_id"])
    dice = held_out[[f"dice_{name}" for name in CLASS_NAMES[1:]]]
    assert dice.notna().all().all() and ((dice >= 0) & (dice <= 1)).all().all()
    assert series.loc[series.role == "train", "dice_vertebra"].isna().all()

    metrics = json.loads((folder / "reports" / "metrics.json").read_text())
    assert set(metrics["dice"]) == {*CLASS_NAMES[1:], "mean"}
    assert set(metrics["dice_by_split"]) == {"validation", "test", "full_test_abnormal"}
    assert metrics["held_out_scans_by_split"] == {"validation": 2, "test": 1, "full_test_abnormal": 1}
    assert metrics["train_scans"] == 4 and metrics["held_out_scans"] == 4 and metrics["train_subjects"] == 4
    assert metrics["dice"]["vertebra"] == pytest.approx(held_out["dice_vertebra"].mean(), abs=1e-3)
    assert metrics["dice_by_split"]["test"]["disc"] == pytest.approx(held_out.set_index("series_id").at["mri-6", "dice_disc"], abs=1e-3)
    assert metrics["inference_seconds_per_scan"] > 0
    # Each held-out scan's confidence; the tiny run trained on synthesised images (the default).
    assert held_out.confidence.between(0, 1).all() and series.loc[series.role == "train", "confidence"].isna().all()
    assert metrics["confidence_median"] == pytest.approx(held_out.confidence.median(), abs=1e-3)
    assert metrics["synthesis"] is True


@pytest.mark.slow
def test_the_stage_registers_a_candidate_and_writes_the_same_model_to_its_folder(stage, monkeypatch) -> None:
    import mlflow

    from spineage.imaging.io import load_volume
    from spineage.imaging.segmentation import segment_volume
    from spineage.registry.tracking import configure_mlflow

    folder, raw, _, uri, result = stage
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_mlflow()
    metrics = json.loads((folder / "reports" / "metrics.json").read_text())
    version = mlflow.MlflowClient().get_model_version_by_alias(MODEL_NAME, "candidate")
    assert version.run_id == metrics["run_id"] and metrics["model_uri"] == f"models:/{MODEL_NAME}/{version.version}"
    evaluation = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/evaluation.json")
    assert evaluation["train_series"] == TRAIN_SERIES and sorted(evaluation["held_out_series"]) == HELD_OUT_SERIES
    assert (folder / "model" / "MLmodel").is_file()
    volume = load_volume(raw / "images" / "mri-6.nii.gz")
    from_folder = segment_volume(volume, str(folder / "model"))
    assert np.array_equal(from_folder, segment_volume(volume, f"models:/{MODEL_NAME}@candidate"))
    assert set(np.unique(from_folder)) <= set(CLASS_CODES)


@pytest.mark.slow
def test_training_can_start_from_the_stages_model_folder(stage) -> None:
    import torch

    from spineage.imaging.segmentation import initial_weights
    from spineage.models.spine_seg import SpineSegNet

    folder = stage[0]
    assert stage[4].exit_code == 0, stage[4].output
    start = initial_weights(replace(TINY, initial_model=str(folder / "model")))
    import mlflow.pytorch

    exported = mlflow.pytorch.load_model(str(folder / "model"), map_location="cpu")
    for name, value in exported.state_dict().items():
        assert torch.equal(start.state_dict()[name], value), name
    fresh = SpineSegNet(channels=TINY.channels, working_spacing=TINY.working_spacing_mm, patch_size=TINY.patch_size)
    fresh.load_state_dict(start.state_dict())  # the same architecture: loads without a missing or extra key
    with pytest.raises(UserError, match="channels, working spacing and patch size"):
        initial_weights(replace(TINY, channels=(8, 16, 32), initial_model=str(folder / "model")))


def test_an_initial_model_that_is_not_a_model_folder_is_a_one_line_error(tmp_path: Path) -> None:
    from spineage.imaging.segmentation import initial_weights, parse_segmentation_settings

    with pytest.raises(UserError, match="to be a model folder"):
        initial_weights(replace(TINY, initial_model=str(tmp_path)))
    with pytest.raises(UserError, match="segmentation.initial_model"):
        parse_segmentation_settings({"initial_model": 3})
    assert parse_segmentation_settings({"initial_model": None}).initial_model == ""


@pytest.mark.slow
def test_preprocess_masks_every_series_with_the_stages_model_folder(stage, tmp_path: Path, monkeypatch) -> None:
    folder, raw, cohort, uri, result = stage
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = PreprocessSettings(workers=1, masks="segmentation", segmentation_model=str(folder / "model"),
                                  shape=(8, 8, 16), max_failure_fraction=1.0)
    summary = build_processed(raw, cohort, tmp_path / "processed", tmp_path / "reports", settings, progress=False)
    manifest = pd.read_csv(tmp_path / "processed" / "manifest.csv", dtype=str, keep_default_na=False)
    assert summary.series == 8 and set(manifest.label_source) == {"segmentation"}  # every one has a label map
    assert json.loads((tmp_path / "reports" / "summary.json").read_text())["masks"] == "segmentation"
    assert (manifest.status != "failed").all(), manifest.reason.tolist()


# --------------------------------------------------------------------------- preprocess.masks


def fake_segmenter(monkeypatch) -> list[str]:
    """Replace segment_volume by one answering as the real one does (100 vertebra, 130 disc); returns its calls."""
    calls: list[str] = []

    def segment_volume(volume, model_uri):
        calls.append(model_uri)
        labels = np.asarray(phantom_mri((8.0, 4.0, 4.0))[1]).copy()
        labels[(labels >= 1) & (labels <= 27)] = 100
        labels[(labels >= 31) & (labels <= 56)] = 130
        return labels

    monkeypatch.setitem(sys.modules, "spineage.imaging.segmentation", types.SimpleNamespace(segment_volume=segment_volume))
    return calls


def test_masks_segmentation_segments_series_that_have_a_label_map(tmp_path: Path, monkeypatch) -> None:
    from .test_preprocess_stage import write_raw

    raw, cohort = write_raw(tmp_path / "raw")
    calls = fake_segmenter(monkeypatch)
    uri = "models:/spine-seg-mri/1"  # a pinned version: no registry to ask
    settings = PreprocessSettings(workers=1, masks="segmentation", segmentation_model=uri)
    summary = build_processed(raw, cohort, tmp_path / "seg" / "processed", tmp_path / "seg" / "reports", settings, progress=False)
    manifest = pd.read_csv(tmp_path / "seg" / "processed" / "manifest.csv", dtype=str, keep_default_na=False)
    assert calls == [uri] * 4 and summary.by_status["ok"] == 4
    assert set(manifest.label_source) == {"segmentation"} and set(manifest.regions_present) == {"unidentified"}
    # A changed label map does not redo a segmented series: it is not read.
    (raw / "labels" / "mri-0.nii.gz").write_bytes((raw / "labels" / "mri-1.nii.gz").read_bytes())
    assert build_processed(raw, cohort, tmp_path / "seg" / "processed", tmp_path / "seg" / "reports", settings, progress=False).processed == 0

    labels = replace(settings, masks="labels")
    summary = build_processed(raw, cohort, tmp_path / "lab" / "processed", tmp_path / "lab" / "reports", labels, progress=False)
    manifest = pd.read_csv(tmp_path / "lab" / "processed" / "manifest.csv", dtype=str, keep_default_na=False)
    assert len(calls) == 4 and set(manifest.label_source) == {"label"} and summary.by_status["ok"] == 4
    assert set(manifest.regions_present) == {"cervical;thoracic;lumbar"}


def test_masks_segmentation_without_the_model_folder_stops_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from .test_preprocess_stage import write_raw

    raw, cohort = write_raw(tmp_path / "raw")
    monkeypatch.chdir(tmp_path)  # models/spine-seg, the default, is relative: nothing here
    with pytest.raises(UserError, match=r"segmentation model folder models/spine-seg .*segment train --out") as error:
        pin_segmentation_model(PreprocessSettings())
    assert "\n" not in str(error.value)
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"workers": 1}})
    result = CliRunner().invoke(app, ["preprocess", "--raw", str(raw), "--cohort", str(cohort), "--out", str(tmp_path / "processed"),
                                      "--reports", str(tmp_path / "reports"), "--params", str(params)])
    assert result.exit_code == 2 and "models/spine-seg" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "processed" / "manifest.csv").exists()


@pytest.mark.parametrize(
    "section, message",
    [
        ({"masks": "auto"}, r"preprocess.masks among \['segmentation', 'labels'\], found 'auto'"),
        ({"masks": "segmentation", "segmentation_model": None}, "preprocess.segmentation_model .* with preprocess.masks: segmentation, found null"),
        ({"region": "lumbar"}, "preprocess.region: whole with preprocess.masks: segmentation .*found lumbar; use preprocess.masks: labels"),
    ],
)
def test_bad_mask_settings_are_one_line_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        parse_preprocess_settings(section)
    assert "\n" not in str(error.value)


def test_the_region_ablation_and_no_model_work_with_label_masks() -> None:
    settings = parse_preprocess_settings({"masks": "labels", "region": "lumbar", "segmentation_model": None})
    assert (settings.masks, settings.region, settings.segmentation_model) == ("labels", "lumbar", None)
    assert PreprocessSettings().masks == "segmentation" and PreprocessSettings().segmentation_model == "models/spine-seg"
    assert settings.settings_hash() != replace(settings, masks="segmentation", region="whole").settings_hash()


def test_small_stray_pieces_are_dropped_and_large_spine_pieces_kept() -> None:
    from spineage.imaging.segmentation import MIN_COMPONENT_SHARE, keep_spine_components

    classes = np.zeros((4, 6, 12), dtype=np.uint8)
    classes[1:3, 1:4, 0:8] = 1  # the spine: vertebra ...
    classes[1:3, 4, 2:6] = 3  # ... with the canal beside it
    classes[3, 5, 6] = 4  # touching the canal only at a corner: still the spine (26-connected)
    classes[0:2, 0:2, 10:12] = 2  # a stray blob: 8 voxels, under a quarter of the spine's 57
    kept = keep_spine_components(classes)
    assert kept.dtype == classes.dtype
    assert (kept[..., 10:] == 0).all()
    assert np.array_equal(kept[..., :10], classes[..., :10])
    assert np.array_equal(keep_spine_components(np.zeros((2, 2, 2), np.uint8)), np.zeros((2, 2, 2), np.uint8))

    # A canal cut off from the column (a small field of view on the network's grid) is a large share: kept.
    split = np.zeros((6, 8, 12), dtype=np.uint8)
    split[1:3, 0:3, 0:12] = 1  # the column: 72 voxels
    split[1:3, 5:7, 0:12] = 3  # the canal, two voxels behind it: 48 voxels
    split[5, 7, 11] = 2  # one stray voxel, apart from both
    kept = keep_spine_components(split)
    assert (kept == 3).sum() == 48 and (kept == 1).sum() == 72 and (kept == 2).sum() == 0
    assert 48 / 72 >= MIN_COMPONENT_SHARE > 1 / 72
    # Only the largest piece when the share asks for it.
    assert (keep_spine_components(split, min_share=1.0) == 3).sum() == 0


def test_pretraining_draws_its_own_phantom_registers_pretrained_and_the_stage_can_start_from_it(tmp_path: Path, monkeypatch) -> None:
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    from spineage.imaging.segmentation import MODEL_NAME, initial_weights, train_segmentation

    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    section = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(TINY).items() if k != "seed"}
    params = write_params(tmp_path / "params.yaml", {"seed": TINY.seed, "segmentation": section, "synth": {"profile": "ci"}})
    arguments = ["segment", "pretrain", "--out", str(tmp_path / "pretrained"), "--reports", str(tmp_path / "reports"),
                 "--params", str(params), "--n-subjects", "6", "--epochs", "1", "--max-scans", "4", "--workers", "1"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "(alias pretrained," in result.output
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL_NAME, "pretrained").version) == "1"
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(MODEL_NAME, "candidate")  # a pre-training is never a candidate
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["held_out_scans"] >= 1 and 0.0 <= metrics["dice"]["vertebra"] <= 1.0
    assert not list(tmp_path.glob("spineage-pretrain-*"))  # its phantom was drawn in a temporary folder, gone
    start = initial_weights(replace(TINY, initial_model=str(tmp_path / "pretrained")))  # what segment train --initial-model loads
    assert set(start.state_dict()) == set(mlflow.pytorch.load_model(str(tmp_path / "pretrained"), map_location="cpu").state_dict())
    with pytest.raises(UserError, match="production comes only through `spineage promote`"):
        train_segmentation(tmp_path, TINY, alias="production")
