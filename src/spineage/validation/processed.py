"""The processed gate: the arrays of ``spineage preprocess``, checked before training reads them.

:func:`validate_processed_arrays` reads ``manifest.csv`` of the processed folder,
opens every array it names, and reads ``cohort.csv``, then checks through Great
Expectations that:

* the manifest has its columns, one row per series, a known status, and a
  reason for every excluded or failed series;
* every usable series (status ``ok`` or ``flagged``) has its ``.npy`` file,
  readable, of the target shape (``preprocess.shape``), float16, recorded at
  the target spacing (``preprocess.target_spacing_mm``), with no NaN or Inf and
  at least one non-zero voxel (a non-empty mask);
* the ages of each split lie within ``validation.age_min``-``age_max``;
* every manifest series is a cohort series with the same split, and every
  cohort MRI series is in the manifest: processed, or excluded with a reason.

The array checks run on computed columns of the manifest (``array_found``,
``array_shape``, ...), so that a failure names the series and the file.

Example:
    >>> result = validate_processed_arrays("data/processed", "data/interim/cohort.csv",
    ...                                    PreprocessSettings(), ValidationSettings())  # doctest: +SKIP
    >>> result.success  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spineage.config import ValidationSettings
from spineage.errors import UserError
from spineage.imaging.preprocess import (
    EXCLUDED,
    FAILED,
    OUTPUT_DTYPE,
    STATUSES,
    USABLE_STATUSES,
    PreprocessSettings,
    format_triple,
)
from spineage.imaging.stage import MANIFEST_COLUMNS
from spineage.validation.gate import (
    Check,
    GateResult,
    Table,
    run_gate,
    write_gate_result,
)
from spineage.validation.raw import read_csv_as_text

MANIFEST = "manifest.csv"
COHORT = "cohort.csv"


def _array_facts(path: Path) -> dict[str, object]:
    """What the gate needs to know of one stored array (``array_found`` False when missing or unreadable)."""
    facts: dict[str, object] = {"array_found": False, "array_shape": None, "array_dtype": None,
                                "non_finite_voxels": np.nan, "nonzero_voxels": np.nan}
    if not path.is_file():
        return facts
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        values = np.asarray(array)
    except (OSError, ValueError, EOFError):
        return facts
    facts.update(
        array_found=True,
        array_shape=format_triple(array.shape) if array.ndim == 3 else "x".join(map(str, array.shape)) or "scalar",
        array_dtype=str(array.dtype),
        non_finite_voxels=float(values.size - np.count_nonzero(np.isfinite(values))) if values.dtype.kind in "fc" else 0.0,
        nonzero_voxels=float(np.count_nonzero(values)),
    )
    return facts


def read_processed_tables(processed: str | Path, cohort: str | Path) -> list[Table]:
    """The manifest (with facts of each array) and the cohort's series (with whether the manifest has them).

    Raises:
        UserError: if the folder, the manifest or the cohort table is missing or unreadable.
    """
    processed, cohort = Path(processed), Path(cohort)
    if not processed.is_dir():
        raise UserError(f"Expected a processed folder at {processed} (run `spineage preprocess`), found {'a file' if processed.exists() else 'nothing'} there")
    manifest_path = processed / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"Expected {MANIFEST} in {processed} (written by `spineage preprocess`), found no such file")
    if not cohort.is_file():
        raise UserError(f"Expected the cohort table at {cohort}, found no such file")
    manifest = read_csv_as_text(manifest_path)
    cohort_table = read_csv_as_text(cohort)
    for table, path in ((manifest, manifest_path), (cohort_table, cohort)):
        if "series_id" not in table.columns:
            raise UserError(f"Expected a series_id column in {path}, found {', '.join(table.columns) or 'none'}")
    if "split" not in cohort_table.columns:
        raise UserError(f"Expected a split column in {cohort}, found {', '.join(cohort_table.columns)}")

    split_of = dict(zip(cohort_table["series_id"], cohort_table["split"]))
    status = manifest["status"] if "status" in manifest.columns else pd.Series(None, index=manifest.index, dtype=object)
    usable = status.isin(USABLE_STATUSES)
    files = manifest["file"] if "file" in manifest.columns else pd.Series(None, index=manifest.index, dtype=object)
    facts = [
        _array_facts(processed / str(file)) if is_usable and isinstance(file, str) else
        ({"array_found": False} if is_usable else {})
        for is_usable, file in zip(usable, files)
    ]
    computed = pd.DataFrame(facts, index=manifest.index, columns=["array_found", "array_shape", "array_dtype",
                                                                  "non_finite_voxels", "nonzero_voxels"])
    computed["array_found"] = [None if not is_usable else bool(found) for is_usable, found in zip(usable, computed["array_found"])]
    for column in ("non_finite_voxels", "nonzero_voxels"):
        computed[column] = computed[column].astype("float64")
    checked = pd.concat([manifest, computed], axis=1)
    checked["age_years"] = pd.to_numeric(manifest.get("age"), errors="coerce") if "age" in manifest.columns else np.nan
    checked["in_cohort"] = [None if s is None else s in split_of for s in manifest["series_id"]]
    if "split" in manifest.columns:
        checked["split_matches_cohort"] = [
            None if s is None or s not in split_of else split_of[s] == split
            for s, split in zip(manifest["series_id"], manifest["split"])
        ]
    listed = set(manifest["series_id"].dropna())
    cohort_series = pd.DataFrame({"series_id": cohort_table["series_id"]})
    cohort_series["in_manifest"] = [s in listed for s in cohort_series["series_id"]]
    return [
        Table(MANIFEST, checked, ("series_id",)),
        Table(COHORT, cohort_series, ("series_id",), unit="MRI series"),
    ]


def processed_checks(settings: PreprocessSettings, validation: ValidationSettings, splits: list[str]) -> list[Check]:
    """The expectations on the manifest, the arrays and the cohort's series."""
    usable = ("status", USABLE_STATUSES)
    shape, spacing = format_triple(settings.shape), format_triple(settings.target_spacing_mm)
    dtype = np.dtype(OUTPUT_DTYPE).name
    ages = f"age between {validation.age_min:g} and {validation.age_max:g} years (validation.age_min/age_max)"
    checks = [
        Check(MANIFEST, "ExpectTableColumnsToMatchSet", "the manifest's columns",
              kwargs={"column_set": list(MANIFEST_COLUMNS), "exact_match": False}),
        Check(MANIFEST, "ExpectColumnValuesToNotBeNull", "never empty", column="series_id"),
        Check(MANIFEST, "ExpectColumnValuesToBeUnique", "one row per series", column="series_id"),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", f"one of {', '.join(STATUSES)}", column="status",
              kwargs={"value_set": list(STATUSES)}),
        Check(MANIFEST, "ExpectColumnValuesToNotBeNull", "an excluded or failed series says why", column="reason",
              only_where=("status", (EXCLUDED, FAILED)), show=("series_id",)),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", "the array of a usable series exists and loads",
              column="array_found", kwargs={"value_set": [True]}, only_where=usable, show=("file",)),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", f"the array is {shape} voxels (preprocess.shape)",
              column="array_shape", kwargs={"value_set": [shape]}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", f"the array is {dtype}", column="array_dtype",
              kwargs={"value_set": [dtype]}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", f"recorded as {shape} voxels (preprocess.shape)", column="shape",
              kwargs={"value_set": [shape]}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", f"recorded at {spacing} mm (preprocess.target_spacing_mm)",
              column="spacing", kwargs={"value_set": [spacing]}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToBeBetween", "no NaN or Inf voxel", column="non_finite_voxels",
              kwargs={"min_value": 0, "max_value": 0}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToBeBetween", "a non-empty mask (at least one non-zero voxel)",
              column="nonzero_voxels", kwargs={"min_value": 1}, only_where=usable),
        Check(MANIFEST, "ExpectColumnValuesToNotBeNull", "a numeric age", column="age_years", show=("age",)),
    ]
    checks += [
        Check(MANIFEST, "ExpectColumnValuesToBeBetween", f"{ages} in split {split}", column="age_years",
              kwargs={"min_value": validation.age_min, "max_value": validation.age_max}, only_where=("split", (split,)))
        for split in splits
    ]
    checks += [
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", "the series is in cohort.csv", column="in_cohort",
              kwargs={"value_set": [True]}, show=("series_id",)),
        Check(MANIFEST, "ExpectColumnValuesToBeInSet", "the split agrees with cohort.csv (rerun `spineage preprocess`)",
              column="split_matches_cohort", kwargs={"value_set": [True]}, show=("split",)),
        Check(COHORT, "ExpectColumnValuesToBeInSet",
              "every cohort MRI series is in the manifest (processed, or excluded with a reason)",
              column="in_manifest", kwargs={"value_set": [True]}, show=("series_id",)),
    ]
    return checks


def validate_processed_arrays(
    processed: str | Path,
    cohort: str | Path,
    settings: PreprocessSettings,
    validation: ValidationSettings,
    report: str | Path | None = None,
) -> GateResult:
    """Validate the processed folder against the target geometry and the cohort.

    Args:
        processed: the folder holding manifest.csv and the arrays.
        cohort: cohort.csv (the series that must all be accounted for).
        settings: the preprocess settings (target shape and spacing).
        validation: the validation settings (age range).
        report: where to write the JSON result (pass or fail); None writes nothing.

    Returns:
        The :class:`~spineage.validation.gate.GateResult`.

    Raises:
        UserError: if a folder or table is missing or unreadable.
    """
    tables = read_processed_tables(processed, cohort)
    manifest = tables[0].frame
    splits = sorted(manifest["split"].dropna().unique()) if "split" in manifest.columns else []
    result = run_gate(
        "processed",
        tables,
        processed_checks(settings, validation, splits),
        source=str(processed),
        settings={
            "shape": list(settings.shape),
            "target_spacing_mm": list(settings.target_spacing_mm),
            "age_min": validation.age_min,
            "age_max": validation.age_max,
        },
    )
    if report is not None:
        write_gate_result(result, Path(report))
    return result
