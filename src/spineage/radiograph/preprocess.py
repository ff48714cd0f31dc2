"""``spineage radiograph preprocess``: every lateral radiograph and DXA VFA image to the array the 2D model sees.

The steps are the VERTE-X paper's, as MONAI transforms on a (1, rows, cols) image:

1. histogram equalisation (``radiograph.equalise``): ``HistogramNormalize``, 256 bins, to [0, 1];
2. min-max scaling to [0, 1]: ``ScaleIntensity``;
3. a margin crop of ``radiograph.margin_fraction`` of each side, radiographs only:
   ``CenterScaleCrop`` keeping 1 - 2 x margin of each axis;
4. an aspect-preserving resize to fit inside ``radiograph.image_shape``:
   ``Resize`` to :func:`fitted_shape` (area when shrinking, bilinear when enlarging);
5. centred zero padding to exactly ``radiograph.image_shape``: ``SpatialPad(method="symmetric")``.

A VFA image is not margin-cropped: its field is already tight. The result is
float32 of exactly ``image_shape`` (rows x cols), values in [0, 1], the padding
exactly 0; the stage stores it as float16.

:func:`build_radiograph_arrays` (the stage) writes, each file atomically:

* ``<out>/<series_id>.npy``: float16 array of every readable image;
* ``<out>/manifest.csv``: one row per xray_lat / dxa_vfa series of sessions.csv,
  columns :data:`MANIFEST_COLUMNS` (status ``ok`` or ``failed`` with the reason);
* ``<reports>/summary.json``: counts by modality and status.

Nothing from an image header reaches these files beyond its shape and bit
depth; series ids are sessions.csv's own.

Example:
    >>> import numpy as np
    >>> from spineage.radiograph.settings import RadiographSettings
    >>> settings = RadiographSettings(image_shape=(64, 32))
    >>> picture = np.random.default_rng(0).integers(0, 4096, (300, 100)).astype(np.uint16)
    >>> out = preprocess_image(picture, "xray_lat", settings)
    >>> out.shape, out.dtype, float(out.min()) >= 0.0, float(out.max()) <= 1.0
    ((64, 32), dtype('float32'), True, True)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import write_array_atomic, write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.findings.vocabulary import MODALITIES
from spineage.radiograph.settings import RadiographSettings

XRAY_MODALITY = MODALITIES[1]
"""A lateral spine radiograph in sessions.csv (``xray_lat``): margin-cropped."""

VFA_MODALITY = MODALITIES[2]
"""A DXA vertebral fracture assessment image in sessions.csv (``dxa_vfa``): not cropped."""

RADIOGRAPH_MODALITIES: tuple[str, ...] = (XRAY_MODALITY, VFA_MODALITY)

EQUALISATION_BINS = 256
"""Histogram bins of the equalisation (MONAI's default; values are interpolated between bins, not quantised)."""

MAX_FAILURE_FRACTION = 0.05
"""The stage fails when more than this share of the images cannot be read."""

OUTPUT_DTYPE = np.float16
OK, FAILED = "ok", "failed"

MANIFEST_COLUMNS: tuple[str, ...] = (
    "series_id", "subject_id", "modality", "age", "sex", "status", "reason", "original_shape", "bit_depth", "file",
)
"""Columns of ``manifest.csv``, in order."""


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A radiograph as read from disk.

    Args:
        array: float32 (rows, cols), the stored values (bright = attenuating).
        bit_depth: bits per stored pixel (8 or 16 for PNG; BitsAllocated for DICOM).
    """

    array: np.ndarray
    bit_depth: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) as stored."""
        return int(self.array.shape[0]), int(self.array.shape[1])


def load_radiograph(path: str | Path) -> Radiograph:
    """Read a 2D radiograph (PNG of 8 or 16 bits, or single-frame DICOM) with its bit depth.

    The reading itself is :func:`spineage.imaging.io.load_image2d`'s: a colour
    image is refused unless its channels are equal (then it is grey), and so are
    3D data, NaN/Inf and constant images.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "xr.png"
        >>> Image.fromarray(np.arange(12, dtype=np.uint8).reshape(4, 3)).save(path)
        >>> image = load_radiograph(path)
        >>> image.shape, image.bit_depth
        ((4, 3), 8)

    Raises:
        UserError: (an ``ImageLoadError``) naming the file, what was expected and what was found.
    """
    from spineage.imaging.io import load_image2d

    image = load_image2d(path)
    return Radiograph(array=image.array, bit_depth=stored_bit_depth(image.meta))


def read_radiograph(path: str | Path) -> np.ndarray:
    """The float32 (rows, cols) pixels of a radiograph; :func:`load_radiograph` also gives its bit depth.

    Example:
        >>> read_radiograph("data/raw/images/xr-00001.png").shape  # doctest: +SKIP
        (512, 256)

    Raises:
        UserError: for a missing, unreadable, colour or non-2D image.
    """
    return load_radiograph(path).array


def stored_bit_depth(meta: dict[str, str]) -> int:
    """Bits per stored pixel from :class:`~spineage.imaging.io.Image2D` metadata.

    The container's depth, not the bits used: a 12-bit DICOM stored in 16 bits is 16.

    Example:
        >>> stored_bit_depth({"bit_depth": "16", "dtype": "uint16"}), stored_bit_depth({"dtype": "uint8"})
        (16, 8)
    """
    if meta.get("bit_depth"):
        return int(meta["bit_depth"])
    dtype = np.dtype(meta.get("dtype", "float32"))
    return 1 if dtype == np.bool_ else dtype.itemsize * 8


def fitted_shape(shape: tuple[int, int], image_shape: tuple[int, int]) -> tuple[int, int]:
    """The largest (rows, cols) with ``shape``'s aspect ratio that fits inside ``image_shape``.

    Example:
        >>> fitted_shape((512, 256), (256, 128)), fitted_shape((100, 400), (256, 128)), fitted_shape((90, 90), (256, 128))
        ((256, 128), (32, 128), (128, 128))
    """
    rows, cols = float(shape[0]), float(shape[1])
    scale = min(image_shape[0] / rows, image_shape[1] / cols)
    return min(image_shape[0], max(1, round(rows * scale))), min(image_shape[1], max(1, round(cols * scale)))


class FitInside:
    """Resize a (C, rows, cols) image to :func:`fitted_shape`: MONAI ``Resize`` with a size computed per image.

    ``Resize(size_mode="longest")`` fits only when the image and the target are
    the same way round; a landscape picture in a portrait target needs the
    smaller of the two scales. Area averaging when shrinking, bilinear when enlarging.

    Args:
        image_shape: (rows, cols) to fit inside.
    """

    def __init__(self, image_shape: tuple[int, int]) -> None:
        self.image_shape = image_shape

    def __call__(self, image):
        from monai.transforms import Resize

        shape = (int(image.shape[-2]), int(image.shape[-1]))
        size = fitted_shape(shape, self.image_shape)
        if size == shape:
            return image
        shrinking = size[0] <= shape[0] and size[1] <= shape[1]
        mode = "area" if shrinking else "bilinear"
        return Resize(size, mode=mode, **({} if shrinking else {"align_corners": False}))(image)


def radiograph_transform(modality: str, settings: RadiographSettings) -> Callable[[np.ndarray], np.ndarray]:
    """The preprocessing of one modality as a function of a (rows, cols) array.

    Args:
        modality: ``xray_lat`` (margin-cropped) or ``dxa_vfa`` (not cropped).
        settings: the ``radiograph`` section (``image_shape``, ``margin_fraction``, ``equalise``).

    Returns:
        A function from a 2D array (any numeric dtype) to float32 of ``settings.image_shape``,
        values in [0, 1], zero padding centred.

    Example:
        >>> transform = radiograph_transform("dxa_vfa", RadiographSettings(image_shape=(64, 32)))
        >>> transform(np.arange(200.0).reshape(20, 10)).shape
        (64, 32)

    Raises:
        UserError: for a modality other than xray_lat or dxa_vfa.
    """
    import torch
    from monai.transforms import CenterScaleCrop, Compose, HistogramNormalize, ScaleIntensity, SpatialPad

    if modality not in RADIOGRAPH_MODALITIES:
        raise UserError(f"Expected a radiograph modality ({' or '.join(RADIOGRAPH_MODALITIES)}), found {modality!r}")
    steps: list[Callable] = []
    if settings.equalise:
        # MONAI's global equalisation (its equalize_hist, np.histogram when skimage is absent) is the paper's;
        # the output range [0, 1] is rescaled again below so that the two steps are independent.
        steps.append(HistogramNormalize(num_bins=EQUALISATION_BINS, min=0, max=1))
    steps.append(ScaleIntensity(minv=0.0, maxv=1.0))
    if modality == XRAY_MODALITY and settings.margin_fraction > 0:
        steps.append(CenterScaleCrop(roi_scale=1.0 - 2.0 * settings.margin_fraction))
    steps.append(FitInside(settings.image_shape))
    steps.append(SpatialPad(spatial_size=settings.image_shape, method="symmetric", mode="constant"))
    chain = Compose(steps)

    def transform(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 2 or min(image.shape) < 1:
            raise UserError(f"Expected a 2D (rows, cols) radiograph, found an array of shape {image.shape}")
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise UserError(f"Expected finite pixel values, found {int((~np.isfinite(image)).sum())} NaN or Inf")
        result = chain(torch.as_tensor(image.astype(np.float32))[None])
        array = torch.as_tensor(result).detach().cpu().numpy()[0]
        # Interpolation can overshoot by rounding; the contract is [0, 1] (clipping keeps the padding 0).
        return np.clip(array, 0.0, 1.0).astype(np.float32)

    return transform


def preprocess_image(image: np.ndarray, modality: str, settings: RadiographSettings) -> np.ndarray:
    """Preprocess one radiograph or VFA image (:func:`radiograph_transform` applied once).

    Example:
        >>> out = preprocess_image(np.eye(40) * 255, "xray_lat", RadiographSettings(image_shape=(64, 32)))
        >>> out.shape, float(out[0].max())  # square content in a portrait target: rows of padding above
        ((64, 32), 0.0)

    Raises:
        UserError: for a modality other than xray_lat or dxa_vfa, or an array that is not 2D and finite.
    """
    return radiograph_transform(modality, settings)(image)


# --------------------------------------------------------------------------- the stage


def _relative(message: str, raw: Path) -> str:
    """``message`` with the raw-cohort folder left out of its paths (the manifest travels; the folder need not)."""
    return message.replace(f"{raw}/", "").replace(str(raw), ".")


def _radiograph_sessions(raw: Path) -> pd.DataFrame:
    """The xray_lat and dxa_vfa rows of sessions.csv (file order), with each subject's sex."""
    from spineage.raw_cohort import read_participants, read_sessions

    sessions = read_sessions(raw, ("series_id", "subject_id", "age", "modality", "image"))
    images = sessions[sessions["modality"].isin(RADIOGRAPH_MODALITIES)].reset_index(drop=True)
    if images.empty:
        raise UserError(f"Expected radiographs ({', '.join(RADIOGRAPH_MODALITIES)}) in {raw / 'sessions.csv'}, "
                        f"found none among {len(sessions)} rows")
    participants = read_participants(raw, ("subject_id", "sex"))
    sex = dict(zip(participants["subject_id"], participants["sex"]))
    images["sex"] = [sex.get(subject, "") for subject in images["subject_id"]]
    return images


def _process_one(row: Any, raw: Path, out: Path, transforms: dict[str, Callable]) -> dict[str, str]:
    """Read, preprocess and store one image; the manifest cells it adds."""
    series_id = str(row.series_id)
    if not series_id or Path(series_id).name != series_id or series_id.startswith("."):
        return {"status": FAILED, "reason": f"series_id {series_id!r} cannot be used as a file name"}
    if not row.image:
        return {"status": FAILED, "reason": "no image path in sessions.csv"}
    try:
        image = load_radiograph(raw / row.image)
        array = transforms[row.modality](image.array)
    except UserError as error:
        return {"status": FAILED, "reason": _relative(str(error), raw)}
    write_array_atomic(out / f"{series_id}.npy", array.astype(OUTPUT_DTYPE))
    return {
        "status": OK, "reason": "", "original_shape": f"{image.shape[0]}x{image.shape[1]}",
        "bit_depth": str(image.bit_depth), "file": f"{series_id}.npy",
    }


def _summary(manifest: pd.DataFrame, settings: RadiographSettings) -> dict[str, Any]:
    failed = int((manifest["status"] == FAILED).sum())
    return {
        "images": len(manifest),
        "by_status": {status: int((manifest["status"] == status).sum()) for status in (OK, FAILED)},
        "by_modality": {
            modality: {status: int(((manifest["modality"] == modality) & (manifest["status"] == status)).sum()) for status in (OK, FAILED)}
            for modality in RADIOGRAPH_MODALITIES
        },
        "failed_fraction": round(failed / max(len(manifest), 1), 4),
        "max_failure_fraction": MAX_FAILURE_FRACTION,
        "image_shape": list(settings.image_shape),
        "margin_fraction": settings.margin_fraction,
        "equalise": settings.equalise,
        "dtype": np.dtype(OUTPUT_DTYPE).name,
    }


def build_radiograph_arrays(
    raw: str | Path,
    out: str | Path,
    reports: str | Path,
    settings: RadiographSettings,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess every xray_lat and dxa_vfa image of the raw cohort into ``out``; write the manifest and summary.

    Args:
        raw: the raw-cohort folder (sessions.csv, participants.csv, the images).
        out: folder for ``<series_id>.npy`` (float16) and ``manifest.csv``.
        reports: folder for ``summary.json`` (counts by modality and status).
        settings: the ``radiograph`` section.
        progress: show a progress bar (on stderr).

    Returns:
        The summary written to ``summary.json``.

    Example:
        >>> build_radiograph_arrays("data/raw", "data/radiograph", "reports/radiograph",
        ...                         RadiographSettings())["by_status"]  # doctest: +SKIP
        {'failed': 0, 'ok': 4541}

    Raises:
        UserError: if sessions.csv or participants.csv is missing or has no radiographs, or if more
            than :data:`MAX_FAILURE_FRACTION` of the images cannot be read (after the manifest and
            the summary are written, so the reasons can be read).
    """
    import torch
    from tqdm import tqdm

    raw, out, reports = Path(raw), Path(out), Path(reports)
    images = _radiograph_sessions(raw)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Expected a writable folder at {out}, found: {error.strerror or error}") from None
    for leftover in out.glob(".*.tmp"):  # from an interrupted run
        leftover.unlink(missing_ok=True)

    transforms = {modality: radiograph_transform(modality, settings) for modality in RADIOGRAPH_MODALITIES}
    rows = []
    threads = torch.get_num_threads()
    # One thread: on images this small torch's threads cost more than they give (6x slower on 2 busy cores).
    torch.set_num_threads(1)
    try:
        for row in tqdm(list(images.itertuples(index=False)), desc="preprocessing radiographs", unit="image",
                        disable=not progress, file=sys.stderr):
            cells = {column: "" for column in MANIFEST_COLUMNS}
            cells.update(series_id=row.series_id, subject_id=row.subject_id, modality=row.modality, age=row.age, sex=row.sex)
            cells.update(_process_one(row, raw, out, transforms))
            rows.append(cells)
    finally:
        torch.set_num_threads(threads)
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).astype(str)

    keep = set(manifest.loc[manifest["status"] == OK, "file"])
    for stale in out.glob("*.npy"):  # an image that failed or left sessions.csv keeps no array of an earlier run
        if stale.name not in keep:
            stale.unlink()
    text = manifest.to_csv(index=False)
    write_atomic(out / "manifest.csv", lambda path: path.write_text(text))
    summary = _summary(manifest, settings)
    write_json_atomic(reports / "summary.json", summary)

    failed = summary["by_status"][FAILED]
    if failed > MAX_FAILURE_FRACTION * len(manifest):
        example = manifest.loc[manifest["status"] == FAILED].iloc[0]
        raise UserError(
            f"Expected at most {100 * MAX_FAILURE_FRACTION:g}% of the {len(manifest)} radiographs unreadable, found "
            f"{failed} ({100 * failed / len(manifest):.1f}%, e.g. {example['series_id']}: {example['reason']}); "
            f"reasons in {out / 'manifest.csv'}"
        )
    return summary
