"""The radiograph gate: the raw cohort's radiographs, VFA images and outcomes, checked before the 2D branch runs.

:func:`validate_radiograph_cohort` reads the xray_lat and dxa_vfa rows of
``sessions.csv`` (through :func:`spineage.raw_cohort.read_sessions`), opens
every image with the reader the preprocessing uses
(:func:`spineage.radiograph.preprocess.load_radiograph`), reads ``outcomes.csv``,
and runs :func:`radiograph_checks` through Great Expectations
(:func:`spineage.validation.gate.run_gate`):

* images (table ``radiographs``): at least one; ages numbers within
  ``validation.age_min``-``age_max``; the oldest at or above
  ``radiograph.derivation_min_age`` (else there is no derivation cohort); every
  image path inside the cohort folder, the image readable as a greyscale 2D
  picture (a colour image is not), ``ndim`` 2, rows and columns within
  :data:`SIDE_RANGE`, bit depth in :data:`BIT_DEPTHS`;
* ``outcomes.csv``: the columns of :data:`OUTCOME_COLUMNS` present, one row per
  subject, numbers where numbers are due, T-scores within :data:`T_SCORE_RANGE`,
  follow-up times >= 0, event flags 0 or 1, ``incident_fracture_type``
  vertebral, non_vertebral or empty; the optional FRAX columns
  (:data:`FRAX_COLUMNS`), when present, within 0-100 %.

The image checks run on computed columns (``readable``, ``read_problem``,
``ndim``, ``rows``, ``cols``, ``bit_depth``), so that a failure names the
series, the file and what was wrong with it. Every image is decoded (a
truncated file is caught, not only a bad header): about 5 ms per 512 x 256
16-bit PNG on two busy cores, 21 s for the truth cohort's 4,541 images, of a
36 s gate (about 1 minute with the imports).

Example:
    >>> from spineage.config import ValidationSettings
    >>> from spineage.radiograph.settings import RadiographSettings
    >>> result = validate_radiograph_cohort("data/raw", RadiographSettings(), ValidationSettings(),
    ...                                     Path("reports/validation/radiograph.json"))  # doctest: +SKIP
    >>> result.success  # doctest: +SKIP
    True
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from spineage.errors import UserError
from spineage.validation.gate import Check, GateResult, Table, guarded_run, run_gate, write_gate_result
from spineage.validation.raw import (
    FRACTURE_TYPES,
    NUMBER_PATTERN,
    T_SCORE_COLUMNS,
    _between,
    _flag,
    _in_set,
    _not_null,
    inside_cohort,
    read_csv_as_text,
    written_column,
)

if TYPE_CHECKING:
    from spineage.config import ValidationSettings
    from spineage.radiograph.settings import RadiographSettings

GATE = "radiograph"
IMAGES = "radiographs"
"""The table of images (the xray_lat and dxa_vfa rows of sessions.csv, with what reading each image found)."""
OUTCOMES = "outcomes.csv"

SIDE_RANGE: tuple[int, int] = (64, 8192)
"""Plausible rows and columns of a stored radiograph or VFA image (pixels)."""
BIT_DEPTHS: tuple[int, ...] = (8, 16)
T_SCORE_RANGE: tuple[float, float] = (-7.0, 5.0)
"""Plausible BMD T-scores (SD from the young-adult mean)."""

EVENT_COLUMNS: tuple[str, ...] = ("osteoporosis", "prevalent_vertebral_fracture", "death", "incident_fracture")
FOLLOWUP_COLUMNS: tuple[str, ...] = ("followup_years", "fracture_followup_years")
OUTCOME_COLUMNS: tuple[str, ...] = ("subject_id", *T_SCORE_COLUMNS, *EVENT_COLUMNS, *FOLLOWUP_COLUMNS, "incident_fracture_type")
"""The columns of outcomes.csv the radiograph branch's outcome analyses need."""
FRAX_COLUMNS: tuple[str, ...] = ("frax_major_chronological", "frax_major_spine", "frax_hip_chronological", "frax_hip_spine")
"""Optional 10-year FRAX probabilities (%), with chronological age and with spine age."""

IMAGE_FACTS: tuple[str, ...] = ("image_inside", "readable", "read_problem", "ndim", "rows", "cols", "bit_depth")
"""Computed columns of the images table."""


def _problem(message: str, path: Path) -> str:
    """A reader's error without the file's path (the row's image column shows it)."""
    return message.removeprefix(f"{path}: ")


def _header(path: Path) -> dict[str, Any]:
    """Shape facts from a picture's header, for an image the reader refused (a colour one: ndim 3)."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            columns, rows = picture.size
            bands = len(picture.getbands())
    except Exception:  # noqa: BLE001 - not a picture PIL knows (a DICOM, a corrupt file): nothing more to say
        return {}
    return {"ndim": 2 if bands == 1 else 3, "rows": rows, "cols": columns}


def radiograph_facts(raw: Path, image: str | None) -> dict[str, Any]:
    """What the gate needs to know of one image of sessions.csv: :data:`IMAGE_FACTS` (None where unknown).

    A path outside the cohort folder is neither looked up nor opened.

    Example:
        >>> radiograph_facts(Path("data/raw"), "../elsewhere.png")["image_inside"]
        False
    """
    from spineage.radiograph.preprocess import load_radiograph

    facts: dict[str, Any] = dict.fromkeys(IMAGE_FACTS)
    if not image:
        return facts
    facts["image_inside"] = inside_cohort(image)
    if not facts["image_inside"]:
        return facts
    path = raw / image
    try:
        picture = load_radiograph(path)
    except UserError as error:
        facts.update(readable=False, read_problem=_problem(str(error), path), **_header(path))
        return facts
    facts.update(readable=True, ndim=picture.array.ndim, rows=picture.shape[0], cols=picture.shape[1], bit_depth=picture.bit_depth)
    return facts


def read_radiograph_tables(raw: str | Path, *, progress: bool | None = None) -> list[Table]:
    """The images table (sessions.csv's radiographs with :data:`IMAGE_FACTS`) and outcomes.csv.

    Args:
        raw: the raw-cohort folder.
        progress: a progress bar while images are read (None: only on a terminal).

    Raises:
        UserError: if the folder, sessions.csv or outcomes.csv is missing or unreadable.
    """
    from tqdm import tqdm

    from spineage.radiograph.preprocess import RADIOGRAPH_MODALITIES
    from spineage.raw_cohort import read_sessions

    raw = Path(raw)
    sessions = read_sessions(raw, ("series_id", "subject_id", "age", "modality", "image"))
    images = sessions[sessions["modality"].isin(RADIOGRAPH_MODALITIES)].reset_index(drop=True).replace({"": None})
    images = images[["series_id", "subject_id", "age", "modality", "image"]].copy()
    images[written_column("age")] = images["age"]
    images["age"] = pd.to_numeric(images["age"], errors="coerce")
    facts = [
        radiograph_facts(raw, image)
        for image in tqdm(images["image"], desc="reading radiographs", unit="image", leave=False, file=sys.stderr,
                          disable=None if progress is None else not progress)
    ]
    for column in IMAGE_FACTS:
        images[column] = pd.Series([fact[column] for fact in facts], index=images.index, dtype=object)

    path = raw / OUTCOMES
    if not path.is_file():
        raise UserError(f"Expected {OUTCOMES} (the radiograph branch's outcomes) in the raw cohort {raw}, found no such file")
    outcomes = read_csv_as_text(path)
    for column in _numeric_outcome_columns():
        if column in outcomes.columns:
            outcomes[written_column(column)] = outcomes[column]
            outcomes[column] = pd.to_numeric(outcomes[column], errors="coerce")
    return [Table(IMAGES, images, keys=("series_id",)), Table(OUTCOMES, outcomes, keys=("subject_id",))]


def _numeric_outcome_columns() -> tuple[str, ...]:
    return (*T_SCORE_COLUMNS, *EVENT_COLUMNS, *FOLLOWUP_COLUMNS, *FRAX_COLUMNS)


def radiograph_checks(settings: RadiographSettings, validation: ValidationSettings) -> list[Check]:
    """The expectations on the images table and outcomes.csv, in the order failures are printed.

    Args:
        settings: the ``radiograph`` section (``derivation_min_age``).
        validation: the ``validation`` section (``age_min``, ``age_max``).

    Example:
        >>> from spineage.config import ValidationSettings
        >>> from spineage.radiograph.settings import RadiographSettings
        >>> checks = radiograph_checks(RadiographSettings(), ValidationSettings())
        >>> sorted({check.column for check in checks if check.table == "radiographs" and check.column})[:4]
        ['age', 'age (as written)', 'bit_depth', 'cols']
    """
    low, high = SIDE_RANGE
    images = [
        Check(IMAGES, "ExpectTableRowCountToBeBetween", "at least one xray_lat or dxa_vfa image in sessions.csv",
              kwargs={"min_value": 1}),
        _not_null(IMAGES, "subject_id"),
        _not_null(IMAGES, written_column("age")),
        Check(IMAGES, "ExpectColumnValuesToMatchRegex", "a number", column=written_column("age"), kwargs={"regex": NUMBER_PATTERN}),
        _between(IMAGES, "age", validation.age_min, validation.age_max,
                 f"age between {validation.age_min:g} and {validation.age_max:g} years, validation.age_min/age_max"),
        Check(IMAGES, "ExpectColumnMaxToBeBetween",
              f"a subject with a radiograph at or above radiograph.derivation_min_age ({settings.derivation_min_age:g} years)",
              column="age", kwargs={"min_value": settings.derivation_min_age}),
        _not_null(IMAGES, "image"),
        _flag(IMAGES, "image_inside", "image", "the image path lies inside the cohort folder (relative, no ..)"),
        Check(IMAGES, "ExpectColumnValuesToBeInSet", "the image reads as a 2D greyscale picture (PNG or DICOM)",
              column="readable", kwargs={"value_set": [True]}, show=("image", "read_problem")),
        _in_set(IMAGES, "ndim", (2,), "a 2D image (ndim 2: one channel)"),
        _between(IMAGES, "rows", low, high, f"rows between {low} and {high} pixels"),
        _between(IMAGES, "cols", low, high, f"columns between {low} and {high} pixels"),
        _in_set(IMAGES, "bit_depth", BIT_DEPTHS, "8 or 16 bits per pixel"),
    ]
    t_low, t_high = T_SCORE_RANGE
    outcomes = [
        Check(OUTCOMES, "ExpectTableColumnsToMatchSet", "the columns the outcome analyses need are present",
              kwargs={"column_set": list(OUTCOME_COLUMNS), "exact_match": False}),
        _not_null(OUTCOMES, "subject_id"),
        Check(OUTCOMES, "ExpectColumnValuesToBeUnique", "one row per subject", column="subject_id"),
        *[Check(OUTCOMES, "ExpectColumnValuesToMatchRegex", "a number", column=written_column(column), kwargs={"regex": NUMBER_PATTERN})
          for column in _numeric_outcome_columns()],
        *[_between(OUTCOMES, column, t_low, t_high, f"a T-score between {t_low:g} and {t_high:g}") for column in T_SCORE_COLUMNS],
        *[_between(OUTCOMES, column, 0, None, "follow-up >= 0 years") for column in FOLLOWUP_COLUMNS],
        *[_in_set(OUTCOMES, column, (0, 1), "an event flag, 0 or 1") for column in EVENT_COLUMNS],
        _in_set(OUTCOMES, "incident_fracture_type", FRACTURE_TYPES, "vertebral, non_vertebral or empty"),
        *[_between(OUTCOMES, column, 0, 100, "a FRAX probability between 0 and 100 %") for column in FRAX_COLUMNS],
    ]
    return images + outcomes


def validate_radiograph_cohort(
    raw: str | Path,
    settings: RadiographSettings,
    validation_settings: ValidationSettings,
    report: Path,
    *,
    progress: bool | None = None,
) -> GateResult:
    """Validate the raw cohort's radiographs, VFA images and outcomes; write the result as JSON to ``report``.

    The report is written whatever happens (:func:`~spineage.validation.gate.guarded_run`):
    the result when the gate ran, else a failure saying why it could not
    (a missing folder or outcomes.csv), so no earlier success outlives a run.

    Args:
        raw: the raw-cohort folder (e.g. ``data/raw``).
        settings: the ``radiograph`` section (``derivation_min_age``).
        validation_settings: the ``validation`` section (``age_min``, ``age_max``).
        report: where to write the JSON result (pass or fail).
        progress: a progress bar while images are read (None: only on a terminal).

    Returns:
        The :class:`~spineage.validation.gate.GateResult`: ``success`` says whether
        the cohort passed; ``failure_lines()`` one line per failed expectation.

    Raises:
        UserError: if the gate cannot run (the report then says why).
    """
    report = Path(report)

    def run() -> GateResult:
        tables = read_radiograph_tables(raw, progress=progress)
        absent = [column for column in FRAX_COLUMNS if column not in tables[1].frame.columns]
        notes = (f"FRAX columns absent, not checked: {', '.join(absent)}",) if absent else ()
        result = run_gate(
            GATE,
            tables,
            radiograph_checks(settings, validation_settings),
            source=str(raw),
            notes=notes,
            settings={
                "age_min": validation_settings.age_min,
                "age_max": validation_settings.age_max,
                "derivation_min_age": settings.derivation_min_age,
                "side_range": list(SIDE_RANGE),
                "bit_depths": list(BIT_DEPTHS),
                "t_score_range": list(T_SCORE_RANGE),
            },
        )
        write_gate_result(result, report)
        return result

    return guarded_run(GATE, raw, report, run)
