"""``spineage predict``: spine age, the spine age gap and quality flags of new scans, with a registered model.

Each scan goes the way the training scans went, then through the registered
network and its stored correction:

==============  ==================================================================  ==========================================
scan            preprocessing                                                       model (default ``@production``)
==============  ==================================================================  ==========================================
3D MRI          load (NIfTI or DICOM series folder, canonical RAS), segment with    ``spine-age-mri``, Cole's correction
                the segmenter of the training arrays, mask, resample, normalise
2D radiograph   load (PNG or DICOM), equalise, scale, crop the margin (none for     ``spine-age-xray``, Beheshti's correction
or DXA VFA      VFA), fit and pad                                                   (needs the age)
==============  ==================================================================  ==========================================

Every scan gets a number, and with it the flags that say why it may not be
trusted (:func:`quality_flags`): a field of view that is not whole-spine,
voxel sizes, field of view, mask size and structure intensities outside those of
the training scans (:mod:`spineage.inference.reference`), a segmenter unsure of
the spine or not the one the training scans were masked with, the acquisition
flags of ``spineage inspect``, an age outside the training ages. Nothing read
from a DICOM header reaches the output but what ``spineage inspect`` shows (no
identifier).

Example:
    >>> from spineage.inference.predict import ScanRequest, predict_scan  # doctest: +SKIP
    >>> predict_scan(ScanRequest(Path("scan.nii.gz"), age=54.0), Models())["sag"]  # doctest: +SKIP
    3.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spineage.errors import UserError
from spineage.inference.bundle import MODEL_FOR_KIND, ModelBundle, default_model_uri, load_bundle
from spineage.inference.reference import reference_flags
from spineage.inference.settings import PredictSettings
from spineage.radiograph.preprocess import VFA_MODALITY, XRAY_MODALITY

MODALITY_OPTIONS: dict[str, str] = {"radiograph": XRAY_MODALITY, "vfa": VFA_MODALITY}
"""``--modality`` of a 2D image, and the radiograph branch's name for it (VFA images are not margin-cropped)."""
SEXES = ("F", "M")
SUMMARY = "predictions.csv"
"""The table of every scan of a run, beside one JSON file per scan."""
SUMMARY_COLUMNS = (
    "scan", "output", "kind", "model", "age", "sex", "spine_age_raw", "spine_age", "sag", "sag_low", "sag_high",
    "atypical_for_age", "in_distribution", "flags", "error",
)
GEOMETRY_FLAGS = ("anisotropic spacing", "very few slices", "small field of view")
"""``spineage inspect``'s rule-of-thumb flags that a model's training reference judges instead."""
WHOLE_SPINE_NOTE = "the training scans are whole-spine sagittal T2, C2 to sacrum"


@dataclass(frozen=True)
class ScanRequest:
    """One scan to predict.

    Args:
        path: a NIfTI file, a DICOM series folder, or a PNG/DICOM radiograph or VFA image.
        age: chronological age at the scan (years), if known.
        sex: ``F`` or ``M``, if known (reported; the networks do not read it).
        modality: for a 2D image, ``radiograph`` or ``vfa`` (default radiograph).
    """

    path: Path
    age: float | None = None
    sex: str | None = None
    modality: str | None = None


@dataclass
class Models:
    """The registered models a run uses: ``uri`` for every scan, or each kind's ``@production`` version, loaded once."""

    uri: str | None = None
    _loaded: dict[str, ModelBundle] = field(default_factory=dict)

    @classmethod
    def pinned(cls, bundle: ModelBundle) -> "Models":
        """Every scan to this already loaded version."""
        return cls(uri=bundle.uri, _loaded={bundle.uri: bundle})

    def for_kind(self, kind: str, path: Path) -> ModelBundle:
        """The model for a scan of ``kind`` (``mri`` or ``radiograph``).

        Raises:
            UserError: when ``uri`` names a model of the other kind, or no production version exists.
        """
        key = self.uri or kind
        if key not in self._loaded:
            self._loaded[key] = load_bundle(self.uri or default_model_uri(kind))
        bundle = self._loaded[key]
        if bundle.kind != kind:
            found = "a 2D image" if kind == "radiograph" else "a 3D scan"
            wanted = "a 3D MRI scan (NIfTI file or DICOM series folder)" if bundle.kind == "mri" else "a 2D radiograph or VFA image (PNG or DICOM)"
            raise UserError(f"Expected {wanted} for {bundle.name} (--model {self.uri}), found {found}: {path}")
        return bundle


# --------------------------------------------------------------------------- checks of what the user gave


def checked_age(age: float | None, settings: PredictSettings) -> float | None:
    """``age`` if within the accepted range.

    Raises:
        UserError: for an age outside ``[settings.min_age, settings.max_age]`` or not finite.
    """
    if age is None:
        return None
    if not math.isfinite(float(age)) or not settings.min_age <= float(age) <= settings.max_age:
        raise UserError(f"Expected an age between {settings.min_age:g} and {settings.max_age:g} years (predict.min_age, max_age), found {age}")
    return float(age)


def checked_sex(sex: str | None) -> str | None:
    """``F`` or ``M`` (case-insensitive), or None.

    Raises:
        UserError: for anything else.
    """
    if sex is None or (isinstance(sex, float) and math.isnan(sex)) or str(sex).strip() == "":
        return None
    value = str(sex).strip().upper()
    if value not in SEXES:
        raise UserError(f"Expected sex F or M, found {sex!r}")
    return value


def scan_kind(path: Path) -> str:
    """``radiograph`` for a 2D image, ``mri`` for a 3D scan.

    Raises:
        UserError: for a path that does not exist.
    """
    from spineage.imaging.inspect import is_2d_image

    if not path.exists():
        raise UserError(f"Expected a scan (NIfTI file, DICOM series folder, PNG or DICOM image), found no such file or folder: {path}")
    return "radiograph" if is_2d_image(path) else "mri"


# --------------------------------------------------------------------------- 3D MRI


def spine_extent_mm(labels: np.ndarray, spacing: Sequence[float]) -> float:
    """The superior-inferior length (mm) of the labelled spine (canonical RAS: axis 2)."""
    slices = np.flatnonzero(np.asarray(labels).any(axis=(0, 1)))
    return float((slices[-1] - slices[0] + 1) * spacing[2]) if len(slices) else 0.0


def _mri_measurements(volume: Any, record: dict[str, Any]) -> dict[str, float | None]:
    spacing = [float(s) for s in volume.spacing]
    return {
        "spacing_lr_mm": spacing[0], "spacing_ap_mm": spacing[1], "spacing_si_mm": spacing[2],
        "field_of_view_si_mm": float(volume.array.shape[2] * spacing[2]),
        "mask_voxels": float(record.get("mask_voxels") or 0),
        **{name: record.get(name) for name in ("median_vertebra", "median_disc", "median_canal")},
    }


def _predict_mri(bundle: ModelBundle, request: ScanRequest, settings: PredictSettings) -> tuple[float, dict[str, Any], np.ndarray]:
    """(raw spine age, quality, the array the network read) of a 3D scan."""
    import torch

    from spineage.imaging.inspect import estimate_regions, inspect_volume
    from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY
    from spineage.imaging.io import load_volume
    from spineage.imaging.preprocess import parse_preprocess_settings
    from spineage.imaging.segmentation import segment_volume_with_confidence
    from spineage.training.data import fit_to_network

    preprocessing = bundle.preprocessing
    fitting = preprocessing.pop("fit_to_network", {}) or {}
    preprocessing.pop(SEGMENTER_IDENTITY_KEY, None)
    preprocess_settings = parse_preprocess_settings(preprocessing)
    volume = load_volume(request.path)
    labels, confidence = segment_volume_with_confidence(volume, bundle.segmenter())
    array, record = _preprocess(volume, labels, preprocess_settings, request.path)
    crop = tuple(fitting["crop_shape"]) if fitting.get("crop_shape") else None
    network_input = fit_to_network(array, crop, tuple(bundle.network.input_shape)).astype(np.float32)
    with torch.inference_mode():
        raw = float(bundle.network(torch.from_numpy(network_input)[None, None]).float()[0])

    acquisition = inspect_volume(volume, find_label=False).flags
    if bundle.reference is not None and "spacing_si_mm" in bundle.reference.measurements:
        # Voxel sizes and the field of view are judged against the training scans below, not by rule of thumb.
        acquisition = tuple(text for text in acquisition if not text.startswith(GEOMETRY_FLAGS))
    flags = [("acquisition", text) for text in acquisition]
    extent = spine_extent_mm(labels, volume.spacing)
    regions = estimate_regions(extent, request.path.name, "file name")
    # The flag rests on the measured extent alone: a file name cannot make a short field of view whole-spine.
    if len(estimate_regions(extent).regions) < settings.min_regions_in_view:
        flags.append(("field_of_view", f"the segmented spine spans {extent:.0f} mm, {regions.note.split(': ', 1)[-1]}; {WHOLE_SPINE_NOTE}"))
    if bundle.segmenter_mismatch:
        flags.append(("segmenter", bundle.segmenter_mismatch))
    if confidence < settings.min_segmentation_confidence:
        flags.append(("segmentation_confidence", f"mean top-class probability {confidence:.2f} inside the segmented spine, below {settings.min_segmentation_confidence:g}"))
    for detail in filter(None, str(record.get("reason") or "").split("; ")):
        name, _, text = detail.partition(": ")
        if name != "few_regions":  # the segmenter does not tell levels apart: regions are judged above
            flags.append((name, text))
    measurements = _mri_measurements(volume, record)
    if bundle.reference is not None:
        flags += reference_flags(bundle.reference, measurements, settings.reference_margin)
    quality = {
        "regions_in_view": list(regions.regions), "spine_extent_mm": round(extent, 1),
        "segmentation_confidence": round(confidence, 4), "measurements": _rounded(measurements), "flags": flags,
    }
    return raw, quality, network_input


def _preprocess(volume: Any, labels: np.ndarray, settings: Any, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from spineage.imaging.preprocess import preprocess_volume

    array, record = preprocess_volume(volume, labels, settings, series_id=path.name.split(".")[0] or "scan")
    if array is None:
        raise UserError(f"Expected a spine the model can read in {path}, found none: {record.get('reason') or 'excluded by preprocessing'}")
    return array, record


# --------------------------------------------------------------------------- 2D radiograph / VFA


def _predict_radiograph(bundle: ModelBundle, request: ScanRequest, settings: PredictSettings) -> tuple[float, dict[str, Any], np.ndarray]:
    """(raw spine age, quality, the image the network read) of a 2D radiograph or VFA image."""
    import torch

    from spineage.imaging.inspect import inspect_image2d
    from spineage.imaging.io import load_image2d
    from spineage.radiograph.preprocess import preprocess_image, stored_bit_depth
    from spineage.radiograph.settings import RadiographSettings

    modality = request.modality or "radiograph"
    if modality not in MODALITY_OPTIONS:
        raise UserError(f"Expected --modality {' or '.join(MODALITY_OPTIONS)} for a 2D image, found {modality!r}")
    image = load_image2d(request.path)
    stored = bundle.preprocessing
    radiograph_settings = RadiographSettings(
        image_shape=tuple(bundle.network.image_shape),
        margin_fraction=float(stored.get("margin_fraction", RadiographSettings().margin_fraction)),
        equalise=bool(stored.get("equalise", RadiographSettings().equalise)),
    )
    network_input = preprocess_image(image.array, MODALITY_OPTIONS[modality], radiograph_settings)
    with torch.inference_mode():
        raw = float(bundle.network(torch.from_numpy(network_input)[None, None]).float()[0])

    # Pixel spacing is not read by the model (it sees a fitted image), so its absence is not a flag here.
    flags = [("acquisition", text) for text in inspect_image2d(image).flags if "pixel spacing" not in text]
    rows, columns = (int(n) for n in image.array.shape)
    bit_depth = stored_bit_depth(image.meta)
    measurements = {"rows": float(rows), "columns": float(columns), "aspect": rows / columns}
    if bundle.reference is not None:
        flags += reference_flags(bundle.reference, measurements, settings.reference_margin)
        if bundle.reference.bit_depths and bit_depth not in bundle.reference.bit_depths:
            seen = ", ".join(str(b) for b in bundle.reference.bit_depths)
            flags.append(("bit_depth", f"{bit_depth}-bit image; the training images were {seen}-bit"))
    quality = {"modality": modality, "bit_depth": bit_depth, "measurements": _rounded(measurements), "flags": flags}
    return raw, quality, network_input


# --------------------------------------------------------------------------- one scan


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (None if v is None or not math.isfinite(float(v)) else round(float(v), 4)) for k, v in values.items()}


def predict_scan(request: ScanRequest, models: Models, settings: PredictSettings = PredictSettings(), gradcam: Path | None = None) -> dict[str, Any]:
    """Spine age, SAG, normative range and quality flags of one scan (a JSON-ready dict).

    Args:
        request: the scan, with age and sex if known.
        models: the registered models to use.
        settings: the flag thresholds and accepted ages.
        gradcam: a PNG to write the Grad-CAM overlay to (None: none).

    Raises:
        UserError: for a missing or unreadable scan, a scan of the wrong kind for ``models.uri``,
            no production model, an age out of range, or a scan without a readable spine.
    """
    from spineage.evaluation.bias import apply_bias_correction

    age, sex = checked_age(request.age, settings), checked_sex(request.sex)
    kind = scan_kind(request.path)
    if kind == "mri" and request.modality is not None:
        raise UserError(f"Expected --modality only with a 2D image, found the 3D scan {request.path}")
    bundle = models.for_kind(kind, request.path)
    predict = _predict_mri if kind == "mri" else _predict_radiograph
    raw, quality, network_input = predict(bundle, request, settings)

    notes = []
    if bundle.correction.method == "beheshti" and age is None:
        corrected = None
        notes.append("the corrected spine age needs --age (Beheshti's correction is a function of age); the raw spine age is given")
    else:
        corrected = float(apply_bias_correction(bundle.correction, np.array([raw]), None if age is None else np.array([age]))[0])
    flags = list(quality.pop("flags"))
    if age is not None and bundle.reference is not None and not bundle.reference.ages.low <= age <= bundle.reference.ages.high:
        flags.append(("age", f"age {age:g} outside the training ages {bundle.reference.ages.low:g}-{bundle.reference.ages.high:g}"))
    if bundle.reference is None:
        notes.append("the model holds no reference of its training scans: only acquisition flags are judged")

    result: dict[str, Any] = {
        "scan": str(request.path), "kind": kind,
        "model": {"name": bundle.name, "version": bundle.version, "uri": bundle.uri, "site": bundle.site},
        "age": age, "sex": sex,
        "spine_age_raw": round(raw, 3), "spine_age": None if corrected is None else round(corrected, 3),
        "bias_correction": bundle.correction.as_dict(),
        "sag": None, "normative_range": None, "atypical_for_age": None,
        "quality": {**quality, "in_distribution": not flags, "flags": [{"flag": name, "reason": reason} for name, reason in flags]},
        "notes": notes, "gradcam": None,
    }
    if corrected is not None and age is not None:
        result["sag"] = round(corrected - age, 3)
        if bundle.normative is not None:
            low, high = bundle.normative.sag_range(np.array([corrected]))[0]
            age_low, age_high = bundle.normative.age_range(np.array([corrected]))[0]
            result["normative_range"] = {
                "coverage": bundle.normative.coverage, "sag_low": round(float(low), 3), "sag_high": round(float(high), 3),
                "age_low": round(float(age_low), 3), "age_high": round(float(age_high), 3),
            }
            result["atypical_for_age"] = bool(bundle.normative.atypical(np.array([corrected]), np.array([age]))[0])
    if gradcam is not None:
        from spineage.inference.gradcam import write_gradcam_overlay

        result["gradcam"] = str(write_gradcam_overlay(bundle, network_input, gradcam, title=_gradcam_title(result)))
    return result


def _gradcam_title(result: dict[str, Any]) -> str:
    age = result["spine_age"] if result["spine_age"] is not None else result["spine_age_raw"]
    title = f"{Path(result['scan']).name}: spine age {age:.1f}"
    return title + (f", age {result['age']:g}, SAG {result['sag']:+.1f} y" if result["sag"] is not None else "")


def summary_row(result: dict[str, Any], output: str = "", error: str = "", scan: str = "") -> dict[str, Any]:
    """One row of :data:`SUMMARY` from a :func:`predict_scan` result (or an error)."""
    if error:
        return {**dict.fromkeys(SUMMARY_COLUMNS, None), "scan": scan, "error": error}
    normative = result.get("normative_range") or {}
    return {
        "scan": result["scan"], "output": output, "kind": result["kind"], "model": result["model"]["uri"],
        "age": result["age"], "sex": result["sex"], "spine_age_raw": result["spine_age_raw"], "spine_age": result["spine_age"],
        "sag": result["sag"], "sag_low": normative.get("sag_low"), "sag_high": normative.get("sag_high"),
        "atypical_for_age": result["atypical_for_age"], "in_distribution": result["quality"]["in_distribution"],
        "flags": "; ".join(f"{f['flag']}: {f['reason']}" for f in result["quality"]["flags"]), "error": "",
    }


# --------------------------------------------------------------------------- many scans


VOLUME_MODALITIES = ("MR", "CT")
"""DICOM modalities whose slices in one folder make a 3D series (a folder of CR/DX/OT files is a folder of radiographs)."""


def _looks_like_series(folder: Path) -> bool:
    """Whether a folder is one 3D DICOM series (MR or CT slices) rather than a folder of scans or radiographs."""
    from spineage.imaging.io import _looks_like_dicom, _quiet_dicom, _read_dicom

    dicoms = [item for item in sorted(folder.iterdir())[:20] if item.is_file() and _looks_like_dicom(item)]
    if not dicoms:
        return False
    with _quiet_dicom():
        modality = str(getattr(_read_dicom(dicoms[0], pixels=False), "Modality", "MR") or "MR").upper()
    return modality in VOLUME_MODALITIES


def _scans_in(folder: Path) -> list[Path]:
    """The scans of a folder: NIfTI files (not label maps), 2D images, DICOM files and series folders."""
    from spineage.imaging.inspect import is_label_map_name
    from spineage.imaging.io import IMAGE_2D_SUFFIXES, _is_nifti

    scans = []
    for item in sorted(folder.iterdir()):
        if item.name.startswith(".") or is_label_map_name(item):
            continue
        if item.is_dir() or _is_nifti(item) or item.suffix.lower() in (*IMAGE_2D_SUFFIXES, ".dcm"):
            scans.append(item)
    return scans


def _requests_from_table(table_path: Path, modality: str | None) -> list[ScanRequest]:
    try:
        table = pd.read_csv(table_path, dtype={"path": str, "sex": str})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"Expected a readable CSV of scans at {table_path}, found: {error}") from None
    if "path" not in table.columns:
        raise UserError(f"Expected a path column in {table_path} (and optionally age, sex, modality), found {list(table.columns)}")
    requests = []
    for line, row in enumerate(table.itertuples(index=False), start=2):  # the header is line 1
        if pd.isna(row.path) or not str(row.path).strip():
            raise UserError(f"Expected a scan path on every row of {table_path}, found none on line {line}")
        path = Path(str(row.path).strip())
        path = path if path.is_absolute() else table_path.parent / path
        age = getattr(row, "age", None)
        try:
            age = None if age is None or pd.isna(age) else float(age)
        except (TypeError, ValueError):
            raise UserError(f"Expected a numeric age on line {line} of {table_path}, found {age!r}") from None
        row_modality = getattr(row, "modality", None)
        row_modality = None if row_modality is None or pd.isna(row_modality) else str(row_modality)
        requests.append(ScanRequest(path, age, getattr(row, "sex", None), row_modality or modality))
    if not requests:
        raise UserError(f"Expected at least one scan in {table_path}, found none")
    return requests


def scan_requests(paths: Sequence[Path], age: float | None = None, sex: str | None = None, modality: str | None = None) -> list[ScanRequest]:
    """The scans named on the command line: files, DICOM series folders, folders of scans, or CSV tables of scans.

    A CSV has a ``path`` column (relative to the CSV's folder) and optionally ``age``,
    ``sex`` and ``modality``; ``age`` and ``sex`` of the command line apply to a single
    scan only.

    Raises:
        UserError: for a missing path, an empty folder, a bad table, or --age/--sex with several scans.
    """
    requests: list[ScanRequest] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"Expected a scan, a folder of scans or a CSV of scans, found no such file or folder: {path}")
        if path.is_file() and path.suffix.lower() == ".csv":
            requests += _requests_from_table(path, modality)
        elif path.is_dir() and not _looks_like_series(path):
            found = _scans_in(path)
            if not found:
                raise UserError(f"Expected scans (NIfTI files, DICOM series folders, PNG or DICOM images) in {path}, found none")
            requests += [ScanRequest(scan, modality=modality) for scan in found]
        else:
            requests.append(ScanRequest(path, modality=modality))
    if (age is not None or sex is not None) and len(requests) != 1:
        raise UserError(f"Expected --age and --sex with a single scan, found {len(requests)} scans: give them in a CSV (path, age, sex)")
    if len(requests) == 1 and (age is not None or sex is not None):
        requests = [ScanRequest(requests[0].path, age, sex, requests[0].modality)]
    return requests


def output_name(path: Path, taken: set[str]) -> str:
    """A file-name stem for a scan's outputs, unique in ``taken`` (which it joins).

    Example:
        >>> taken = set()
        >>> output_name(Path("a/scan.nii.gz"), taken), output_name(Path("b/scan.nii.gz"), taken)
        ('scan', 'scan-2')
    """
    from spineage.imaging.io import IMAGE_2D_SUFFIXES

    stem = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", *IMAGE_2D_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or "scan"
    name, number = stem, 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}"
    taken.add(name)
    return name


@dataclass
class PredictionRun:
    """What ``spineage predict`` did when every scan was predicted (a failure raises)."""

    results: list[dict[str, Any]]
    out: Path

    def __str__(self) -> str:
        return f"{len(self.results)} scans predicted; wrote {self.out}"


def describe(result: dict[str, Any]) -> str:
    """One line per scan, as the command prints it."""
    model = f"{result['model']['name']} v{result['model']['version']}"
    if result["spine_age"] is not None:
        text = f"spine age {result['spine_age']:.1f} (raw {result['spine_age_raw']:.1f})"
    else:
        text = f"raw spine age {result['spine_age_raw']:.1f}"
    if result["sag"] is not None:
        text += f", age {result['age']:g}, SAG {result['sag']:+.1f} y"
        normative = result["normative_range"]
        if normative:
            text += f" (normal {normative['sag_low']:+.1f} to {normative['sag_high']:+.1f}{', ATYPICAL' if result['atypical_for_age'] else ''})"
    flags = result["quality"]["flags"]
    text += "; in distribution" if not flags else "; FLAGGED: " + ", ".join(sorted({f["flag"] for f in flags}))
    return f"{Path(result['scan']).name}: {text} [{model}]"


def predict_scans(
    requests: Sequence[ScanRequest], out: str | Path, models: Models, settings: PredictSettings = PredictSettings(),
    *, gradcam: bool = False, progress: bool = True, echo: Any = None,
) -> PredictionRun:
    """Predict every scan; write ``<out>/<name>.json`` per scan (and ``<name>-gradcam.png``) and :data:`SUMMARY`.

    A single scan's error is raised; in a batch, a failed scan is listed (in the summary's
    ``error`` column) and the others go on.

    Raises:
        UserError: for a single scan that fails, or (after writing what succeeded) when any scan of a batch failed.
    """
    from spineage.atomic import write_atomic, write_json_atomic

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected --out to be a folder, found the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    results, failures, rows = [], [], []
    steps = requests
    if progress and len(requests) > 1:
        from tqdm import tqdm

        steps = tqdm(requests, desc="predict", unit="scan")
    for request in steps:
        name = output_name(request.path, taken)
        try:
            result = predict_scan(request, models, settings, out / f"{name}-gradcam.png" if gradcam else None)
        except UserError as error:
            if len(requests) == 1:
                raise
            failures.append((str(request.path), str(error)))
            rows.append(summary_row({}, error=str(error), scan=str(request.path)))
            continue
        write_json_atomic(out / f"{name}.json", result)
        results.append(result)
        rows.append(summary_row(result, output=f"{name}.json"))
        if echo is not None:
            echo(describe(result))
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    write_atomic(out / SUMMARY, lambda p: table.to_csv(p, index=False, float_format="%.3f"))
    if failures:
        raise UserError(f"{len(failures)} of {len(requests)} scans failed (the others are in {out / SUMMARY}); first: {failures[0][1]}")
    return PredictionRun(results, out)


def models_for(uri: str | None) -> Models:
    """The :class:`Models` of ``--model`` (None: each kind's production version)."""
    if uri is not None and not uri.startswith("models:/"):
        raise UserError(f"Expected --model to be a registered model URI (models:/{MODEL_FOR_KIND['mri']}@production), found {uri!r}")
    return Models(uri)
