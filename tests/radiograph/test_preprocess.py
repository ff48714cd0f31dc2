"""Radiograph preprocessing: exact shapes, kept aspect, centred zero padding, equalisation, margins, bit depths, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spineage.errors import UserError
from spineage.radiograph.preprocess import (
    MANIFEST_COLUMNS,
    build_radiograph_arrays,
    fitted_shape,
    load_radiograph,
    preprocess_image,
    radiograph_transform,
    read_radiograph,
)
from spineage.radiograph.settings import RadiographSettings

SMALL = RadiographSettings(image_shape=(64, 32))
LARGE = RadiographSettings(image_shape=(256, 128))


# --------------------------------------------------------------------------- a tiny raw cohort (also used by test_gate)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 (8-bit) or uint16 (16-bit) greyscale, or an (rows, cols, 3) uint8 RGB, PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def spine_picture(rows: int, cols: int, seed: int, *, bits: int = 16) -> np.ndarray:
    """A noisy picture with a bright column down the middle (a spine, roughly), 8 or 16 bits."""
    rng = np.random.default_rng(seed)
    picture = rng.normal(0.3, 0.05, (rows, cols))
    picture[:, cols // 3: cols // 2] += 0.4
    picture = np.clip(picture, 0, 1)
    return (picture * 255).round().astype(np.uint8) if bits == 8 else (picture * 4095).round().astype(np.uint16)


def write_radiograph_cohort(folder: Path, xrays: int = 16, vfas: int = 4, ages: tuple[float, float] = (35.0, 80.0)) -> Path:
    """A raw cohort with ``xrays`` lateral radiographs (8- and 16-bit, portrait), ``vfas`` VFA images, one MRI row
    (not a radiograph: ignored), participants and outcomes; ages spread over ``ages``."""
    folder.mkdir(parents=True, exist_ok=True)
    sessions, participants, outcomes = [], [], []
    ages_all = np.linspace(*ages, xrays + vfas)
    for index in range(xrays + vfas):
        subject = f"sub-{index + 1:02d}"
        xray = index < xrays
        series = f"{'xr' if xray else 'vfa'}-{index + 1:02d}"
        shape = (120, 64) if xray else (96, 64)
        write_png(folder / "images" / f"{series}.png", spine_picture(*shape, seed=index, bits=8 if index % 2 else 16))
        sessions.append({"series_id": series, "subject_id": subject, "age": f"{ages_all[index]:.2f}",
                         "modality": "xray_lat" if xray else "dxa_vfa", "image": f"images/{series}.png", "label": "",
                         "site": "site-a", "scanner": "GE"})
        participants.append({"subject_id": subject, "sex": "F" if index % 2 else "M", "birth_year": 1960})
        outcomes.append({"subject_id": subject, "bmd_t_lumbar": -1.5, "bmd_t_femoral_neck": -2.6, "bmd_t_total_hip": 0.4,
                         "osteoporosis": int(index % 5 == 0), "prevalent_vertebral_fracture": int(index % 7 == 0),
                         "height_cm": 165.0, "weight_kg": 70.0, "followup_years": 5.5, "death": int(index == 3),
                         "fracture_followup_years": 4.0, "incident_fracture": int(index == 4),
                         "incident_fracture_type": "vertebral" if index == 4 else ""})
    sessions.append({"series_id": "mri-01-1", "subject_id": "sub-01", "age": f"{ages[0]:.2f}", "modality": "mri_t2_sag",
                     "image": "images/mri-01-1.nii.gz", "label": "", "site": "site-a", "scanner": "GE"})
    pd.DataFrame(sessions).to_csv(folder / "sessions.csv", index=False)
    pd.DataFrame(participants).to_csv(folder / "participants.csv", index=False)
    pd.DataFrame(outcomes).to_csv(folder / "outcomes.csv", index=False)
    return folder


# --------------------------------------------------------------------------- the transform


@pytest.mark.parametrize("modality", ["xray_lat", "dxa_vfa"])
@pytest.mark.parametrize("shape", [(300, 100), (90, 240), (150, 150), (20, 10)], ids=["portrait", "landscape", "square", "tiny"])
def test_the_output_is_exactly_image_shape_float32_within_0_1(shape: tuple[int, int], modality: str) -> None:
    picture = np.random.default_rng(1).integers(0, 65535, shape).astype(np.uint16)
    out = preprocess_image(picture, modality, SMALL)
    assert out.shape == SMALL.image_shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.5


def _rectangle_picture(shape: tuple[int, int], rectangle: tuple[int, int]) -> np.ndarray:
    """A dark picture with one bright, centred rectangle (rows x cols)."""
    picture = np.full(shape, 100, np.uint16)
    top, left = (shape[0] - rectangle[0]) // 2, (shape[1] - rectangle[1]) // 2
    picture[top: top + rectangle[0], left: left + rectangle[1]] = 3000
    return picture


@pytest.mark.parametrize("modality", ["xray_lat", "dxa_vfa"])
@pytest.mark.parametrize(
    ("shape", "rectangle"),
    [((400, 160), (90, 30)), ((160, 400), (30, 90)), ((300, 300), (60, 60))],
    ids=["portrait", "landscape", "square"],
)
def test_the_aspect_ratio_is_kept_within_a_pixel(shape, rectangle, modality: str) -> None:
    out = preprocess_image(_rectangle_picture(shape, rectangle), modality, LARGE)
    # Background 0, rectangle 1 after equalisation: the mass along a line through its centre is its length in pixels.
    # Averaged over the lines through the middle half of it (area resizing pools unevenly line by line).
    rows, cols = np.nonzero(out > 0.5)
    middle_rows = slice(*np.percentile(rows, [25, 75]).astype(int))
    middle_cols = slice(*np.percentile(cols, [25, 75]).astype(int))
    height, width = float(out[:, middle_cols].sum(axis=0).mean()), float(out[middle_rows, :].sum(axis=1).mean())
    (short, long), ratio = sorted((height, width)), max(rectangle) / min(rectangle)
    assert abs(long - ratio * short) <= 1.0, (height, width)  # the long side as the short one predicts, within a pixel
    assert short > 5  # it was measured, not lost


@pytest.mark.parametrize("modality", ["xray_lat", "dxa_vfa"])
@pytest.mark.parametrize("shape", [(300, 60), (60, 200)], ids=["thin-portrait", "landscape"])
def test_the_padding_is_exactly_zero_and_centred(shape: tuple[int, int], modality: str) -> None:
    picture = np.random.default_rng(2).integers(1000, 2000, shape).astype(np.uint16)
    out = preprocess_image(picture, modality, LARGE)
    axis = 0 if shape[1] / shape[0] > LARGE.image_shape[1] / LARGE.image_shape[0] else 1  # padded rows, or columns
    empty = ~np.any(out != 0.0, axis=1 - axis)  # lines of exact zeros along the padded axis
    before = int(np.argmin(empty))
    after = int(np.argmin(empty[::-1]))
    content = out.shape[axis] - before - after
    assert before > 10 and after > 10
    assert abs(before - after) <= 1
    assert not empty[before: before + content].any()  # no zero line inside the picture: the padding is all there is
    if modality == "dxa_vfa":  # no margin crop: the content is exactly the fitted picture
        assert content == fitted_shape(shape, LARGE.image_shape)[axis]


def _uniform_distance(values: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of ``values`` from the uniform distribution on [0, 1]."""
    ordered = np.sort(values.ravel())
    return float(np.max(np.abs(ordered - np.arange(1, ordered.size + 1) / ordered.size)))


def test_equalisation_spreads_a_low_contrast_image_over_0_1_with_a_flatter_histogram() -> None:
    # The target's own shape and a VFA (no crop): nothing but intensities changes.
    picture = np.random.default_rng(3).normal(2000, 30, SMALL.image_shape).round().astype(np.uint16)
    equalised = preprocess_image(picture, "dxa_vfa", SMALL)
    scaled = preprocess_image(picture, "dxa_vfa", RadiographSettings(image_shape=SMALL.image_shape, equalise=False))
    assert equalised.min() == 0.0 and equalised.max() == 1.0
    assert scaled.min() == 0.0 and scaled.max() == 1.0  # min-max scaling alone spans [0, 1] too ...
    assert _uniform_distance(equalised) < 0.05  # ... but only equalisation makes the histogram near uniform
    assert _uniform_distance(scaled) > 0.15
    assert np.corrcoef(equalised.ravel(), picture.ravel())[0, 1] > 0.9  # monotone: brighter stays brighter


def test_the_margin_is_cropped_from_a_radiograph_but_not_from_a_vfa_image() -> None:
    settings = RadiographSettings(image_shape=(128, 64))
    picture = np.random.default_rng(4).integers(1000, 2000, settings.image_shape).astype(np.uint16)
    picture[:2, :] = picture[-2:, :] = picture[:, :2] = picture[:, -2:] = 4000  # a bright 2-pixel frame
    frame = np.zeros(settings.image_shape, bool)
    frame[:2, :] = frame[-2:, :] = frame[:, :2] = frame[:, -2:] = True

    vfa = preprocess_image(picture, "dxa_vfa", settings)
    np.testing.assert_array_equal(vfa[frame], 1.0)  # kept, untouched (no resize: the target's shape)
    assert vfa[~frame].max() < 0.99

    xray = preprocess_image(picture, "xray_lat", settings)
    assert xray.max() < 0.99  # 5 % of each side (6 rows, 3 columns) took the frame away


def test_8_and_16_bit_files_of_the_same_picture_give_the_same_output(tmp_path: Path) -> None:
    picture = spine_picture(200, 90, seed=5, bits=8)
    write_png(tmp_path / "8.png", picture)
    write_png(tmp_path / "16.png", picture.astype(np.uint16) * 257)  # 255 -> 65535
    eight, sixteen = load_radiograph(tmp_path / "8.png"), load_radiograph(tmp_path / "16.png")
    assert (eight.bit_depth, sixteen.bit_depth) == (8, 16)
    assert sixteen.array.max() == 257 * eight.array.max()
    for modality in ("xray_lat", "dxa_vfa"):
        np.testing.assert_allclose(preprocess_image(sixteen.array, modality, LARGE),
                                   preprocess_image(eight.array, modality, LARGE), atol=1e-5)


def test_reading_takes_grey_rgb_and_refuses_colour_and_non_2d(tmp_path: Path) -> None:
    grey = spine_picture(70, 40, seed=6, bits=8)
    write_png(tmp_path / "rgb-grey.png", np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(read_radiograph(tmp_path / "rgb-grey.png"), grey.astype(np.float32))
    colour = np.stack([grey, grey, 255 - grey], axis=-1)
    write_png(tmp_path / "colour.png", colour)
    with pytest.raises(UserError, match="expected a greyscale image, found a colour RGB image"):
        read_radiograph(tmp_path / "colour.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UserError, match="unreadable"):
        read_radiograph(tmp_path / "broken.png")
    with pytest.raises(UserError, match=r"Expected a 2D \(rows, cols\) radiograph, found an array of shape \(3, 70, 40\)"):
        preprocess_image(np.stack([grey] * 3), "xray_lat", SMALL)
    with pytest.raises(UserError, match="Expected a radiograph modality .* found 'mri_t2_sag'"):
        radiograph_transform("mri_t2_sag", SMALL)


# --------------------------------------------------------------------------- the stage


def test_the_stage_writes_arrays_manifest_and_summary_and_records_a_corrupt_image(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw")  # 16 radiographs + 4 VFA: 1 failure is 5 %, allowed
    (raw / "images" / "xr-03.png").write_bytes(b"not a png at all")
    out, reports = tmp_path / "arrays", tmp_path / "reports"
    (out).mkdir()
    np.save(out / "gone-01.npy", np.zeros(2))  # an array of an earlier run whose series is gone

    summary = build_radiograph_arrays(raw, out, reports, SMALL, progress=False)

    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 20 and "mri-01-1" not in set(manifest["series_id"])
    failed = manifest[manifest["status"] == "failed"]
    assert failed["series_id"].tolist() == ["xr-03"]
    assert "images/xr-03.png: expected a PNG or DICOM image, found an unreadable file" in failed["reason"].iloc[0]
    assert str(raw) not in failed["reason"].iloc[0]  # no local folder in a table that travels
    assert failed["file"].iloc[0] == "" and not (out / "xr-03.npy").exists()
    ok = manifest[manifest["status"] == "ok"].set_index("series_id")
    first = ok.loc["xr-01", ["modality", "sex", "original_shape", "bit_depth", "file"]].tolist()
    assert first == ["xray_lat", "M", "120x64", "16", "xr-01.npy"]
    assert ok.loc["xr-02", "bit_depth"] == "8" and ok.loc["vfa-20", "modality"] == "dxa_vfa"
    assert ok.loc["vfa-20", "age"] == "80.00" and ok.loc["vfa-20", "sex"] == "F"
    array = np.load(out / "vfa-20.npy")
    assert array.shape == SMALL.image_shape and array.dtype == np.float16 and 0 <= array.min() and array.max() <= 1
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(ok["file"])  # the stale array is gone

    saved = json.loads((reports / "summary.json").read_text())
    assert saved == summary
    assert summary["by_status"] == {"ok": 19, "failed": 1}
    assert summary["by_modality"] == {"xray_lat": {"ok": 15, "failed": 1}, "dxa_vfa": {"ok": 4, "failed": 0}}


def test_the_stage_fails_when_more_than_5_percent_fail_after_writing_the_manifest(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw")
    (raw / "images" / "xr-03.png").write_bytes(b"not a png at all")
    write_png(raw / "images" / "vfa-18.png", np.zeros((30, 20, 3), np.uint8) + np.array([255, 0, 0], np.uint8))
    out, reports = tmp_path / "arrays", tmp_path / "reports"
    with pytest.raises(UserError, match=r"Expected at most 5% of the 20 radiographs unreadable, found 2 \(10.0%, e.g. xr-03: "):
        build_radiograph_arrays(raw, out, reports, SMALL, progress=False)
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("series_id")
    assert manifest.loc[["xr-03", "vfa-18"], "status"].tolist() == ["failed", "failed"]
    assert "found a colour RGB image" in manifest.loc["vfa-18", "reason"]
    assert json.loads((reports / "summary.json").read_text())["by_status"] == {"ok": 18, "failed": 2}


def test_the_stage_needs_radiographs(tmp_path: Path) -> None:
    raw = write_radiograph_cohort(tmp_path / "raw", xrays=1, vfas=0)
    sessions = pd.read_csv(raw / "sessions.csv")
    sessions[sessions["modality"] == "mri_t2_sag"].to_csv(raw / "sessions.csv", index=False)
    with pytest.raises(UserError, match=r"Expected radiographs \(xray_lat, dxa_vfa\) in .*sessions.csv, found none among 1 rows"):
        build_radiograph_arrays(raw, tmp_path / "arrays", tmp_path / "reports", SMALL, progress=False)
