"""Does the phantom mean something: its prevalences beside the MRI paper's, and the normal cohort against its answer key.

For each seed it draws a table-only phantom cohort of the default size (no
images; with the free-text reports unless ``--source table``), runs the
findings stage and the cohort stage as the pipeline does, and prints:

* the **prevalence per MRI series** of each structural pathology and other
  finding, from the phantom's own findings, beside the MRI paper's Table 5
  (``*`` marks a value outside a factor of 2 of the paper's);
* the **normal cohort against the answer key** (``series_atypical`` of
  ground_truth.json, the cohort stage's ``truth`` block): the share called
  abnormal of the series with a structural pathology, of the atypical and of
  the typical series, and of every age bracket, beside the targets;
* with ``--by-reason``, the share called abnormal of each reason a series is
  atypical (a pathology, or a focal lesion complex).

Usage:
    .venv/bin/python benchmarks/bench_phantom_cohort.py                        # 600 subjects, seeds 20251121 1 2
    .venv/bin/python benchmarks/bench_phantom_cohort.py --seeds 3 4 --source table --by-reason
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

TABLE5_PERCENT: dict[str, float | None] = {
    "bone_lesion": None,
    "congenital_canal_narrowing": 2.3,
    "cord_abnormality": 2.3,
    "fracture": 2.7,
    "soft_tissue_edema": None,
    "spinal_stenosis": 1.5,
    "spondylolisthesis": 8.5,
    "scoliosis": 17.0,
    "kyphosis_or_lordosis": 36.0,
    "transitional_vertebra": 6.4,
    "tarlov_cyst": 7.0,
}
"""Share of MRI series with each finding in the MRI paper's Table 5 (None: not given there)."""

TARGETS: dict[str, str] = {
    "structural pathology": ">= 85",
    "atypical": ">= 80",
    "typical": "<= 20",
    "bracket": "25-60",
}


def run_seed(n_subjects: int, seed: int, source: str) -> tuple[pd.Series, dict, dict]:
    """(prevalence per finding in %, the cohort stage's truth block, its abnormal share per bracket) for one seed."""
    sys.path.insert(0, str(ROOT))
    from spineage.cohort.settings import load_cohort_settings
    from spineage.cohort.stage import build_cohort
    from spineage.findings.stage import FindingsSettings, build_findings
    from tests.cohort.conftest import write_table_cohort

    _, settings = load_cohort_settings(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = write_table_cohort(tmp / "raw", n_subjects, seed, reports=source == "reports")
        build_findings(raw, tmp / "interim", tmp / "reports" / "findings", FindingsSettings(source=source), progress=False)
        summary = build_cohort(raw, tmp / "interim" / "region_vectors.parquet", tmp / "interim" / "cohort.csv",
                               tmp / "reports" / "cohort", settings, seed, progress=False)
        findings = pd.read_csv(raw / "findings.csv", dtype=str, keep_default_na=False)
        series = pd.read_csv(raw / "sessions.csv", dtype=str)["series_id"]
    with_finding = findings.drop_duplicates(["series_id", "condition"])["condition"].value_counts()
    prevalence = 100 * with_finding.reindex(list(TABLE5_PERCENT), fill_value=0) / len(series)
    written = json.loads(json.dumps(summary.truth))
    return prevalence, written, {str(b): 100 * s for b, s in summary.abnormal_share_by_bracket.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=600, help="subjects per cohort (the default profile: 600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[20251121, 1, 2])
    parser.add_argument("--source", choices=("reports", "table"), default="reports",
                        help="where the findings stage takes the findings from (reports: the pipeline's default)")
    parser.add_argument("--by-reason", action="store_true", help="also the abnormal share of each atypical reason")
    args = parser.parse_args(argv)

    prevalences, shares, reasons = {}, {}, {}
    started = time.perf_counter()
    for seed in args.seeds:
        prevalence, truth, brackets = run_seed(args.n_subjects, seed, args.source)
        overall = truth["overall"]
        prevalences[seed] = prevalence
        shares[seed] = {
            "structural pathology": 100 * overall["structural_pathology"]["abnormal_share"],
            "atypical": 100 * overall["atypical"]["abnormal_share"],
            "typical": 100 * overall["typical"]["abnormal_share"],
            **{f"bracket {b}": s for b, s in brackets.items()},
            "atypical share of series": 100 * overall["atypical"]["series"] / (overall["atypical"]["series"] + overall["typical"]["series"]),
        }
        reasons[seed] = {r: 100 * v["abnormal_share"] for r, v in truth["by_reason"].items()}
    seconds = time.perf_counter() - started

    print(f"phantom cohorts of {args.n_subjects} subjects, seeds {' '.join(map(str, args.seeds))}, "
          f"findings from {args.source} ({seconds:.0f} s)")
    table = pd.DataFrame(prevalences)
    table.columns = [f"seed {s}" for s in args.seeds]
    table.insert(0, "Table 5", pd.Series(TABLE5_PERCENT, dtype=float))
    table["mean"] = table.iloc[:, 1:].mean(axis=1)
    paper = table["Table 5"]
    table[""] = ["*" if pd.notna(p) and not p / 2 <= m <= 2 * p else "" for p, m in zip(paper, table["mean"])]
    print("\nprevalence per MRI series (%; * outside a factor of 2 of Table 5)")
    print(table.to_string(float_format=lambda v: f"{v:.1f}", na_rep="-"))

    confusion = pd.DataFrame(shares)
    confusion.columns = [f"seed {s}" for s in args.seeds]
    confusion["mean"] = confusion.mean(axis=1)
    confusion["target"] = [TARGETS.get(k, TARGETS["bracket"] if k.startswith("bracket") else "") for k in confusion.index]
    print("\nnormal cohort against the answer key (% called abnormal)")
    print(confusion.to_string(float_format=lambda v: f"{v:.1f}"))
    if args.by_reason:
        by_reason = pd.DataFrame(reasons)
        by_reason.columns = [f"seed {s}" for s in args.seeds]
        by_reason["mean"] = by_reason.mean(axis=1)
        print("\nabnormal share by atypical reason (%)")
        print(by_reason.to_string(float_format=lambda v: f"{v:.0f}", na_rep="-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
