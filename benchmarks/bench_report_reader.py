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

It then scores the reader on its development set of real-style reports
(``tests/findings/data/dev_reports.yaml``) and, beside it, on its held-out set
(``tests/findings/data/holdout_reports.yaml``, written apart from the reader's
development: the honest estimate): precision, recall and F1 of disc findings and
pathologies, denied conditions read as present. Last, it times one
report by size (100 KB, 320 KB, 1 MB by default), as prose and as one clause
(the same text without punctuation), to show that time grows linearly.

Usage:
    .venv/bin/python benchmarks/bench_report_reader.py                  # 1000 subjects
    .venv/bin/python benchmarks/bench_report_reader.py --n-subjects 5000 --seed 7
    .venv/bin/python benchmarks/bench_report_reader.py --raw data/raw   # a generated cohort
    .venv/bin/python benchmarks/bench_report_reader.py --errors 20      # show 20 mismatches
    .venv/bin/python benchmarks/bench_report_reader.py --n-subjects 0 --sizes 100 320 1000   # dev and held-out sets, sizes
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
ROOT = Path(__file__).resolve().parents[1]


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


def dev_set_scores(errors: bool) -> None:
    """Print the reader's scores on its development set and on its held-out set of real-style reports."""
    sys.path.insert(0, str(ROOT))
    from spineage.findings.report_reader import read_report
    from tests.findings.dev_set import DEV_SET, HOLDOUT_SET, load_dev_set, score_reader

    for name, path in (("development set", DEV_SET), ("held-out set", HOLDOUT_SET)):
        reports = load_dev_set(path)
        scores = score_reader(read_report, reports)
        print(f"\n{name}: {scores.reports} reports, {sum(len(r.disc) for r in reports)} disc findings, "
              f"{sum(len(r.pathologies) for r in reports)} pathologies labelled ({path.name})")
        print(f"  disc findings (level, condition): {scores.disc}")
        print(f"  pathologies (report, condition):  {scores.pathologies}")
        print(f"  severity of matched graded disc findings: {scores.severity_right}/{scores.severity_graded}")
        print(f"  denied or hedged conditions read as present: {len(scores.denied_read_as_present)}")
        if errors:
            for line in scores.errors:
                print(f"    {line}")


def time_by_size(sizes_kb: list[int]) -> None:
    """Print the seconds one report takes by its size, as prose and as a single clause."""
    import re

    sys.path.insert(0, str(ROOT))
    from spineage.findings import report_reader
    from tests.findings.dev_set import load_dev_set

    prose = "\n".join(report.text for report in load_dev_set())
    texts = {"prose": prose, "one clause": re.sub(r"[.,;:!?()\n]", " ", prose)}
    print("\nseconds to read one report, by size (caches cleared):")
    print(f"  {'size':>8}  " + "  ".join(f"{name:>10}" for name in texts))
    for size in sizes_kb:
        cells = []
        for base in texts.values():
            text = (base * (size * 1000 // len(base) + 1))[: size * 1000]
            for cached in (report_reader._normalise, report_reader._clause_rows, report_reader._sentence_clauses,
                           report_reader._segment_profile, report_reader._finding_spans,
                           report_reader._disc_levels):
                cached.cache_clear()
            started = time.perf_counter()
            report_reader.read_report(text, "big")
            cells.append(f"{time.perf_counter() - started:>10.2f}")
        print(f"  {size:>5} KB  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a raw-cohort folder with findings.csv and reports/")
    parser.add_argument("--n-subjects", type=int, default=1000, help="subjects of the drawn cohort (no --raw)")
    parser.add_argument("--seed", type=int, default=20251121)
    parser.add_argument("--errors", type=int, default=0, help="print this many series with mismatches")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 320, 1000],
                        help="report sizes in KB to time (none: skip)")
    args = parser.parse_args(argv)
    if args.n_subjects == 0 and not args.raw:
        dev_set_scores(bool(args.errors))
        time_by_size(args.sizes)
        return 0

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
    dev_set_scores(bool(args.errors))
    time_by_size(args.sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
