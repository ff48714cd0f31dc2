"""Loading scans: canonical RAS whatever the stored orientation or format, and one-line errors for bad files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spineage.errors import UserError
from spineage.imaging.io import ImageLoadError, Volume, load_image2d, load_label_like, load_volume
from tests.imaging.scans import (
    NO_REALDATA,
    REAL_CERVICAL,
    REAL_LUMBAR,
    phantom_mri,
    reoriented,
    small_volume,
    write_dicom_series,
    write_nifti,
)


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    return small_volume()


def voxel_value_at(volume: Volume, world: np.ndarray) -> float:
    """The value of the voxel whose centre is at the RAS point ``world``."""
    index = np.rint(volume.world_to_voxel(world)).astype(int)
    return float(volume.array[tuple(index)])


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("codes", ["LPS", "PSR", "AIL", "SRA"])
def test_any_stored_orientation_loads_to_the_same_canonical_volume(tmp_path: Path, tiny, codes: str) -> None:
    array, affine = tiny
    reference = load_volume(write_nifti(tmp_path / "ras.nii.gz", array, affine, "RAS"))
    other = load_volume(write_nifti(tmp_path / f"{codes}.nii.gz", array, affine, codes))
    assert other.source_axcodes == tuple(codes) and reference.source_axcodes == ("R", "A", "S")
    assert other.array.dtype == np.float32
    np.testing.assert_array_equal(other.array, array.astype(np.float32))
    np.testing.assert_allclose(other.affine, affine, atol=1e-5)
    assert other.spacing == pytest.approx((2.0, 1.5, 3.0))
    assert other.axcodes == ("R", "A", "S")


@pytest.mark.parametrize("codes", ["LPS", "PSR"])
def test_a_phantom_stored_like_a_site_loads_as_if_stored_ras(tmp_path: Path, codes: str) -> None:
    image, labels, affine = phantom_mri()
    ras = load_volume(write_nifti(tmp_path / "ras.nii.gz", image, affine))
    other = load_volume(write_nifti(tmp_path / "other.nii.gz", image, affine, codes))
    np.testing.assert_array_equal(other.array, ras.array)
    np.testing.assert_allclose(other.affine, ras.affine, atol=1e-4)
    label = load_volume(write_nifti(tmp_path / "lab.nii.gz", labels, affine, codes), label=True)
    assert label.array.dtype == np.uint8
    np.testing.assert_array_equal(label.array, labels)


def test_a_world_point_keeps_its_value_through_reorientation(tmp_path: Path, tiny) -> None:
    array, affine = tiny
    stored, stored_affine = reoriented(array, affine, "PSR")
    volume = load_volume(write_nifti(tmp_path / "psr.nii.gz", array, affine, "PSR"))
    rng = np.random.default_rng(3)
    for index in rng.integers(0, stored.shape, size=(20, 3)):
        world = stored_affine[:3, :3] @ index + stored_affine[:3, 3]
        assert voxel_value_at(volume, world) == stored[tuple(index)]


@pytest.mark.skipif(not REAL_CERVICAL.exists(), reason=NO_REALDATA)
def test_the_real_cervical_psr_file_is_a_known_transpose_and_flip_of_its_stored_data() -> None:
    stored_image = nib.load(str(REAL_CERVICAL))
    stored = np.asarray(stored_image.dataobj)
    volume = load_volume(REAL_CERVICAL)
    assert volume.source_axcodes == ("P", "S", "R")
    assert stored.shape == (60, 55, 52) and volume.array.shape == (52, 60, 55)
    # Stored axes (P, S, R) -> canonical (R, A, S): R is stored axis 2, A is stored axis 0 reversed, S is axis 1.
    np.testing.assert_array_equal(volume.array, stored.transpose(2, 0, 1)[:, ::-1, :].astype(np.float32))
    rng = np.random.default_rng(0)
    for index in rng.integers(0, stored.shape, size=(25, 3)):
        world = stored_image.affine[:3, :3] @ index + stored_image.affine[:3, 3]
        assert voxel_value_at(volume, world) == stored[tuple(index)]
    assert volume.meta["format"] == "nifti" and volume.meta["dtype"] == "int16"


@pytest.mark.skipif(not REAL_LUMBAR.exists(), reason=NO_REALDATA)
def test_the_real_lumbar_ras_file_loads_unchanged() -> None:
    stored_image = nib.load(str(REAL_LUMBAR))
    volume = load_volume(REAL_LUMBAR)
    assert volume.source_axcodes == ("R", "A", "S") and volume.array.shape == (38, 257, 201)
    np.testing.assert_array_equal(volume.array, np.asarray(stored_image.dataobj, dtype=np.float32))
    np.testing.assert_allclose(volume.affine, stored_image.affine)
    assert volume.spacing == pytest.approx((1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- bad NIfTI input


def _write_image(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    image = nib.Nifti1Image(array, np.eye(4) if affine is None else affine)
    nib.save(image, str(path))
    return path


def _truncated(tmp_path: Path) -> Path:
    good = write_nifti(tmp_path / "good.nii.gz", *small_volume((20, 20, 20)))
    data = good.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    return path


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "notes.nii"
    path.write_text("subject 1, lumbar, looks fine\n")
    return path


def _garbage_gz(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    return path


def _singular(tmp_path: Path) -> Path:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 2] = affine[:3, 1]  # two voxel axes point the same way
    image = nib.Nifti1Image(small_volume()[0], np.eye(4))
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)
    nib.save(image, str(tmp_path / "singular.nii.gz"))
    return tmp_path / "singular.nii.gz"


def _nonfinite_affine(tmp_path: Path) -> Path:
    affine = np.eye(4)
    affine[0, 3] = np.nan
    image = nib.Nifti1Image(small_volume()[0], np.eye(4))
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)
    nib.save(image, str(tmp_path / "nan_affine.nii.gz"))
    return tmp_path / "nan_affine.nii.gz"


def _nan_values(tmp_path: Path) -> Path:
    array = small_volume()[0].astype(np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 0] = np.inf
    return _write_image(tmp_path / "nan.nii.gz", array)


BAD_FILES = {
    "missing": (lambda tmp: tmp / "absent.nii.gz", "no such file"),
    "truncated": (_truncated, "truncated or corrupt"),
    "corrupt header": (_corrupt, "a readable NIfTI file"),
    "random bytes": (_garbage_gz, "a readable NIfTI file"),
    "text file": (_text, "a readable NIfTI file"),
    "png": (lambda tmp: (tmp / "x.png").write_bytes(b"\x89PNG") and tmp / "x.png", "a 2D PNG image"),
    "2D": (lambda tmp: _write_image(tmp / "flat.nii.gz", np.arange(30, dtype=np.int16).reshape(5, 6)), "a 2D image"),
    "single slice": (lambda tmp: _write_image(tmp / "slice.nii.gz", np.arange(30, dtype=np.int16).reshape(5, 6, 1)), "a 2D image"),
    "4D": (lambda tmp: _write_image(tmp / "fmri.nii.gz", np.arange(240, dtype=np.int16).reshape(4, 5, 6, 2)), "2 volumes"),
    "NaN": (_nan_values, "2 NaN or Inf voxels"),
    "constant": (lambda tmp: _write_image(tmp / "empty.nii.gz", np.full((4, 5, 6), 7, np.int16)), "every voxel equal to 7"),
    "singular affine": (_singular, "an invertible voxel-to-world affine"),
    "NaN affine": (_nonfinite_affine, "NaN or Inf in the affine"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path: Path, case: str) -> None:
    make, expected = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(ImageLoadError) as caught:
        load_volume(path)
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert message.startswith(str(path)) and "\n" not in message
    assert expected in message and "expected" in message and "found" in message


def test_a_4d_file_of_one_volume_loads(tmp_path: Path) -> None:
    array = small_volume()[0]
    volume = load_volume(_write_image(tmp_path / "one.nii.gz", array[..., None]))
    np.testing.assert_array_equal(volume.array, array)


def test_a_dicom_file_or_a_radiograph_is_not_a_volume(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    with pytest.raises(ImageLoadError, match="single 2D DICOM slice"):
        load_volume(get_testdata_file("MR_small.dcm"))
    with pytest.raises(ImageLoadError, match="multi-frame"):
        load_volume(get_testdata_file("rtdose.dcm"))


# --------------------------------------------------------------------------- labels


def test_label_maps_keep_integer_codes_and_may_be_all_zero(tmp_path: Path) -> None:
    _, labels, affine = phantom_mri()
    label = load_volume(write_nifti(tmp_path / "lab.nii.gz", labels, affine, "PSR"), label=True)
    assert label.array.dtype == np.uint8 and set(np.unique(label.array)) == set(np.unique(labels))
    empty = load_volume(write_nifti(tmp_path / "empty.nii.gz", np.zeros((4, 5, 6), np.uint8), np.eye(4)), label=True)
    assert not empty.array.any()
    wide = load_volume(_write_image(tmp_path / "wide.nii.gz", np.array([0, 1, 300, -2] * 30, np.int32).reshape(4, 5, 6)), label=True)
    assert wide.array.dtype == np.int16 and wide.array.max() == 300


def test_fractional_values_are_not_a_label_map(tmp_path: Path) -> None:
    path = _write_image(tmp_path / "soft.nii.gz", np.linspace(0, 1, 120, dtype=np.float32).reshape(4, 5, 6))
    with pytest.raises(ImageLoadError, match="fractional values"):
        load_volume(path, label=True)


def test_a_label_map_in_another_orientation_lands_on_the_image_grid(tmp_path: Path) -> None:
    image, labels, affine = phantom_mri()
    volume = load_volume(write_nifti(tmp_path / "img.nii.gz", image, affine, "LPS"))
    on_grid = load_label_like(write_nifti(tmp_path / "lab.nii.gz", labels, affine, "PSR"), volume)
    assert on_grid.dtype == np.uint8
    np.testing.assert_array_equal(on_grid, labels)


def test_a_finer_label_map_is_resampled_nearest_neighbour(tmp_path: Path) -> None:
    image, labels, affine = phantom_mri()
    volume = load_volume(write_nifti(tmp_path / "img.nii.gz", image, affine))
    fine = np.repeat(np.repeat(np.repeat(labels, 2, 0), 2, 1), 2, 2)
    fine_affine = affine.copy()
    fine_affine[:3, :3] /= 2
    fine_affine[:3, 3] -= np.diag(affine)[:3] / 4  # voxel centres of the half-size grid
    on_grid = load_label_like(write_nifti(tmp_path / "fine.nii.gz", fine, fine_affine, "LPS"), volume)
    assert (on_grid == labels).mean() > 0.99
    assert set(np.unique(on_grid)) <= set(np.unique(labels))


def test_a_label_map_elsewhere_in_the_world_is_refused(tmp_path: Path) -> None:
    image, labels, affine = phantom_mri()
    volume = load_volume(write_nifti(tmp_path / "img.nii.gz", image, affine))
    moved = affine.copy()
    moved[2, 3] += 2000.0
    path = write_nifti(tmp_path / "moved.nii.gz", labels, moved)
    with pytest.raises(ImageLoadError, match=r"covering 0% of its field of view") as caught:
        load_label_like(path, volume)
    assert str(caught.value).startswith(str(path))


# --------------------------------------------------------------------------- DICOM series


def test_a_dicom_series_loads_like_the_nifti_of_the_same_volume(tmp_path: Path) -> None:
    image, _, affine = phantom_mri()
    series = write_dicom_series(tmp_path / "series", image, affine, slope=0.5, intercept=-20.0)
    nifti = load_volume(write_nifti(tmp_path / "same.nii.gz", image, affine, "PSR"))
    volume = load_volume(series)
    assert volume.source_axcodes == ("P", "I", "R")
    np.testing.assert_allclose(volume.affine, nifti.affine, atol=1e-3)
    assert volume.spacing == pytest.approx(nifti.spacing)
    np.testing.assert_allclose(volume.array, nifti.array, atol=0.5)  # rescale slope 0.5 rounds to half units
    assert volume.meta["format"] == "dicom" and volume.meta["modality"] == "MR" and volume.meta["slices"] == "6"
    assert volume.meta["manufacturer"] == "Siemens" and volume.meta["field_strength"] == "1.5"


def test_a_dicom_series_can_be_a_label_map(tmp_path: Path) -> None:
    _, labels, affine = phantom_mri()
    volume = load_volume(write_dicom_series(tmp_path / "labels", labels, affine), label=True)
    assert volume.array.dtype == np.uint8
    np.testing.assert_array_equal(volume.array, labels)


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path: Path) -> None:
    image, _, affine = phantom_mri()
    series = write_dicom_series(tmp_path / "gap", image, affine, skip_slices=(2,))
    with pytest.raises(ImageLoadError, match="evenly spaced slices") as caught:
        load_volume(series)
    assert str(caught.value).startswith(str(series))


def test_a_folder_of_two_series_is_refused(tmp_path: Path) -> None:
    image, _, affine = phantom_mri()
    folder = tmp_path / "mixed"
    write_dicom_series(folder, image, affine, description="T2 SAG")
    write_dicom_series(folder, image, affine, description="T1 SAG", seed=1)
    with pytest.raises(ImageLoadError, match=r"one DICOM series .* found 2 series") as caught:
        load_volume(folder)
    assert "'T1 SAG': 6 files" in str(caught.value) and "\n" not in str(caught.value)


def test_a_series_with_two_images_per_position_is_refused(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    image, _, affine = phantom_mri()
    uid = generate_uid()
    folder = tmp_path / "echoes"
    write_dicom_series(folder, image, affine, series_uid=uid)
    write_dicom_series(folder, image, affine, series_uid=uid, seed=1)
    with pytest.raises(ImageLoadError, match="one slice per position"):
        load_volume(folder)


def test_a_series_with_inconsistent_pixel_spacing_is_refused(tmp_path: Path) -> None:
    import pydicom

    image, _, affine = phantom_mri()
    folder = write_dicom_series(tmp_path / "spacing", image, affine)
    first = sorted(folder.iterdir())[0]
    dataset = pydicom.dcmread(first)
    dataset.PixelSpacing = ["4.0", "4.0"]
    dataset.save_as(first)
    with pytest.raises(ImageLoadError, match="one pixel spacing"):
        load_volume(folder)


def test_folders_without_a_3d_series_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("nothing here")
    with pytest.raises(ImageLoadError, match="no DICOM image files"):
        load_volume(tmp_path / "empty")
    image, _, affine = phantom_mri()
    one = write_dicom_series(tmp_path / "one", image, affine, skip_slices=(1, 2, 3, 4, 5))
    with pytest.raises(ImageLoadError, match="a single 2D slice"):
        load_volume(one)


def test_a_real_ct_series_from_pydicom_loads_with_its_rescale(tmp_path: Path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"
    if not source.is_dir():
        pytest.skip("pydicom's dicomdirtests series is not installed")
    folder = shutil.copytree(source, tmp_path / "ct")
    volume = load_volume(folder)
    assert volume.array.shape == (16, 16, 5) and volume.meta["modality"] == "CT"
    assert volume.spacing == pytest.approx((0.488281, 0.488281, 2.5), rel=1e-5)
    stored = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    lowest = min(stored, key=lambda d: float(d.ImagePositionPatient[2]))
    # Canonical order: the most inferior slice first, rows flipped (DICOM rows run posterior).
    expected = lowest.pixel_array.T[::-1, ::-1].astype(np.float32) - 1024.0
    np.testing.assert_array_equal(volume.array[:, :, 0], expected)


# --------------------------------------------------------------------------- 2D images


def test_a_16_bit_png_loads_exactly(tmp_path: Path) -> None:
    from spineage.synth.generate import png_bytes

    values = (np.arange(64 * 32).reshape(64, 32) * 29 % 60000).astype(np.uint16)
    path = tmp_path / "xray.png"
    path.write_bytes(png_bytes(values))
    image = load_image2d(path)
    assert image.array.dtype == np.float32 and image.array.shape == (64, 32)
    np.testing.assert_array_equal(image.array, values.astype(np.float32))
    assert image.pixel_spacing is None and image.meta["bit_depth"] == "16"


def test_an_8_bit_and_a_grey_rgb_png_load_but_a_colour_one_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    grey = (np.arange(40 * 30).reshape(40, 30) % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_image2d(tmp_path / "grey.png").array, grey)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "rgb_grey.png")
    np.testing.assert_array_equal(load_image2d(tmp_path / "rgb_grey.png").array, grey)
    colour = np.stack([grey, grey[::-1], grey], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ImageLoadError, match="a colour RGB image"):
        load_image2d(tmp_path / "colour.png")
    Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(ImageLoadError, match="every voxel equal to 9"):
        load_image2d(tmp_path / "flat.png")


def test_dicom_images_are_rescaled() -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    for name in ("MR_small.dcm", "CT_small.dcm"):
        path = get_testdata_file(name)
        dataset = pydicom.dcmread(path)
        image = load_image2d(path)
        slope, intercept = float(dataset.get("RescaleSlope", 1)), float(dataset.get("RescaleIntercept", 0))
        np.testing.assert_allclose(image.array, dataset.pixel_array * slope + intercept)
        assert image.pixel_spacing == pytest.approx(tuple(float(v) for v in dataset.PixelSpacing))
        assert image.meta["modality"] == dataset.Modality


def test_a_monochrome1_radiograph_is_inverted_and_gets_its_detector_spacing() -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "77654033" / "CR1" / "6154"
    if not path.is_file():
        pytest.skip("pydicom's cervical CR file is not installed")
    dataset = pydicom.dcmread(path)
    image = load_image2d(path)
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
    # Flipped within the stored bit range, then in rescaled units: high stored values (white in MONOCHROME1) become low.
    expected = slope * ((2 ** int(dataset.BitsStored) - 1) - dataset.pixel_array.astype(np.float64)) + intercept
    np.testing.assert_allclose(image.array, expected, rtol=1e-5)
    assert np.corrcoef(image.array.ravel(), dataset.pixel_array.ravel())[0, 1] < -0.99
    assert image.pixel_spacing == pytest.approx((0.1, 0.1)) and "Imager" in image.meta["pixel_spacing_source"]
    assert image.meta["modality"] == "CR" and image.meta["body_part"] == "CSPINE"


def test_3d_input_is_not_a_2d_image(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    nifti = write_nifti(tmp_path / "vol.nii.gz", *small_volume())
    with pytest.raises(ImageLoadError, match="a NIfTI volume"):
        load_image2d(nifti)
    with pytest.raises(ImageLoadError, match="a 3D DICOM of 15 frames"):
        load_image2d(get_testdata_file("rtdose.dcm"))
    with pytest.raises(ImageLoadError, match="a folder"):
        load_image2d(tmp_path)
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image2d(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"junk" * 10)
    with pytest.raises(ImageLoadError, match="unreadable"):
        load_image2d(tmp_path / "junk.png")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("badVR.dcm", "a whole number in the DICOM field NumberOfFrames, found an invalid value"),
        ("MR_truncated.dcm", "could not be decoded"),
        ("examples_palette.dcm", "found PALETTE COLOR pixels"),
        ("SC_rgb_small_odd.dcm", "3 samples per pixel"),
        ("rtplan.dcm", "without pixel data"),
    ],
)
def test_awkward_dicom_files_are_clear_errors(name: str, expected: str) -> None:
    from pydicom.data import get_testdata_file

    with pytest.raises(ImageLoadError, match=expected) as caught:
        load_image2d(get_testdata_file(name))
    assert "\n" not in str(caught.value) and "'1A'" not in str(caught.value)  # invalid values are not quoted


def test_pydicom_logs_and_warns_nothing_while_loading(caplog, recwarn) -> None:
    import logging

    from pydicom.data import get_testdata_file

    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageLoadError):
        load_image2d(get_testdata_file("badVR.dcm"))
    assert [r for r in caplog.records if r.name.startswith("pydicom")] == []
    assert [str(w.message) for w in recwarn if "pydicom" in str(w.filename)] == []
    assert not logging.getLogger("pydicom").disabled  # switched back off afterwards
