"""``spineage findings``: the long findings table and the feature vectors of every MRI series.

Each MRI series (``modality == "mri_t2_sag"`` in ``sessions.csv``) gets its
findings from the source ``findings.source`` of params.yaml names
(:data:`FINDINGS_SOURCES`):

* ``reports`` (the default, as a real study): the free-text report
  ``reports/<series_id>.txt`` of every series, turned into rows by the report
  reader (``source`` ``"report"``). ``findings.csv``, when present, is only the
  truth the reader is measured against (:mod:`spineage.findings.agreement`:
  precision and recall, strict and lenient, in ``summary.json``). A series
  without a report keeps no findings; it is counted (``series_without_report``,
  and apart those whose findings.csv rows go unused), with a warning line on
  stderr when more than :data:`MISSING_REPORT_WARNING_SHARE` of the series lack
  one or when findings.csv holds rows for one. No report at all is an error.
* ``table``: ``findings.csv`` only (``source`` ``"table"``); a series without
  rows keeps no findings and reports are not read.
* ``auto``: ``findings.csv`` for a series it holds at least one row for, else
  the series' report.

A series with no findings has vectors of all zeros, like a spine without any
finding, and is counted in the summary.

Outputs, each written atomically (a temporary file, then a rename):

* ``<out>/findings.parquet``: one row per finding, columns :data:`FINDINGS_TABLE_COLUMNS`
  (``level`` is ``""`` for scan-level findings; negated findings from reports
  are kept with ``negated=True``; unmapped report text is not a finding and
  is left out);
* ``<out>/level_vectors.parquet`` and ``<out>/region_vectors.parquet``: the
  215- and 67-entry vectors of :mod:`spineage.findings.features`, one row per
  MRI series in ``sessions.csv`` order, index ``series_id``;
* ``<reports>/summary.json``: the source used and counts (series per source,
  findings, negated, unmapped report text, reports in which the reader found
  nothing, ...), the unmapped sentences per report read
  (``unmapped_per_report``: mean, median, max) and the most common ones
  (``most_common_unmapped``: text with its levels as ``<level>``, count and
  reports), so that a user sees what the reader skipped, and under
  ``source: reports`` the reader's agreement with findings.csv
  (``reader_agreement``, None without one), a DVC metric;
* ``<reports>/unmapped.csv``: the report text the reader could not map, to read.

Example:
    >>> from spineage.findings.stage import build_findings  # doctest: +SKIP
    >>> build_findings("data/raw", "data/interim", "reports/findings")  # doctest: +SKIP
    FindingsSummary(source='reports', mri_series=1052, ...)
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
from spineage.settings_checks import choice, field_names, flag, section_mapping

FINDINGS_TABLE_COLUMNS: tuple[str, ...] = ("series_id", "level", "condition", "severity", "negated", "source")
"""Columns of ``findings.parquet``, in order."""

FINDINGS_SOURCES: tuple[str, ...] = ("reports", "table", "auto")
"""Values of ``findings.source``: where each MRI series' findings come from (see the module docstring)."""

MOST_COMMON_UNMAPPED = 20
"""How many of the most common unmapped sentences ``summary.json`` lists."""

MISSING_REPORT_WARNING_SHARE = 0.05
"""Under ``source: reports``, a warning when more than this share of the MRI series have no report."""

_REQUIRED_FINDINGS_COLUMNS = ("series_id", "level", "condition", "severity")
_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", ""})


@dataclass(frozen=True)
class FindingsSettings:
    """Settings of the findings stage (the ``findings`` section of params.yaml).

    Args:
        source: where each MRI series' findings come from, one of
            :data:`FINDINGS_SOURCES`: ``"reports"`` (every series from its
            report; findings.csv only to measure the reader), ``"table"``
            (findings.csv only) or ``"auto"`` (findings.csv where it has rows
            for the series, else the report).
        count_uncertain: whether findings the report hedges ("possible",
            "suspected", "?") count as present. When False they are left out
            of the table and the vectors.
    """

    source: str = "reports"
    count_uncertain: bool = True


def parse_findings_settings(section: Any) -> FindingsSettings:
    """Turn the ``findings`` section of params.yaml into :class:`FindingsSettings`.

    Raises:
        UserError: for an unknown key, an unknown source or a value of the wrong type.
    """
    section = section_mapping(section, "findings", field_names(FindingsSettings))
    defaults = FindingsSettings()
    return FindingsSettings(
        source=choice(section, "source", defaults.source, "findings", FINDINGS_SOURCES),
        count_uncertain=flag(section, "count_uncertain", defaults.count_uncertain, "findings"),
    )


def load_findings_settings(params: str | Path) -> FindingsSettings:
    """Read the ``findings`` section of a params file, after the checks of the whole file."""
    from spineage.config import read_params_mapping

    return parse_findings_settings(read_params_mapping(params).get("findings"))


@dataclass(frozen=True)
class FindingsSummary:
    """Counts of one run of the findings stage (written as ``summary.json``).

    ``series_without_report``: MRI series whose findings were to come from a
    report (all under ``source: reports``, those without findings.csv rows
    under ``auto``) but which have none; ``series_without_report_with_table_rows``:
    of these, the ones findings.csv holds rows for, left unused.
    ``reader_agreement``: under ``source: reports`` with a findings.csv, the
    reader's precision and recall against it over the series with a report
    (:func:`spineage.findings.agreement.reader_agreement`); None otherwise.
    ``unmapped_per_report``: mean, median and max of the unmapped sentences
    (rows) per report read, reports without any included; ``most_common_unmapped``:
    the :data:`MOST_COMMON_UNMAPPED` most frequent unmapped sentences
    (:func:`most_common_unmapped`).
    """

    source: str
    mri_series: int
    series_from_table: int
    series_from_reports: int
    series_without_findings: int
    series_without_report: int
    series_without_report_with_table_rows: int
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
    reader_agreement: dict[str, Any] | None = None
    unmapped_per_report: dict[str, float] | None = None
    most_common_unmapped: list[dict[str, Any]] | None = None

    def __str__(self) -> str:
        text = (
            f"{self.mri_series} MRI series (findings.source {self.source}): {self.series_from_table} from findings.csv, "
            f"{self.series_from_reports} from reports, {self.series_without_findings} without findings; "
            f"{self.findings} findings ({self.negated} negated), "
            f"{self.unmapped_report_rows} unmapped report rows, {self.reports_without_findings} reports without findings"
        )
        if self.reader_agreement:
            rates = [
                f"{rule} precision {_rate(self.reader_agreement[rule]['overall']['precision'])}, "
                f"recall {_rate(self.reader_agreement[rule]['overall']['recall'])}"
                for rule in ("strict", "lenient")
            ]
            text += f"; reader against findings.csv: {'; '.join(rates)}"
        if self.most_common_unmapped:
            top = self.most_common_unmapped[0]
            text += f"; most common unmapped text: {top['text']!r} ({top['count']}x)"
        return text


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
# The stage
# ---------------------------------------------------------------------------


_LEVEL_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9])(?:th|t|d|c|l|s)\d{1,2}(?:\s*[/-]\s*(?:th|t|d|c|l|s)?\d{1,2})*(?![A-Za-z0-9])", re.I
)


def unmapped_sentence_key(text: str) -> str:
    """How unmapped sentences are grouped: lower case, single spaces, each level written ``<level>``.

    Example:
        >>> unmapped_sentence_key("Ligamentum  flavum hypertrophy C6/7")
        'ligamentum flavum hypertrophy <level>'
    """
    return _LEVEL_IN_TEXT.sub("<level>", re.sub(r"\s+", " ", str(text)).strip().lower())


def unmapped_per_report(unmapped: pd.DataFrame, series_read: list[str]) -> dict[str, float]:
    """Mean, median and max of the unmapped rows per report read (a report with none counts as 0)."""
    counts = unmapped["series_id"].value_counts().reindex(series_read, fill_value=0)
    if counts.empty:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": round(float(counts.mean()), 3), "median": float(counts.median()), "max": int(counts.max())}


def most_common_unmapped(unmapped: pd.DataFrame, top: int = MOST_COMMON_UNMAPPED) -> list[dict[str, Any]]:
    """The most frequent unmapped sentences: ``text`` (as :func:`unmapped_sentence_key`), ``count`` and ``reports``.

    Ties are broken by text, so the list is the same on every run.
    """
    if unmapped.empty:
        return []
    keys = unmapped["source_text"].map(unmapped_sentence_key)
    grouped = pd.DataFrame({"text": keys, "series_id": unmapped["series_id"]}).groupby("text")["series_id"]
    table = pd.DataFrame({"count": grouped.size(), "reports": grouped.nunique()}).reset_index()
    table = table.sort_values(["count", "text"], ascending=[False, True], kind="stable").head(top)
    return [
        {"text": text, "count": int(count), "reports": int(reports)}
        for text, count, reports in zip(table["text"], table["count"], table["reports"])
    ]


def missing_report_warnings(summary: FindingsSummary, without_report: list[str], unused_table_rows: list[str]) -> list[str]:
    """The warning lines about series without a report (none when nothing is amiss).

    Args:
        summary: the run's counts.
        without_report: the series whose report was wanted and missing.
        unused_table_rows: of these, the ones findings.csv holds rows for.
    """
    lines = []
    examples = lambda ids: ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
    share = len(without_report) / summary.mri_series if summary.mri_series else 0.0
    if share > MISSING_REPORT_WARNING_SHARE:
        lines.append(
            f"{len(without_report)} of {summary.mri_series} MRI series ({share:.0%}) have no report in reports/ "
            f"and keep no findings ({examples(without_report)})"
        )
    if unused_table_rows:
        lines.append(
            f"findings.csv holds rows for {len(unused_table_rows)} MRI series without a report, unused under "
            f"findings.source '{summary.source}': they keep no findings ({examples(unused_table_rows)}; "
            f"findings.source 'auto' would use the rows)"
        )
    return lines


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
        raw: the raw-cohort folder (``sessions.csv``; ``findings.csv`` and/or ``reports/``,
            as ``settings.source`` needs them).
        out: folder for ``findings.parquet``, ``level_vectors.parquet`` and ``region_vectors.parquet``.
        reports_out: folder for ``summary.json`` and ``unmapped.csv``.
        settings: the ``findings`` section of params.yaml (defaults when None).
        progress: show a progress bar while reading reports.

    Returns:
        The counts also written to ``summary.json``.

    Raises:
        UserError: for a missing folder or table, a missing column, a finding
            outside the vocabulary, no report at all under ``source: reports``
            or no findings.csv under ``source: table``; nothing is written then.
    """
    from spineage.findings.agreement import reader_agreement
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
    elif settings.source == "table":
        raise UserError(
            f"Expected findings.csv in the raw cohort {raw} for findings.source 'table', found no such file "
            f"(findings.source 'reports' reads reports/<series_id>.txt instead)"
        )
    else:
        table = pd.DataFrame({c: pd.Series(dtype=bool if c == "negated" else object) for c in FINDINGS_TABLE_COLUMNS})
        table_rows_for_other_series = 0
    in_table = set(table["series_id"])

    # Which series each source serves: the table's rows are the findings only under table/auto;
    # under reports they are the truth the reader is measured against.
    from_table = in_table if settings.source in ("table", "auto") else set()
    wanted_reports = [] if settings.source == "table" else [s for s in series_ids if s not in from_table]
    report_files = {s: raw / "reports" / f"{s}.txt" for s in wanted_reports if (raw / "reports" / f"{s}.txt").is_file()}
    without_report = [s for s in wanted_reports if s not in report_files]
    if settings.source == "reports" and not report_files:
        raise UserError(
            f"Expected reports/<series_id>.txt for the MRI series of {raw} with findings.source 'reports', "
            f"found none of {len(series_ids)} (findings.source 'table' or 'auto' uses findings.csv)"
        )
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
    agreement = None
    if settings.source == "reports" and findings_path.is_file():
        # Over the series whose reports were read: a series without a report is counted, not scored as misses.
        agreement = reader_agreement(table[table["series_id"].isin(list(report_files))], from_reports)
    used_table = table[table["series_id"].isin(from_table)]
    findings = pd.concat([used_table, from_reports], ignore_index=True)
    order = {series_id: i for i, series_id in enumerate(series_ids)}
    findings = findings.sort_values("series_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    findings = findings.astype({"series_id": str, "level": str, "condition": str, "severity": str, "source": str})
    findings["negated"] = findings["negated"].astype(bool)

    usable, degenerative_without_level = _vector_input(findings)
    levels = level_vectors(usable, series_ids)
    regions = region_vectors(usable, series_ids)

    unused_table_rows = [s for s in without_report if s in in_table]
    summary = FindingsSummary(
        source=settings.source,
        mri_series=len(series_ids),
        series_from_table=len(from_table),
        series_from_reports=len(report_files),
        series_without_findings=len(series_ids) - len(from_table) - len(report_files),
        series_without_report=len(without_report),
        series_without_report_with_table_rows=len(unused_table_rows),
        findings=len(findings),
        findings_from_table=len(used_table),
        findings_from_reports=len(from_reports),
        negated=int(findings["negated"].sum()),
        uncertain_from_reports=int(uncertain.sum()),
        uncertain_dropped=0 if settings.count_uncertain else int(uncertain.sum()),
        unmapped_report_rows=len(unmapped),
        reports_with_unmapped_text=int(unmapped["series_id"].nunique()),
        reports_without_findings=int(nothing_found.sum()),
        degenerative_without_level=degenerative_without_level,
        table_rows_for_other_series=table_rows_for_other_series,
        reader_agreement=agreement,
        unmapped_per_report=unmapped_per_report(unmapped, list(report_files)),
        most_common_unmapped=most_common_unmapped(unmapped),
    )
    write_atomic(out / "findings.parquet", lambda p: findings[list(FINDINGS_TABLE_COLUMNS)].to_parquet(p, index=False))
    write_atomic(out / "level_vectors.parquet", lambda p: levels.to_parquet(p))
    write_atomic(out / "region_vectors.parquet", lambda p: regions.to_parquet(p))
    unmapped_table = unmapped[["series_id", "level", "source_text"]]
    write_atomic(reports_out / "unmapped.csv", lambda p: unmapped_table.to_csv(p, index=False))
    write_json_atomic(reports_out / "summary.json", asdict(summary))
    for line in missing_report_warnings(summary, without_report, unused_table_rows):
        print(f"warning: {line}", file=sys.stderr)
    return summary

