"""Time phantom generation: series per second and peak memory, one process against several.

Usage:
    .venv/bin/python benchmarks/bench_synth.py [--profile default] [--n-subjects N] [--workers 2]

It generates the profile twice in fresh subprocesses (the plain way, one
process, and ours, ``--workers`` processes), then a quarter of the subjects with
our setting to show that memory stays flat as N grows. Each run's peak
resident memory is summed over the generator and its workers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time, pathlib
from spineage.config import load_params
from spineage.synth.generate import generate_cohort
params = load_params(sys.argv[1])
out = pathlib.Path(sys.argv[2])
start = time.perf_counter()
summary = generate_cohort(out, params.synth, seed=params.seed, profile=sys.argv[3], n_subjects=int(sys.argv[4]), workers=int(sys.argv[5]), progress=False)
import pandas as pd
series = len(pd.read_csv(out / "sessions.csv"))
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
print(json.dumps({"seconds": time.perf_counter() - start, "series": series, "bytes": size}))
"""


def run(params: Path, profile: str, n_subjects: int, workers: int) -> dict:
    """Generate once in a fresh process; return seconds, series, bytes and peak memory (MiB).

    Peak memory is sampled every 50 ms as the summed resident memory of the
    generator and all its workers, the figure that matters on a small machine.
    """
    import psutil

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", CHILD, str(params), str(Path(folder) / "raw"), profile, str(n_subjects), str(workers)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)
        stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"generation failed: {stderr.strip().splitlines()[-1] if stderr.strip() else process.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="default")
    parser.add_argument("--n-subjects", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-plain", action="store_true", help="only time our setting")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from spineage.config import load_params

    n = args.n_subjects or load_params(args.params).synth.profile(args.profile).n_subjects
    rows = []
    if not args.skip_plain:
        rows.append(("plain: 1 process", n, run(args.params, args.profile, n, 1)))
    rows.append((f"ours: {args.workers} processes", n, run(args.params, args.profile, n, args.workers)))
    rows.append((f"ours, N/4: {args.workers} processes", max(1, n // 4), run(args.params, args.profile, max(1, n // 4), args.workers)))
    print(f"profile {args.profile}: {n} subjects")
    print(f"{'run':32s} {'subjects':>8s} {'series':>7s} {'seconds':>8s} {'series/s':>9s} {'peak RSS MiB':>13s} {'MiB on disk':>12s}")
    for name, subjects, r in rows:
        print(f"{name:32s} {subjects:8d} {r['series']:7d} {r['seconds']:8.1f} {r['series'] / r['seconds']:9.2f} {r['peak_rss_mib']:13.0f} {r['bytes'] / 2**20:12.0f}")
    if not args.skip_plain:
        speedup = rows[0][2]["seconds"] / rows[1][2]["seconds"]
        print(f"speed-up of ours over plain: {speedup:.2f}x")


if __name__ == "__main__":
    main()
