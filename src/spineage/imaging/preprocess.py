"""One scan to the array the model sees: resample, mask, normalise, crop or pad, with a record.

:func:`preprocess_volume` takes a loaded :class:`~spineage.imaging.io.Volume`
(canonical RAS) and its label map on the same grid, and in this order:

1. finds the voxels of the spine region (:func:`~spineage.imaging.masking.spine_mask`)
   and the centre of their bounding box, in RAS mm;
2. lays the output grid (``shape`` voxels of ``target_spacing_mm``) centred on
   it, and samples the image there (trilinear) and the label map (nearest
   neighbour, with a margin for the dilation): resampling, cropping and padding
   are one interpolation of only the voxels that are kept;
3. builds the spine mask on that grid and grows it by ``dilation_mm`` (a
   distance transform in mm), and zeroes everything outside it;
4. normalises the intensities inside the mask
   (:func:`~spineage.imaging.intensity.normalise_in_mask`) and returns float16;
5. records the quartiles of the normalised intensity inside the vertebrae
   (sacrum included), the discs and the canal (CSF and cord) on the output grid
   (:func:`structure_intensities`): features for the non-deep baseline of the
   train stage, which cannot tell the structures apart in the masked array.

Quality flags (a scan is never processed silently when something is off):

=========================  ==============================================================  ==========
flag                       when                                                            rule
=========================  ==============================================================  ==========
``empty_mask``             no voxel of the region in the label map (or none left on the    excluded
                           output grid)
``implausible_intensity``  NaN/Inf, more than ``max_negative_fraction`` negative voxels,   excluded
                           or a constant image inside the mask
``few_regions``            fewer of the asked regions in view than ``min_regions_in_view`` kept
``spacing_off_target``     a native voxel size more than ``max_spacing_factor`` times       kept
                           coarser or finer than the target
``mask_truncated``         less than ``min_mask_in_view`` of the region's voxels fall       kept
                           inside the output grid
=========================  ==============================================================  ==========

The rule: a flag that leaves nothing meaningful to compute (no mask, no usable
intensities) always excludes the scan; the others describe a usable array and
keep it, marked, unless they are listed in ``exclude_flags``. An excluded scan
gets no array; its record says why.

Example:
    >>> from spineage.imaging.io import load_volume, load_label_like  # doctest: +SKIP
    >>> volume = load_volume("data/raw/images/mri-00001-1.nii.gz")  # doctest: +SKIP
    >>> labels = load_label_like("data/raw/labels/mri-00001-1.nii.gz", volume)  # doctest: +SKIP
    >>> array, record = preprocess_volume(volume, labels, PreprocessSettings())  # doctest: +SKIP
    >>> array.shape, array.dtype, record["status"]  # doctest: +SKIP
    ((16, 48, 192), dtype('float16'), 'ok')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spineage.errors import UserError
from spineage.settings_checks import choice, field_names, number, section_mapping
from spineage.findings.vocabulary import REGIONS
from spineage.imaging.identity import DEFAULT_SEGMENTATION_MODEL
from spineage.imaging.intensity import (
    NORMALISATIONS,
    intensity_problems,
    normalise_in_mask,
)
from spineage.imaging.masking import (
    SPINE_REGIONS,
    UNLEVELLED_LABELS,
    dilate_mm,
    label_codes,
    regions_present,
    spine_mask,
)
from spineage.imaging.resample import (
    Grid,
    bounding_box_centre_mm,
    fraction_inside,
    inside_scan,
    resample_to_grid,
)
from spineage.labels import (
    CANAL_LABEL,
    CORD_LABEL,
    DISC_LABELS,
    SACRUM_LABEL,
    UNLEVELLED_DISC,
    UNLEVELLED_VERTEBRA,
    VERTEBRA_LABELS,
)

if TYPE_CHECKING:
    from spineage.imaging.io import Volume

ALWAYS_EXCLUDED_FLAGS: tuple[str, ...] = ("empty_mask", "implausible_intensity")
"""Flags after which there is no meaningful array: the scan is always excluded."""
KEPT_FLAGS: tuple[str, ...] = ("few_regions", "spacing_off_target", "mask_truncated")
"""Flags describing a usable array: kept with the flag unless listed in ``exclude_flags``."""
QUALITY_FLAGS: tuple[str, ...] = ALWAYS_EXCLUDED_FLAGS + KEPT_FLAGS

OK, FLAGGED, EXCLUDED, FAILED = "ok", "flagged", "excluded", "failed"
STATUSES: tuple[str, ...] = (OK, FLAGGED, EXCLUDED, FAILED)
"""A series' fate: an array without flags, an array with flags, no array by the flag rule, no array by an error."""
USABLE_STATUSES: tuple[str, ...] = (OK, FLAGGED)

MASK_SOURCES: tuple[str, ...] = ("segmentation", "labels")
"""Values of ``preprocess.masks``: every series segmented, or label maps where there are any."""

UNIDENTIFIED_REGIONS = "unidentified"
"""``regions_present`` of a label map whose vertebrae carry no level (a segmentation without levels)."""

OUTPUT_DTYPE = np.float16
"""What the arrays are stored as: values in [0, 1] (percentile) or a few units (median_iqr) lose nothing that matters."""

STRUCTURE_GROUPS: dict[str, frozenset[int]] = {
    "vertebra": frozenset({*VERTEBRA_LABELS, SACRUM_LABEL, UNLEVELLED_VERTEBRA}),
    "disc": frozenset({*DISC_LABELS, UNLEVELLED_DISC}),
    "canal": frozenset({CANAL_LABEL, CORD_LABEL}),
}
"""Label codes of the structures whose intensities are recorded; levelled and unlevelled (segmentation) codes alike."""

INTENSITY_PERCENTILES: dict[str, float] = {"p25": 25.0, "median": 50.0, "p75": 75.0}
"""The statistics recorded per structure, by name."""

INTENSITY_FEATURES: tuple[str, ...] = tuple(
    f"{statistic}_{structure}" for structure in STRUCTURE_GROUPS for statistic in INTENSITY_PERCENTILES
)
"""Record keys (and manifest columns) of the structure intensities: ``p25_vertebra``, ``median_vertebra``, ..."""

_CODE_FILES = ("imaging/intensity.py", "imaging/masking.py", "imaging/preprocess.py", "imaging/resample.py",
               "imaging/io.py", "labels.py")
"""Modules (under ``spineage/``) whose code decides the arrays: a change to any of them invalidates every stored array."""


@dataclass(frozen=True)
class PreprocessSettings:
    """Settings of the preprocess stage (the ``preprocess`` section of params.yaml).

    Args:
        target_spacing_mm: output voxel size (X left-right, Y anterior-posterior, Z superior-inferior).
        shape: output voxels along X, Y, Z.
        dilation_mm: how far the spine mask grows beyond the labels.
        region: ``whole``, ``cervical``, ``thoracic`` or ``lumbar`` (the region ablation).
        normalisation: ``percentile`` or ``median_iqr`` (see :mod:`spineage.imaging.intensity`).
        percentiles: (low, high) percentiles of ``percentile`` normalisation.
        min_regions_in_view: fewer of the asked regions with a vertebra in the label map flags
            ``few_regions`` (capped at the number of regions asked for).
        max_spacing_factor: a native voxel size more than this factor coarser or finer than
            the target flags ``spacing_off_target``.
        min_mask_in_view: a smaller share of the region's voxels inside the output grid flags
            ``mask_truncated``.
        max_negative_fraction: a larger share of negative voxels inside the mask flags
            ``implausible_intensity``.
        exclude_flags: kept flags (:data:`KEPT_FLAGS`) that exclude a scan all the same.
        max_failure_fraction: the stage fails when more than this share of the series end
            without an array (failed or excluded).
        workers: processes.
        masks: where each series' spine mask comes from (:data:`MASK_SOURCES`):
            ``segmentation``, the segmentation model for every series, label map or not
            (label maps then serve only to measure the segmenter's Dice); ``labels``, the
            series' label map, and the segmentation model only for series without one.
        segmentation_model: the segmentation model: a model folder (the ``segment`` stage's
            ``models/spine-seg``, hashed by content) or an MLflow model URI (e.g.
            ``models:/spine-seg-mri@candidate``); ``None`` (``masks: labels`` only): series
            without a label map fail.
    """

    target_spacing_mm: tuple[float, float, float] = (4.0, 3.0, 4.0)
    shape: tuple[int, int, int] = (16, 48, 192)
    dilation_mm: float = 5.0
    region: str = "whole"
    normalisation: str = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.0)
    min_regions_in_view: int = 3
    max_spacing_factor: float = 5.0
    min_mask_in_view: float = 0.95
    max_negative_fraction: float = 0.05
    exclude_flags: tuple[str, ...] = ()
    max_failure_fraction: float = 0.05
    workers: int = 2
    masks: str = "segmentation"
    segmentation_model: str | None = DEFAULT_SEGMENTATION_MODEL

    def output_settings(self) -> dict[str, Any]:
        """The settings that decide the arrays and their flags (not workers or the failure threshold)."""
        settings = asdict(self)
        for key in ("workers", "max_failure_fraction"):
            settings.pop(key)
        return settings

    def settings_hash(self) -> str:
        """A short hash of :meth:`output_settings` and of the preprocessing code: equal hashes, equal arrays."""
        digest = hashlib.sha256(json.dumps(self.output_settings(), sort_keys=True, default=list).encode())
        folder = Path(__file__).parents[1]
        for name in _CODE_FILES:
            path = folder / name
            digest.update(name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"")
        return digest.hexdigest()[:16]


_KEYS = field_names(PreprocessSettings)


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, default, "preprocess", low, high, integer)


def _triple(section: dict[str, Any], key: str, default: tuple, integer: bool, low: float, high: float) -> tuple:
    value = section.get(key, list(default))
    kinds = (int,) if integer else (int, float)
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, kinds) and not isinstance(v, bool) and low <= v <= high for v in value)):
        what = "integers" if integer else "numbers"
        raise UserError(f"Expected three {what} between {low:g} and {high:g} (X, Y, Z) for preprocess.{key}, found {value!r}")
    return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)


def parse_preprocess_settings(section: Any) -> PreprocessSettings:
    """Turn the ``preprocess`` section of params.yaml into :class:`PreprocessSettings`, checking every value.

    Raises:
        UserError: for an unknown key or a bad value.
    """
    section = section_mapping(section, "preprocess", _KEYS)
    defaults = PreprocessSettings()
    region = choice(section, "region", defaults.region, "preprocess", SPINE_REGIONS)
    normalisation = choice(section, "normalisation", defaults.normalisation, "preprocess", NORMALISATIONS)
    percentiles = section.get("percentiles", list(defaults.percentiles))
    if not (isinstance(percentiles, (list, tuple)) and len(percentiles) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in percentiles)
            and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise UserError(f"Expected two increasing percentiles within 0-100 for preprocess.percentiles, found {percentiles!r}")
    exclude = section.get("exclude_flags", list(defaults.exclude_flags)) or []
    if not isinstance(exclude, (list, tuple)) or any(flag not in KEPT_FLAGS for flag in exclude):
        raise UserError(
            f"Expected preprocess.exclude_flags among {list(KEPT_FLAGS)} ({', '.join(ALWAYS_EXCLUDED_FLAGS)} always "
            f"exclude), found {exclude!r}"
        )
    model = section.get("segmentation_model", defaults.segmentation_model)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise UserError(f"Expected a model folder or URI (e.g. models/spine-seg, models:/spine-seg-mri@candidate) or null for preprocess.segmentation_model, found {model!r}")
    masks = choice(section, "masks", defaults.masks, "preprocess", MASK_SOURCES)
    if masks == "segmentation" and model is None:
        raise UserError("Expected preprocess.segmentation_model (e.g. models/spine-seg) with preprocess.masks: segmentation, found null")
    if masks == "segmentation" and region != "whole":
        # The segmenter labels vertebrae and discs without levels (codes 100, 130): no single region can be found.
        raise UserError(
            f"Expected preprocess.region: whole with preprocess.masks: segmentation (the segmenter does not tell "
            f"levels apart), found {region}; use preprocess.masks: labels for the region ablation"
        )
    return PreprocessSettings(
        target_spacing_mm=_triple(section, "target_spacing_mm", defaults.target_spacing_mm, False, 0.1, 50.0),
        shape=_triple(section, "shape", defaults.shape, True, 1, 4096),
        dilation_mm=float(_number(section, "dilation_mm", defaults.dilation_mm, 0.0, 100.0)),
        region=region,
        normalisation=normalisation,
        percentiles=(float(percentiles[0]), float(percentiles[1])),
        min_regions_in_view=int(_number(section, "min_regions_in_view", defaults.min_regions_in_view, 0, 3, integer=True)),
        max_spacing_factor=float(_number(section, "max_spacing_factor", defaults.max_spacing_factor, 1.0, 1000.0)),
        min_mask_in_view=float(_number(section, "min_mask_in_view", defaults.min_mask_in_view, 0.0, 1.0)),
        max_negative_fraction=float(_number(section, "max_negative_fraction", defaults.max_negative_fraction, 0.0, 1.0)),
        exclude_flags=tuple(exclude),
        max_failure_fraction=float(_number(section, "max_failure_fraction", defaults.max_failure_fraction, 0.0, 1.0)),
        workers=int(_number(section, "workers", defaults.workers, 1, 256, integer=True)),
        masks=masks,
        segmentation_model=None if model is None else model.strip(),
    )


def load_preprocess_settings(params: str | Path, overrides: Sequence[str] = ()) -> PreprocessSettings:
    """The ``preprocess`` section of a params file (``overrides``: ``section.key=value`` on top), after the checks of the whole file."""
    from spineage.config import read_params_mapping

    return parse_preprocess_settings(read_params_mapping(params, overrides).get("preprocess"))


def format_triple(values) -> str:
    """``(16, 48, 192)`` as ``"16x48x192"``, ``(4.0, 3.0, 4.0)`` as ``"4x3x4"`` (the manifest's form)."""
    return "x".join(f"{float(v):g}" for v in values)


def structure_intensities(normalised: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """Quartiles of ``normalised`` inside each structure of :data:`STRUCTURE_GROUPS`, within ``mask``.

    Args:
        normalised: the normalised image on the output grid.
        labels: the label map on the same grid.
        mask: the voxels that count (the region's own labels, inside the scan).

    Returns:
        One value per :data:`INTENSITY_FEATURES` key, rounded to 4 decimals; None for a
        structure with no voxel (a label map without canal labels, say).

    Example:
        >>> labels = np.array([[[1, 1, 31, 60]]]); image = np.array([[[0.2, 0.4, 0.1, 0.9]]])
        >>> structure_intensities(image, labels, labels > 0)["median_vertebra"]
        0.3
    """
    features: dict[str, float | None] = {}
    for structure, codes in STRUCTURE_GROUPS.items():
        values = normalised[np.isin(labels, list(codes)) & mask]
        quartiles = np.percentile(values, list(INTENSITY_PERCENTILES.values())) if values.size else [None] * len(INTENSITY_PERCENTILES)
        for statistic, value in zip(INTENSITY_PERCENTILES, quartiles):
            features[f"{statistic}_{structure}"] = None if value is None else round(float(value), 4)
    return features


@dataclass
class _Record:
    """What happened to one scan (see :func:`preprocess_volume`)."""

    series_id: str
    original_shape: tuple[int, ...]
    original_spacing: tuple[float, ...]
    orientation: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    regions_present: tuple[str, ...] = ()
    mask_voxels: int = 0
    mask_in_view: float = 0.0
    intensity_offset: float | None = None
    intensity_scale: float | None = None
    crop_centre_mm: tuple[float, ...] = ()
    structure_intensity: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(INTENSITY_FEATURES))
    flags: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def flag(self, name: str, detail: str) -> None:
        self.flags.append(name)
        self.details.append(f"{name}: {detail}")

    def finish(self, settings: PreprocessSettings) -> dict[str, Any]:
        excluded = [f for f in self.flags if f in ALWAYS_EXCLUDED_FLAGS or f in settings.exclude_flags]
        status = EXCLUDED if excluded else FLAGGED if self.flags else OK
        record = asdict(self)
        record.pop("details")
        record.update(record.pop("structure_intensity"))
        record.update(status=status, reason="; ".join(self.details))
        return record


def preprocess_volume(
    volume: Volume,
    label: np.ndarray,
    settings: PreprocessSettings = PreprocessSettings(),
    *,
    series_id: str | None = None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Resample, mask, normalise and crop one scan; return the model's array and what was done.

    Args:
        volume: the scan, canonical RAS (as :func:`~spineage.imaging.io.load_volume` returns it).
        label: its integer label map on the same voxel grid (or a label :class:`Volume`).
        settings: the preprocess settings.
        series_id: the name kept in the record (default: the file name).

    Returns:
        (array, record): the float16 array of ``settings.shape`` (None when the scan
        is excluded), and a dict with ``series_id``, ``status`` (ok, flagged,
        excluded), ``reason``, ``flags``, ``original_shape``, ``original_spacing``,
        ``orientation`` (as stored), ``shape``, ``spacing``, ``regions_present`` (the
        regions with a vertebra in the label map; ``("unidentified",)`` when its
        vertebrae carry no level, as from a segmentation without levels: then
        ``few_regions`` is not judged and only ``region: whole`` finds a mask),
        ``mask_voxels``, ``mask_in_view``, ``intensity_offset`` and ``intensity_scale``
        (source value = offset + scale * output), ``crop_centre_mm``, and the
        :data:`INTENSITY_FEATURES` (``median_vertebra``, ``median_disc``,
        ``median_canal`` and their 25th/75th percentiles ``p25_*``, ``p75_*``: the
        normalised intensity inside each structure of the region, on the output
        grid; None when excluded or without such a structure).

    Raises:
        ValueError: if the label map is not on the volume's grid.
    """
    labels = np.asarray(getattr(label, "array", label))
    image = volume.array
    if labels.shape != image.shape:
        raise ValueError(f"Expected a label map shaped like the image {image.shape}, found {labels.shape}")
    spacing = np.asarray(volume.spacing)
    target = np.asarray(settings.target_spacing_mm)
    record = _Record(
        series_id=series_id or Path(volume.path).name.split(".")[0],
        original_shape=tuple(int(n) for n in image.shape),
        original_spacing=tuple(round(float(s), 4) for s in spacing),
        orientation="".join(volume.source_axcodes),
        shape=settings.shape,
        spacing=settings.target_spacing_mm,
    )

    asked = REGIONS if settings.region == "whole" else (settings.region,)
    codes = label_codes(labels)
    present = regions_present(codes)
    # A segmentation that does not tell levels apart: the regions in view cannot be known.
    unlevelled = not present and bool(codes & UNLEVELLED_LABELS)
    record.regions_present = (UNIDENTIFIED_REGIONS,) if unlevelled else present
    in_view = [r for r in asked if r in present]
    needed = min(settings.min_regions_in_view, len(asked))
    if len(in_view) < needed and not (unlevelled and settings.region == "whole"):
        record.flag("few_regions", f"{len(in_view)} of the {needed} regions asked for in view ({', '.join(present) or 'none'})")
    ratio = np.maximum(spacing / target, target / spacing)
    if ratio.max() > settings.max_spacing_factor + 1e-9:
        record.flag(
            "spacing_off_target",
            f"voxels of {format_triple(np.round(spacing, 3))} mm against a target of {format_triple(target)} mm "
            f"(more than {settings.max_spacing_factor:g}x apart)",
        )

    native_mask = spine_mask(labels, settings.region)
    if not native_mask.any():
        why = " (its vertebrae carry no level, so no single region can be found in it)" if unlevelled else ""
        record.flag("empty_mask", f"no {settings.region} spine labels in the label map{why}")
        return None, record.finish(settings)

    grid = Grid.centred(bounding_box_centre_mm(native_mask, volume.affine), settings.shape, settings.target_spacing_mm)
    record.crop_centre_mm = tuple(round(float(v), 2) for v in grid.centre_mm)
    record.mask_in_view = round(fraction_inside(native_mask, volume.affine, grid), 4)
    if record.mask_in_view < settings.min_mask_in_view:
        record.flag("mask_truncated", f"{100 * record.mask_in_view:.1f}% of the {settings.region} mask inside the output grid "
                                      f"(at least {100 * settings.min_mask_in_view:g}% expected)")

    # Labels with a margin, so that structures just outside the grid still grow into it.
    margin = [int(np.ceil(settings.dilation_mm / s)) + 1 for s in settings.target_spacing_mm]
    wide_labels = resample_to_grid(labels, volume.affine, grid.padded(margin), order=0)
    region_labels = spine_mask(wide_labels, settings.region)
    mask = dilate_mm(region_labels, settings.target_spacing_mm, settings.dilation_mm)
    on_grid = (slice(margin[0], margin[0] + grid.shape[0]), slice(margin[1], margin[1] + grid.shape[1]),
               slice(margin[2], margin[2] + grid.shape[2]))
    mask = np.ascontiguousarray(mask[on_grid])
    # The dilation may reach past the edge of the scan (a 52 mm slab in a 64 mm grid): padding is not tissue.
    mask &= inside_scan(image.shape, volume.affine, grid)
    record.mask_voxels = int(mask.sum())
    if record.mask_voxels == 0:
        record.flag("empty_mask", "no voxel of the spine mask left on the output grid")
        return None, record.finish(settings)

    resampled = resample_to_grid(image, volume.affine, grid, order=1, dtype=np.float32)
    problems = intensity_problems(resampled[mask], settings.max_negative_fraction, settings.percentiles)
    if problems:
        record.flag("implausible_intensity", "; ".join(problems))
        return None, record.finish(settings)
    normalised, (offset, scale) = normalise_in_mask(resampled, mask, settings.normalisation, settings.percentiles)
    record.intensity_offset, record.intensity_scale = round(offset, 4), round(scale, 4)
    record.structure_intensity = structure_intensities(normalised, wide_labels[on_grid], region_labels[on_grid] & mask)
    result = record.finish(settings)
    if result["status"] == EXCLUDED:
        return None, result
    return normalised.astype(OUTPUT_DTYPE), result
