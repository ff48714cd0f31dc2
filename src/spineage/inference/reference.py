"""What the training scans looked like, and how far a new scan lies from them.

A :class:`TrainingReference` holds, per measurement, the lowest, median and highest
value over the scans a network was trained on (from the preprocess manifest:
native voxel size, superior-inferior field of view, spine-mask size, normalised
intensity inside vertebrae, discs and canal; for radiographs: size, aspect and bit
depth) and the training ages. It is stored in the registered model's ``MLmodel``
metadata, so that any copy of the model can judge a new scan on its own.
:func:`reference_flags` names every measurement of a new scan outside the
training range widened by a margin (a share of the range, or of the median value when the
range is narrower than it).

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"age": [40.0, 60.0], "mask_voxels": [30000, 34000]})
    >>> reference = TrainingReference.from_rows("mri", rows, {"mask_voxels": rows["mask_voxels"]})
    >>> reference_flags(reference, {"mask_voxels": 9000.0}, margin=0.1)
    [('mask_size', "spine mask of 9000 voxels, outside the training scans' 30000-34000 (3.2e+03 margin)")]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

REFERENCE_KEY = "training_reference"
"""Key of the training reference in the logged model's metadata."""

MRI_MEASUREMENTS: dict[str, tuple[str, str]] = {
    "spacing_lr_mm": ("spacing", "left-right voxel size {value:.3g} mm"),
    "spacing_ap_mm": ("spacing", "anterior-posterior voxel size {value:.3g} mm"),
    "spacing_si_mm": ("spacing", "superior-inferior voxel size {value:.3g} mm"),
    "field_of_view_si_mm": ("field_of_view", "superior-inferior field of view {value:.0f} mm"),
    "mask_voxels": ("mask_size", "spine mask of {value:.0f} voxels"),
    "median_vertebra": ("intensity", "median normalised intensity {value:.3g} in the vertebrae"),
    "median_disc": ("intensity", "median normalised intensity {value:.3g} in the discs"),
    "median_canal": ("intensity", "median normalised intensity {value:.3g} in the canal"),
}
"""MRI measurements: (flag name, how the value reads)."""

XRAY_MEASUREMENTS: dict[str, tuple[str, str]] = {
    "rows": ("image_size", "{value:.0f} rows"),
    "columns": ("image_size", "{value:.0f} columns"),
    "aspect": ("image_size", "aspect (rows/columns) {value:.3g}"),
}
"""Radiograph measurements: (flag name, how the value reads)."""


@dataclass(frozen=True)
class Range:
    """The lowest, median and highest value of one measurement over the training scans."""

    low: float
    median: float
    high: float


@dataclass(frozen=True)
class TrainingReference:
    """Per measurement, the range over the scans a network was trained on.

    Args:
        kind: ``mri`` or ``radiograph``.
        n: training scans.
        ages: the training ages' range.
        measurements: per measurement name (:data:`MRI_MEASUREMENTS`, :data:`XRAY_MEASUREMENTS`), its range.
        bit_depths: the stored bit depths seen (radiographs).
    """

    kind: str
    n: int
    ages: Range
    measurements: dict[str, Range] = field(default_factory=dict)
    bit_depths: tuple[int, ...] = ()

    @classmethod
    def from_rows(cls, kind: str, rows: pd.DataFrame, measurements: Mapping[str, pd.Series], bit_depths: tuple[int, ...] = ()) -> "TrainingReference":
        """The reference of ``rows`` (with an ``age`` column) and their ``measurements`` (finite values only)."""
        return cls(
            kind=kind,
            n=int(len(rows)),
            ages=_range(rows["age"]),
            measurements={name: _range(values) for name, values in measurements.items() if np.isfinite(pd.to_numeric(values, errors="coerce")).any()},
            bit_depths=tuple(sorted({int(b) for b in bit_depths})),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (for the MLmodel metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainingReference":
        """The reference :meth:`as_dict` wrote."""
        return cls(
            kind=str(values["kind"]),
            n=int(values["n"]),
            ages=Range(**values["ages"]),
            measurements={name: Range(**r) for name, r in dict(values.get("measurements") or {}).items()},
            bit_depths=tuple(int(b) for b in values.get("bit_depths") or ()),
        )


def _range(values: pd.Series | np.ndarray) -> Range:
    array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    array = array[np.isfinite(array)]
    if not len(array):
        return Range(float("nan"), float("nan"), float("nan"))
    return Range(round(float(array.min()), 4), round(float(np.median(array)), 4), round(float(array.max()), 4))


def _triples(column: pd.Series) -> np.ndarray:
    """(rows, 3) floats of a manifest column written as ``AxBxC``."""
    parts = column.astype(str).str.split("x", expand=True)
    return parts.apply(pd.to_numeric, errors="coerce").to_numpy(float)


def mri_reference(manifest: pd.DataFrame) -> TrainingReference:
    """The reference of the preprocess manifest's rows (the training series: filter before calling).

    Columns the manifest lacks (a hand-made one) are left out of the reference, so not judged.
    """
    measurements: dict[str, Any] = {}
    if {"original_spacing", "original_shape"} <= set(manifest.columns):
        spacing, shape = _triples(manifest["original_spacing"]), _triples(manifest["original_shape"])
        if spacing.shape[1:] == (3,) and shape.shape[1:] == (3,):
            measurements = {
                "spacing_lr_mm": spacing[:, 0], "spacing_ap_mm": spacing[:, 1], "spacing_si_mm": spacing[:, 2],
                "field_of_view_si_mm": shape[:, 2] * spacing[:, 2],
            }
    for name in ("mask_voxels", "median_vertebra", "median_disc", "median_canal"):
        if name in manifest.columns:
            measurements[name] = manifest[name]
    return TrainingReference.from_rows("mri", manifest, measurements)


def radiograph_reference(manifest: pd.DataFrame) -> TrainingReference:
    """The reference of the radiograph manifest's rows (the training images: filter before calling).

    Columns the manifest lacks are left out of the reference, so not judged.
    """
    measurements: dict[str, Any] = {}
    if "original_shape" in manifest.columns:
        shape = manifest["original_shape"].astype(str).str.split("x", expand=True).apply(pd.to_numeric, errors="coerce").to_numpy(float)
        if shape.shape[1:] == (2,):
            measurements = {"rows": shape[:, 0], "columns": shape[:, 1], "aspect": shape[:, 0] / shape[:, 1]}
    bits = pd.to_numeric(manifest["bit_depth"], errors="coerce").dropna().astype(int) if "bit_depth" in manifest.columns else ()
    return TrainingReference.from_rows("radiograph", manifest, measurements, tuple(bits))


def reference_flags(reference: TrainingReference, values: Mapping[str, float | None], margin: float) -> list[tuple[str, str]]:
    """(flag, reason) for every measurement of ``values`` outside its training range widened by ``margin`` times the
    larger of the range's width and its median (so that a narrow range is not a knife edge).

    A measurement the reference does not hold, or a missing value, is not judged.
    """
    table = MRI_MEASUREMENTS if reference.kind == "mri" else XRAY_MEASUREMENTS
    flags = []
    for name, value in values.items():
        known = reference.measurements.get(name)
        if known is None or value is None or not np.isfinite(value) or not np.isfinite(known.low):
            continue
        # The range's width, or the typical value when the training scans barely vary (all one scanner, say).
        slack = margin * max(known.high - known.low, abs(known.median), 1e-6)
        if known.low - slack <= value <= known.high + slack:
            continue
        flag, wording = table.get(name, (name, f"{name} {{value:.3g}}"))
        flags.append((flag, f"{wording.format(value=value)}, outside the training scans' {known.low:.6g}-{known.high:.6g} ({slack:.3g} margin)"))
    return flags
