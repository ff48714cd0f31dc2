"""``spineage inspect``: orientation, spacing, field of view, regions (label map or estimate) and quality flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.imaging.inspect import (
    estimate_regions,
    find_label_for,
    format_inspection,
    inspect_scan,
    write_preprocessed,
)
from spineage.imaging.io import ImageLoadError
from tests.imaging.scans import NO_REALDATA, REAL_CERVICAL, REAL_LUMBAR, phantom_mri, save_vertebra_segmenter, write_nifti
from tests.params_file import write_params

runner = CliRunner()


@pytest.fixture
def raw_layout(tmp_path: Path) -> Path:
    """A phantom scan in the raw-cohort layout: images/ and labels/ side by side (stored PSR)."""
    image, labels, affine = phantom_mri()
    write_nifti(tmp_path / "images" / "mri-1.nii.gz", image, affine, "PSR")
    write_nifti(tmp_path / "labels" / "mri-1.nii.gz", labels, affine, "PSR")
    return tmp_path / "images" / "mri-1.nii.gz"


def _volume(tmp_path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), name: str = "scan.nii.gz") -> Path:
    affine = np.diag([*spacing, 1.0])
    return write_nifti(tmp_path / name, array, affine)


def _textured(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def test_a_phantom_with_its_label_map_reports_every_region(raw_layout: Path) -> None:
    report = inspect_scan(raw_layout)
    assert report.stored_axcodes == ("P", "S", "R") and report.canonical_axcodes == ("R", "A", "S")
    image, _, _ = phantom_mri()
    assert report.shape == image.shape and report.stored_shape == (image.shape[1], image.shape[2], image.shape[0])
    assert report.spacing_mm == (8.0, 8.0, 8.0)
    assert report.field_of_view_mm == tuple(8.0 * n for n in image.shape)
    assert report.regions.source == "label map" and report.regions.regions == ("cervical", "thoracic", "lumbar")
    assert report.regions.levels["cervical"] == ("C2", "C3", "C4", "C5", "C6", "C7") and report.regions.sacrum
    text = format_inspection(report)
    assert "cervical (C2-C7), thoracic (T1-T12), lumbar (L1-L5), sacrum" in text
    assert "ESTIMATE" not in text and "very few slices: 6 along R-L" in text


def test_a_label_map_of_part_of_the_spine_says_which_part(tmp_path: Path) -> None:
    image, labels, affine = phantom_mri()
    lumbar_only = np.where(np.isin(labels, [20, 21, 22, 23, 24, 27]), labels, 0).astype(np.uint8)  # L1-L5, sacrum
    scan = write_nifti(tmp_path / "scan.nii.gz", image, affine)
    label = write_nifti(tmp_path / "part.nii.gz", lumbar_only, affine, "LPS")
    report = inspect_scan(scan, label)
    assert report.regions.regions == ("lumbar",) and report.regions.levels["lumbar"] == ("L1", "L2", "L3", "L4", "L5")
    twelve = np.where(np.isin(labels, [9, 10, 11, 0]), labels, 0).astype(np.uint8)  # T3-T5 only
    report = inspect_scan(scan, write_nifti(tmp_path / "t.nii.gz", twelve, affine))
    assert report.regions.regions == ("thoracic",) and "partial: thoracic" in report.regions.note


def test_without_a_label_map_the_regions_are_an_estimate_and_say_so(tmp_path: Path) -> None:
    short = _volume(tmp_path, _textured((12, 40, 50)), spacing=(1.0, 1.0, 1.0))
    report = inspect_scan(short)
    assert report.regions.source == "estimate" and report.regions.regions == ()
    text = format_inspection(report)
    assert "unknown (ESTIMATE)" in text and "estimate from the 50 mm superior-inferior extent" in text
    long = _volume(tmp_path, _textured((12, 40, 80)), spacing=(1.0, 1.0, 8.0), name="long.nii.gz")
    assert inspect_scan(long).regions.regions == ("cervical", "thoracic", "lumbar")


def test_region_estimates_follow_extent_and_name_hints() -> None:
    assert estimate_regions(800).regions == ("cervical", "thoracic", "lumbar")
    assert estimate_regions(200, "t2_lumbar.nii.gz", "file name").regions == ("lumbar",)
    assert estimate_regions(130, "C-SPINE SAG T2", "DICOM header").regions == ("cervical",)
    assert estimate_regions(400).regions == () and "two regions" in estimate_regions(400).note
    assert "about 2 vertebral levels" in estimate_regions(55).note


def test_a_label_map_that_is_not_in_spineage_codes_falls_back_to_an_estimate(tmp_path: Path) -> None:
    array = _textured((12, 20, 30))
    scan = _volume(tmp_path, array)
    cord = np.zeros(array.shape, np.uint8)
    cord[5:7, 8:10, :] = 1  # a binary cord segmentation, as Spinal Cord Toolbox writes
    _volume(tmp_path, cord, name="scan_seg.nii.gz")
    assert find_label_for(scan) == tmp_path / "scan_seg.nii.gz"
    report = inspect_scan(scan)
    assert report.regions.source == "estimate"
    assert any("does not use spineage's vertebra codes" in flag for flag in report.flags)


def test_find_label_uses_sessions_csv_of_a_raw_cohort(tmp_path: Path) -> None:
    image, labels, affine = phantom_mri()
    scan = write_nifti(tmp_path / "images" / "a.nii.gz", image, affine)
    write_nifti(tmp_path / "segs" / "a-seg.nii.gz", labels, affine)
    (tmp_path / "sessions.csv").write_text("series_id,image,label\na,images/a.nii.gz,segs/a-seg.nii.gz\n")
    assert find_label_for(scan) == tmp_path / "segs" / "a-seg.nii.gz"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("anisotropic", "anisotropic spacing: 0.5 x 0.5 x 4 mm (ratio 8.0)"),
        ("few slices", "very few slices: 4 along R-L"),
        ("low range", "low dynamic range: only 6 distinct intensities"),
        ("negative", "negative values down to -500"),
        ("normalised", "already normalised"),
        ("saturated", "at the maximum 4095 (clipped or saturated?)"),
        ("spike", "over 10x the 99.9th percentile"),
        ("small field of view", "small field of view: 40 mm superior-inferior, about 2 vertebral levels"),
    ],
)
def test_quality_flags(tmp_path: Path, case: str, expected: str) -> None:
    array = _textured((20, 30, 160 if case != "small field of view" else 40)).astype(np.float32)
    spacing = (1.0, 1.0, 1.0)
    if case == "anisotropic":
        spacing = (0.5, 0.5, 4.0)
    elif case == "few slices":
        array = array[:4]
    elif case == "low range":
        array = np.round(array / 200)
    elif case == "negative":
        array[0, 0, :] = -500
    elif case == "normalised":
        array = np.random.default_rng(0).normal(size=array.shape).astype(np.float32)
    elif case == "saturated":
        array[:, :, :20] = 4095
    elif case == "spike":
        array[3, 3, 3] = 50_000
    report = inspect_scan(_volume(tmp_path, array, spacing))
    assert any(expected in flag for flag in report.flags), report.flags
    clean = inspect_scan(_volume(tmp_path, _textured((20, 30, 160)), name="clean.nii.gz"))
    assert clean.flags == ()


def test_an_oblique_scan_is_flagged(tmp_path: Path) -> None:
    angle = np.radians(25)
    affine = np.eye(4)
    affine[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(_textured((20, 30, 40)), affine), str(path))
    assert any("oblique acquisition: voxel axes up to 25 deg" in flag for flag in inspect_scan(path).flags)


@pytest.mark.skipif(not REAL_CERVICAL.exists(), reason=NO_REALDATA)
def test_inspect_on_the_real_cervical_file() -> None:
    result = runner.invoke(app, ["inspect", str(REAL_CERVICAL)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "60 x 55 x 52 voxels, axis codes P,S,R" in out
    assert "52 x 60 x 55 voxels, axis codes R,A,S" in out
    assert "spacing        1 x 1 x 1 mm" in out
    assert "cervical (ESTIMATE)" in out and "55 mm superior-inferior extent" in out
    assert "min 0, max 1257" in out
    assert "small field of view: 55 mm superior-inferior, about 2 vertebral levels" in out


@pytest.mark.skipif(not REAL_LUMBAR.exists(), reason=NO_REALDATA)
def test_inspect_on_the_real_lumbar_file() -> None:
    result = runner.invoke(app, ["inspect", str(REAL_LUMBAR), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["shape"] == [38, 257, 201] and report["stored_axcodes"] == ["R", "A", "S"]
    assert report["field_of_view_mm"] == [38.0, 257.0, 201.0]
    assert report["regions"]["source"] == "estimate" and report["regions"]["regions"] == ["lumbar"]
    assert report["intensity"]["min"] == 0 and report["intensity"]["max"] == 455


def test_inspect_a_radiograph(tmp_path: Path) -> None:
    from spineage.synth.generate import png_bytes

    path = tmp_path / "xray.png"
    path.write_bytes(png_bytes(np.random.default_rng(0).integers(0, 4096, (64, 32))))
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "64 rows x 32 columns, 16-bit (12 bits used)" in result.stdout and "unknown (not in the file)" in result.stdout
    label = runner.invoke(app, ["inspect", str(path), "--label", str(path)])
    assert label.exit_code == 2 and "only with a 3D scan" in label.stderr


def test_inspect_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path / "absent.nii.gz")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert str(tmp_path / "absent.nii.gz") in result.stderr and "no such file" in result.stderr
    flat = _volume(tmp_path, np.zeros((4, 5, 6), np.int16))
    result = runner.invoke(app, ["inspect", str(flat)])
    assert result.exit_code == 2 and "every voxel equal to 0" in result.stderr


@pytest.fixture(scope="module")
def vertebra_model(tmp_path_factory) -> Path:
    """A tiny segmentation model folder that calls every voxel vertebra (:func:`tests.imaging.scans.save_vertebra_segmenter`)."""
    return save_vertebra_segmenter(tmp_path_factory.mktemp("segmentation-model") / "spine-seg")


def _model_input(scan: Path, labels: np.ndarray | None, params: Path) -> np.ndarray:
    """What preprocess_volume makes of ``scan`` masked by ``labels`` (default: the label map of the vertebra model)."""
    from spineage.imaging.io import load_volume
    from spineage.imaging.preprocess import load_preprocess_settings, preprocess_volume

    volume = load_volume(scan)
    if labels is None:
        labels = np.full(volume.array.shape, 100, np.uint8)  # vertebra everywhere, as vertebra_model answers
    array, _ = preprocess_volume(volume, labels, load_preprocess_settings(params))
    return array


def _unlabelled_phantom(tmp_path: Path) -> Path:
    """The phantom scan of ``raw_layout`` alone in a folder: no label map to find."""
    image, _, affine = phantom_mri()
    return write_nifti(tmp_path / "alone" / "mri-1.nii.gz", image, affine, "PSR")


def test_preprocess_with_masks_labels_writes_the_label_masked_array_atomically(raw_layout: Path, tmp_path: Path, vertebra_model: Path) -> None:
    out = tmp_path / "out" / "model.npy"
    result = runner.invoke(app, ["inspect", str(raw_layout), "--preprocess", str(out), "--params", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "params file" in result.stderr and not out.exists()
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": "labels", "segmentation_model": str(vertebra_model)}})
    result = runner.invoke(app, ["inspect", str(raw_layout), "--preprocess", str(out), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    from spineage.imaging.io import load_label_like, load_volume

    label = raw_layout.parents[1] / "labels" / "mri-1.nii.gz"
    expected = _model_input(raw_layout, load_label_like(label, load_volume(raw_layout)), params)
    np.testing.assert_array_equal(np.load(out), expected)  # the label map masks it, not the model
    assert not np.array_equal(expected, _model_input(raw_layout, None, params))
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.npy"]  # no temporary file left
    record = write_preprocessed(raw_layout, out, params=params)
    assert (record["label_source"], record["mask_from"]) == ("label", str(label))


def test_preprocess_segments_every_scan_with_masks_segmentation(raw_layout: Path, tmp_path: Path, vertebra_model: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": "segmentation", "segmentation_model": str(vertebra_model)}})
    expected = _model_input(raw_layout, None, params)
    alone = _unlabelled_phantom(tmp_path)
    # A scan without a label map, and one with a label map, which is then not used: the training arrays were segmented.
    for scan, label in ((alone, None), (raw_layout, None), (raw_layout, raw_layout.parents[1] / "labels" / "mri-1.nii.gz")):
        out = tmp_path / f"{scan.parent.name}-{label is not None}.npy"
        record = write_preprocessed(scan, out, label, params)
        assert (record["label_source"], record["mask_from"]) == ("segmentation", str(vertebra_model.resolve()))
        assert tuple(record["regions_present"]) == ("unidentified",) and record["shape"] == list(expected.shape)
        np.testing.assert_array_equal(np.load(out), expected)


def test_preprocess_with_masks_labels_segments_a_scan_without_a_label_map(tmp_path: Path, vertebra_model: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": "labels", "segmentation_model": str(vertebra_model)}})
    scan = _unlabelled_phantom(tmp_path)
    record = write_preprocessed(scan, tmp_path / "x.npy", params=params)
    assert record["label_source"] == "segmentation"
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), _model_input(scan, None, params))


def test_preprocess_without_a_label_map_or_a_model_says_what_to_pass(tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": "labels", "segmentation_model": None}})
    scan = _unlabelled_phantom(tmp_path)
    with pytest.raises(UserError, match="found no label map next to .*pass --label or set preprocess.segmentation_model") as error:
        write_preprocessed(scan, tmp_path / "x.npy", params=params)
    assert "\n" not in str(error.value) and not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("masks", ["segmentation", "labels"])
def test_a_missing_model_folder_is_a_one_line_error(tmp_path: Path, monkeypatch, masks: str) -> None:
    monkeypatch.chdir(tmp_path)  # models/spine-seg, the default, is relative to the working directory: nothing here
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": masks, "segmentation_model": "models/spine-seg"}})
    scan = _unlabelled_phantom(tmp_path)
    result = runner.invoke(app, ["inspect", str(scan), "--preprocess", "x.npy", "--params", str(params)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "segmentation model folder models/spine-seg" in result.stderr and "segment train --out models/spine-seg" in result.stderr
    assert not (tmp_path / "x.npy").exists()


def test_cli_preprocesses_a_scan_without_labels_with_the_model_folder_of_the_params(tmp_path: Path, monkeypatch, vertebra_model: Path) -> None:
    shutil.copytree(vertebra_model, tmp_path / "models" / "spine-seg")
    monkeypatch.chdir(tmp_path)  # the shipped params name models/spine-seg, relative to the working directory
    write_params(tmp_path / "p.yaml", {"seed": 1})
    image, _, affine = phantom_mri()
    write_nifti(tmp_path / "scan.nii.gz", image, affine, "PSR")
    result = runner.invoke(app, ["inspect", "scan.nii.gz", "--preprocess", "out.npy", "--params", "p.yaml"])
    assert result.exit_code == 0, result.output
    assert "wrote out.npy: shape (16, 48, 192) float16" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), _model_input(tmp_path / "scan.nii.gz", None, tmp_path / "p.yaml"))


def test_help_lists_inspect() -> None:
    result = runner.invoke(app, ["--help"])
    assert "inspect" in result.stdout


def test_inspect_rejects_a_missing_scan_before_anything_else(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file or folder"):
        inspect_scan(tmp_path / "nothing")
