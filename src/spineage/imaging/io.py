"""Loading scans: NIfTI files and DICOM series as canonical RAS volumes, radiographs as 2D images.

Every 3D scan comes back the same way whatever its format or stored
orientation: a float32 array in the closest canonical RAS voxel order
(nibabel's ``as_closest_canonical``: axes permuted and flipped, never
resampled) with the affine that maps its voxel indices to RAS millimetres.
Bad input is a :class:`ImageLoadError` whose one-line message names the file,
what was expected and what was found. DICOM headers contribute only the
allow-listed fields of :mod:`spineage.imaging.deid`.

Example:
    >>> from spineage.imaging.io import load_volume  # doctest: +SKIP
    >>> volume = load_volume("data/raw/images/mri-0001.nii.gz")  # doctest: +SKIP
    >>> volume.source_axcodes, volume.spacing  # doctest: +SKIP
    (('P', 'S', 'R'), (4.0, 4.0, 8.0))
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spineage.errors import UserError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_SPACING_TOLERANCE = 0.01
"""Relative tolerance on slice gaps and grid matches (1 %)."""


class ImageLoadError(UserError):
    """A scan that cannot be loaded as asked: the message names the file, what was expected and what was found."""


def _fail(path: Path, expected: str, found: str) -> ImageLoadError:
    return ImageLoadError(f"{path}: expected {expected}, found {found}")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scan in canonical RAS voxel order.

    Args:
        array: float32 intensities (integer codes for a label map), shape (X, Y, Z), voxel
            axes ordered and flipped to point right, anterior, superior as closely as they can.
        affine: 4x4 float64 mapping voxel indices of ``array`` to RAS millimetres.
        source_axcodes: the axis codes of the data as stored on disk, e.g. ``("P", "S", "R")``.
        path: the file or DICOM series folder it came from.
        meta: non-identifying acquisition facts (format, dtype, modality, manufacturer, ...).
    """

    array: np.ndarray
    affine: np.ndarray
    source_axcodes: tuple[str, str, str]
    path: Path
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along X, Y, Z of ``array``."""
        norms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array's shape (X, Y, Z)."""
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Axis codes of ``array`` (``("R", "A", "S")`` unless the acquisition is strongly oblique)."""
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel indices of RAS-mm points, shape (..., 3)."""
        points = np.asarray(points, dtype=np.float64)
        inverse = np.linalg.inv(self.affine)
        return points @ inverse[:3, :3].T + inverse[:3, 3]


@dataclass(frozen=True, eq=False)
class Image2D:
    """A 2D image (radiograph, DXA VFA, one DICOM frame).

    Args:
        array: float32 (rows, cols); for DICOM the rescaled values, brighter for more attenuation.
        pixel_spacing: (row, column) spacing in mm where the file says it, else None.
        path: the file it came from.
        meta: non-identifying facts (format, dtype, bit depth, modality, ...).
    """

    array: np.ndarray
    pixel_spacing: tuple[float, float] | None
    path: Path
    meta: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- common checks


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _looks_like_dicom(path: Path) -> bool:
    """True for a file with the DICOM preamble (or a .dcm name)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise _fail(path, what, "no such file or folder")


def _check_values(path: Path, array: np.ndarray, *, label: bool) -> None:
    """NaN/Inf and all-constant checks (a constant label map is allowed: an empty segmentation)."""
    if array.size == 0:
        raise _fail(path, "image data", "an empty array")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            raise _fail(path, "finite intensities", f"{bad} NaN or Inf voxels")
    if not label:
        low, high = np.min(array), np.max(array)
        if low == high:
            raise _fail(path, "an image with varying intensities", f"every voxel equal to {float(low):g} (an empty image)")


def _check_affine(path: Path, affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise _fail(path, "a finite 4x4 voxel-to-world affine", "NaN or Inf in the affine")
    linear = affine[:3, :3]
    norms = np.sqrt((linear**2).sum(axis=0))
    if (norms < 1e-6).any() or abs(np.linalg.det(linear)) < 1e-9 * max(float(np.prod(norms)), 1e-30):
        raise _fail(path, "an invertible voxel-to-world affine", f"a singular one (voxel sizes {_fmt3(norms)} mm)")
    return affine


def _fmt3(values) -> str:
    return " x ".join(f"{float(v):.3g}" for v in values)


def _label_array(path: Path, data: np.ndarray) -> np.ndarray:
    """Integer label codes as uint8 (0-255) or int16, never scaled; fractional values are an error."""
    if np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise _fail(path, "integer label codes", "NaN or Inf values")
        rounded = np.rint(data)
        if np.abs(data - rounded).max(initial=0.0) > 1e-3:
            raise _fail(path, "integer label codes", "fractional values (an intensity image, not a label map?)")
        data = rounded
    elif not np.issubdtype(data.dtype, np.integer) and data.dtype != bool:
        raise _fail(path, "integer label codes", f"{data.dtype} data")
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if 0 <= low and high <= 255:
        return data.astype(np.uint8)
    if -32768 <= low and high <= 32767:
        return data.astype(np.int16)
    raise _fail(path, "label codes within the int16 range", f"values from {low} to {high}")


def _spatial_3d(path: Path, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3D shape of an image, after dropping trailing axes of length one (a 4D file of one volume)."""
    shape = tuple(int(n) for n in data_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise _fail(path, "a single 3D volume", f"a {len(shape)}D image of shape {shape} ({int(np.prod(shape[3:]))} volumes)")
    if len(shape) < 3 or min(shape) < 2:
        raise _fail(path, "a 3D volume", f"a 2D image of shape {shape} (use load_image2d for radiographs)")
    return shape  # type: ignore[return-value]


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, str, str]]:
    """Reorder voxels to the closest canonical RAS, as ``nibabel.as_closest_canonical`` does.

    Returns:
        (canonical array, its affine, the axis codes of the input).
    """
    import nibabel as nib
    from nibabel import orientations

    codes = tuple(str(c) for c in nib.aff2axcodes(affine))
    ornt = orientations.io_orientation(affine)
    if np.array_equal(ornt, orientations.axcodes2ornt(("R", "A", "S"))):
        return array, affine, codes  # type: ignore[return-value]
    canonical = np.ascontiguousarray(orientations.apply_orientation(array, ornt))
    new_affine = affine @ orientations.inv_ornt_aff(ornt, array.shape)
    return canonical, new_affine, codes  # type: ignore[return-value]


# --------------------------------------------------------------------------- NIfTI


def _load_nifti(path: Path, label: bool) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        image = nib.load(str(path))
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as error:
        raise _fail(path, "a readable NIfTI file", f"a corrupt or truncated header ({_short(error)})") from None
    shape = _spatial_3d(path, image.shape)
    header = image.header
    is_nifti = isinstance(image, (nib.Nifti1Image, nib.Nifti2Image))
    if not is_nifti:
        affine_source = "header"
    elif int(header["sform_code"]) > 0:
        affine_source = "sform"
    elif int(header["qform_code"]) > 0:
        affine_source = "qform"
    else:
        affine_source = "none (voxel sizes only)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if label:
                data = np.asanyarray(image.dataobj)
                slope, inter = header.get_slope_inter()
                if slope not in (None, 1.0) or inter not in (None, 0.0):
                    data = np.asarray(image.get_fdata(dtype=np.float32))
            else:
                data = np.asarray(image.get_fdata(dtype=np.float32))
    except (OSError, EOFError, ValueError, zlib.error, MemoryError) as error:
        raise _fail(path, f"{int(np.prod(shape))} voxels of image data", f"a truncated or corrupt file ({_short(error)})") from None
    data = data.reshape(shape)
    kind = "nifti" if is_nifti else type(image).__name__.lower().removesuffix("image")
    meta = {"format": kind, "dtype": np.dtype(image.get_data_dtype()).name, "affine_source": affine_source}
    return data, image.affine, meta


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:120]


# --------------------------------------------------------------------------- DICOM


def _read_dicom(path: Path, *, pixels: bool = True, quiet: bool = False):
    """``pydicom.dcmread`` with a clear error (or None when ``quiet`` and the file is not DICOM)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        if quiet:
            return None
        # Only structural errors are quoted: a value error may quote a header value (a name, a date).
        detail = _short(error) if isinstance(error, (InvalidDicomError, EOFError, OSError)) else type(error).__name__
        raise _fail(path, "a DICOM file", f"an unreadable one ({detail})") from None


@contextlib.contextmanager
def _quiet_dicom():
    """Silence pydicom's warnings and log records while a header is read.

    pydicom reports an invalid value by quoting it (``Invalid value for VR DA: '1960xx01'``),
    which could put a birth date on stderr or in a log: nothing of a header may get out that way.
    """
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled


def _dicom_int(path: Path | None, dataset, keyword: str, default: int) -> int:
    """A whole-number header field; an invalid one is an error that does not quote the value."""
    try:
        value = dataset.get(keyword, default)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        if path is None:
            return default
        raise _fail(path, f"a whole number in the DICOM field {keyword}", "an invalid value") from None


def _pixels(path: Path, dataset) -> np.ndarray:
    """Decoded pixel data, with a clear error for a transfer syntax nothing here can decode."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset and "DoubleFloatPixelData" not in dataset:
        raise _fail(path, "a DICOM image", "a DICOM object without pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(dataset.pixel_array)
    except Exception as error:  # pydicom raises many types for undecodable or short pixel data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise _fail(path, "decodable pixel data", f"{name} that could not be decoded ({_short(error)})") from None


def _rescale(dataset, data: np.ndarray) -> np.ndarray:
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    data = data.astype(np.float32)
    if slope != 1.0 or intercept != 0.0:
        data = data * np.float32(slope) + np.float32(intercept)
    return data


def _floats(dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    value = dataset.get(keyword)
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def _dicom_files(folder: Path) -> list[Path]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"]
    return files


def _load_dicom_series(folder: Path, label: bool) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Stack a folder of single-frame DICOM slices along the slice normal; the affine in RAS."""
    from spineage.imaging.deid import safe_dicom_meta

    headers = []
    for file in _dicom_files(folder):
        dataset = _read_dicom(file, pixels=False, quiet=True)
        if dataset is not None and "Rows" in dataset:  # an image, not a DICOMDIR, report or plan
            headers.append((file, dataset))
    if not headers:
        raise _fail(folder, "a folder of DICOM slices", "no DICOM image files")
    series: dict[str, list] = {}
    for file, dataset in headers:
        series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((file, dataset))
    if len(series) > 1:
        described = []
        for members in series.values():
            meta = safe_dicom_meta(members[0][1])
            number = members[0][1].get("SeriesNumber", "?")
            description = meta.get("series_description", "")
            count = f"{len(members)} file{'s' if len(members) != 1 else ''}"
            described.append(f"series {number}{' ' + repr(description) if description else ''}: {count}")
        raise _fail(folder, "one DICOM series (pass the folder of a single series)", f"{len(series)} series ({'; '.join(described)})")
    if len(headers) == 1:
        file, dataset = headers[0]
        frames = _dicom_int(folder, dataset, "NumberOfFrames", 1)
        if frames > 1:
            raise _fail(folder, "a series of single-frame DICOM slices", f"one multi-frame file of {frames} frames (enhanced DICOM is not supported: convert it with dcm2niix)")
        raise _fail(folder, "a 3D DICOM series", "a single 2D slice (use load_image2d for one image)")

    reference = headers[0][1]
    photometric = str(reference.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in MONOCHROME:
        raise _fail(folder, "greyscale (MONOCHROME1/2) DICOM slices", f"{photometric} pixels")
    orientation = _floats(reference, "ImageOrientationPatient", 6)
    spacing = _floats(reference, "PixelSpacing", 2)
    if orientation is None or spacing is None:
        missing = "ImageOrientationPatient" if orientation is None else "PixelSpacing"
        raise _fail(folder, "DICOM slices with ImageOrientationPatient, ImagePositionPatient and PixelSpacing", f"no valid {missing}")
    rows, cols = _dicom_int(folder, reference, "Rows", 0), _dicom_int(folder, reference, "Columns", 0)
    row_cosine = np.array(orientation[:3])
    col_cosine = np.array(orientation[3:])
    normal = np.cross(row_cosine, col_cosine)
    if np.linalg.norm(normal) < 0.5:
        raise _fail(folder, "orthogonal ImageOrientationPatient direction cosines", f"{orientation}")
    positions = []
    for file, dataset in headers:
        these = _floats(dataset, "ImageOrientationPatient", 6)
        if these is None or not np.allclose(these, orientation, atol=1e-3):
            raise _fail(folder, "one slice orientation for the whole series", f"a different ImageOrientationPatient in {file.name}")
        if _dicom_int(folder, dataset, "Rows", 0) != rows or _dicom_int(folder, dataset, "Columns", 0) != cols:
            raise _fail(folder, f"every slice {rows}x{cols} pixels", f"{_dicom_int(folder, dataset, 'Rows', 0)}x{_dicom_int(folder, dataset, 'Columns', 0)} in {file.name}")
        these_spacing = _floats(dataset, "PixelSpacing", 2)
        if these_spacing is None or not np.allclose(these_spacing, spacing, rtol=_SPACING_TOLERANCE):
            raise _fail(folder, f"one pixel spacing {spacing} for the whole series", f"{these_spacing} in {file.name}")
        position = _floats(dataset, "ImagePositionPatient", 3)
        if position is None:
            raise _fail(folder, "ImagePositionPatient on every slice", f"none in {file.name}")
        positions.append(np.array(position))
    along = np.array([float(p @ normal) for p in positions])
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    if (gaps < 1e-3).any():
        raise _fail(folder, "one slice per position", f"{int((gaps < 1e-3).sum()) + 1} slices sharing a position (several echoes or repeats in one series?)")
    step = float(np.median(gaps))
    if np.abs(gaps - step).max() > max(1e-3, _SPACING_TOLERANCE * step):
        raise _fail(folder, "evenly spaced slices", f"slice gaps from {gaps.min():.3g} to {gaps.max():.3g} mm (a missing slice?)")

    slices = []
    for index in order:
        file = headers[index][0]
        dataset = _read_dicom(file, pixels=True)
        pixels = _pixels(file, dataset)
        if pixels.shape != (rows, cols):
            raise _fail(folder, f"single-frame {rows}x{cols} greyscale slices", f"pixel data of shape {pixels.shape} in {file.name}")
        slices.append(pixels if label else _rescale(dataset, pixels))
    # Voxel axes (column i, row j, slice k), as DICOM's own P = S + i*dc*X + j*dr*Y.
    data = np.stack([s.T for s in slices], axis=-1)
    first = positions[order[0]]
    last = positions[order[-1]]
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cosine * spacing[1]
    affine_lps[:3, 1] = col_cosine * spacing[0]
    affine_lps[:3, 2] = (last - first) / (len(slices) - 1)
    affine_lps[:3, 3] = first
    meta = {"format": "dicom", "dtype": str(slices[0].dtype if label else _stored_dtype(reference)), "slices": str(len(slices))}
    meta.update(safe_dicom_meta(reference))
    return data, LPS_TO_RAS @ affine_lps, meta


def _stored_dtype(dataset) -> str:
    bits = _dicom_int(None, dataset, "BitsAllocated", 16)
    signed = _dicom_int(None, dataset, "PixelRepresentation", 0) == 1
    return f"{'int' if signed else 'uint'}{bits}"


# --------------------------------------------------------------------------- public API


def load_volume(path: str | Path, *, label: bool = False) -> Volume:
    """Load a 3D scan (NIfTI file or DICOM series folder) in canonical RAS voxel order.

    Args:
        path: a ``.nii``/``.nii.gz`` file or a folder holding one DICOM series.
        label: load a label map: integer codes kept as uint8 (0-255) or int16, never normalised
            (a NIfTI scl_slope/scl_inter is applied only when the file declares one, and the
            result must be whole numbers), no DICOM rescale; an all-zero map is allowed.

    Returns:
        The :class:`Volume`; ``source_axcodes`` says how it was stored.

    Raises:
        ImageLoadError: for a missing, corrupt, 2D, multi-volume, non-finite or constant image,
            a singular affine, or a DICOM folder with several series or uneven slices.

    Example:
        >>> volume = load_volume("scan.nii.gz")  # doctest: +SKIP
        >>> volume.array.shape, volume.spacing  # doctest: +SKIP
    """
    path = Path(path)
    _check_exists(path, "a NIfTI file or a DICOM series folder")
    if path.is_dir():
        with _quiet_dicom():
            data, affine, meta = _load_dicom_series(path, label)
    elif path.suffix.lower() in IMAGE_2D_SUFFIXES:
        raise _fail(path, "a 3D volume (NIfTI or DICOM series)", f"a 2D {path.suffix.lstrip('.').upper()} image (use load_image2d for radiographs)")
    elif _looks_like_dicom(path) and not _is_nifti(path):
        with _quiet_dicom():
            frames = _dicom_int(path, _read_dicom(path, pixels=False), "NumberOfFrames", 1)
        if frames > 1:
            raise _fail(path, "a folder of single-frame DICOM slices", f"one multi-frame file of {frames} frames (enhanced DICOM is not supported: convert it with dcm2niix)")
        raise _fail(path, "a 3D volume (pass the DICOM series folder)", "a single 2D DICOM slice")
    else:
        data, affine, meta = _load_nifti(path, label)
    affine = _check_affine(path, affine)
    if label:
        data = _label_array(path, data)
    else:
        data = np.asarray(data, dtype=np.float32)
    _check_values(path, data, label=label)
    canonical, canonical_affine, codes = _canonical(data, affine)
    if label:
        meta["label"] = "true"
    return Volume(array=canonical, affine=canonical_affine, source_axcodes=codes, path=path, meta=meta)


def load_label_like(path: str | Path, volume: Volume) -> np.ndarray:
    """Load a label map onto ``volume``'s voxel grid (checked; resampled nearest-neighbour if needed).

    The label map may be stored in another orientation or at another resolution; it
    must cover the same place in the world. Voxels of ``volume`` outside the label map get 0.

    Args:
        path: the label map (NIfTI or DICOM series folder).
        volume: the image it belongs to.

    Returns:
        An integer array shaped like ``volume.array`` (uint8 or int16).

    Raises:
        ImageLoadError: if the label map cannot be read or does not overlap the volume enough
            (less than half of the volume's field of view).
    """
    labels = load_volume(path, label=True)
    same_shape = labels.array.shape == volume.array.shape
    tolerance = _SPACING_TOLERANCE * min(volume.spacing)
    if same_shape and np.allclose(labels.affine, volume.affine, atol=max(tolerance, 1e-4)):
        return labels.array
    from scipy.ndimage import map_coordinates

    # Label voxel of every volume voxel: label_affine^-1 @ volume_affine.
    to_label = np.linalg.inv(labels.affine) @ volume.affine
    grid = np.indices(volume.array.shape, dtype=np.float32).reshape(3, -1)
    coords = to_label[:3, :3].astype(np.float32) @ grid + to_label[:3, 3:4].astype(np.float32)
    inside = np.all((coords > -0.5) & (coords < np.array(labels.array.shape, np.float32)[:, None] - 0.5), axis=0)
    covered = float(inside.mean())
    if covered < 0.5:
        raise _fail(
            Path(path),
            f"a label map covering the image {volume.path.name} ({_fmt3(volume.array.shape)} voxels)",
            f"one covering {100 * covered:.0f}% of its field of view ({_fmt3(labels.array.shape)} voxels at {_fmt3(labels.spacing)} mm)",
        )
    resampled = map_coordinates(labels.array, coords, order=0, mode="constant", cval=0, prefilter=False)
    return resampled.reshape(volume.array.shape).astype(labels.array.dtype)


def load_image2d(path: str | Path) -> Image2D:
    """Load a 2D image: a greyscale PNG (8 or 16 bit) or a single-frame DICOM (CR, DX, MR, ...).

    DICOM values are rescaled (RescaleSlope/Intercept) and MONOCHROME1 images inverted so
    that bright always means more signal or attenuation.

    Args:
        path: the image file.

    Returns:
        The :class:`Image2D` (float32 rows x cols).

    Raises:
        ImageLoadError: for a missing or unreadable file, a colour image, a 3D volume,
            NaN/Inf values or a constant image.
    """
    path = Path(path)
    _check_exists(path, "a PNG or DICOM image")
    if path.is_dir():
        raise _fail(path, "a 2D image file", "a folder (a DICOM series is 3D: use load_volume)")
    if _is_nifti(path):
        raise _fail(path, "a 2D image (PNG or DICOM)", "a NIfTI volume (use load_volume)")
    if _looks_like_dicom(path):
        with _quiet_dicom():
            image = _load_dicom_2d(path)
    else:
        image = _load_picture(path)
    _check_values(path, image.array, label=False)
    return image


def _load_picture(path: Path) -> Image2D:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            mode = picture.mode
            data = np.asarray(picture)
            kind = picture.format or path.suffix.lstrip(".").upper()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise _fail(path, "a PNG or DICOM image", f"an unreadable file ({_short(error)})") from None
    if data.ndim == 3:
        colour = data[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise _fail(path, "a greyscale image", f"a colour {mode} image")
        data = colour[..., 0]
    if data.ndim != 2:
        raise _fail(path, "a 2D greyscale image", f"an array of shape {data.shape}")
    if mode == "P":
        raise _fail(path, "a greyscale image", "a palette image")
    bits = {"1": 1, "L": 8, "LA": 8, "RGB": 8, "RGBA": 8, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(mode, 0)
    meta = {"format": kind.lower(), "dtype": str(data.dtype), "mode": mode}
    if bits:
        meta["bit_depth"] = str(bits)
    if data.dtype.kind in "ui" and data.size:
        meta["bits_used"] = str(int(data.max()).bit_length())
    return Image2D(array=data.astype(np.float32), pixel_spacing=None, path=path, meta=meta)


def _load_dicom_2d(path: Path) -> Image2D:
    from spineage.imaging.deid import safe_dicom_meta

    dataset = _read_dicom(path, pixels=True)
    frames = _dicom_int(path, dataset, "NumberOfFrames", 1)
    if frames > 1:
        raise _fail(path, "a single-frame 2D DICOM image", f"a 3D DICOM of {frames} frames (use load_volume on a series)")
    if _dicom_int(path, dataset, "SamplesPerPixel", 1) != 1:
        raise _fail(path, "a greyscale DICOM image", f"{_dicom_int(path, dataset, 'SamplesPerPixel', 1)} samples per pixel (colour)")
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in MONOCHROME:
        raise _fail(path, "a greyscale (MONOCHROME1/2) DICOM image", f"{photometric} pixels")
    pixels = _pixels(path, dataset)
    if pixels.ndim != 2:
        raise _fail(path, "a 2D DICOM image", f"pixel data of shape {pixels.shape}")
    data = _rescale(dataset, pixels)
    meta = {"format": "dicom", "dtype": _stored_dtype(dataset)}
    meta.update(safe_dicom_meta(dataset))
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        # MONOCHROME1 shows low values white: flip within the stored bit range (not the image's own
        # range, so that every file of a kind maps alike) to make bright mean attenuating, as in MONOCHROME2.
        bits = _dicom_int(path, dataset, "BitsStored", 16)
        signed = _dicom_int(path, dataset, "PixelRepresentation", 0) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        ends = _rescale(dataset, np.array([low, high]))
        data = (ends[0] + ends[1]) - data
        meta["inverted_monochrome1"] = "true"
    spacing = None
    for keyword, source in (("PixelSpacing", "PixelSpacing"), ("ImagerPixelSpacing", "ImagerPixelSpacing (at the detector)")):
        value = _floats(dataset, keyword, 2)
        if value is not None and min(value) > 0:
            spacing = (float(value[0]), float(value[1]))
            meta["pixel_spacing_source"] = source
            break
    return Image2D(array=np.ascontiguousarray(data, dtype=np.float32), pixel_spacing=spacing, path=path, meta=meta)


def describe_source(volume: Volume) -> dict[str, Any]:
    """A small, non-identifying summary of where a volume came from (for manifests and records)."""
    return {
        "path": str(volume.path),
        "shape": list(volume.shape),
        "spacing_mm": [round(s, 4) for s in volume.spacing],
        "source_axcodes": "".join(volume.source_axcodes),
        "meta": dict(volume.meta),
    }
