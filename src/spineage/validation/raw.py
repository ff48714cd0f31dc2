"""The raw-cohort gate: the input contract of ``shared/docs/DESIGN.md`` as expectations.

:func:`validate_raw_cohort` reads the raw-cohort folder (``participants.csv``,
``sessions.csv``, ``findings.csv``, and ``lifestyle.csv`` / ``outcomes.csv``
when present), adds the computed columns the checks need (does the image file
exist, the text of each numeric cell), and runs :func:`raw_checks` through
Great Expectations:

* participants and sessions: at least one row each;
* participants: subject ids present and unique, sex F or M, birth year a year;
* sessions: series ids present and unique, subject in participants.csv, age a
  number within ``validation.age_min``-``age_max``, modality one of
  :data:`~spineage.findings.vocabulary.MODALITIES`, every image (and label) path
  inside the cohort folder (relative, without ``..``: :func:`inside_cohort`) and
  on disk; every MRI label map a label map (:mod:`spineage.validation.label_maps`:
  readable, not the image itself, known integer codes, the image's shape);
* findings: series in sessions.csv, condition in the vocabulary, severity one
  of the condition's own (the logic of
  :func:`~spineage.findings.vocabulary.check_finding`), level one of the 26 or
  empty, and never empty for a degenerative condition;
* lifestyle: packs per day >= 0, alcohol 0-7 days a week, sedentary 0-24 hours
  a day, work and exercise in their categories;
* outcomes: T-scores, heights, weights and follow-up times in plausible
  ranges, 0/1 flags, fracture types.

Cells are read as text first, so that "abc" in a numeric column is reported as
such rather than breaking the run.

Example:
    >>> from spineage.config import ValidationSettings
    >>> result = validate_raw_cohort("data/raw", ValidationSettings())  # doctest: +SKIP
    >>> result.success  # doctest: +SKIP
    True
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import pandas as pd

from spineage.errors import UserError
from spineage.findings.vocabulary import (
    ALL_CONDITIONS,
    DEGENERATIVE_CONDITIONS,
    DEGENERATIVE_SEVERITIES,
    LEVELS,
    MODALITIES,
    OTHER_FINDINGS,
    PATHOLOGIES,
    PATHOLOGY_SEVERITIES,
)
from spineage.validation.gate import Check, GateResult, Table, run_gate, write_gate_result
from spineage.validation.label_maps import add_label_map_columns, label_map_checks

if TYPE_CHECKING:
    from spineage.config import ValidationSettings

SEXES: tuple[str, ...] = ("F", "M")
WORK_LEVELS: tuple[str, ...] = ("sedentary", "moderate", "heavy")
EXERCISE_LEVELS: tuple[str, ...] = ("none", "moderate", "vigorous")
"""Lifestyle categories of the input contract (DESIGN.md), not the generator's: the gate checks the generator too."""

VALID_CONDITION_SEVERITIES: tuple[tuple[str, str], ...] = tuple(
    (condition, severity) for condition, severities in DEGENERATIVE_SEVERITIES.items() for severity in severities
) + tuple((condition, severity) for condition in PATHOLOGIES + OTHER_FINDINGS for severity in PATHOLOGY_SEVERITIES)
"""Every (condition, severity) pair :func:`~spineage.findings.vocabulary.check_finding` accepts."""

T_SCORE_COLUMNS: tuple[str, ...] = ("bmd_t_lumbar", "bmd_t_femoral_neck", "bmd_t_total_hip")
BINARY_OUTCOME_COLUMNS: tuple[str, ...] = (
    "osteoporosis",
    "prevalent_vertebral_fracture",
    "diabetes",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "spinal_prosthesis",
    "death",
    "incident_fracture",
)
FRACTURE_TYPES: tuple[str, ...] = ("vertebral", "non_vertebral")

NUMBER_PATTERN = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
"""A decimal number as written in a CSV cell."""

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "participants.csv": ("subject_id", "sex"),
    "sessions.csv": ("series_id", "subject_id", "age", "modality", "image"),
    "findings.csv": ("series_id", "level", "condition", "severity"),
    "lifestyle.csv": ("subject_id", "packs_per_day", "alcohol_days_per_week", "sedentary_hours_per_day", "work", "exercise"),
    "outcomes.csv": ("subject_id",),
}
"""The minimum columns of each table (DESIGN.md, "The raw cohort")."""

NUMERIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "participants.csv": ("birth_year",),
    "sessions.csv": ("age",),
    "lifestyle.csv": ("packs_per_day", "alcohol_days_per_week", "sedentary_hours_per_day"),
    "outcomes.csv": T_SCORE_COLUMNS
    + BINARY_OUTCOME_COLUMNS
    + ("height_cm", "weight_kg", "followup_years", "fracture_followup_years"),
}

KEYS: dict[str, tuple[str, ...]] = {
    "participants.csv": ("subject_id",),
    "sessions.csv": ("series_id",),
    "findings.csv": ("series_id", "level"),
    "lifestyle.csv": ("subject_id",),
    "outcomes.csv": ("subject_id",),
}


SUBJECT_KNOWN = "subject_in_participants"
SERIES_KNOWN = "series_in_sessions"
CONDITION_SEVERITY = "condition/severity"
"""Computed column of findings.csv: the pair checked against :data:`VALID_CONDITION_SEVERITIES`."""


def written_column(column: str) -> str:
    """The computed column holding a numeric column's cells as written (text)."""
    return f"{column} (as written)"


def read_raw_tables(data: str | Path) -> tuple[list[Table], list[str]]:
    """Read the raw cohort's tables, with the computed columns the checks use.

    Returns:
        The tables, and notes on the optional tables that are absent.

    Raises:
        UserError: if the folder, participants.csv or sessions.csv is missing, if
            neither findings.csv nor reports/ is there, or if a table is not CSV.
    """
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"Expected a raw-cohort folder at {data}, found {'a file' if data.exists() else 'nothing'} there")
    notes: list[str] = []
    tables: list[Table] = []
    for name in ("participants.csv", "sessions.csv", "findings.csv", "lifestyle.csv", "outcomes.csv"):
        path = data / name
        if not path.is_file():
            if name in ("participants.csv", "sessions.csv"):
                raise UserError(f"Expected {name} in the raw cohort {data}, found no such file")
            if name == "findings.csv":
                if not (data / "reports").is_dir():
                    raise UserError(f"Expected findings.csv or a reports/ folder in the raw cohort {data}, found neither")
                notes.append("findings.csv absent: findings come from reports/, read by the findings stage")
            else:
                notes.append(f"{name} absent: not checked")
            continue
        frame = read_csv_as_text(path)
        for column in NUMERIC_COLUMNS.get(name, ()):
            if column in frame.columns:
                frame[written_column(column)] = frame[column]
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        if name == "sessions.csv":
            _add_file_checks(frame, data)
        if name == "findings.csv" and {"condition", "severity"} <= set(frame.columns):
            frame[CONDITION_SEVERITY] = _condition_severity(frame)
        tables.append(Table(name, frame, KEYS[name]))
    _add_reference_checks({table.name: table.frame for table in tables})
    return tables, notes


def raw_checks(tables: list[Table], settings: ValidationSettings) -> list[Check]:
    """The expectations on each table of the raw cohort, in the order failures are printed.

    Args:
        tables: as :func:`read_raw_tables` returns them, with their computed
            columns (``subject_in_participants``, ``image_exists``, ...).
        settings: the ``validation`` section of params.yaml (the age range).
    """
    frames = {table.name: table.frame for table in tables}
    per_table: dict[str, list[Check]] = {
        "participants.csv": [
            _not_null("participants.csv", "subject_id"),
            Check("participants.csv", "ExpectColumnValuesToBeUnique", "one row per subject", column="subject_id"),
            _not_null("participants.csv", "sex"),
            _in_set("participants.csv", "sex", SEXES, "sex is F or M"),
            _between("participants.csv", "birth_year", 1850, 2100, "birth year between 1850 and 2100"),
        ],
        "sessions.csv": [
            _not_null("sessions.csv", "series_id"),
            Check("sessions.csv", "ExpectColumnValuesToBeUnique", "one row per series", column="series_id"),
            _not_null("sessions.csv", "subject_id"),
            _flag("sessions.csv", SUBJECT_KNOWN, "subject_id", "the subject is in participants.csv"),
            _not_null("sessions.csv", written_column("age")),
            _between("sessions.csv", "age", settings.age_min, settings.age_max,
                     f"age between {settings.age_min:g} and {settings.age_max:g} years, validation.age_min/age_max"),
            _not_null("sessions.csv", "modality"),
            _in_set("sessions.csv", "modality", MODALITIES, f"modality one of {', '.join(MODALITIES)}"),
            _not_null("sessions.csv", "image"),
            _flag("sessions.csv", "image_inside", "image", "the image path lies inside the cohort folder (relative, no ..)"),
            _flag("sessions.csv", "image_exists", "image", "the image file exists in the cohort folder"),
            _flag("sessions.csv", "label_inside", "label", "the label path, when given, lies inside the cohort folder (relative, no ..)"),
            _flag("sessions.csv", "label_exists", "label", "the label file, when given, exists in the cohort folder"),
            *label_map_checks("sessions.csv"),
        ],
        "findings.csv": [
            _not_null("findings.csv", "series_id"),
            _flag("findings.csv", SERIES_KNOWN, "series_id", "the series is in sessions.csv"),
            _not_null("findings.csv", "condition"),
            _in_set("findings.csv", "condition", ALL_CONDITIONS, "a condition of the findings vocabulary"),
            _in_set("findings.csv", CONDITION_SEVERITY, [f"{c}/{s}" for c, s in VALID_CONDITION_SEVERITIES],
                    "a severity the condition allows"),
            _in_set("findings.csv", "level", LEVELS, "a level from C2 to L7, or empty"),
            Check("findings.csv", "ExpectColumnValuesToNotBeNull", "a degenerative finding has a level",
                  column="level", only_where=("condition", DEGENERATIVE_CONDITIONS)),
        ],
        "lifestyle.csv": [
            Check("lifestyle.csv", "ExpectColumnValuesToBeUnique", "one row per subject", column="subject_id"),
            _flag("lifestyle.csv", SUBJECT_KNOWN, "subject_id", "the subject is in participants.csv"),
            _between("lifestyle.csv", "packs_per_day", 0, None, "packs per day >= 0"),
            _between("lifestyle.csv", "alcohol_days_per_week", 0, 7, "alcohol days per week between 0 and 7"),
            _between("lifestyle.csv", "sedentary_hours_per_day", 0, 24, "sedentary hours per day between 0 and 24"),
            _in_set("lifestyle.csv", "work", WORK_LEVELS, f"work one of {', '.join(WORK_LEVELS)}"),
            _in_set("lifestyle.csv", "exercise", EXERCISE_LEVELS, f"exercise one of {', '.join(EXERCISE_LEVELS)}"),
        ],
        "outcomes.csv": [
            Check("outcomes.csv", "ExpectColumnValuesToBeUnique", "one row per subject", column="subject_id"),
            _flag("outcomes.csv", SUBJECT_KNOWN, "subject_id", "the subject is in participants.csv"),
            *[_between("outcomes.csv", column, -10, 10, "a T-score between -10 and 10") for column in T_SCORE_COLUMNS],
            *[_in_set("outcomes.csv", column, (0, 1), "0 or 1") for column in BINARY_OUTCOME_COLUMNS],
            _between("outcomes.csv", "height_cm", 50, 250, "height between 50 and 250 cm"),
            _between("outcomes.csv", "weight_kg", 20, 400, "weight between 20 and 400 kg"),
            _between("outcomes.csv", "followup_years", 0, 100, "follow-up between 0 and 100 years"),
            _between("outcomes.csv", "fracture_followup_years", 0, 100, "fracture follow-up between 0 and 100 years"),
            _in_set("outcomes.csv", "incident_fracture_type", FRACTURE_TYPES, "vertebral, non_vertebral or empty"),
        ],
    }
    checks: list[Check] = []
    for name in frames:
        checks.append(
            Check(name, "ExpectTableColumnsToMatchSet", "the required columns are present",
                  kwargs={"column_set": list(REQUIRED_COLUMNS[name]), "exact_match": False})
        )
        if name in ("participants.csv", "sessions.csv"):
            checks.append(Check(name, "ExpectTableRowCountToBeBetween", "at least one row", kwargs={"min_value": 1}))
        checks += [
            Check(name, "ExpectColumnValuesToMatchRegex", "a number", column=written_column(column), kwargs={"regex": NUMBER_PATTERN})
            for column in NUMERIC_COLUMNS.get(name, ())
        ]
        checks += per_table[name]
    return checks


def validate_raw_cohort(
    data: str | Path,
    settings: ValidationSettings,
    report: str | Path | None = None,
) -> GateResult:
    """Validate the raw-cohort folder ``data`` and write the result as JSON to ``report``.

    Args:
        data: the raw-cohort folder (e.g. ``data/raw``).
        settings: the ``validation`` section of params.yaml.
        report: where to write the JSON result (pass or fail); None writes nothing.

    Returns:
        The :class:`~spineage.validation.gate.GateResult`; its ``success`` says
        whether the cohort passed.

    Raises:
        UserError: if the folder or a required table is missing or unreadable.
    """
    tables, notes = read_raw_tables(data)
    result = run_gate(
        "raw",
        tables,
        raw_checks(tables, settings),
        source=str(data),
        notes=tuple(notes),
        settings={"age_min": settings.age_min, "age_max": settings.age_max},
    )
    if report is not None:
        write_gate_result(result, Path(report))
    return result


def read_csv_as_text(path: Path) -> pd.DataFrame:
    """A raw-cohort table as :func:`spineage.raw_cohort.read_table` reads it, empty cells as None for the expectations.

    Every cell stays text (so that "NA" stays "NA" and "abc" is visible).

    Raises:
        UserError: if the file is empty or not CSV.
    """
    from spineage.raw_cohort import read_table

    return read_table(path).replace({"": None})


def inside_cohort(path: str) -> bool:
    """Whether a path of sessions.csv names something inside the cohort folder: relative, and not climbing out with ``..``.

    The path as written is judged, not where symbolic links lead: a cohort may
    keep its images behind a link (``spineage synth`` copies what links point to
    into data/raw), but sessions.csv may not name a file elsewhere.

    Example:
        >>> [inside_cohort(p) for p in ("images/a.nii.gz", "images/../labels/a.nii.gz", "../a.nii.gz", "/etc/passwd", ".")]
        [True, True, False, False, False]
    """
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive:
        return False
    normal = posixpath.normpath(path.replace("\\", "/"))
    return normal not in (".", "..") and not normal.startswith("../")


def _add_file_checks(sessions: pd.DataFrame, data: Path) -> None:
    """Computed columns: is each image (and label, where given) inside the cohort folder, and there.

    A path outside the folder is reported by ``*_inside`` alone: it is neither looked up nor opened.
    """
    for column in ("image", "label"):
        if column not in sessions.columns:
            continue
        inside = [None if path is None else inside_cohort(path) for path in sessions[column]]
        sessions[f"{column}_inside"] = inside
        sessions[f"{column}_exists"] = [None if not ok else (data / path).exists() for path, ok in zip(sessions[column], inside)]
    add_label_map_columns(
        sessions,
        data,
        checkable=sessions.get("label_exists", pd.Series(None, index=sessions.index, dtype=object)).eq(True),
        image_checkable=sessions.get("image_exists", pd.Series(None, index=sessions.index, dtype=object)).eq(True),
    )


def _add_reference_checks(frames: dict[str, pd.DataFrame]) -> None:
    """Computed flags: is each row's subject in participants.csv, each finding's series in sessions.csv.

    Flags rather than a value set of every id, which GX would copy for each metric it computes.
    """
    subjects = set(frames["participants.csv"].get("subject_id", pd.Series(dtype=object)).dropna())
    series = set(frames["sessions.csv"].get("series_id", pd.Series(dtype=object)).dropna())
    for name, frame in frames.items():
        if name != "participants.csv" and "subject_id" in frame.columns:
            frame[SUBJECT_KNOWN] = [None if value is None else value in subjects for value in frame["subject_id"]]
        if name == "findings.csv" and "series_id" in frame.columns:
            frame[SERIES_KNOWN] = [None if value is None else value in series for value in frame["series_id"]]


def _condition_severity(findings: pd.DataFrame) -> list[str | None]:
    """``condition/severity`` for the known conditions (an unknown condition is reported once, by its own check)."""
    return [
        f"{condition}/{severity if severity is not None else 'empty'}" if condition in ALL_CONDITIONS else None
        for condition, severity in zip(findings["condition"], findings["severity"])
    ]


def _not_null(table: str, column: str) -> Check:
    return Check(table, "ExpectColumnValuesToNotBeNull", "never empty", column=column)


def _in_set(table: str, column: str, values, rule: str) -> Check:
    return Check(table, "ExpectColumnValuesToBeInSet", rule, column=column, kwargs={"value_set": list(values)})


def _flag(table: str, flag: str, shown: str, rule: str) -> Check:
    """A computed True/False column that must be True, printed as the column it was computed from."""
    return Check(table, "ExpectColumnValuesToBeInSet", rule, column=flag, kwargs={"value_set": [True]}, show=(shown,))


def _between(table: str, column: str, low: float | None, high: float | None, rule: str) -> Check:
    return Check(table, "ExpectColumnValuesToBeBetween", rule, column=column, kwargs={"min_value": low, "max_value": high})
