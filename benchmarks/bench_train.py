"""Time CPU training steps of the MRI paper's spine-age network: samples/s and GFLOP/s by number format and memory layout.

Usage:
    .venv/bin/python benchmarks/bench_train.py [--shape 16 48 192] [--batch-size 8] [--steps 4] [--repeats 2]

The input shape is ``preprocess.shape`` of ``params.yaml`` (16 x 48 x 192 by
default); ``--shape`` overrides it. The network is :class:`SpineAgeNet` with
the paper's channels (32, 64, 128, 256, 256) and a regression head; each step
is forward, MSE loss (:class:`AgeLoss`), backward and an Adam update on
random volumes and ages. Five ways, in the same run, side by side:

* **fp32 NCDHW**: plain float32, the default memory layout (the baseline);
* **fp32 channels_last_3d**: the network and its input in channels-last
  (NDHWC) layout, which oneDNN's convolutions prefer;
* **bf16 autocast NCDHW**: ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* **bf16 autocast + channels_last_3d**;
* **ours**: what ``spineage.training.precision`` picks for this machine
  (``choose_cpu_precision()`` and ``use_channels_last()``); skipped with a
  note when that module is not importable.

Each way builds the same network from the same seed, takes ``--warmup`` steps
(oneDNN picks and caches its kernels then), and times ``--steps`` steps
``--repeats`` times; the best is reported (the least disturbed by other work on
the machine). GFLOP/s counts 3 x :func:`forward_gflop` per sample (the
backward pass costs about twice the forward) over the whole step, optimiser
and all. The ratio column is each way's samples/s over the fp32 NCDHW row's.

What to expect on a CPU without native bf16 (the development machine has
AVX-512 but neither AVX512-BF16 nor AMX): oneDNN emulates bf16 there, so
bf16 autocast is slower than float32, layer by layer, not faster.
channels_last_3d helps most in the first convolution (1 -> 32 channels over
the full-size volume). Single float32 convolutions reach about 150 GFLOP/s;
the whole step much less, because batch norm, ReLU and max-pooling are
memory-bound passes over large activations that add no counted FLOP. On a CPU
with AVX512-BF16 or AMX the bf16 rows are the ones to watch.

Peak RSS (``resource.getrusage``) is of the whole process, so after all five
ways; the per-row column is the peak so far when that row finished.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = (16, 48, 192)


def params_shape(params: Path) -> tuple[int, int, int]:
    """``preprocess.shape`` of the params file, or the paper's 16 x 48 x 192 when it has none."""
    if not params.is_file():
        return DEFAULT_SHAPE
    import yaml

    shape = ((yaml.safe_load(params.read_text()) or {}).get("preprocess") or {}).get("shape")
    if shape is None:
        return DEFAULT_SHAPE
    if len(shape) != 3:
        raise SystemExit(f"Expected preprocess.shape of three sides in {params}, found {shape}")
    return tuple(int(s) for s in shape)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def our_choice() -> tuple[str, bool] | str:
    """(precision, channels_last) that ``spineage.training.precision`` picks here, or why there is none."""
    try:
        from spineage.training.precision import choose_cpu_precision, use_channels_last
    except ImportError as error:
        return f"spineage.training.precision is not importable ({error})"
    return choose_cpu_precision(), bool(use_channels_last())


def step_runner(shape: tuple[int, int, int], batch_size: int, bfloat16: bool, channels_last: bool,
                seed: int) -> Callable[[int], None]:
    """A function that runs n training steps of a fresh paper network in the given format and layout."""
    import torch

    from spineage.models.losses import AgeLoss
    from spineage.models.spine_age import SpineAgeNet

    torch.manual_seed(seed)
    net = SpineAgeNet(input_shape=shape)
    images = torch.randn(batch_size, 1, *shape)
    ages = 20 + 60 * torch.rand(batch_size)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
        images = images.contiguous(memory_format=torch.channels_last_3d)
    net.train()
    loss_fn = AgeLoss.for_model("mse", net)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)

    def cast() -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()

    def run(steps: int) -> None:
        for _ in range(steps):
            optimiser.zero_grad(set_to_none=True)
            with cast():
                raw = net(images, raw=True)
            loss = loss_fn(raw, ages)  # float32 maths whatever the head's dtype
            loss.backward()
            optimiser.step()
        if not torch.isfinite(loss):
            raise RuntimeError(f"Expected a finite loss, found {loss.item()}")

    return run


def best_seconds(run: Callable[[int], None], warmup: int, steps: int, repeats: int) -> float:
    """Best wall time of ``steps`` steps over ``repeats`` runs, after ``warmup`` untimed steps."""
    run(warmup)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="where preprocess.shape is read")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="input voxels (default: preprocess.shape of --params)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each way; the best is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if min(args.batch_size, args.steps, args.repeats) < 1 or args.warmup < 0:
        raise SystemExit("Expected --batch-size, --steps and --repeats of at least 1 and --warmup of at least 0")

    import torch

    from spineage.models.spine_age import SpineAgeNet, forward_gflop

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(args.shape) if args.shape else params_shape(args.params)
    step_gflop = 3 * forward_gflop(SpineAgeNet(input_shape=shape)) * args.batch_size

    ways: list[tuple[str, bool, bool]] = [
        ("fp32 NCDHW", False, False),
        ("fp32 channels_last_3d", False, True),
        ("bf16 autocast NCDHW", True, False),
        ("bf16 autocast + channels_last_3d", True, True),
    ]
    choice = our_choice()
    note = None
    if isinstance(choice, str):
        note = f"ours: skipped, {choice}"
    else:
        precision, channels_last = choice
        layout = "channels_last_3d" if channels_last else "NCDHW"
        ways.append((f"ours ({precision}, {layout})", precision == "bfloat16", channels_last))

    rows: list[dict[str, Any]] = []
    for name, bfloat16, channels_last in ways:
        run = step_runner(shape, args.batch_size, bfloat16, channels_last, seed=0)
        seconds = best_seconds(run, args.warmup, args.steps, args.repeats)
        samples = args.steps * args.batch_size / seconds
        rows.append({
            "way": name,
            "samples_per_s": samples,
            "gflop_per_s": samples * step_gflop / args.batch_size,
            "s_per_step": seconds / args.steps,
            "peak_rss_mib_so_far": peak_rss_mib(),
        })
        del run
    baseline = rows[0]["samples_per_s"]
    for row in rows:
        row["ratio_vs_fp32_ncdhw"] = row["samples_per_s"] / baseline

    print(f"SpineAgeNet (paper channels), input {' x '.join(map(str, shape))}, batch {args.batch_size}, "
          f"{forward_gflop(SpineAgeNet(input_shape=shape)):.2f} GFLOP forward per sample; "
          f"best of {args.repeats} x {args.steps} steps after {args.warmup} warm-up")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"native bf16 (AVX512-BF16): {torch.cpu._is_avx512_bf16_supported()}, "
          f"AMX: {torch.cpu._is_amx_tile_supported()}")
    width = max(len(row["way"]) for row in rows)
    print(f"  {'way':<{width}}  {'samples/s':>9}  {'s/step':>7}  {'GFLOP/s':>7}  {'vs fp32':>7}  {'peak RSS MiB':>12}")
    for row in rows:
        print(f"  {row['way']:<{width}}  {row['samples_per_s']:9.2f}  {row['s_per_step']:7.2f}  "
              f"{row['gflop_per_s']:7.1f}  {row['ratio_vs_fp32_ncdhw']:6.2f}x  {row['peak_rss_mib_so_far']:12.0f}")
    if note:
        print(f"  {note}")
    print(f"peak RSS of the process: {peak_rss_mib():.0f} MiB")

    if args.json:
        figures = {
            "shape": list(shape),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "repeats": args.repeats,
            "forward_gflop_per_sample": forward_gflop(SpineAgeNet(input_shape=shape)),
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
            "amx": bool(torch.cpu._is_amx_tile_supported()),
            "peak_rss_mib": peak_rss_mib(),
            "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
            "note": note,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
