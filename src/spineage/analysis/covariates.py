"""The per-series table of the SAG analysis: spine age gap, findings by region and severity, lifestyle.

One row per series of the analysed splits, keyed by ``series_id``:

==============================  ================================================================
columns                         what
==============================  ================================================================
``series_id`` … ``sag``         from the evaluate stage's predictions (``subject_id``, ``split``,
                                ``age``, ``sex``, ``bracket``, ``predicted_age``, ``corrected_age``)
``<region>_<condition>``        per region (cervical, thoracic, lumbar) and degenerative condition:
                                the most severe severity present in the region, or ``none``
``<pathology>``, ``<finding>``  0/1: the pathology or other finding present anywhere, any severity
lifestyle columns               ``packs_per_day``, ``alcohol_days_per_week``,
                                ``sedentary_hours_per_day``, ``work``, ``exercise`` (when given)
==============================  ================================================================

Example:
    >>> findings = pd.DataFrame({"series_id": ["s1", "s1", "s1"], "level": ["L4", "L5", ""],
    ...                          "condition": ["disc_bulge", "disc_bulge", "scoliosis"],
    ...                          "severity": ["mild", "severe", "mild"], "negated": [False, False, False]})
    >>> row = finding_categories(findings, ["s1", "s2"]).set_index("series_id")
    >>> row.loc["s1", "lumbar_disc_bulge"], row.loc["s2", "lumbar_disc_bulge"], int(row.loc["s1", "scoliosis"])
    ('severe', 'none', 1)
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from spineage.analysis.settings import SagSettings
from spineage.errors import UserError
from spineage.findings.vocabulary import (
    DEGENERATIVE_CONDITIONS,
    DEGENERATIVE_SEVERITIES,
    OTHER_FINDINGS,
    PATHOLOGIES,
    REGIONS,
    region_of,
)
from spineage.validation.raw import (
    EXERCISE_LEVELS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    SEXES,
    WORK_LEVELS,
)

NONE = "none"
"""The category of a region without the degenerative condition (the reference of its regression)."""

FLAG_FINDINGS: tuple[str, ...] = PATHOLOGIES + OTHER_FINDINGS
"""Findings analysed as present anywhere (0/1)."""

LIFESTYLE_NUMBERS: tuple[str, ...] = NUMERIC_COLUMNS["lifestyle.csv"]
"""Lifestyle factors per unit: packs a day, days of alcohol a week, sedentary hours a day."""

LIFESTYLE_LEVELS: dict[str, tuple[str, ...]] = {"work": WORK_LEVELS, "exercise": EXERCISE_LEVELS}
"""Categorical lifestyle factors and their levels; the first level is the reference."""

LIFESTYLE_COLUMNS: tuple[str, ...] = LIFESTYLE_NUMBERS + tuple(LIFESTYLE_LEVELS)

PREDICTION_COLUMNS: tuple[str, ...] = ("series_id", "subject_id", "split", "age", "sex", "sag")
"""The columns of the evaluate stage's predictions the analysis needs."""

KEPT_PREDICTION_COLUMNS: tuple[str, ...] = (
    "series_id", "subject_id", "split", "age", "sex", "bracket", "predicted_age", "corrected_age", "sag",
)
"""The prediction columns carried into the analysis table (those present)."""

FINDING_COLUMNS: tuple[str, ...] = ("series_id", "level", "condition", "severity")


def region_column(region: str, condition: str) -> str:
    """The analysis-table column of a degenerative condition in a region, e.g. ``lumbar_disc_bulge``."""
    return f"{region}_{condition}"


def degenerative_columns() -> tuple[str, ...]:
    """Every ``<region>_<condition>`` column, region by region (cervical, thoracic, lumbar)."""
    return tuple(region_column(region, condition) for region in REGIONS for condition in DEGENERATIVE_CONDITIONS)


def _negated(findings: pd.DataFrame) -> pd.Series:
    if "negated" not in findings:
        return pd.Series(False, index=findings.index)
    flags = findings["negated"]
    if flags.dtype == bool:
        return flags
    return flags.astype(str).str.strip().str.lower().isin(["true", "1", "yes"])


def finding_categories(findings: pd.DataFrame, series_ids: Iterable[str]) -> pd.DataFrame:
    """One row per series of ``series_ids`` (in that order) with its findings as analysis categories.

    Negated findings are dropped. A degenerative finding without a level counts for no region;
    severities are ranked by the condition's own tuple in
    :data:`~spineage.findings.vocabulary.DEGENERATIVE_SEVERITIES`. Findings of series outside
    ``series_ids`` are ignored.

    Args:
        findings: the findings table (``series_id``, ``level``, ``condition``, ``severity``, ``negated``).
        series_ids: the series to describe, including those without any finding.

    Returns:
        ``series_id``, then ``<region>_<condition>`` (most severe severity or ``none``), then a
        0/1 column per pathology and other finding.

    Raises:
        UserError: for a missing column, an unknown condition, or a severity or level outside the vocabulary.
    """
    missing = [c for c in FINDING_COLUMNS if c not in findings.columns]
    if missing:
        raise UserError(f"Expected column(s) {', '.join(missing)} in the findings table, found {', '.join(map(str, findings.columns))}")
    ids = pd.Index([str(s) for s in series_ids], name="series_id")
    present = findings.loc[~_negated(findings), list(FINDING_COLUMNS)].copy()
    present["series_id"] = present["series_id"].astype(str)
    present = present[present["series_id"].isin(ids)]
    present["level"] = present["level"].fillna("").astype(str).str.strip()
    unknown = sorted(set(present["condition"]) - set(DEGENERATIVE_CONDITIONS) - set(FLAG_FINDINGS), key=str)
    if unknown:
        raise UserError(f"Expected findings conditions of the vocabulary, found {unknown[:3]}")

    degenerative = present[present["condition"].isin(DEGENERATIVE_CONDITIONS) & (present["level"] != "")].copy()
    ranks = []
    for condition, severity in zip(degenerative["condition"], degenerative["severity"]):
        severities = DEGENERATIVE_SEVERITIES[condition]
        if severity not in severities:
            raise UserError(f"Expected a severity of {condition} among {list(severities)}, found {severity!r}")
        ranks.append(severities.index(severity))
    try:
        regions = [region_of(level) for level in degenerative["level"]]
    except ValueError as error:
        raise UserError(str(error)) from None
    degenerative = degenerative.assign(
        column=[region_column(region, condition) for region, condition in zip(regions, degenerative["condition"])],
        rank=pd.Series(ranks, index=degenerative.index, dtype=int),
    )
    worst = degenerative.loc[degenerative.groupby(["series_id", "column"])["rank"].idxmax()]
    out = (
        worst.pivot(index="series_id", columns="column", values="severity")
        .reindex(index=ids, columns=list(degenerative_columns()))
        .astype(object)
        .fillna(NONE)
    )
    out.columns.name = None
    flagged = present[present["condition"].isin(FLAG_FINDINGS)]
    for condition in FLAG_FINDINGS:
        out[condition] = ids.isin(flagged.loc[flagged["condition"] == condition, "series_id"]).astype(int)
    return out.reset_index()


def lifestyle_covariates(lifestyle: pd.DataFrame) -> pd.DataFrame:
    """The lifestyle table (lifestyle.csv) checked against its contract, with numbers as numbers.

    Empty cells are missing values (the series then drops out of that factor's model).

    Example:
        >>> table = pd.DataFrame({"subject_id": ["a"], "packs_per_day": ["0.5"], "alcohol_days_per_week": ["2"],
        ...                       "sedentary_hours_per_day": [""], "work": ["heavy"], "exercise": ["none"]})
        >>> print(lifestyle_covariates(table).to_string(index=False))
        subject_id  packs_per_day  alcohol_days_per_week  sedentary_hours_per_day  work exercise
                 a            0.5                    2.0                      NaN heavy     none

    Raises:
        UserError: for a missing column, a repeated subject, a cell that is not a number, or an unknown level.
    """
    columns = REQUIRED_COLUMNS["lifestyle.csv"]
    missing = [c for c in columns if c not in lifestyle.columns]
    if missing:
        raise UserError(f"Expected column(s) {', '.join(missing)} in lifestyle.csv, found {', '.join(map(str, lifestyle.columns))}")
    out = pd.DataFrame({"subject_id": lifestyle["subject_id"].astype(str).str.strip()})
    repeated = out.loc[out["subject_id"].duplicated(), "subject_id"].tolist()
    if repeated:
        raise UserError(f"Expected one lifestyle.csv row per subject, found {len(repeated)} repeated (e.g. {repeated[:3]})")
    for column in LIFESTYLE_NUMBERS:
        cells = lifestyle[column]
        blank = cells.isna() | (cells.astype(str).str.strip() == "")
        values = pd.to_numeric(cells.where(~blank), errors="coerce")
        bad = cells[values.isna() & ~blank]
        if len(bad):
            raise UserError(f"Expected numbers in lifestyle.csv column {column}, found {bad.iloc[0]!r}")
        out[column] = values.astype(float)
    for column, levels in LIFESTYLE_LEVELS.items():
        cells = lifestyle[column].astype(object).where(lifestyle[column].notna(), "").astype(str).str.strip()
        bad = cells[(cells != "") & ~cells.isin(levels)]
        if len(bad):
            raise UserError(f"Expected lifestyle.csv column {column} among {list(levels)}, found {bad.iloc[0]!r}")
        out[column] = cells.where(cells != "", None)
    return out.reset_index(drop=True)


def analysis_table(
    predictions: pd.DataFrame, findings: pd.DataFrame, lifestyle: pd.DataFrame | None, settings: SagSettings,
) -> pd.DataFrame:
    """The per-series table of the analysis (module docstring): predictions of ``settings.splits`` with their covariates.

    Args:
        predictions: the evaluate stage's predictions.csv.
        findings: the findings table (findings.parquet).
        lifestyle: lifestyle.csv (checked by :func:`lifestyle_covariates`), or None to leave lifestyle out.
        settings: the ``sag`` section.

    Raises:
        UserError: for a missing prediction column, a repeated series, a sex other than F/M, or bad findings or lifestyle.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise UserError(f"Expected column(s) {', '.join(missing)} in the predictions, found {', '.join(map(str, predictions.columns))}")
    rows = predictions[predictions["split"].astype(str).isin(settings.splits)]
    rows = rows[[c for c in KEPT_PREDICTION_COLUMNS if c in rows.columns]].copy()
    rows["series_id"] = rows["series_id"].astype(str)
    rows["subject_id"] = rows["subject_id"].astype(str)
    if rows["series_id"].duplicated().any():
        raise UserError(f"Expected one prediction per series, found {int(rows['series_id'].duplicated().sum())} repeated")
    sexes = sorted(set(rows["sex"].astype(str)) - set(SEXES))
    if sexes:
        raise UserError(f"Expected sex among {list(SEXES)} in the predictions, found {sexes[:3]}")
    for column in ("age", "sag", "predicted_age", "corrected_age"):
        if column in rows:
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
    table = rows.merge(finding_categories(findings, rows["series_id"]), on="series_id", how="left", validate="one_to_one")
    if lifestyle is not None:
        table = table.merge(lifestyle_covariates(lifestyle), on="subject_id", how="left", validate="many_to_one")
    return table.reset_index(drop=True)
