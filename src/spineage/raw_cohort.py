"""Reading the raw cohort's tables: one reader, one dtype policy, one set of errors.

Every stage and gate that reads ``sessions.csv``, ``participants.csv`` or
``findings.csv`` reads it here, so that a table means the same thing
everywhere. The policy:

* the encoding is detected as for reports
  (:mod:`spineage.findings.report_text`: UTF-8 with or without a mark, UTF-16,
  Windows-1252);
* every cell is **text** (``"007"`` stays ``"007"``, ``"NA"`` stays ``"NA"``);
  a stage converts the columns it needs (ages to numbers) and says which rows
  do not convert;
* header names and cells lose surrounding whitespace;
* an empty cell is ``""`` (the gates turn it into a missing value themselves);
* an empty file, a file that is not CSV, or a missing column is a
  :class:`~spineage.errors.UserError` naming the file.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "sessions.csv").write_text("series_id, modality ,age\\ns1, mri_t2_sag,041\\n")
    >>> read_sessions(folder).iloc[0].to_dict()
    {'series_id': 's1', 'modality': 'mri_t2_sag', 'age': '041'}
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from spineage.errors import UserError
from spineage.findings.vocabulary import MODALITIES

MRI_MODALITY = MODALITIES[0]
"""The modality of a sagittal T2 whole-spine MRI series in ``sessions.csv`` (``mri_t2_sag``)."""


def read_table(path: str | Path, what: str = "a CSV table") -> pd.DataFrame:
    """Read one raw-cohort table by the policy above.

    Args:
        path: the CSV file.
        what: the table in words, for the error messages ("the sessions table").

    Raises:
        UserError: if the file is missing, empty or not CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected {what} at {path}, found no such file")
    from spineage.findings.report_text import decode_report_text

    text = decode_report_text(path.read_bytes(), path, what=f"{what} as text")
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"Expected {what} with a header row at {path}, found an empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"Expected a readable CSV file at {path}, found one that does not parse: "
                        f"{str(error).splitlines()[0]}") from None
    table.columns = [str(column).strip() for column in table.columns]
    return table.apply(lambda column: column.str.strip())


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], path: str | Path) -> None:
    """Raise a :class:`~spineage.errors.UserError` naming the columns of ``columns`` that ``table`` lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(
            f"Expected column(s) {', '.join(missing)} in {path}, found {', '.join(map(str, table.columns)) or 'none'}"
        )


def read_sessions(raw: str | Path, columns: tuple[str, ...] = ("series_id", "modality")) -> pd.DataFrame:
    """``sessions.csv`` of a raw cohort, in file order, each series id once.

    Args:
        raw: the raw-cohort folder.
        columns: the columns the caller needs (series_id and modality always).

    Raises:
        UserError: if the folder or the file is missing, a column is missing,
            or a series id repeats.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise UserError(f"Expected a raw-cohort folder at {raw}, found {'a file' if raw.exists() else 'no such folder'}")
    path = raw / "sessions.csv"
    if not path.is_file():
        raise UserError(f"Expected sessions.csv in the raw cohort {raw}, found none")
    sessions = read_table(path, "the sessions table")
    require_columns(sessions, tuple(dict.fromkeys(("series_id", "modality", *columns))), path)
    repeated = sessions["series_id"][sessions["series_id"].duplicated()]
    if len(repeated):
        raise UserError(f"Expected each series_id once in {path}, found {len(repeated)} repeated (e.g. {repeated.iloc[0]!r})")
    return sessions


def read_mri_series(raw: str | Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The MRI series of a raw cohort, in ``sessions.csv`` order (all its columns, as text).

    Raises:
        UserError: as :func:`read_sessions`, and when there is no MRI series.
    """
    sessions = read_sessions(raw, columns)
    mri = sessions[sessions["modality"] == MRI_MODALITY].reset_index(drop=True)
    if mri.empty:
        raise UserError(f"Expected MRI series (modality {MRI_MODALITY}) in {Path(raw) / 'sessions.csv'}, "
                        f"found none among {len(sessions)} rows")
    return mri


def read_participants(raw: str | Path, columns: tuple[str, ...] = ("subject_id", "sex")) -> pd.DataFrame:
    """``participants.csv`` of a raw cohort, sexes upper-cased.

    Raises:
        UserError: if the file or a column is missing.
    """
    path = Path(raw) / "participants.csv"
    if not path.is_file():
        raise UserError(f"Expected participants.csv ({', '.join(columns)}) in the raw cohort {raw}, found none")
    participants = read_table(path, "the participants table")
    require_columns(participants, columns, path)
    if "sex" in participants.columns:
        participants["sex"] = participants["sex"].str.upper()
    return participants


def read_cohort_table(path: str | Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """``spineage cohort``'s cohort.csv by the same policy, with the columns a later stage needs.

    Raises:
        UserError: if the table is missing (run ``spineage cohort`` first), unreadable, or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected the cohort table at {path} (run `spineage cohort` first), found no such file")
    table = read_table(path, "the cohort table")
    require_columns(table, columns, path)
    return table
