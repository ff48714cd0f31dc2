"""How well and how fast the report reader recovers the findings table from free-text reports.

The phantom writes every MRI series' findings both as rows of ``findings.csv``
and as a free-text report; this benchmark reads the reports back and compares
the reader's affirmed findings (mapped, not negated) with the table:

* strict: a finding matches on (series_id, level, condition, severity);
* lenient: on (series_id, level, condition) only, i.e. severity ignored.

It prints precision, recall and F1 per condition and overall (computed by
:mod:`spineage.findings.agreement`, the comparison the findings stage writes to
``reports/findings/summary.json`` under ``findings.source: reports``), and
reports read per second. Without ``--raw`` it draws a table-only phantom cohort and writes
its reports in memory (no images), exactly as ``spineage synth`` would.

Usage:
    .venv/bin/python benchmarks/bench_report_reader.py                  # 1000 subjects
    .venv/bin/python benchmarks/bench_report_reader.py --n-subjects 5000 --seed 7
    .venv/bin/python benchmarks/bench_report_reader.py --raw data/raw   # a generated cohort
    .venv/bin/python benchmarks/bench_report_reader.py --errors 20      # show 20 mismatches
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from spineage.findings.agreement import (
    MATCH_KEYS,
    affirmed,
    compare_findings,
    mismatches,
)

KEY_STRICT = list(MATCH_KEYS["strict"])


def synthetic_reports(n_subjects: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reports: series_id, report; truth: the findings rows) of a table-only phantom cohort."""
    from spineage.config import parse_params
    from spineage.synth.anatomy import default_levels
    from spineage.synth.generate import _REPORT, _rng, draw_cohort_tables
    from spineage.synth.reports import write_report

    tables = draw_cohort_tables(n_subjects, parse_params({}).synth, seed)
    supernumerary = tables.subjects["supernumerary"].to_numpy()
    reports, truth = [], []
    for series_index, session in enumerate(tables.sessions.itertuples(index=False)):
        if session.modality != "mri_t2_sag":
            continue
        findings = tables.findings[series_index]
        levels = default_levels(supernumerary[session.subject_index] or None)
        text = write_report(findings, levels, _rng(seed, _REPORT, series_index))
        reports.append((session.series_id, text))
        truth += [dict(series_id=session.series_id, **f) for f in findings]
    return (
        pd.DataFrame(reports, columns=["series_id", "report"]),
        pd.DataFrame(truth, columns=KEY_STRICT),
    )


def cohort_reports(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reports, truth) of a raw-cohort folder with findings.csv and reports/."""
    from spineage.findings.stage import read_findings_table

    truth = read_findings_table(raw / "findings.csv")
    files = sorted((raw / "reports").glob("*.txt"))
    if not files:
        sys.exit(f"error: expected reports in {raw / 'reports'}, found none")
    reports = pd.DataFrame({"series_id": [f.stem for f in files], "report": [f.read_text() for f in files]})
    truth = truth[truth["series_id"].isin(set(reports["series_id"]))]
    return reports, affirmed(truth)[KEY_STRICT]


def show_errors(truth: pd.DataFrame, predicted: pd.DataFrame, reports: pd.DataFrame, n: int) -> None:
    """Print up to ``n`` series with a strict mismatch, with their report and the differences."""
    wrong = mismatches(truth, predicted, "strict")
    text = dict(zip(reports["series_id"], reports["report"]))
    for series_id in wrong["series_id"].drop_duplicates().head(n):
        print(f"\n=== {series_id}")
        print(text.get(series_id, "").rstrip())
        for row in wrong[wrong["series_id"] == series_id].itertuples(index=False):
            print(f"  {row.side:<6} {row.level or '-':>4} {row.condition} {row.severity}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a raw-cohort folder with findings.csv and reports/")
    parser.add_argument("--n-subjects", type=int, default=1000, help="subjects of the drawn cohort (no --raw)")
    parser.add_argument("--seed", type=int, default=20251121)
    parser.add_argument("--errors", type=int, default=0, help="print this many series with mismatches")
    args = parser.parse_args(argv)

    from spineage.findings.report_reader import read_reports

    started = time.perf_counter()
    reports, truth = cohort_reports(args.raw) if args.raw else synthetic_reports(args.n_subjects, args.seed)
    prepared = time.perf_counter() - started

    started = time.perf_counter()
    read = read_reports(reports, "series_id", "report")
    seconds = time.perf_counter() - started
    predicted = affirmed(read)

    pd.set_option("display.width", 120)
    source = args.raw or f"a drawn phantom of {args.n_subjects} subjects (seed {args.seed})"
    print(f"reports: {len(reports)} from {source} (prepared in {prepared:.1f} s)")
    print(f"truth findings: {len(truth)}; reader rows: {len(read)} "
          f"({len(predicted)} affirmed, {int(read['negated'].sum())} negated, "
          f"{int(read['uncertain'].sum())} uncertain, {int((~read['mapped']).sum())} unmapped)")
    print(f"speed: {len(reports) / seconds:,.0f} reports/s ({1e3 * seconds / max(len(reports), 1):.2f} ms/report)")
    for title, rule in (("strict: level, condition and severity", "strict"),
                        ("lenient: level and condition", "lenient")):
        table = compare_findings(truth, predicted, rule).table()
        print(f"\n{title}")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.errors:
        show_errors(truth, predicted, reports, args.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
