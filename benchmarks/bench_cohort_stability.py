"""How stable the normal cohort is: the same verdicts on shuffled rows, other thread counts, other seeds.

A normal cohort that flips with the input's row order or the machine's thread
count would make every later figure unreproducible. This benchmark runs the
cohort definition (:func:`spineage.cohort.normal.normal_cohort`) on one set of
region vectors and prints, for each number of consensus runs, the share of
series whose normal/abnormal verdict is unchanged:

* **shuffled rows**: the series and vector tables in a random order;
* **threads**: a fresh process with 1 thread everywhere (OpenMP, BLAS, numba)
  against one with 2;
* **seeds**: another top-level seed (a stand-in for another machine, whose
  floating-point rounding moves UMAP as much as a new seed does), the mean over
  pairs of ``--seeds`` seeds. 1 run is the paper's single UMAP + HDBSCAN run.

Without ``--raw`` it draws a table-only phantom cohort (no images) and runs
the findings stage on it.

Usage:
    .venv/bin/python benchmarks/bench_cohort_stability.py                       # 600 subjects, runs 1 5 9
    .venv/bin/python benchmarks/bench_cohort_stability.py --runs 1 5 --seeds 2
    .venv/bin/python benchmarks/bench_cohort_stability.py --raw data/raw --vectors data/interim/region_vectors.parquet
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def table_cohort(folder: Path, n_subjects: int, seed: int) -> tuple[Path, Path]:
    """A table-only phantom cohort and its region vectors (the cohort tests' fixture, written here)."""
    sys.path.insert(0, str(ROOT))
    from spineage.findings.stage import FindingsSettings, build_findings
    from tests.cohort.conftest import write_table_cohort

    raw = write_table_cohort(folder / "raw", n_subjects, seed)
    build_findings(raw, folder / "interim", folder / "reports", FindingsSettings(source="table"), progress=False)
    return raw, folder / "interim" / "region_vectors.parquet"


def verdicts(raw: Path, vectors: Path, runs: int, seed: int, shuffle: int | None = None) -> pd.Series:
    """normal per series_id (sorted by id) for ``runs`` consensus runs; rows shuffled with seed ``shuffle``."""
    from spineage.cohort.normal import normal_cohort
    from spineage.cohort.settings import load_cohort_settings
    from spineage.cohort.stage import read_region_vectors, read_series_table

    _, settings = load_cohort_settings(ROOT / "params.yaml")
    settings = replace(settings, consensus_runs=runs)
    series = read_series_table(raw)
    region = read_region_vectors(vectors, series["series_id"].tolist())
    if shuffle is not None:
        rng = np.random.default_rng(shuffle)
        series = series.iloc[rng.permutation(len(series))].reset_index(drop=True)
        region = region.iloc[rng.permutation(len(region))]
    out, _ = normal_cohort(series, region, settings, seed)
    return out.set_index("series_id")["normal"].sort_index()


def verdicts_in_process(raw: Path, vectors: Path, runs: int, seed: int, threads: int) -> pd.Series:
    """:func:`verdicts` in a fresh Python process limited to ``threads`` threads."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from benchmarks.bench_cohort_stability import verdicts; "
        "from pathlib import Path; v = verdicts(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])); "
        "print(json.dumps({k: bool(x) for k, x in v.items()}))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), str(raw), str(vectors), str(runs), str(seed)],
                          env=env, capture_output=True, text=True, check=True)
    return pd.Series(json.loads(done.stdout.strip().splitlines()[-1])).sort_index()


def unchanged(a: pd.Series, b: pd.Series) -> float:
    """The share of series with the same verdict in both."""
    return float((a == b.reindex(a.index)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a raw-cohort folder (sessions.csv, participants.csv)")
    parser.add_argument("--vectors", type=Path, help="its region_vectors.parquet (with --raw)")
    parser.add_argument("--n-subjects", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20251121)
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 5, 9], help="consensus runs to compare")
    parser.add_argument("--seeds", type=int, default=3, help="top-level seeds for the seed comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.raw:
            raw, vectors = args.raw, args.vectors or Path("data/interim/region_vectors.parquet")
        else:
            raw, vectors = table_cohort(Path(tmp), args.n_subjects, args.seed)
        n = len(pd.read_parquet(vectors))
        print(f"{n} MRI series; verdicts unchanged (share of series):")
        print(f"{'runs':>5} {'shuffled rows':>14} {'1 vs 2 threads':>15} {'other seed':>11} {'abnormal':>9} {'s/cohort':>9}")
        for runs in args.runs:
            start = time.perf_counter()
            base = verdicts(raw, vectors, runs, args.seed)
            seconds = time.perf_counter() - start
            shuffled = unchanged(base, verdicts(raw, vectors, runs, args.seed, shuffle=1))
            threads = unchanged(verdicts_in_process(raw, vectors, runs, args.seed, 1),
                                verdicts_in_process(raw, vectors, runs, args.seed, 2))
            by_seed = [base] + [verdicts(raw, vectors, runs, args.seed + k) for k in range(1, args.seeds)]
            seeds = np.mean([unchanged(a, b) for a, b in itertools.combinations(by_seed, 2)]) if len(by_seed) > 1 else float("nan")
            print(f"{runs:>5} {100 * shuffled:>13.1f}% {100 * threads:>14.1f}% {100 * seeds:>10.1f}% "
                  f"{100 * (1 - base.mean()):>8.1f}% {seconds:>9.1f}")


if __name__ == "__main__":
    main()
