"""preprocess_volume: geometry (spacing, shape, centring), normalisation, flags and the settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from spineage.errors import UserError
from spineage.imaging.intensity import intensity_problems, normalise_in_mask
from spineage.imaging.io import Volume, load_label_like, load_volume
from spineage.imaging.masking import spine_mask
from spineage.imaging.preprocess import (
    INTENSITY_FEATURES,
    PreprocessSettings,
    parse_preprocess_settings,
    preprocess_volume,
    structure_intensities,
)
from spineage.imaging.resample import (
    Grid,
    bounding_box_centre_mm,
    fraction_inside,
    resample_to_grid,
)

from .scans import NO_REALDATA, REAL_CERVICAL, phantom_mri, write_nifti

ROOT = Path(__file__).resolve().parents[2]


def volume_of(array: np.ndarray, affine: np.ndarray, codes: str = "RAS") -> Volume:
    return Volume(array=np.asarray(array, np.float32), affine=affine, source_axcodes=tuple(codes), path=Path("scan.nii.gz"))


@pytest.fixture(scope="module")
def phantom() -> tuple[Volume, np.ndarray]:
    image, labels, affine = phantom_mri((8.0, 4.0, 4.0))
    return volume_of(image, affine), np.asarray(labels)


def block_scan(centre: tuple[int, int, int] = (10, 6, 30), shape: tuple[int, int, int] = (20, 16, 48)) -> tuple[Volume, np.ndarray]:
    """A noisy 2 mm scan with a lumbar 'spine' (an L3 block, its disc and canal) away from the volume's centre."""
    rng = np.random.default_rng(0)
    image = rng.uniform(100, 200, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    x, y, z = centre
    labels[x - 2 : x + 2, y - 2 : y + 2, z - 6 : z] = 22  # L3
    labels[x - 2 : x + 2, y - 2 : y + 2, z : z + 2] = 52  # L3/4 disc
    labels[x - 1 : x + 1, y + 2, z - 6 : z + 2] = 60
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20.0, -10.0, -50.0]
    return volume_of(image, affine), labels


SMALL = PreprocessSettings(target_spacing_mm=(2.0, 2.0, 2.0), shape=(12, 12, 20), dilation_mm=2.0, min_regions_in_view=1)


def test_output_shape_spacing_dtype_and_record(phantom) -> None:
    volume, labels = phantom
    array, record = preprocess_volume(volume, labels, PreprocessSettings(), series_id="mri-1")
    assert array.shape == (16, 48, 192) and array.dtype == np.float16
    assert record["status"] == "ok" and record["flags"] == [] and record["reason"] == ""
    assert record["series_id"] == "mri-1"
    assert record["shape"] == (16, 48, 192) and record["spacing"] == (4.0, 3.0, 4.0)
    assert record["original_shape"] == (6, 60, 210) and record["original_spacing"] == (8.0, 4.0, 4.0)
    assert record["orientation"] == "RAS"
    assert record["regions_present"] == ("cervical", "thoracic", "lumbar")
    assert record["mask_in_view"] == 1.0
    assert record["mask_voxels"] >= int((array > 0).sum()) > 0.9 * record["mask_voxels"]  # a few voxels sit at p1 (0)
    assert np.isfinite(array).all() and 0.0 <= float(array.min()) and float(array.max()) <= 1.0


def test_resampling_is_exact_for_a_linear_image() -> None:
    """Trilinear interpolation reproduces a linear function of RAS mm, whatever the voxel order or spacing."""
    affine = np.array([[-3.0, 0, 0, 40.0], [0, 0, 2.0, -60.0], [0, -5.0, 0, 90.0], [0, 0, 0, 1]])  # L, S-I swapped
    index = np.indices((20, 30, 25)).reshape(3, -1)
    world = (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, 20, 30, 25)
    image = (1.0 * world[0] + 2.0 * world[1] - 0.5 * world[2]).astype(np.float32)
    grid = Grid.centred((10.0, -40.0, 20.0), (5, 6, 7), (4.0, 3.0, 4.0))
    out = resample_to_grid(image, affine, grid, order=1, dtype=np.float32)
    grid_world = (grid.affine[:3, :3] @ np.indices(grid.shape).reshape(3, -1) + grid.affine[:3, 3:4]).reshape(3, *grid.shape)
    expected = 1.0 * grid_world[0] + 2.0 * grid_world[1] - 0.5 * grid_world[2]
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_the_crop_is_centred_on_the_mask_not_on_the_volume() -> None:
    volume, labels = block_scan(centre=(10, 6, 30))
    native = spine_mask(labels, "whole")
    array, record = preprocess_volume(volume, labels, SMALL)
    assert record["status"] == "ok", record["reason"]
    np.testing.assert_allclose(record["crop_centre_mm"], bounding_box_centre_mm(native, volume.affine), atol=1e-6)
    volume_centre = volume.affine[:3, :3] @ ((np.array(labels.shape) - 1) / 2) + volume.affine[:3, 3]
    assert np.abs(np.array(record["crop_centre_mm"]) - volume_centre).max() > 5  # it would differ
    lo, hi = np.argwhere(array > 0).min(axis=0), np.argwhere(array > 0).max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, (np.array(SMALL.shape) - 1) / 2, atol=1.0)


def test_the_mask_is_dilated_and_everything_outside_is_zero() -> None:
    volume, labels = block_scan()
    undilated, _ = preprocess_volume(volume, labels, PreprocessSettings(**{**SMALL.__dict__, "dilation_mm": 0.0}))
    dilated, _ = preprocess_volume(volume, labels, SMALL)
    core = undilated > 0
    assert (dilated > 0).sum() > core.sum()
    assert ((dilated > 0) | ~core).all()
    # The image is noise everywhere: only the mask can make the rest zero.
    assert (dilated == 0).sum() > 0.5 * dilated.size


def test_the_same_scan_stored_in_another_orientation_gives_the_same_array(tmp_path: Path, phantom) -> None:
    volume, labels = phantom
    outputs = []
    for codes in ("RAS", "PSR"):
        image_path = write_nifti(tmp_path / f"{codes}.nii.gz", volume.array.astype(np.int16), volume.affine, codes)
        label_path = write_nifti(tmp_path / f"{codes}-label.nii.gz", labels, volume.affine, codes)
        loaded = load_volume(image_path)
        array, record = preprocess_volume(loaded, load_label_like(label_path, loaded), PreprocessSettings())
        assert record["orientation"] == codes
        outputs.append(array)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_percentile_normalisation_uses_only_the_mask() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(1000, 100, (10, 10, 10)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[2:8, 2:8, 2:8] = True
    image[~mask] = 1e6  # whatever lies outside must not move the scale
    out, (offset, scale) = normalise_in_mask(image, mask, "percentile", (1, 99))
    assert out.dtype == np.float32
    assert (out[~mask] == 0).all()
    assert 0 <= out.min() and out.max() <= 1
    assert offset == pytest.approx(np.percentile(image[mask], 1)) and scale == pytest.approx(np.ptp(np.percentile(image[mask], [1, 99])))
    assert np.mean(out[mask] == 1.0) == pytest.approx(0.01, abs=0.01)


def test_median_iqr_normalisation_is_a_robust_z_score() -> None:
    rng = np.random.default_rng(2)
    image = rng.normal(500, 50, (12, 12, 12)).astype(np.float32)
    mask = np.ones(image.shape, bool)
    mask[0] = False
    out, _ = normalise_in_mask(image, mask, "median_iqr")
    assert np.median(out[mask]) == pytest.approx(0.0, abs=1e-4)
    q1, q3 = np.percentile(out[mask], [25, 75])
    assert q3 - q1 == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="normalisation"):
        normalise_in_mask(image, mask, "zscore")


def test_implausible_intensities_are_named() -> None:
    assert intensity_problems(np.linspace(1, 2, 100), 0.05) == []
    assert "constant" in intensity_problems(np.full(100, 7.0), 0.05)[0]
    assert "negative" in intensity_problems(np.linspace(-2, 1, 100), 0.05)[0]
    assert "NaN" in intensity_problems(np.array([1.0, np.nan, 2.0, 3.0]), 0.05)[0]


def test_an_empty_mask_excludes_the_scan_with_its_reason() -> None:
    volume, labels = block_scan()  # lumbar only
    array, record = preprocess_volume(volume, labels, PreprocessSettings(**{**SMALL.__dict__, "region": "cervical"}))
    assert array is None
    assert record["status"] == "excluded" and record["flags"] == ["few_regions", "empty_mask"]
    assert "no cervical spine labels" in record["reason"]


def test_a_constant_image_inside_the_mask_is_excluded() -> None:
    volume, labels = block_scan()
    flat = volume_of(np.full(labels.shape, 50.0), volume.affine)
    array, record = preprocess_volume(flat, labels, SMALL)
    assert array is None and record["status"] == "excluded" and record["flags"] == ["implausible_intensity"]


def test_kept_flags_keep_the_array_unless_excluded_by_settings() -> None:
    volume, labels = block_scan()
    settings = PreprocessSettings(**{**SMALL.__dict__, "min_regions_in_view": 3, "shape": (4, 4, 4), "max_spacing_factor": 1.5,
                                     "target_spacing_mm": (2.0, 2.0, 4.0)})
    array, record = preprocess_volume(volume, labels, settings)
    assert record["status"] == "flagged" and array is not None and array.shape == (4, 4, 4)
    assert record["flags"] == ["few_regions", "spacing_off_target", "mask_truncated"]
    assert "1 of the 3 regions" in record["reason"] and "mask inside the output grid" in record["reason"]
    array, record = preprocess_volume(volume, labels, PreprocessSettings(**{**settings.__dict__, "exclude_flags": ("mask_truncated",)}))
    assert array is None and record["status"] == "excluded"


def test_the_params_file_section_matches_the_defaults() -> None:
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["preprocess"]
    assert parse_preprocess_settings(section) == PreprocessSettings()
    assert parse_preprocess_settings(None) == PreprocessSettings()


@pytest.mark.parametrize(
    "section, message",
    [
        ({"region": "sacral"}, "preprocess.region among"),
        ({"shape": [16, 48]}, "three integers"),
        ({"target_spacing_mm": [4, 0, 4]}, "three numbers"),
        ({"exclude_flags": ["empty_mask"]}, "always exclude"),
        ({"percentiles": [99, 1]}, "increasing"),
        ({"dilation": 5}, "among"),
        ({"workers": 0}, "preprocess.workers between"),
    ],
)
def test_bad_settings_are_user_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_preprocess_settings(section)


def test_the_settings_hash_follows_the_output_settings_only() -> None:
    base = PreprocessSettings()
    assert base.settings_hash() == PreprocessSettings(workers=7, max_failure_fraction=0.5).settings_hash()
    assert base.settings_hash() != PreprocessSettings(dilation_mm=4.0).settings_hash()
    assert base.settings_hash() != PreprocessSettings(segmentation_model="models:/spine-seg-mri@candidate").settings_hash()


@pytest.mark.skipif(not REAL_CERVICAL.is_file(), reason=NO_REALDATA)
def test_a_real_cervical_scan_stored_psr_goes_through() -> None:
    """Real scanner intensities and a non-RAS file: a C4 label block in its middle gives a finite array centred on it."""
    volume = load_volume(REAL_CERVICAL)
    assert volume.source_axcodes == ("P", "S", "R")
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[25:35, 20:35, 20:32] = 3  # C4
    settings = PreprocessSettings(region="cervical", min_regions_in_view=1, shape=(16, 16, 16))
    array, record = preprocess_volume(volume, labels, settings)
    assert record["status"] == "ok", record["reason"]
    assert array.shape == (16, 16, 16) and np.isfinite(array).all() and array.max() == 1.0
    np.testing.assert_allclose(record["crop_centre_mm"], bounding_box_centre_mm(labels > 0, volume.affine), atol=0.01)


def test_the_share_of_the_mask_inside_the_grid_matches_a_point_count() -> None:
    rng = np.random.default_rng(4)
    mask = rng.random((10, 20, 30)) > 0.7
    grid = Grid.centred((5.0, -12.0, 20.0), (6, 8, 10), (4.0, 3.0, 4.0))
    for affine in (np.diag([2.0, 2.0, 3.0, 1.0]), np.diag([-2.0, 2.0, -3.0, 1.0])):
        affine[:3, 3] = [-10.0, -30.0, 0.0] if affine[0, 0] > 0 else [10.0, -30.0, 80.0]
        to_grid = np.linalg.inv(grid.affine) @ affine
        points = np.argwhere(mask) @ to_grid[:3, :3].T + to_grid[:3, 3]
        expected = np.all((points >= -0.5) & (points < np.array(grid.shape) - 0.5), axis=1).mean()
        assert 0 < expected < 1
        assert fraction_inside(mask, affine, grid) == pytest.approx(expected)


def test_a_segmentation_without_levels_is_usable_for_the_whole_spine_only(phantom) -> None:
    volume, labels = phantom
    generic = labels.copy()
    generic[(labels >= 1) & (labels <= 27)] = 100
    generic[(labels >= 31) & (labels <= 56)] = 130
    expected, _ = preprocess_volume(volume, labels, PreprocessSettings())
    array, record = preprocess_volume(volume, generic, PreprocessSettings())
    assert record["status"] == "ok" and record["regions_present"] == ("unidentified",)  # no few_regions flag
    np.testing.assert_array_equal(array, expected)
    array, record = preprocess_volume(volume, generic, PreprocessSettings(region="lumbar"))
    assert array is None and record["status"] == "excluded" and "empty_mask" in record["flags"]
    assert "carry no level" in record["reason"]


@pytest.mark.parametrize("name", ["sct_t2_lumbar.nii.gz", "sct_t2_cervical.nii.gz"])
def test_both_real_volumes_preprocess_to_the_default_target_shape(name: str) -> None:
    """Real files (RAS lumbar, PSR cervical) reach the model's input grid; the spine label is a block at the centre."""
    path = REAL_CERVICAL.parent / name
    if not path.is_file():
        pytest.skip(NO_REALDATA)
    volume = load_volume(path)
    labels = np.zeros(volume.array.shape, np.uint8)
    centre = [n // 2 for n in volume.array.shape]
    labels[tuple(slice(c - 5, c + 5) for c in centre)] = 3
    settings = PreprocessSettings(min_regions_in_view=1)
    array, record = preprocess_volume(volume, labels, settings)
    assert record["status"] == "ok", record["reason"]
    assert array.shape == tuple(PreprocessSettings().shape) and array.dtype == np.float16
    assert np.isfinite(array.astype(np.float32)).all() and 0 < np.count_nonzero(array) < array.size


def test_structure_intensities_are_quartiles_inside_each_structure_and_mask() -> None:
    labels = np.zeros((1, 1, 12), np.uint8)
    labels[0, 0, :4] = [1, 27, 100, 5]  # levelled vertebrae, sacrum, an unlevelled vertebra
    labels[0, 0, 4:8] = [31, 130, 31, 40]  # discs, levelled and not
    labels[0, 0, 8:10] = [60, 61]  # CSF and cord
    image = np.arange(12, dtype=np.float32)[None, None] / 10
    mask = np.ones_like(labels, bool)
    mask[0, 0, 3] = False  # outside the region: not counted
    features = structure_intensities(image, labels, mask)
    assert list(features) == list(INTENSITY_FEATURES)
    assert (features["p25_vertebra"], features["median_vertebra"], features["p75_vertebra"]) == (0.05, 0.1, 0.15)
    assert features["median_disc"] == pytest.approx(0.55) and features["median_canal"] == pytest.approx(0.85)
    no_canal = structure_intensities(image, np.where(np.isin(labels, [60, 61]), 0, labels), mask)
    assert no_canal["median_canal"] is None and no_canal["p75_canal"] is None and no_canal["median_disc"] == features["median_disc"]


def test_the_record_holds_structure_intensities_that_tell_bone_from_disc_and_csf(phantom) -> None:
    volume, labels = phantom
    _, record = preprocess_volume(volume, labels, PreprocessSettings())
    values = {feature: record[feature] for feature in INTENSITY_FEATURES}
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values.values()), values
    for structure in ("vertebra", "disc", "canal"):
        assert values[f"p25_{structure}"] <= values[f"median_{structure}"] <= values[f"p75_{structure}"]
    # T2: CSF brightest; the 50-year-old phantom's fatty marrow well above its discs.
    assert values["median_canal"] > values["median_vertebra"] > values["median_disc"] + 0.05
    generic = labels.copy()
    generic[(labels >= 1) & (labels <= 27)] = 100
    generic[(labels >= 31) & (labels <= 56)] = 130
    _, unlevelled = preprocess_volume(volume, generic, PreprocessSettings())
    assert {feature: unlevelled[feature] for feature in INTENSITY_FEATURES} == values
    _, lumbar = preprocess_volume(volume, labels, PreprocessSettings(region="lumbar"))
    assert lumbar["median_disc"] != values["median_disc"]  # only the region's own structures count
    _, excluded = preprocess_volume(volume, np.zeros_like(labels), PreprocessSettings())
    assert excluded["status"] == "excluded" and all(excluded[feature] is None for feature in INTENSITY_FEATURES)
