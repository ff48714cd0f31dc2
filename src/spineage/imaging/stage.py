"""``spineage preprocess``: every MRI series of the cohort to the array the model sees.

Inputs: ``cohort.csv`` (series_id, age, split: the series to process) and the
raw cohort's ``sessions.csv`` (image and label paths of each series).

Outputs, each written atomically (a temporary file, then a rename):

* ``<out>/<series_id>.npy``: the float16 array of each usable series
  (status ``ok`` or ``flagged``), see :func:`~spineage.imaging.preprocess.preprocess_volume`;
* ``<out>/manifest.csv``: one row per cohort series, in cohort order, columns
  :data:`MANIFEST_COLUMNS`: its split and age, its ``status`` (ok, flagged,
  excluded, failed) with the ``reason``, ``flags``, the output ``shape`` and
  ``spacing``, the ``regions_present``, what the scan was (original shape,
  spacing, stored orientation), where the labels came from, the normalised
  intensity quartiles inside the vertebrae, discs and canal
  (``median_vertebra``, ``p25_disc``, ..., the ridge baseline's features), and the
  ``input_hash`` (image and label files) and ``settings_hash`` (settings,
  preprocessing code and the segmentation model's registry version, see
  :func:`pin_segmentation_model`) the array was made from;
* ``<reports>/failures.csv``: the excluded and failed series with their reasons;
* ``<reports>/summary.json``: counts by status, flag and split (a DVC metric).

Re-running is incremental: a series whose manifest row has the same input and
settings hashes and whose array exists (or that ended without one for the same
inputs) is not touched, and files whose content would not change are not
rewritten, so a second run with nothing changed writes nothing at all.

Where the spine mask comes from is ``preprocess.masks``: ``segmentation`` (the
default) segments every series with ``preprocess.segmentation_model`` (the
``segment`` stage's model folder), label map or not; ``labels`` uses each
series' label map and segments only the series without one. ``label_source``
in the manifest says which each series got.

A scan that cannot be loaded (:class:`~spineage.imaging.io.ImageLoadError`),
has no label map when no segmentation model is configured, or cannot be
segmented, is recorded as ``failed`` with the reason. The stage fails (one line,
exit 2) only when the excluded and failed series together are more than
``max_failure_fraction`` of the cohort; the manifest and the failure report are
written first, so the reasons can be read.

No header field of a scan is written anywhere beyond the shape, voxel size and
stored orientation (the loader's DICOM allow-list is not copied either).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from spineage.atomic import write_array_atomic, write_atomic
from spineage.errors import UserError
from spineage.imaging.identity import hash_inputs, local_model_path, segmentation_model_identity
from spineage.imaging.preprocess import (
    EXCLUDED,
    FAILED,
    INTENSITY_FEATURES,
    QUALITY_FLAGS,
    STATUSES,
    USABLE_STATUSES,
    PreprocessSettings,
    format_triple,
)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "series_id", "split", "age", "status", "reason", "flags", "file", "shape", "spacing", "regions_present",
    "label_source", "original_shape", "original_spacing", "orientation", "mask_voxels", "mask_in_view",
    "intensity_offset", "intensity_scale", "crop_centre_mm", *INTENSITY_FEATURES, "input_hash", "settings_hash",
)
"""Columns of ``manifest.csv``, in order."""

FAILURE_COLUMNS: tuple[str, ...] = ("series_id", "split", "status", "flags", "reason")
"""Columns of ``failures.csv``, in order."""

NO_SEGMENTATION_REASON = "no label map and no segmentation model configured"

_PROCESSING_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c not in ("series_id", "split", "age"))


@dataclass(frozen=True)
class PreprocessSummary:
    """What one run of ``spineage preprocess`` did."""

    series: int
    by_status: dict[str, int]
    processed: int
    reused: int
    out: Path

    @property
    def unusable(self) -> int:
        """Series without an array (excluded or failed)."""
        return self.by_status.get(EXCLUDED, 0) + self.by_status.get(FAILED, 0)

    def __str__(self) -> str:
        counts = ", ".join(f"{self.by_status.get(s, 0)} {s}" for s in STATUSES)
        return f"{self.series} MRI series: {counts} (processed {self.processed}, unchanged {self.reused})"


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def read_cohort_series(raw: str | Path, cohort: str | Path) -> pd.DataFrame:
    """The cohort's MRI series with their split, age and image/label paths (absolute; label ``None`` when absent).

    Raises:
        UserError: for a missing or unreadable table, a missing column, or a cohort
            series that ``sessions.csv`` does not hold.
    """
    from spineage.raw_cohort import read_cohort_table, read_mri_series

    raw, cohort = Path(raw), Path(cohort)
    table = read_cohort_table(cohort, ("series_id", "age", "split"))
    if table["series_id"].duplicated().any():
        repeated = table.loc[table["series_id"].duplicated(), "series_id"].iloc[0]
        raise UserError(f"Expected one row per series in {cohort}, found {repeated!r} more than once")
    sessions = read_mri_series(raw)
    if "image" not in sessions.columns:
        raise UserError(f"Expected an image column in {raw / 'sessions.csv'}, found {', '.join(sessions.columns)}")
    paths = sessions.set_index("series_id")
    unknown = [s for s in table["series_id"] if s not in paths.index]
    if unknown:
        raise UserError(
            f"Expected every series of {cohort} among the MRI series of {raw / 'sessions.csv'}, found {len(unknown)} "
            f"missing (e.g. {unknown[0]!r}); rerun `spineage cohort` on this raw cohort"
        )
    labels = paths["label"] if "label" in paths.columns else pd.Series("", index=paths.index)
    rows = table[["series_id", "split", "age"]].copy()
    rows["image"] = [str(raw / paths.at[s, "image"]) if paths.at[s, "image"].strip() else "" for s in rows["series_id"]]
    rows["label"] = [str(raw / labels.at[s]) if labels.at[s].strip() else None for s in rows["series_id"]]
    return rows.reset_index(drop=True)


def pin_segmentation_model(settings: PreprocessSettings) -> tuple[PreprocessSettings, str]:
    """The settings with their segmentation model pinned, and the settings hash of the model they name.

    The settings hash is every series' cache key, so it must change when the
    model does: ``models:/name@alias`` is resolved in the MLflow registry to
    ``models:/name/<version>`` (moving the alias redoes the series, and every
    series of one run is segmented by the same version); a local model file or
    folder adds the hash of its bytes; any other URI (``models:/name/3``,
    ``runs:/...``) is hashed as written. Without a model the hash is unchanged.

    Args:
        settings: the preprocess settings as read from params.yaml.

    Returns:
        The settings to preprocess with (the alias replaced by its version) and their settings hash.

    Raises:
        UserError: if the registered model has no such alias, the tracking store cannot be
            opened, or (``masks: segmentation``) a local model folder does not exist.
    """
    model = settings.segmentation_model
    if not model:
        return settings, settings.settings_hash()
    if model.startswith("models:/") and "@" in model:
        from spineage.registry.tracking import configure_mlflow, pinned_model_uri

        configure_mlflow()
        settings = replace(settings, segmentation_model=pinned_model_uri(model))
    local = local_model_path(settings.segmentation_model)
    if local is not None and not local.exists() and settings.masks == "segmentation":
        raise UserError(
            f"Expected the segmentation model folder {local} (preprocess.segmentation_model, needed by masks: segmentation; "
            f"`spineage segment train --out {local}` writes it), found nothing there"
        )
    return settings, replace(settings, segmentation_model=segmentation_model_identity(settings.segmentation_model)).settings_hash()


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """The previous manifest's rows by series (empty when absent or unreadable: everything is redone)."""
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):  # a broken manifest only costs a full rerun
        return {}
    if not set(MANIFEST_COLUMNS) <= set(table.columns):
        return {}
    return {row["series_id"]: row for row in table.to_dict("records")}


# ---------------------------------------------------------------------------
# One series (runs in a worker)
# ---------------------------------------------------------------------------


def _failed(reason: str, input_hash: str, settings_hash: str, label_source: str = "") -> dict[str, Any]:
    row = {column: "" for column in _PROCESSING_COLUMNS}
    row.update(status=FAILED, reason=reason, label_source=label_source, input_hash=input_hash, settings_hash=settings_hash)
    return row


def _manifest_fields(record: dict[str, Any], file: str) -> dict[str, Any]:
    """A :func:`preprocess_volume` record as manifest cells (triples as ``AxBxC``, lists joined by ``;``)."""
    def number(value):
        return "" if value is None else f"{value:g}"

    return {
        "status": record["status"],
        "reason": record["reason"],
        "flags": ";".join(record["flags"]),
        "file": file,
        "shape": format_triple(record["shape"]),
        "spacing": format_triple(record["spacing"]),
        "regions_present": ";".join(record["regions_present"]),
        "original_shape": format_triple(record["original_shape"]),
        "original_spacing": format_triple(record["original_spacing"]),
        "orientation": record["orientation"],
        "mask_voxels": str(record["mask_voxels"]),
        "mask_in_view": number(record["mask_in_view"]),
        "intensity_offset": number(record["intensity_offset"]),
        "intensity_scale": number(record["intensity_scale"]),
        "crop_centre_mm": format_triple(record["crop_centre_mm"]) if record["crop_centre_mm"] else "",
        **{feature: number(record[feature]) for feature in INTENSITY_FEATURES},
    }


def _relative(message: str, raw: str) -> str:
    """``message`` with the raw-cohort folder left out of its paths (the failure report travels; the folder need not)."""
    return message.replace(f"{Path(raw)}{os.sep}", "")


def _share_cores(threads: int | None) -> None:
    """Give torch ``threads`` threads in this worker: workers that each used every core would
    oversubscribe them (segmenting 80 series took 5x as long that way on 2 busy cores)."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def process_series(task: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Preprocess one series, or reuse its previous result; returns (manifest fields, processed?).

    ``task`` holds ``series_id``, ``image``, ``label`` (None without one), ``raw``
    (the raw-cohort folder), ``out`` (the output folder), ``settings``,
    ``settings_hash`` and ``previous`` (its row of the previous manifest, or None).
    """
    from spineage.imaging.io import ImageLoadError, load_label_like, load_volume
    from spineage.imaging.preprocess import preprocess_volume

    series_id, settings = task["series_id"], task["settings"]
    settings_hash = task["settings_hash"]
    out = Path(task["out"])
    # masks: segmentation segments every series; its label map (if any) is not read, so it is not hashed either.
    label = task["label"] if settings.masks == "labels" else None
    input_hash = hash_inputs(task["image"], label)
    previous = task["previous"]
    if previous and previous["input_hash"] == input_hash and previous["settings_hash"] == settings_hash:
        has_array = previous["status"] in USABLE_STATUSES
        if not has_array or (out / f"{series_id}.npy").is_file():
            return {column: previous[column] for column in _PROCESSING_COLUMNS}, False

    if Path(series_id).name != series_id or series_id.startswith(".") or not series_id.strip():
        return _failed(f"series_id {series_id!r} cannot be used as a file name", input_hash, settings_hash), True
    if not task["image"]:
        return _failed("no image path in sessions.csv", input_hash, settings_hash), True
    label_source = "label" if label else "segmentation"
    try:
        volume = load_volume(task["image"])
        if label:
            labels = load_label_like(label, volume)
        elif settings.segmentation_model:
            from spineage.imaging.segmentation import segment_volume

            _share_cores(task.get("threads"))
            labels = segment_volume(volume, settings.segmentation_model)
        else:
            return _failed(NO_SEGMENTATION_REASON, input_hash, settings_hash, label_source), True
    except ImageLoadError as error:
        return _failed(_relative(str(error), task["raw"]), input_hash, settings_hash, label_source), True
    except (UserError, ImportError) as error:  # e.g. the segmentation model cannot be loaded
        reason = _relative(f"segmentation failed: {error}", task["raw"])
        return _failed(reason, input_hash, settings_hash, label_source), True
    array, record = preprocess_volume(volume, labels, settings, series_id=series_id)
    path = out / f"{series_id}.npy"
    if array is not None:
        write_array_atomic(path, array)
    else:
        path.unlink(missing_ok=True)
    row = _manifest_fields(record, path.name if array is not None else "")
    row.update(label_source=label_source, input_hash=input_hash, settings_hash=settings_hash)
    return row, True


def _run_all(tasks: list[dict[str, Any]], workers: int, progress: bool) -> list[tuple[dict[str, Any], bool]]:
    from tqdm import tqdm

    results: list[tuple[dict[str, Any], bool] | None] = [None] * len(tasks)
    bar = tqdm(total=len(tasks), desc="preprocessing", unit="series", disable=not progress, file=sys.stderr)
    try:
        if workers == 1 or len(tasks) <= 1:
            for index, task in enumerate(tasks):
                results[index] = process_series(task)
                bar.update()
        else:
            import multiprocessing

            # Import the heavy modules once here: forked workers inherit them instead of each
            # spending a second importing nibabel and scipy.
            import nibabel  # noqa: F401
            import scipy.ndimage  # noqa: F401

            import spineage.imaging.io  # noqa: F401

            # fork: the workers start at once and inherit the imports; nothing here holds threads yet.
            with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
                for index, result in pool.imap_unordered(_indexed, list(enumerate(tasks)), chunksize=1):
                    results[index] = result
                    bar.update()
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def _indexed(item: tuple[int, dict[str, Any]]) -> tuple[int, tuple[dict[str, Any], bool]]:
    index, task = item
    return index, process_series(task)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _write_if_changed(path: Path, content: str) -> bool:
    """Write ``content`` to ``path`` atomically unless it already holds exactly that; True when written."""
    path = Path(path)
    if path.is_file() and path.read_text() == content:
        return False
    write_atomic(path, lambda p: p.write_text(content))
    return True


def _summary(manifest: pd.DataFrame, settings: PreprocessSettings, settings_hash: str) -> dict[str, Any]:
    counts = manifest["status"].value_counts()
    unusable = int(counts.get(EXCLUDED, 0) + counts.get(FAILED, 0))
    flags = manifest["flags"].str.split(";").explode()
    usable = manifest[manifest["status"].isin(USABLE_STATUSES)]
    return {
        "series": len(manifest),
        "status": {status: int(counts.get(status, 0)) for status in STATUSES},
        "unusable_fraction": round(unusable / max(len(manifest), 1), 4),
        "max_failure_fraction": settings.max_failure_fraction,
        "flags": {flag: int((flags == flag).sum()) for flag in QUALITY_FLAGS},
        "usable_by_split": {str(k): int(v) for k, v in usable["split"].value_counts().sort_index().items()},
        "label_source": {str(k): int(v) for k, v in manifest["label_source"].value_counts().sort_index().items() if k},
        "shape": list(settings.shape),
        "spacing_mm": list(settings.target_spacing_mm),
        "region": settings.region,
        "masks": settings.masks,
        "normalisation": settings.normalisation,
        "settings_hash": settings_hash,
    }


def build_processed(
    raw: str | Path,
    cohort: str | Path,
    out: str | Path,
    reports: str | Path,
    settings: PreprocessSettings,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> PreprocessSummary:
    """Preprocess every MRI series of the cohort into ``out``; write the manifest and the reports.

    Args:
        raw: the raw-cohort folder (sessions.csv and the files it names).
        cohort: cohort.csv from ``spineage cohort``.
        out: folder for the arrays and manifest.csv.
        reports: folder for failures.csv and summary.json.
        settings: the preprocess section of params.yaml.
        workers: processes (default: ``settings.workers``).
        progress: show a progress bar.

    Returns:
        The counts of this run.

    Raises:
        UserError: for a missing or bad input, or when more than
            ``settings.max_failure_fraction`` of the series end without an array
            (after writing the manifest and the reports).
    """
    out, reports = Path(out), Path(reports)
    series = read_cohort_series(raw, cohort)
    workers = settings.workers if workers is None else workers
    if workers < 1:
        raise UserError(f"Expected at least 1 worker, found {workers}")
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected {out} to be a folder, found a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Expected a writable folder at {out}, found: {error.strerror or error}") from None
    for leftover in out.glob(".*.tmp"):  # from an interrupted run
        leftover.unlink(missing_ok=True)

    settings, settings_hash = pin_segmentation_model(settings)
    previous = _read_manifest(out / "manifest.csv")
    tasks = [
        {
            "series_id": row.series_id, "image": row.image, "label": row.label, "raw": str(raw), "out": str(out),
            "settings": settings, "settings_hash": settings_hash, "previous": previous.get(row.series_id),
            "threads": max(1, len(os.sched_getaffinity(0)) // workers),
        }
        for row in series.itertuples(index=False)
    ]
    results = _run_all(tasks, workers, progress)
    manifest = series[["series_id", "split", "age"]].copy()
    processing = pd.DataFrame([fields for fields, _ in results], columns=list(_PROCESSING_COLUMNS))
    manifest = pd.concat([manifest, processing], axis=1)[list(MANIFEST_COLUMNS)].astype(str)

    keep = set(manifest.loc[manifest["status"].isin(USABLE_STATUSES), "file"])
    for stale in out.glob("*.npy"):
        if stale.name not in keep:
            stale.unlink()
    _write_if_changed(out / "manifest.csv", manifest.to_csv(index=False))
    failures = manifest.loc[manifest["status"].isin((EXCLUDED, FAILED)), list(FAILURE_COLUMNS)]
    _write_if_changed(reports / "failures.csv", failures.to_csv(index=False))
    _write_if_changed(reports / "summary.json", json.dumps(_summary(manifest, settings, settings_hash), indent=2, sort_keys=True) + "\n")

    counts = manifest["status"].value_counts()
    summary = PreprocessSummary(
        series=len(manifest),
        by_status={status: int(counts.get(status, 0)) for status in STATUSES},
        processed=sum(1 for _, processed in results if processed),
        reused=sum(1 for _, processed in results if not processed),
        out=out,
    )
    if summary.unusable > settings.max_failure_fraction * summary.series:
        share = 100 * summary.unusable / max(summary.series, 1)
        raise UserError(
            f"Expected at most {100 * settings.max_failure_fraction:g}% of the {summary.series} MRI series without an array "
            f"(preprocess.max_failure_fraction), found {summary.unusable} ({share:.1f}%: "
            f"{summary.by_status[FAILED]} failed, {summary.by_status[EXCLUDED]} excluded); reasons in {reports / 'failures.csv'}"
        )
    return summary
