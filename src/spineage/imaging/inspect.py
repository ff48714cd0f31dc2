"""``spineage inspect``: what a user should know about a scan before trusting a result from it.

:func:`inspect_scan` loads a scan (NIfTI, DICOM series, PNG or DICOM image) and
returns a :class:`ScanInspection`: format, shapes, spacing, stored and canonical
orientation, intensity range and percentiles, field of view, which spine
regions the field of view covers, and quality flags. :func:`format_inspection`
turns it into the text the command prints. Nothing identifying is read: DICOM
headers contribute only :data:`~spineage.imaging.deid.SAFE_DICOM_KEYWORDS`.

Regions come from a label map (spineage codes: 1-26 vertebrae C2..L7, 27
sacrum) when one is given or found next to the scan; otherwise they are an
estimate from the superior-inferior extent, and the report says so.

:func:`write_preprocessed` (``inspect --preprocess``) writes the array the model
would see, its spine mask taken as the preprocess stage takes it (``preprocess.masks``:
the segmentation model, or the label map).

Example:
    >>> from spineage.imaging.inspect import inspect_scan, format_inspection  # doctest: +SKIP
    >>> print(format_inspection(inspect_scan("data/raw/images/mri-0001.nii.gz")))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spineage.atomic import write_array_atomic
from spineage.errors import UserError
from spineage.findings.vocabulary import CERVICAL_LEVELS, LEVELS, LUMBAR_LEVELS, REGIONS, THORACIC_LEVELS, region_of
from spineage.labels import SACRUM_LABEL
from spineage.imaging.io import Image2D, ImageLoadError, Volume, load_image2d, load_label_like, load_volume

if TYPE_CHECKING:
    from spineage.imaging.preprocess import PreprocessSettings

STANDARD_LEVELS: dict[str, tuple[str, ...]] = {
    "cervical": CERVICAL_LEVELS,
    "thoracic": THORACIC_LEVELS[:12],
    "lumbar": LUMBAR_LEVELS[:5],
}
"""The levels a typical spine has in each region (T13, L6, L7 only in supernumerary spines)."""

ANISOTROPY_RATIO = 3.0
"""Largest/smallest voxel size above which the spacing is flagged as anisotropic."""
FEW_SLICES = 10
"""Fewer voxels than this along any axis is flagged."""
FEW_LEVELS = 64
"""Fewer distinct intensities than this is a low dynamic range."""
SATURATED_FRACTION = 0.01
"""More than this share of voxels at the maximum looks clipped."""
OBLIQUE_DEGREES = 10.0
"""Voxel axes further than this from the RAS axes are flagged as oblique."""
SMALL_FOV_MM = 150.0
"""A superior-inferior field of view shorter than this holds only part of one region (~25 mm a level)."""

REGION_WORDS: dict[str, tuple[str, ...]] = {
    "cervical": ("cervical", "cspine", "c-spine", "c_spine", "neck"),
    "thoracic": ("thoracic", "tspine", "t-spine", "t_spine", "dorsal"),
    "lumbar": ("lumbar", "lspine", "l-spine", "l_spine", "lumbosacral"),
}
WHOLE_WORDS = ("whole spine", "whole_spine", "wholespine", "total spine", "entire spine")


@dataclass(frozen=True)
class RegionCoverage:
    """Which spine regions a scan covers.

    Args:
        source: ``label map`` (counted from a label map) or ``estimate`` (from the field of view).
        regions: regions seen (label map) or that may be in view (estimate).
        levels: per region, the vertebrae seen in the label map (empty for an estimate).
        label_path: the label map used, if any.
        note: one sentence on how the answer was reached and how far to trust it.
    """

    source: str
    regions: tuple[str, ...]
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label_path: str | None = None
    sacrum: bool = False
    note: str = ""


@dataclass(frozen=True)
class ScanInspection:
    """Everything ``spineage inspect`` reports about one scan (JSON-ready through :meth:`to_dict`)."""

    path: str
    kind: str  # "volume" or "image2d"
    format: str
    stored_dtype: str
    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...] | None
    field_of_view_mm: tuple[float, ...] | None
    intensity: dict[str, float]
    flags: tuple[str, ...]
    stored_axcodes: tuple[str, ...] | None = None
    canonical_axcodes: tuple[str, ...] | None = None
    stored_shape: tuple[int, ...] | None = None
    superior_range_mm: tuple[float, float] | None = None
    regions: RegionCoverage | None = None
    acquisition: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists for tuples) for JSON."""
        return asdict(self)


# --------------------------------------------------------------------------- measurements


def intensity_summary(array: np.ndarray) -> dict[str, float]:
    """Range, mean, SD, percentiles (1, 5, 50, 95, 99, 99.9), share of zeros and number of distinct values."""
    values = np.asarray(array, dtype=np.float32).ravel()
    p = np.percentile(values, [1, 5, 50, 95, 99, 99.9])
    sample = values if values.size <= 4_000_000 else values[:: values.size // 4_000_000 + 1]
    return {
        "min": float(values.min()),
        "p1": float(p[0]),
        "p5": float(p[1]),
        "p50": float(p[2]),
        "p95": float(p[3]),
        "p99": float(p[4]),
        "p99_9": float(p[5]),
        "max": float(values.max()),
        "mean": float(values.mean(dtype=np.float64)),
        "sd": float(values.std(dtype=np.float64)),
        "zero_fraction": float(np.count_nonzero(values == 0) / values.size),
        "max_fraction": float(np.count_nonzero(values == values.max()) / values.size),
        "distinct": float(min(np.unique(sample).size, 1_000_000)),
    }


def _obliquity_degrees(affine: np.ndarray) -> float:
    """Largest angle between a voxel axis and the world axis it is closest to."""
    linear = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.abs(linear).max(axis=0).clip(-1.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


def intensity_flags(stats: dict[str, float], *, magnitude: bool) -> list[str]:
    """Flags about the intensities: low dynamic range, clipping, spikes, negative or normalised values."""
    flags = []
    if stats["distinct"] < FEW_LEVELS:
        flags.append(f"low dynamic range: only {int(stats['distinct'])} distinct intensities")
    elif stats["p99"] - stats["p1"] <= 1e-6 * max(abs(stats["p99"]), 1.0):
        flags.append("low dynamic range: 98% of voxels share one intensity")
    if stats["max_fraction"] > SATURATED_FRACTION and stats["max"] > stats["p50"]:
        flags.append(f"suspicious intensities: {100 * stats['max_fraction']:.1f}% of voxels at the maximum {stats['max']:g} (clipped or saturated?)")
    if stats["p99_9"] > 0 and stats["max"] > 10 * stats["p99_9"]:
        flags.append(f"suspicious intensities: maximum {stats['max']:g} is over 10x the 99.9th percentile {stats['p99_9']:g} (spikes or artefacts?)")
    if magnitude and stats["min"] < 0:
        if stats["p1"] < 0 and abs(stats["mean"]) < 0.1 * max(stats["sd"], 1e-6) and 0.5 < stats["sd"] < 2.0:
            flags.append("suspicious intensities: mean ~0 and SD ~1 (already normalised?)")
        else:
            flags.append(f"suspicious intensities: negative values down to {stats['min']:g} in a magnitude image (phase, difference or rescaled data?)")
    elif magnitude and stats["max"] <= 1.0:
        flags.append("suspicious intensities: all values within [0, 1] (already normalised?)")
    return flags


def superior_range(volume: Volume) -> tuple[float, float]:
    """Lowest and highest world z (mm, RAS) of the field of view, voxel edges included."""
    edges = [(-0.5, n - 0.5) for n in volume.array.shape]
    corners = np.array([[i, j, k] for i in edges[0] for j in edges[1] for k in edges[2]])
    heights = corners @ volume.affine[2, :3] + volume.affine[2, 3]
    return float(heights.min()), float(heights.max())


def volume_flags(volume: Volume, stats: dict[str, float]) -> list[str]:
    """Quality flags of a 3D scan: spacing, slices, orientation and intensities."""
    flags = []
    spacing = np.array(volume.spacing)
    ratio = float(spacing.max() / spacing.min())
    if ratio > ANISOTROPY_RATIO:
        flags.append(f"anisotropic spacing: {_mm(spacing)} mm (ratio {ratio:.1f}); resampling to isotropic voxels interpolates {spacing.max():.3g} mm slices")
    few = [f"{n} along {axis}" for n, axis in zip(volume.array.shape, ("R-L", "A-P", "S-I")) if n < FEW_SLICES]
    if few:
        flags.append(f"very few slices: {', '.join(few)}")
    low, high = superior_range(volume)
    extent = high - low
    if extent < SMALL_FOV_MM:
        flags.append(f"small field of view: {extent:.0f} mm superior-inferior, about {max(1, round(extent / 25.0))} vertebral levels")
    oblique = _obliquity_degrees(volume.affine)
    if oblique > OBLIQUE_DEGREES:
        flags.append(f"oblique acquisition: voxel axes up to {oblique:.0f} deg from R/A/S (canonical order is approximate)")
    if volume.meta.get("affine_source", "").startswith("none"):
        flags.append("no orientation in the header (sform and qform codes 0): left-right and the orientation are guesses")
    modality = volume.meta.get("modality", "MR")
    flags += intensity_flags(stats, magnitude=modality == "MR")
    return flags


# --------------------------------------------------------------------------- regions


LABEL_MAP_TAGS = ("_label", "_labels", "_seg", "_labelmap")
"""Endings of a scan's file stem that name its label map beside it (``scan_seg.nii.gz``)."""


def is_label_map_name(path: Path) -> bool:
    """Whether a file's name says it is a label map (``<stem>_seg.nii.gz`` and the like), not a scan."""
    name = Path(path).name.lower()
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    return stem.endswith(LABEL_MAP_TAGS)


def find_label_for(scan: Path) -> Path | None:
    """A label map stored next to ``scan``, if any.

    Looked for, in order: the raw-cohort ``sessions.csv`` label of this image, ``labels/<name>``
    beside an ``images/`` folder, and ``<stem>_label(s)``/``_seg`` files in the same folder.
    """
    scan = Path(scan)
    name = scan.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else scan.stem
    folder = scan.parent
    sessions = folder.parent / "sessions.csv"
    if sessions.is_file():
        try:
            with sessions.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    image = (row.get("image") or "").strip()
                    if image and (folder.parent / image).resolve() == scan.resolve():
                        label = (row.get("label") or "").strip()
                        if label and (folder.parent / label).exists():
                            return folder.parent / label
                        break
        except (OSError, csv.Error, UnicodeDecodeError):
            pass
    candidates = []
    if folder.name == "images":
        candidates.append(folder.parent / "labels" / name)
    suffix = name[len(stem):]
    for tag in LABEL_MAP_TAGS:
        candidates.append(folder / f"{stem}{tag}{suffix}")
    for candidate in candidates:
        if candidate.exists() and candidate.resolve() != scan.resolve():
            return candidate
    return None


def _level_span(levels: tuple[str, ...]) -> str:
    return levels[0] if len(levels) == 1 else f"{levels[0]}-{levels[-1]}"


def regions_from_labels(labels: np.ndarray, label_path: Path) -> RegionCoverage | None:
    """Regions seen in a label map with spineage codes; None if its values do not look like them."""
    codes = set(int(c) for c in np.unique(labels))
    vertebrae = sorted(c for c in codes if 1 <= c <= len(LEVELS))
    spine_codes = codes & (set(range(1, 28)) | set(range(31, 57)) | {60, 61})
    if len(vertebrae) < 2 and not (codes & set(range(31, 57))):
        return None
    if not spine_codes or codes - spine_codes - {0}:
        return None
    levels = [LEVELS[c - 1] for c in vertebrae]
    by_region: dict[str, tuple[str, ...]] = {}
    for region in REGIONS:
        seen = tuple(level for level in levels if region_of(level) == region)
        if seen:
            by_region[region] = seen
    partial = [r for r, seen in by_region.items() if not set(STANDARD_LEVELS[r]) <= set(seen)]
    note = f"counted from the label map ({len(levels)} vertebrae)"
    if partial:
        note += f"; partial: {', '.join(partial)}"
    return RegionCoverage(
        source="label map",
        regions=tuple(by_region),
        levels=by_region,
        label_path=str(label_path),
        sacrum=SACRUM_LABEL in codes,
        note=note,
    )


def _region_hints(text: str) -> list[str]:
    lowered = text.lower()
    if any(word in lowered for word in WHOLE_WORDS):
        return list(REGIONS)
    return [region for region, words in REGION_WORDS.items() if any(re.search(rf"(^|[^a-z]){re.escape(w)}", lowered) for w in words)]


def estimate_regions(extent_mm: float, hint_text: str = "", hint_source: str = "") -> RegionCoverage:
    """Which regions a field of view can hold, from its superior-inferior extent (an estimate).

    Adult lengths: cervical C2-C7 about 120 mm, thoracic T1-T12 about 280 mm, lumbar
    L1-L5 about 180 mm, so about 25 mm a level. Words in the series description, body part
    or file name (``lumbar``, ``C-spine``) say which region a short field of view holds.
    """
    hints = _region_hints(hint_text) if hint_text else []
    levels = extent_mm / 25.0
    if extent_mm >= 550:
        fits, regions = "room for the whole spine", list(REGIONS)
    elif extent_mm >= 300:
        fits, regions = "room for about two regions (e.g. cervicothoracic or thoracolumbar)", []
    elif extent_mm >= 150:
        fits, regions = "room for about one region (cervical ~120 mm, lumbar ~180 mm, or part of the thoracic ~280 mm)", []
    else:
        fits, regions = f"only part of one region (about {max(1, round(levels))} vertebral levels at ~25 mm a level)", []
    if hints:
        regions = [r for r in REGIONS if r in hints] if not regions else regions
        fits += f"; the {hint_source} says {', '.join(hints)}"
    note = f"estimate from the {extent_mm:.0f} mm superior-inferior extent, no label map: {fits}"
    return RegionCoverage(source="estimate", regions=tuple(regions), note=note)


# --------------------------------------------------------------------------- inspection


def _mm(values) -> str:
    return " x ".join(f"{float(v):.3g}" for v in values)


def inspect_volume(volume: Volume, label: Path | None = None, *, find_label: bool = True) -> ScanInspection:
    """Inspect a loaded 3D scan (see :func:`inspect_scan`)."""
    stats = intensity_summary(volume.array)
    flags = volume_flags(volume, stats)
    spacing = volume.spacing
    fov = tuple(float(n * s) for n, s in zip(volume.array.shape, spacing))
    superior = superior_range(volume)
    label_path = Path(label) if label is not None else (find_label_for(volume.path) if find_label else None)
    coverage = None
    if label_path is not None:
        labels = load_label_like(label_path, volume)
        coverage = regions_from_labels(labels, label_path)
        if coverage is None:
            flags.append(f"label map {label_path.name} does not use spineage's vertebra codes (1-26, 27 sacrum): regions estimated instead")
        elif not coverage.regions:
            flags.append(f"label map {label_path.name} holds no vertebra")
    if coverage is None:
        hint_text, hint_source = volume.meta.get("series_description", "") + " " + volume.meta.get("body_part", ""), "DICOM header"
        if not hint_text.strip():
            hint_text, hint_source = volume.path.name, "file name"
        coverage = estimate_regions(superior[1] - superior[0], hint_text, hint_source)
    stored_shape = tuple(volume.array.shape[_axis_of(volume, code)] for code in volume.source_axcodes)
    acquisition = {k: v for k, v in volume.meta.items() if k not in ("format", "dtype")}
    return ScanInspection(
        path=str(volume.path),
        kind="volume",
        format=volume.meta.get("format", "?"),
        stored_dtype=volume.meta.get("dtype", str(volume.array.dtype)),
        shape=tuple(int(n) for n in volume.array.shape),
        spacing_mm=tuple(round(s, 4) for s in spacing),
        field_of_view_mm=tuple(round(f, 2) for f in fov),
        intensity=stats,
        flags=tuple(flags),
        stored_axcodes=tuple(volume.source_axcodes),
        canonical_axcodes=tuple(volume.axcodes),
        stored_shape=stored_shape,
        superior_range_mm=(round(superior[0], 2), round(superior[1], 2)),
        regions=coverage,
        acquisition=acquisition,
    )


def _axis_of(volume: Volume, code: str) -> int:
    """The canonical array axis that a stored axis code became (R/L -> 0, A/P -> 1, S/I -> 2)."""
    return {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[code]


def inspect_image2d(image: Image2D) -> ScanInspection:
    """Inspect a loaded 2D image (radiograph, DXA VFA)."""
    stats = intensity_summary(image.array)
    flags = intensity_flags(stats, magnitude=False)
    bits = image.meta.get("bit_depth")
    used = image.meta.get("bits_used")
    if bits and used and int(used) < int(bits) - 4 and int(used) <= 8 and int(bits) > 8:
        flags.append(f"low dynamic range: values use {used} of {bits} bits")
    if image.pixel_spacing is None:
        flags.append("no pixel spacing in the file: sizes in mm are unknown")
    fov = None
    if image.pixel_spacing is not None:
        fov = tuple(round(n * s, 2) for n, s in zip(image.array.shape, image.pixel_spacing))
    acquisition = {k: v for k, v in image.meta.items() if k not in ("format", "dtype")}
    return ScanInspection(
        path=str(image.path),
        kind="image2d",
        format=image.meta.get("format", "?"),
        stored_dtype=image.meta.get("dtype", "?"),
        shape=tuple(int(n) for n in image.array.shape),
        spacing_mm=tuple(image.pixel_spacing) if image.pixel_spacing else None,
        field_of_view_mm=fov,
        intensity=stats,
        flags=tuple(flags),
        acquisition=acquisition,
    )


def is_2d_image(path: Path) -> bool:
    """Whether ``path`` is a 2D image (PNG and the like, or a single-frame DICOM file) rather than a 3D scan."""
    from spineage.imaging.io import IMAGE_2D_SUFFIXES, _is_nifti, _looks_like_dicom

    if path.is_dir() or _is_nifti(path):
        return False
    if path.suffix.lower() in IMAGE_2D_SUFFIXES:
        return True
    if _looks_like_dicom(path):
        from spineage.imaging.io import _dicom_int, _quiet_dicom, _read_dicom

        with _quiet_dicom():
            return _dicom_int(path, _read_dicom(path, pixels=False), "NumberOfFrames", 1) == 1
    return False


def inspect_scan(path: str | Path, label: str | Path | None = None) -> ScanInspection:
    """Load a scan and report what a user needs to know before trusting a result from it.

    Args:
        path: a NIfTI file, a DICOM series folder, or a 2D PNG/DICOM image.
        label: a label map for the regions (default: one found next to the scan, if any).

    Returns:
        The :class:`ScanInspection`.

    Raises:
        ImageLoadError: if the scan or the label map cannot be loaded.
    """
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: expected a scan (NIfTI file, DICOM series folder, PNG or DICOM image), found no such file or folder")
    if is_2d_image(path):
        if label is not None:
            raise UserError(f"Expected --label only with a 3D scan, found the 2D image {path}")
        return inspect_image2d(load_image2d(path))
    return inspect_volume(load_volume(path), Path(label) if label is not None else None)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


def format_inspection(report: ScanInspection) -> str:
    """The report as aligned text lines, as ``spineage inspect`` prints it."""
    rows: list[tuple[str, str]] = [("scan", report.path)]
    format_line = f"{report.format.upper() if report.format in ('nifti', 'dicom', 'png') else report.format}, stored {report.stored_dtype}"
    if "affine_source" in report.acquisition:
        format_line += f", affine from {report.acquisition['affine_source']}"
    if "slices" in report.acquisition:
        format_line += f", {report.acquisition['slices']} slice files"
    rows.append(("format", format_line))
    facts = [f"{k.replace('_', ' ')} {v}" for k, v in report.acquisition.items() if k not in ("affine_source", "slices", "label", "bits_used", "bit_depth", "mode", "pixel_spacing_source")]
    if facts:
        rows.append(("acquisition", "; ".join(facts)))
    if report.kind == "volume":
        rows.append(("stored", f"{_mm(report.stored_shape)} voxels, axis codes {','.join(report.stored_axcodes)}"))
        rows.append(("canonical", f"{_mm(report.shape)} voxels, axis codes {','.join(report.canonical_axcodes)} (the array every stage uses)"))
        rows.append(("spacing", f"{_mm(report.spacing_mm)} mm (R-L x A-P x S-I)"))
        low, high = report.superior_range_mm
        rows.append(("field of view", f"{_mm(report.field_of_view_mm)} mm (R-L x A-P x S-I); S-I from z = {low:g} to {high:g} mm"))
    else:
        bits = report.acquisition.get("bit_depth")
        used = report.acquisition.get("bits_used")
        depth = f", {bits}-bit" + (f" ({used} bits used)" if used else "") if bits else ""
        rows.append(("shape", f"{report.shape[0]} rows x {report.shape[1]} columns{depth}"))
        if report.spacing_mm:
            rows.append(("pixel spacing", f"{_mm(report.spacing_mm)} mm (row x column); {report.acquisition.get('pixel_spacing_source', '')}".rstrip("; ")))
            rows.append(("field of view", f"{_mm(report.field_of_view_mm)} mm"))
        else:
            rows.append(("pixel spacing", "unknown (not in the file)"))
    s = report.intensity
    rows.append(("intensity", f"min {_number(s['min'])}, max {_number(s['max'])}, mean {_number(s['mean'])}, SD {_number(s['sd'])}"))
    rows.append(("percentiles", f"p1 {_number(s['p1'])}, p5 {_number(s['p5'])}, p50 {_number(s['p50'])}, p95 {_number(s['p95'])}, p99 {_number(s['p99'])}, p99.9 {_number(s['p99_9'])}"))
    rows.append(("", f"{100 * s['zero_fraction']:.1f}% zero, {int(s['distinct'])} distinct values"))
    if report.regions is not None:
        coverage = report.regions
        if coverage.source == "label map":
            parts = [f"{region} ({_level_span(levels)})" for region, levels in coverage.levels.items()]
            if coverage.sacrum:
                parts.append("sacrum")
            rows.append(("regions", ", ".join(parts) or "none"))
            rows.append(("", f"{coverage.note}: {coverage.label_path}"))
        else:
            rows.append(("regions", f"{', '.join(coverage.regions) if coverage.regions else 'unknown'} (ESTIMATE)"))
            rows.append(("", coverage.note))
    if report.flags:
        rows.append(("flags", report.flags[0]))
        rows += [("", flag) for flag in report.flags[1:]]
    else:
        rows.append(("flags", "none"))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}".rstrip() for key, value in rows)


# --------------------------------------------------------------------------- --preprocess


def write_preprocessed(scan: str | Path, out: str | Path, label: str | Path | None = None, params: str | Path = "params.yaml") -> dict[str, Any]:
    """Write the array the model would see for ``scan`` to ``out`` (.npy), atomically.

    The spine mask comes from where the preprocess stage takes it
    (:func:`~spineage.imaging.stage.process_series`), by ``preprocess.masks`` of ``params``:
    ``segmentation`` (the default) segments the scan with ``preprocess.segmentation_model``,
    label map or not, as the training arrays were; ``labels`` uses the label map and
    segments only a scan without one. Then
    :func:`~spineage.imaging.preprocess.preprocess_volume` makes the array.

    Args:
        scan: the 3D scan.
        out: the .npy file to write.
        label: its label map (default: one found next to the scan); used with ``masks: labels``.
        params: the params file holding the preprocessing settings.

    Returns:
        The preprocessing record (what was done), with ``label_source`` (``label`` or
        ``segmentation``), ``mask_from`` (the label map or the model), and ``path``,
        ``shape`` and ``dtype`` of the array written.

    Raises:
        UserError: if the scan, label map, settings or segmentation model are bad or missing,
            or the scan is excluded by a quality flag.

    Example:
        >>> write_preprocessed("data/raw/images/mri-00001-1.nii.gz", "mri-00001-1.npy")["label_source"]  # doctest: +SKIP
        'segmentation'
    """
    from spineage.imaging.preprocess import load_preprocess_settings, preprocess_volume

    out = Path(out)
    if out.suffix != ".npy":
        raise UserError(f"Expected --preprocess to name a .npy file, found {out}")
    settings = load_preprocess_settings(params)
    volume = load_volume(scan)
    labels, label_source, mask_from = _spine_labels(volume, label, settings, params)
    array, record = preprocess_volume(volume, labels, settings)
    if array is None:
        raise UserError(f"Expected {scan} to preprocess, found it excluded: {record['reason'] or 'see the preprocessing record'}")
    write_array_atomic(out, array)
    return {**record, "label_source": label_source, "mask_from": mask_from, "path": str(out), "shape": list(array.shape), "dtype": str(array.dtype)}


def _spine_labels(volume: Volume, label: str | Path | None, settings: PreprocessSettings, params: str | Path) -> tuple[np.ndarray, str, str]:
    """The label map that masks ``volume``, as the preprocess stage chooses it: (labels, label source, where from).

    ``masks: labels`` takes the label map given or found next to the scan; otherwise (and
    for ``masks: segmentation`` always, a label map or not) the segmentation model segments it.
    """
    if settings.masks == "labels":
        label_path = Path(label) if label is not None else find_label_for(volume.path)
        if label_path is not None:
            return load_label_like(label_path, volume), "label", str(label_path)
        if not settings.segmentation_model:
            raise UserError(
                f"Expected a label map or a segmentation model for --preprocess (the model sees the masked spine), "
                f"found no label map next to {volume.path} and preprocess.segmentation_model null in {params}: "
                f"pass --label or set preprocess.segmentation_model"
            )
    model = _segmentation_model(settings)
    from spineage.imaging.segmentation import segment_volume

    return segment_volume(volume, model), "segmentation", model


def _segmentation_model(settings: PreprocessSettings) -> str:
    """The model URI to segment with: pinned as the preprocess stage pins it, a local folder checked and made absolute."""
    from spineage.imaging.identity import local_model_path
    from spineage.imaging.stage import pin_segmentation_model

    settings, _ = pin_segmentation_model(settings)  # masks: segmentation: a missing folder is refused here
    model = settings.segmentation_model
    local = local_model_path(model)
    if local is None:
        return model
    if not local.exists():
        raise UserError(
            f"Expected the segmentation model folder {local} (preprocess.segmentation_model) for a scan without a label map, "
            f"found nothing there: pass --label or run `spineage segment train --out {local}`"
        )
    # Absolute, as loaded models are cached by URI: the same relative folder elsewhere is another model.
    return str(local.resolve())
