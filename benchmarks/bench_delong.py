"""Time DeLong's covariance of two correlated AUROCs: ours (Sun and Xu's midranks) against the direct O(m·n) computation.

The direct computation compares every positive with every negative (numpy broadcasting, one
m × n matrix per score), the textbook way; ours ranks each score three times (O(N log N)).
For each size it draws a seeded set with about 30 % positives and two correlated scores rounded
to 0.01 (so there are ties), times both (best of ``--repeats``), prints them side by side with
the ratio, and checks that the AUROCs and the covariance matrices agree to 1e-10 (exit 1 if not).

Usage:
    .venv/bin/python benchmarks/bench_delong.py                       # N = 1,000 and 5,000
    .venv/bin/python benchmarks/bench_delong.py --sizes 1000 5000 20000 --repeats 5 --seed 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from spineage.analysis.delong import delong_covariance

TOLERANCE = 1e-10


def direct_delong(labels: np.ndarray, scores_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and DeLong covariance from the placement values of every positive-negative pair (O(m·n))."""
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    v10, v01 = np.empty((len(scores_matrix), m)), np.empty((len(scores_matrix), n))
    for r, row in enumerate(scores_matrix):
        x, y = row[positive][:, None], row[~positive][None, :]
        psi = (x > y) + 0.5 * (x == y)
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
    aucs = v10.mean(axis=1)
    d10, d01 = v10 - aucs[:, None], v01 - aucs[:, None]
    return aucs, d10 @ d10.T / ((m - 1) * m) + d01 @ d01.T / ((n - 1) * n)


def simulated_set(n_subjects: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """labels (about 30 % positive) and two correlated scores, shape (2, N), rounded so that some tie."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n_subjects) < 0.3).astype(int)
    signal = labels + rng.normal(0.0, 1.0, n_subjects)
    scores = signal + rng.normal(0.0, [[0.5], [1.0]], (2, n_subjects))
    return labels, np.round(scores, 2)


def best_time(function: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` calls, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    """Print the timing table; return 1 when ours and the direct computation disagree beyond 1e-10."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="subjects per set")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method (the best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"{'N':>7} {'m':>6} {'n':>6} {'ours (ms)':>10} {'direct (ms)':>12} {'ratio':>7} {'max |diff|':>11}")
    agree = True
    for size in args.sizes:
        labels, scores = simulated_set(size, args.seed)
        ours_aucs, ours_covariance = delong_covariance(labels, scores)
        direct_aucs, direct_covariance = direct_delong(labels, scores)
        gap = float(max(np.abs(ours_aucs - direct_aucs).max(), np.abs(ours_covariance - direct_covariance).max()))
        agree &= gap <= TOLERANCE
        ours = best_time(lambda labels=labels, scores=scores: delong_covariance(labels, scores), args.repeats)
        direct = best_time(lambda labels=labels, scores=scores: direct_delong(labels, scores), args.repeats)
        m = int(labels.sum())
        print(f"{size:>7} {m:>6} {size - m:>6} {ours * 1e3:>10.2f} {direct * 1e3:>12.2f} {direct / ours:>6.0f}x {gap:>11.1e}")
    print(f"agreement to {TOLERANCE:g}: {'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
