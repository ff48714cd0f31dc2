"""``spineage findings``: the long findings table and the feature vectors of every MRI series.

Each MRI series (``modality == "mri_t2_sag"`` in ``sessions.csv``) gets its
findings from one source:

* ``findings.csv`` when it holds at least one row for the series (``source``
  ``"table"``);
* otherwise the free-text report ``reports/<series_id>.txt``, turned into rows
  by the report reader (``source`` ``"report"``); a cohort without
  ``findings.csv`` reads every series from its report;
* neither: the series keeps no findings (it is counted in the summary, since
  its vectors are then all zeros, like a spine without any finding).

Outputs, each written atomically (a temporary file, then a rename):

* ``<out>/findings.parquet``: one row per finding, columns :data:`FINDINGS_TABLE_COLUMNS`
  (``level`` is ``""`` for scan-level findings; negated findings from reports
  are kept with ``negated=True``; unmapped report text is not a finding and
  is left out);
* ``<out>/level_vectors.parquet`` and ``<out>/region_vectors.parquet``: the
  215- and 67-entry vectors of :mod:`spineage.findings.features`, one row per
  MRI series in ``sessions.csv`` order, index ``series_id``;
* ``<reports>/summary.json``: counts (series per source, findings, negated,
  unmapped report text, reports in which the reader found nothing, ...), a DVC metric;
* ``<reports>/unmapped.csv``: the report text the reader could not map, to read.

Example:
    >>> from spineage.findings.stage import build_findings  # doctest: +SKIP
    >>> build_findings("data/raw", "data/interim", "reports/findings")  # doctest: +SKIP
    FindingsSummary(mri_series=1052, ...)
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.findings.vocabulary import DEGENERATIVE_CONDITIONS, LEVELS, check_finding
from spineage.raw_cohort import read_mri_series, read_table, require_columns
from spineage.settings_checks import field_names, flag, section_mapping


FINDINGS_TABLE_COLUMNS: tuple[str, ...] = ("series_id", "level", "condition", "severity", "negated", "source")
"""Columns of ``findings.parquet``, in order."""

_REQUIRED_FINDINGS_COLUMNS = ("series_id", "level", "condition", "severity")
_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", ""})


@dataclass(frozen=True)
class FindingsSettings:
    """Settings of the findings stage (the ``findings`` section of params.yaml).

    Args:
        count_uncertain: whether findings the report hedges ("possible",
            "suspected", "?") count as present. When False they are left out
            of the table and the vectors.
    """

    count_uncertain: bool = True


def parse_findings_settings(section: Any) -> FindingsSettings:
    """Turn the ``findings`` section of params.yaml into :class:`FindingsSettings`.

    Raises:
        UserError: for an unknown key or a value of the wrong type.
    """
    section = section_mapping(section, "findings", field_names(FindingsSettings))
    defaults = FindingsSettings()
    return FindingsSettings(count_uncertain=flag(section, "count_uncertain", defaults.count_uncertain, "findings"))


def load_findings_settings(params: str | Path) -> FindingsSettings:
    """Read the ``findings`` section of a params file, after the checks of the whole file."""
    from spineage.config import read_params_mapping

    return parse_findings_settings(read_params_mapping(params).get("findings"))


@dataclass(frozen=True)
class FindingsSummary:
    """Counts of one run of the findings stage (written as ``summary.json``)."""

    mri_series: int
    series_from_table: int
    series_from_reports: int
    series_without_findings: int
    findings: int
    findings_from_table: int
    findings_from_reports: int
    negated: int
    uncertain_from_reports: int
    uncertain_dropped: int
    unmapped_report_rows: int
    reports_with_unmapped_text: int
    reports_without_findings: int
    degenerative_without_level: int
    table_rows_for_other_series: int

    def __str__(self) -> str:
        return (
            f"{self.mri_series} MRI series: {self.series_from_table} from findings.csv, "
            f"{self.series_from_reports} from reports, {self.series_without_findings} without findings; "
            f"{self.findings} findings ({self.negated} negated), "
            f"{self.unmapped_report_rows} unmapped report rows, {self.reports_without_findings} reports without findings"
        )


# ---------------------------------------------------------------------------
# Reading the raw cohort
# ---------------------------------------------------------------------------


def _flag(values: pd.Series, path: Path, column: str) -> pd.Series:
    words = values.fillna("").astype(str).str.strip().str.lower()
    bad = words[~words.isin(_TRUE_WORDS | _FALSE_WORDS)]
    if len(bad):
        raise UserError(f"Expected true/false in column {column} of {path}, found {bad.iloc[0]!r} in {len(bad)} rows")
    return words.isin(_TRUE_WORDS)


def read_findings_table(path: Path) -> pd.DataFrame:
    """``findings.csv`` checked against the vocabulary, as rows of :data:`FINDINGS_TABLE_COLUMNS`.

    Raises:
        UserError: for a missing column or any row outside the vocabulary
            (the message names how many rows and shows the first).
    """
    table = read_table(path, "the findings table")
    require_columns(table, _REQUIRED_FINDINGS_COLUMNS, path)
    table = table.assign(
        series_id=table["series_id"].str.strip(),
        level=table["level"].str.strip(),
        condition=table["condition"].str.strip(),
        severity=table["severity"].str.strip(),
    )
    negated = _flag(table["negated"], path, "negated") if "negated" in table.columns else pd.Series(False, index=table.index)
    errors: list[tuple[int, str]] = []
    for i, (level, condition, severity) in enumerate(zip(table["level"], table["condition"], table["severity"])):
        try:
            check_finding(condition, severity, level or None)
        except ValueError as error:
            errors.append((i, str(error)))
    if errors:
        line, message = errors[0]
        raise UserError(
            f"Expected findings from the vocabulary in {path}, found {len(errors)} bad row(s); "
            f"the first (line {line + 2}): {message}"
        )
    out = pd.DataFrame(
        {
            "series_id": table["series_id"],
            "level": table["level"],
            "condition": table["condition"],
            "severity": table["severity"],
            "negated": negated.to_numpy(bool),
            "source": "table",
        }
    )
    return out.drop_duplicates(ignore_index=True)


def read_series_reports(
    reports: dict[str, str], progress: bool = True, chunk: int = 256
) -> pd.DataFrame:
    """Run the report reader on the given ``{series_id: report text}``, with a progress bar.

    Returns:
        The reader's rows (:data:`~spineage.findings.report_reader.FINDINGS_COLUMNS`).
    """
    from tqdm import tqdm

    from spineage.findings.report_reader import FINDINGS_COLUMNS, read_reports

    ids = list(reports)
    parts: list[pd.DataFrame] = []
    with tqdm(total=len(ids), desc="reading reports", unit="report", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(ids), chunk):
            batch = ids[start : start + chunk]
            table = pd.DataFrame({"series_id": batch, "report": [reports[s] for s in batch]})
            parts.append(read_reports(table, "series_id", "report"))
            bar.update(len(batch))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=bool if c in ("negated", "uncertain", "mapped") else object)
                             for c in FINDINGS_COLUMNS})
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------


def _vector_input(findings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows the feature vectors can use: degenerative findings need one of the 26 levels."""
    degenerative = findings["condition"].isin(DEGENERATIVE_CONDITIONS)
    placeable = ~degenerative | findings["level"].isin(LEVELS)
    return findings[placeable], int((degenerative & ~placeable & ~findings["negated"]).sum())


def build_findings(
    raw: str | Path,
    out: str | Path,
    reports_out: str | Path,
    settings: FindingsSettings | None = None,
    progress: bool = True,
) -> FindingsSummary:
    """Build the findings table and the level and region vectors of every MRI series.

    Args:
        raw: the raw-cohort folder (``sessions.csv``; ``findings.csv`` and/or ``reports/``).
        out: folder for ``findings.parquet``, ``level_vectors.parquet`` and ``region_vectors.parquet``.
        reports_out: folder for ``summary.json`` and ``unmapped.csv``.
        settings: the ``findings`` section of params.yaml (defaults when None).
        progress: show a progress bar while reading reports.

    Returns:
        The counts also written to ``summary.json``.

    Raises:
        UserError: for a missing folder or table, a missing column, or a
            finding outside the vocabulary; nothing is written then.
    """
    from spineage.findings.features import level_vectors, region_vectors
    from spineage.findings.report_text import read_report_text

    settings = settings or FindingsSettings()
    raw, out, reports_out = Path(raw), Path(out), Path(reports_out)
    mri = read_mri_series(raw)
    series_ids = mri["series_id"].tolist()
    known = set(series_ids)

    findings_path = raw / "findings.csv"
    if findings_path.is_file():
        table = read_findings_table(findings_path)
        other = ~table["series_id"].isin(known)
        table_rows_for_other_series = int(other.sum())
        table = table[~other]
    else:
        table = pd.DataFrame({c: pd.Series(dtype=bool if c == "negated" else object) for c in FINDINGS_TABLE_COLUMNS})
        table_rows_for_other_series = 0
    from_table = set(table["series_id"])

    report_files = {
        series_id: raw / "reports" / f"{series_id}.txt"
        for series_id in series_ids
        if series_id not in from_table and (raw / "reports" / f"{series_id}.txt").is_file()
    }
    # Each report's encoding is detected (UTF-16 exports included); one that is not text stops the stage.
    report_texts = {s: read_report_text(f) for s, f in report_files.items()}
    read = read_series_reports(report_texts, progress=progress)
    # A report the reader finds nothing in comes back as one unmapped row holding the
    # whole text: mostly a normal report ("Unremarkable study."), counted apart.
    mapped_series = set(read.loc[read["mapped"], "series_id"])
    whole = read["series_id"].map({s: re.sub(r"\s+", " ", t).strip() for s, t in report_texts.items()})
    nothing_found = ~read["mapped"] & ~read["series_id"].isin(mapped_series) & (read["source_text"] == whole)
    unmapped = read[~read["mapped"] & ~nothing_found]
    mapped = read[read["mapped"]]
    uncertain = mapped["uncertain"].astype(bool)
    if not settings.count_uncertain:
        mapped = mapped[~uncertain]
    from_reports = pd.DataFrame(
        {
            "series_id": mapped["series_id"],
            "level": mapped["level"],
            "condition": mapped["condition"],
            "severity": mapped["severity"],
            "negated": mapped["negated"].astype(bool),
            "source": "report",
        }
    )
    findings = pd.concat([table, from_reports], ignore_index=True)
    order = {series_id: i for i, series_id in enumerate(series_ids)}
    findings = findings.sort_values("series_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    findings = findings.astype({"series_id": str, "level": str, "condition": str, "severity": str, "source": str})
    findings["negated"] = findings["negated"].astype(bool)

    usable, degenerative_without_level = _vector_input(findings)
    levels = level_vectors(usable, series_ids)
    regions = region_vectors(usable, series_ids)

    summary = FindingsSummary(
        mri_series=len(series_ids),
        series_from_table=len(from_table),
        series_from_reports=len(report_files),
        series_without_findings=len(series_ids) - len(from_table) - len(report_files),
        findings=len(findings),
        findings_from_table=len(table),
        findings_from_reports=len(from_reports),
        negated=int(findings["negated"].sum()),
        uncertain_from_reports=int(uncertain.sum()),
        uncertain_dropped=0 if settings.count_uncertain else int(uncertain.sum()),
        unmapped_report_rows=len(unmapped),
        reports_with_unmapped_text=int(unmapped["series_id"].nunique()),
        reports_without_findings=int(nothing_found.sum()),
        degenerative_without_level=degenerative_without_level,
        table_rows_for_other_series=table_rows_for_other_series,
    )
    write_atomic(out / "findings.parquet", lambda p: findings[list(FINDINGS_TABLE_COLUMNS)].to_parquet(p, index=False))
    write_atomic(out / "level_vectors.parquet", lambda p: levels.to_parquet(p))
    write_atomic(out / "region_vectors.parquet", lambda p: regions.to_parquet(p))
    unmapped_table = unmapped[["series_id", "level", "source_text"]]
    write_atomic(reports_out / "unmapped.csv", lambda p: unmapped_table.to_csv(p, index=False))
    write_json_atomic(reports_out / "summary.json", asdict(summary))
    return summary
