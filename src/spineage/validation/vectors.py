"""The feature gate: the level and region vectors, checked before the cohort stage uses them.

:func:`validate_feature_vectors` reads ``level_vectors.parquet`` and
``region_vectors.parquet`` from the interim folder (index ``series_id``;
columns exactly :data:`~spineage.findings.features.LEVEL_COLUMNS` and
:data:`~spineage.findings.features.REGION_COLUMNS`) and ``sessions.csv`` from the
raw cohort, and checks through Great Expectations that:

* each table has exactly the 215 (67) expected columns, in order, and one row
  per series, every one a series of sessions.csv;
* every value is present (no NaN), a whole number, and within its range: a
  severity ordinal 0-4 in the level vector, a count of levels 0-13 in the region
  vector (no negative counts);
* every MRI series of the raw cohort has a row in both tables.

The value checks run on the tables in long form (one row per series and
column), so that three expectations cover every column and a failure names the
series and the column holding the bad value.

Example:
    >>> result = validate_feature_vectors("data/interim", "data/raw")  # doctest: +SKIP
    >>> result.success  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spineage.errors import UserError
from spineage.findings.features import LEVEL_COLUMNS, REGION_COLUMNS
from spineage.findings.vocabulary import CERVICAL_LEVELS, LUMBAR_LEVELS, SEVERITY_ORDINAL, THORACIC_LEVELS
from spineage.validation.gate import Check, GateResult, Table, run_gate, write_gate_result
from spineage.validation.raw import read_csv_as_text

MRI_MODALITY = "mri_t2_sag"

VECTOR_TABLES: dict[str, tuple[tuple[str, ...], int, str]] = {
    "level_vectors.parquet": (LEVEL_COLUMNS, max(SEVERITY_ORDINAL.values()), "a severity ordinal or flag"),
    "region_vectors.parquet": (
        REGION_COLUMNS,
        max(len(CERVICAL_LEVELS), len(THORACIC_LEVELS), len(LUMBAR_LEVELS)),
        "a count of levels or a flag",
    ),
}
"""File name -> (expected columns, largest possible value, what a value is)."""


def series_table(name: str) -> str:
    """The name of a vector table's index (its series ids, with computed flags)."""
    return f"{name} index"


def values_table(name: str) -> str:
    """The name of a vector table's long form (one row per series and column)."""
    return f"{name} values"


def read_vector_tables(interim: str | Path, data: str | Path) -> list[Table]:
    """Read the two vector tables (wide and long form) and the raw cohort's MRI series.

    Raises:
        UserError: if a folder or table is missing, a table is not Parquet, or
            has no ``series_id`` index or column.
    """
    interim, data = Path(interim), Path(data)
    for folder, what in ((interim, "interim"), (data, "raw-cohort")):
        if not folder.is_dir():
            raise UserError(f"Expected an {what} folder at {folder}, found {'a file' if folder.exists() else 'nothing'} there")
    sessions_path = data / "sessions.csv"
    if not sessions_path.is_file():
        raise UserError(f"Expected sessions.csv in the raw cohort {data}, found no such file")
    sessions = read_csv_as_text(sessions_path)
    missing = sorted({"series_id", "modality"} - set(sessions.columns))
    if missing:
        raise UserError(f"Expected columns series_id and modality in {sessions_path}, found no {', '.join(missing)}")
    tables: list[Table] = []
    series_of: dict[str, set[str]] = {}
    known = set(sessions["series_id"].dropna())
    for name in VECTOR_TABLES:
        wide = _read_vectors(interim / name)
        series = pd.DataFrame({"series_id": wide["series_id"]})
        series["series_in_sessions"] = [None if value is None else value in known for value in series["series_id"]]
        series_of[name] = set(series["series_id"].dropna())
        tables.append(Table(name, wide.drop(columns="series_id")))
        tables.append(Table(series_table(name), series, ("series_id",), derived=True))
        tables.append(Table(values_table(name), _long_form(wide), ("series_id", "column"), unit="values", derived=True))
    mri = sessions.loc[sessions["modality"] == MRI_MODALITY, ["series_id"]].reset_index(drop=True)
    for name, present in series_of.items():
        mri[_present_flag(name)] = [value in present for value in mri["series_id"]]
    tables.append(Table("sessions.csv MRI series", mri, ("series_id",), unit="MRI series"))
    return tables


def vector_checks() -> list[Check]:
    """The expectations on both vector tables and on the raw cohort's MRI series."""
    checks: list[Check] = []
    for name, (columns, largest, what) in VECTOR_TABLES.items():
        checks += [
            Check(name, "ExpectTableColumnsToMatchOrderedList", f"the {len(columns)} feature columns, in order, besides the series_id index",
                  kwargs={"column_list": list(columns)}),
            Check(series_table(name), "ExpectColumnValuesToNotBeNull", "never empty", column="series_id"),
            Check(series_table(name), "ExpectColumnValuesToBeUnique", "one row per series", column="series_id"),
            Check(series_table(name), "ExpectColumnValuesToBeInSet", "the series is in sessions.csv",
                  column="series_in_sessions", kwargs={"value_set": [True]}, show=("series_id",)),
            Check(values_table(name), "ExpectColumnValuesToNotBeNull", "no NaN", column="value"),
            Check(values_table(name), "ExpectColumnValuesToBeBetween", f"{what}, between 0 and {largest}", column="value",
                  kwargs={"min_value": 0, "max_value": largest}),
            Check(values_table(name), "ExpectColumnValuesToBeInSet", "a whole number", column="is_whole_number",
                  kwargs={"value_set": [True]}, show=("value",)),
        ]
    checks += [
        Check("sessions.csv MRI series", "ExpectColumnValuesToBeInSet", f"every MRI series has a row in {name}",
              column=_present_flag(name), kwargs={"value_set": [True]}, show=("series_id",))
        for name in VECTOR_TABLES
    ]
    return checks


def validate_feature_vectors(
    interim: str | Path,
    data: str | Path,
    report: str | Path | None = None,
) -> GateResult:
    """Validate the level and region vectors in ``interim`` against the raw cohort ``data``.

    Args:
        interim: the folder holding ``level_vectors.parquet`` and ``region_vectors.parquet``.
        data: the raw-cohort folder (its ``sessions.csv`` names the MRI series).
        report: where to write the JSON result (pass or fail); None writes nothing.

    Returns:
        The :class:`~spineage.validation.gate.GateResult`.

    Raises:
        UserError: if a folder or table is missing or unreadable.
    """
    tables = read_vector_tables(interim, data)
    result = run_gate("features", tables, vector_checks(), source=str(interim))
    if report is not None:
        write_gate_result(result, Path(report))
    return result


def _read_vectors(path: Path) -> pd.DataFrame:
    """A vector table with ``series_id`` as its first column (it is stored as the index)."""
    if not path.is_file():
        raise UserError(f"Expected {path.name} in {path.parent} (written by the findings stage), found no such file")
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise UserError(f"Expected a Parquet table in {path}: {str(error).splitlines()[0]}") from None
    if "series_id" not in frame.columns:
        if frame.index.name != "series_id":
            raise UserError(f"Expected a series_id index in {path}, found index {frame.index.name!r} and no series_id column")
        frame = frame.reset_index()
    else:
        frame = frame.reset_index(drop=True)
    frame["series_id"] = frame["series_id"].astype(object).where(frame["series_id"].notna(), None)
    return frame[["series_id", *[column for column in frame.columns if column != "series_id"]]]


def _long_form(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, column): ``series_id``, ``column``, ``value``, ``is_whole_number``."""
    values = wide.drop(columns="series_id").apply(pd.to_numeric, errors="coerce").astype("float64")
    long = pd.DataFrame(
        {
            "series_id": np.repeat(wide["series_id"].to_numpy(dtype=object), values.shape[1]),
            "column": np.tile(np.asarray(values.columns, dtype=object), len(values)),
            "value": values.to_numpy().reshape(-1),
        }
    )
    whole = np.floor(long["value"]) == long["value"]
    long["is_whole_number"] = whole.astype(object).where(long["value"].notna(), None)
    return long


def _present_flag(name: str) -> str:
    return f"in_{name.split('.')[0]}"
