"""Time ``spineage predict`` on CPU: each step of one MRI scan, a batch's scans/s, against loading the model per scan.

Usage:
    .venv/bin/python benchmarks/bench_predict.py [--model models:/spine-age-mri/7] [--n 16] [--repeats 5] [--cli-n 3]

The model is the repository's registered ``spine-age-mri`` (``@production``, else
``@candidate``, in ``mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise); the
scans are the default phantom's ``data/raw/images/mri-*.nii.gz`` (``--raw`` for
another cohort folder), at their own size, with the network's default input.

What is timed, all in one run:

* **loading** (once per process, reported apart): the imports, the registered
  version (network, stored correction, training reference: :func:`load_bundle`),
  the segmenter, and the first scan (oneDNN picks its kernels then);
* **one scan, warm**: :func:`~spineage.inference.predict.predict_scan` itself,
  ``--repeats`` times on the first scan, with every step it takes timed by
  wrapping the functions it calls (nothing of the pipeline is re-written here):
  finding the kind, load, segment (of which the working grid, the segmenter's
  network, the spine's connected pieces, the probabilities back on the scan's grid and
  the confidence), preprocess, fit to the network's input, the
  spine-age network, the quality checks (inspection, regions, the training
  reference), the correction; "other" is the rest of ``predict_scan``. The
  median of the repeats is reported, with the best;
* **batch throughput**: :func:`~spineage.inference.predict.predict_scans` over
  ``--n`` scans with the models loaded once (ours: one ``spineage predict`` of a
  folder or CSV), writing the JSON files and ``predictions.csv``;
* **the plain way**, the same scans loading the registered version and its
  segmenter anew for every scan (what a loop calling the predict function of a
  fresh load would pay), and ``--cli-n`` scans each through its own
  ``spineage predict`` process (interpreter start, imports and loading included:
  what calling the command once per scan costs). The ratios are their seconds
  per scan over ours.

Figures are printed (``--json`` also writes them); nothing is asserted. The
issue's target: under 1 s per scan at the default size, interpreter start not
counted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "spine-age-mri"

STEPS: tuple[tuple[str, str, str], ...] = (
    # (label, module, function): the functions predict_scan calls for a 3D scan, looked up at call time.
    ("find the kind", "spineage.inference.predict", "scan_kind"),
    ("load", "spineage.imaging.io", "load_volume"),
    ("segment", "spineage.imaging.segmentation", "segment_volume_with_confidence"),
    ("  working grid", "spineage.imaging.segmentation", "image_to_working_grid"),
    ("  segmenter network", "spineage.imaging.segmentation", "predict_probabilities"),
    ("  spine components (x2)", "spineage.imaging.segmentation", "keep_spine_components"),
    ("preprocess", "spineage.inference.predict", "_preprocess"),
    ("fit to the network input", "spineage.training.data", "fit_to_network"),
    ("quality: inspect", "spineage.imaging.inspect", "inspect_volume"),
    ("quality: regions", "spineage.imaging.inspect", "estimate_regions"),
    ("quality: training reference", "spineage.inference.predict", "reference_flags"),
    ("correct", "spineage.evaluation.bias", "apply_bias_correction"),
)
NETWORK = "spine-age network"
SEGMENT_REST = "  back to the scan grid, confidence"
OTHER = "other (rest of predict_scan)"
NESTED = "  "
"""Steps whose label starts so are part of the step above them (not added to the total of the steps)."""


def cpu_description() -> str:
    """The CPU model and the instruction sets that matter to torch's CPU kernels."""
    model, flags = "unknown CPU", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'none of ' + ' '.join(wanted)}"


@contextlib.contextmanager
def step_timers(network: Any) -> Iterator[dict[str, list[float]]]:
    """Wrap :data:`STEPS` and the spine-age network's forward so that each call adds its seconds to the dict."""
    times: dict[str, list[float]] = defaultdict(list)
    patched = []

    def timed(label: str, function: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[label].append(time.perf_counter() - start)

        return wrapper

    for label, module_name, name in STEPS:
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        setattr(module, name, timed(label, original))
        patched.append((module, name, original))
    started: list[float] = []
    hooks = [
        network.register_forward_pre_hook(lambda *_: started.append(time.perf_counter())),
        network.register_forward_hook(lambda *_: times[NETWORK].append(time.perf_counter() - started.pop())),
    ]
    try:
        yield times
    finally:
        for hook in hooks:
            hook.remove()
        for module, name, original in patched:
            setattr(module, name, original)


def model_uri(given: str | None) -> str:
    """``--model``, else the repository's production version of spine-age-mri, else its candidate (pinned)."""
    from spineage.registry.tracking import configure_mlflow, resolve_model_uri

    configure_mlflow()
    return given or resolve_model_uri(MODEL)


def seconds_per_scan_cli(uri: str, scans: list[Path], out: Path) -> float:
    """Mean wall seconds of one ``spineage predict`` process per scan."""
    command = [str(Path(sys.executable).with_name("spineage")), "predict", "--model", uri]
    start = time.perf_counter()
    for index, scan in enumerate(scans):
        done = subprocess.run([*command, str(scan), "--age", "50", "--out", str(out / f"cli-{index}")],
                              check=False, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"spineage predict {scan} failed ({done.returncode}): {done.stderr.strip()}")
    return (time.perf_counter() - start) / len(scans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registered model URI (default: spine-age-mri production, else candidate)")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "raw", help="cohort folder whose images/mri-*.nii.gz are read")
    parser.add_argument("--n", type=int, default=16, help="scans of the batch and of the plain in-process way")
    parser.add_argument("--repeats", type=int, default=5, help="warm runs of the one-scan timing")
    parser.add_argument("--cli-n", type=int, default=3, help="scans through one spineage predict process each (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    loading: dict[str, float] = {}
    start = time.perf_counter()
    import torch

    loading["import torch"] = time.perf_counter() - start
    start = time.perf_counter()
    from spineage.imaging import segmentation
    from spineage.inference import bundle as bundles
    from spineage.inference.predict import Models, ScanRequest, predict_scan, predict_scans
    from spineage.inference.settings import load_predict_settings

    loading["import spineage.inference.predict"] = time.perf_counter() - start
    if args.threads:
        torch.set_num_threads(args.threads)
    scans = sorted((args.raw / "images").glob("mri-*.nii.gz"))[: max(args.n, 1)]
    if not scans:
        raise SystemExit(f"no MRI scans (images/mri-*.nii.gz) in {args.raw}: run `make repro` or pass --raw")
    settings = load_predict_settings(ROOT / "params.yaml")

    start = time.perf_counter()
    uri = model_uri(args.model)  # imports mlflow, opens the store
    loading["mlflow and the store"] = time.perf_counter() - start
    start = time.perf_counter()
    bundle = bundles.load_bundle(uri)
    loading["registered version (network, correction, reference)"] = time.perf_counter() - start
    start = time.perf_counter()
    bundle.segmenter()
    loading["segmenter"] = time.perf_counter() - start
    models = Models(uri=uri)
    request = ScanRequest(scans[0], age=50.0)
    start = time.perf_counter()
    predict_scan(request, models, settings)
    loading["first scan (cold)"] = time.perf_counter() - start

    totals: list[float] = []
    with step_timers(bundle.network) as times:
        for _ in range(args.repeats):
            start = time.perf_counter()
            predict_scan(request, models, settings)
            totals.append(time.perf_counter() - start)
    per_run: dict[str, list[float]] = {}
    for label, values in times.items():
        calls = len(values) // args.repeats  # calls per scan (the spine components: twice)
        per_run[label] = [sum(values[r * calls:(r + 1) * calls]) for r in range(args.repeats)]
    # What the wrapped functions leave uncounted, run by run: the segmenter's probabilities back on the scan's
    # grid and its confidence (inside segment_volume_with_confidence), and the rest of predict_scan.
    nested = [label for label in per_run if label.startswith(NESTED)]
    per_run[SEGMENT_REST] = [per_run["segment"][r] - sum(per_run[label][r] for label in nested) for r in range(args.repeats)]
    top_level = [label for label in per_run if not label.startswith(NESTED)]
    per_run[OTHER] = [totals[r] - sum(per_run[label][r] for label in top_level) for r in range(args.repeats)]
    median = {label: statistics.median(values) for label, values in per_run.items()}
    best = {label: min(values) for label, values in per_run.items()}
    median_total = statistics.median(totals)

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        requests = [ScanRequest(scan, age=50.0) for scan in scans]
        start = time.perf_counter()
        predict_scans(requests, out / "ours", Models(uri=uri), settings, progress=False)
        ours_s = (time.perf_counter() - start) / len(scans)

        start = time.perf_counter()
        for index, scan in enumerate(scans):
            # The registered version and its segmenter loaded anew, as a fresh process loads them.
            bundles._cached_bundle.cache_clear()
            segmentation._load_pinned_model.cache_clear()
            predict_scans([ScanRequest(scan, age=50.0)], out / f"plain-{index}", Models(uri=uri), settings, progress=False)
        plain_s = (time.perf_counter() - start) / len(scans)
        cli_s = seconds_per_scan_cli(uri, scans[: args.cli_n], out) if args.cli_n > 0 else None

    shape = " x ".join(str(n) for n in bundle.network.input_shape)
    print(f"{uri} ({bundle.name} v{bundle.version}), network input {shape}; {len(scans)} scans from {args.raw / 'images'}")
    print(f"CPU: {cpu_description()}; {os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("loading (once per process, not in the figures below):")
    for label, seconds in loading.items():
        print(f"  {label:<52} {seconds:6.2f} s")
    with contextlib.suppress(OSError):
        print(f"load average at the end (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}: other work on the CPUs slows every figure")
    print(f"one scan ({scans[0].name}), warm, {args.repeats} runs: median {median_total:.3f} s, best {min(totals):.3f} s")
    labels = [label for label, _, _ in STEPS]
    ordered = [*labels[:labels.index("preprocess")], SEGMENT_REST, *labels[labels.index("preprocess"):labels.index("quality: inspect")],
               NETWORK, *labels[labels.index("quality: inspect"):], OTHER]
    print(f"  {'step':<36} {'median':>8} {'share':>7} {'best':>8}")
    for label in ordered:
        if label in median:
            print(f"  {label:<36} {median[label]:7.3f}s {100 * median[label] / median_total:6.1f}% {best[label]:7.3f}s")
    if bundle.reference is None:
        print("  (this version holds no training reference: the reference checks are not run)")
    print(f"batch of {len(scans)} scans, models loaded once (ours, predict_scans): {ours_s:.3f} s/scan, {1 / ours_s:.2f} scans/s")
    print(f"the plain way, the registered version and segmenter loaded per scan: {plain_s:.3f} s/scan ({plain_s / ours_s:.2f}x ours)")
    if cli_s is not None:
        print(f"the plain way, one spineage predict process per scan ({args.cli_n} scans): {cli_s:.3f} s/scan ({cli_s / ours_s:.2f}x ours)")
    verdict = "meets" if median_total < 1.0 else "misses"
    print(f"target under 1 s per scan (warm, default size): {verdict} it ({median_total:.3f} s median; the batch {ours_s:.3f} s/scan)")

    if args.json:
        figures = {
            "model": uri, "scans": len(scans), "network_input": list(bundle.network.input_shape),
            "cpu": cpu_description(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loading_s": {k: round(v, 3) for k, v in loading.items()},
            "one_scan_median_s": round(median_total, 3), "one_scan_best_s": round(min(totals), 3),
            "steps_median_s": {k: round(v, 4) for k, v in median.items()},
            "batch_s_per_scan": round(ours_s, 3), "plain_reload_s_per_scan": round(plain_s, 3),
            "plain_cli_s_per_scan": None if cli_s is None else round(cli_s, 3),
            "ratio_plain_reload_vs_ours": round(plain_s / ours_s, 2),
            "ratio_plain_cli_vs_ours": None if cli_s is None else round(cli_s / ours_s, 2),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
