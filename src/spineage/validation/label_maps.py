"""Label maps of the raw cohort, checked as label maps before anything trusts them.

A ``label`` in ``sessions.csv`` is the segmentation of an MRI series: the
masking, the segmenter's training and the Dice scores read it as integer codes
(:data:`~spineage.labels.KNOWN_LABEL_CODES`) on the image's voxel grid. A user's
cohort can name the image itself, an intensity volume or a map on another grid
there, and nothing would fail until a network trains on it. For every MRI row
whose label is given, lies inside the cohort folder and exists,
:func:`add_label_map_columns` computes four flags (and, beside each, what was
found, printed as the example):

=========================  ====================================================
flag                       true when
=========================  ====================================================
``label_readable``         the label is a NIfTI file or DICOM series that loads
``label_is_not_the_image`` it is neither the image's file (same path or file
                           once links are resolved) nor a byte copy of it
``label_codes_known``      every voxel holds a whole number among the known codes
``label_shape_matches``    its voxel grid has the image's shape (compared in
                           canonical RAS order, so a map stored in another axis
                           order still matches)
=========================  ====================================================

Headers are read first (nibabel reads only the header on ``load``); a label's
voxels are read only once its header is sound, and the image's voxels never
(a DICOM series folder is loaded whole: it has no separate header).

Example:
    >>> import pandas as pd
    >>> sessions = pd.DataFrame({"series_id": ["a"], "modality": ["xray_lat"], "image": ["a.png"], "label": [None]})
    >>> add_label_map_columns(sessions, Path("."))
    >>> sessions[LABEL_READABLE].tolist()
    [None]
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spineage.labels import KNOWN_LABEL_CODES
from spineage.validation.gate import Check

MRI_MODALITY = "mri_t2_sag"

LABEL_READABLE = "label_readable"
LABEL_NOT_IMAGE = "label_is_not_the_image"
LABEL_CODES_KNOWN = "label_codes_known"
LABEL_SHAPE_MATCHES = "label_shape_matches"
LABEL_FLAGS: tuple[str, ...] = (LABEL_READABLE, LABEL_NOT_IMAGE, LABEL_CODES_KNOWN, LABEL_SHAPE_MATCHES)

_SHOWN_CODES = 5
"""Unknown codes named per label map."""


def found_column(flag: str) -> str:
    """The computed column saying what was found where ``flag`` is False (the example a failure prints)."""
    return f"{flag} (found)"


def known_codes_text() -> str:
    """The known codes as ranges, e.g. ``0-27, 31-56, 60, 61, 100, 130``."""
    codes = sorted(KNOWN_LABEL_CODES)
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][-1] + 1:
            runs[-1].append(code)
        else:
            runs.append([code])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs)


def label_map_checks(table: str = "sessions.csv") -> list[Check]:
    """The expectations on the label-map flags of :func:`add_label_map_columns`, in the order failures are printed."""
    rules = {
        LABEL_READABLE: "the label map of an MRI series is a readable NIfTI file or DICOM series",
        LABEL_NOT_IMAGE: "the label map is not the image itself (same file or same content)",
        LABEL_CODES_KNOWN: f"the label map holds only whole-number label codes ({known_codes_text()})",
        LABEL_SHAPE_MATCHES: "the label map has the image's shape (voxels, in RAS order)",
    }
    return [
        Check(table, "ExpectColumnValuesToBeInSet", rule, column=flag, kwargs={"value_set": [True]}, show=(found_column(flag),))
        for flag, rule in rules.items()
    ]


@dataclass
class _Facts:
    """What one row's label map turned out to be (None: not checked)."""

    readable: bool | None = None
    not_image: bool | None = None
    codes_known: bool | None = None
    shape_matches: bool | None = None
    unreadable: str | None = None
    same_as_image: str | None = None
    codes_found: str | None = None
    shapes_found: str | None = None


def add_label_map_columns(
    sessions: pd.DataFrame,
    data: Path,
    *,
    checkable: pd.Series | None = None,
    image_checkable: pd.Series | None = None,
    progress: bool | None = None,
) -> None:
    """Add the label-map flags (and what was found beside each) to ``sessions``, in place.

    Args:
        sessions: sessions.csv as text (``series_id``, ``modality``, ``image``, ``label``).
        data: the cohort folder the paths are relative to.
        checkable: per row, whether its label may be opened (inside the cohort and on
            disk); default: every MRI row with a label that exists.
        image_checkable: the same for its image (the same-file and shape checks need it).
        progress: a progress bar on stderr; None shows one only on a terminal.
    """
    for flag in LABEL_FLAGS:
        sessions[flag] = None
        sessions[found_column(flag)] = None
    if "label" not in sessions.columns or "modality" not in sessions.columns:
        return
    labels = sessions["label"]
    images = sessions["image"] if "image" in sessions.columns else pd.Series(None, index=sessions.index, dtype=object)
    if checkable is None:
        checkable = pd.Series([isinstance(p, str) and (data / p).exists() for p in labels], index=sessions.index)
    if image_checkable is None:
        image_checkable = pd.Series([isinstance(p, str) and (data / p).exists() for p in images], index=sessions.index)
    rows = [index for index in sessions.index
            if sessions.at[index, "modality"] == MRI_MODALITY and isinstance(labels[index], str) and bool(checkable[index])]
    if not rows:
        return
    from tqdm import tqdm

    for index in tqdm(rows, desc="reading label maps", unit="map", disable=None if progress is None else not progress,
                      leave=False, file=sys.stderr):
        image = data / images[index] if isinstance(images[index], str) and bool(image_checkable[index]) else None
        facts = _label_map_facts(data / labels[index], image)
        for flag, value, found in (
            (LABEL_READABLE, facts.readable, facts.unreadable),
            (LABEL_NOT_IMAGE, facts.not_image, facts.same_as_image),
            (LABEL_CODES_KNOWN, facts.codes_known, facts.codes_found),
            (LABEL_SHAPE_MATCHES, facts.shape_matches, facts.shapes_found),
        ):
            sessions.at[index, flag] = value
            sessions.at[index, found_column(flag)] = found


def _label_map_facts(label: Path, image: Path | None) -> _Facts:
    facts = _Facts()
    if image is not None:
        same = _same_file(label, image)
        facts.not_image = same is None
        facts.same_as_image = same
    try:
        header = _open(label, label=True)
    except _Unreadable as error:
        facts.readable, facts.unreadable = False, str(error)
        return facts
    try:
        values = header.voxels()
    except _Unreadable as error:
        facts.readable, facts.unreadable = False, str(error)
        return facts
    facts.readable = True
    problem = unknown_codes(values)
    facts.codes_known = problem is None
    facts.codes_found = problem
    if image is not None:
        try:
            image_shape = _open(image, label=False).shape
        except _Unreadable:
            return facts  # the image's own faults are not the label map's: left to the stages that load it
        facts.shape_matches = header.shape == image_shape
        if not facts.shape_matches:
            facts.shapes_found = f"{_voxels(header.shape)} voxels, the image {_voxels(image_shape)}"
    return facts


def unknown_codes(values: np.ndarray) -> str | None:
    """None when every voxel holds a known label code; else what was found instead.

    Example:
        >>> unknown_codes(np.array([0, 1, 60, 61]))
        >>> unknown_codes(np.array([0, 999, -3, 999]))
        'codes -3, 999'
        >>> unknown_codes(np.array([0.0, 0.37, 1.0]))
        'fractional values such as 0.37'
    """
    values = np.asarray(values)
    if values.dtype == bool:
        return None
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            return f"{int(values.size - np.count_nonzero(finite))} NaN or Inf voxels"
        whole = np.rint(values)
        fractional = values != whole
        if fractional.any():
            return f"fractional values such as {float(values[fractional][0]):.4g}"
        values = whole.astype(np.int64)
    elif not np.issubdtype(values.dtype, np.integer):
        return f"{values.dtype} values"
    present = np.unique(values)
    unknown = [int(code) for code in present if int(code) not in KNOWN_LABEL_CODES]
    if not unknown:
        return None
    shown = ", ".join(map(str, unknown[:_SHOWN_CODES])) + (f" and {len(unknown) - _SHOWN_CODES} more" if len(unknown) > _SHOWN_CODES else "")
    return f"code{'s' if len(unknown) > 1 else ''} {shown}"


class _Unreadable(Exception):
    """A scan that cannot be read; the message says why, briefly."""


@dataclass
class _Scan:
    """A scan's shape in canonical RAS voxel order, and how to read its voxels (as stored)."""

    shape: tuple[int, ...]
    voxels: Callable[[], np.ndarray]


def _open(path: Path, *, label: bool) -> _Scan:
    """Read a NIfTI header (not its voxels), or load a DICOM series folder whole."""
    if path.is_dir():
        from spineage.errors import UserError
        from spineage.imaging.io import load_volume

        try:
            volume = load_volume(path, label=label)
        except UserError as error:
            raise _Unreadable(_brief(error)) from None
        return _Scan(volume.shape, lambda: volume.array)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise _Unreadable(f"a {''.join(path.suffixes) or 'suffix-less'} file, not NIfTI")
    import zlib

    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        image = nib.load(str(path))
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as error:
        raise _Unreadable(f"no readable NIfTI header ({_brief(error)})") from None
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise _Unreadable(f"a {len(shape)}D image of {_voxels(shape)} voxels, not a 3D volume")
    axes = nib.io_orientation(image.affine)[:, 0]
    canonical = [0, 0, 0]
    for stored, axis in enumerate(axes):
        canonical[int(axis) if axis == axis else stored] = shape[stored]  # NaN: an axis without orientation stays

    def voxels() -> np.ndarray:
        try:
            # dataobj applies a declared scl_slope/scl_inter and nothing else: the codes as the file means them.
            return np.asanyarray(image.dataobj).reshape(shape)
        except (OSError, EOFError, ValueError, zlib.error, MemoryError) as error:
            raise _Unreadable(f"truncated or corrupt voxel data ({_brief(error)})") from None

    return _Scan(tuple(canonical), voxels)


def _same_file(label: Path, image: Path) -> str | None:
    """How the label is the image (one file, by path or hard/symbolic link, or a byte copy); None when it is not."""
    try:
        if os.path.realpath(label) == os.path.realpath(image) or os.path.samefile(label, image):
            return f"the same file as the image {image.name}"
        if label.is_file() and image.is_file() and label.stat().st_size == image.stat().st_size:
            if _digest(label) == _digest(image):
                return f"a byte copy of the image {image.name}"
    except OSError:
        return None
    return None


def _digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _voxels(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _brief(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:80]
