"""Time CPU training steps of the radiograph spine-age EfficientNet: samples/s, plain float32 against ours.

Usage:
    .venv/bin/python benchmarks/bench_train_xray.py [--model efficientnet-b0] [--shape 256 128] [--batch-size 16] [--steps 3]

Each step is forward, the mean-variance loss (:class:`AgeLoss`), backward and an Adam update of
:class:`~spineage.models.spine_age_xray.SpineAgeXrayNet` on random images, in the same run:

* **fp32 NCHW**: plain float32, the default memory layout (the baseline);
* **fp32 channels_last (ours)**: what ``spineage radiograph train`` does on a CPU;
* **bf16 autocast + channels_last**: for reference (emulated, so slow, on a CPU without AVX512-BF16 or AMX).

Each way builds the same network from the same seed, takes one warm-up step, then times ``--steps``
steps ``--repeats`` times; the best repeat is reported. The ratio is samples/s over the baseline's.
Read /proc/cpuinfo's flags (printed) before trusting a speed-up on another machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path


def cpu_flags() -> str:
    path = Path("/proc/cpuinfo")
    flags = next((line.split(":", 1)[1].split() for line in path.read_text().splitlines() if line.startswith("flags")), []) if path.is_file() else []
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "unknown"


def time_way(model: str, shape: tuple[int, int], batch: int, steps: int, repeats: int, channels_last: bool, bf16: bool) -> float:
    import torch

    from spineage.models.losses import AgeLoss, age_bin_centres
    from spineage.models.spine_age_xray import SpineAgeXrayNet

    torch.manual_seed(0)
    bins = age_bin_centres(20, 100, 1)
    net = SpineAgeXrayNet(shape, model, bins.tolist())
    images = torch.rand(batch, 1, *shape)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    ages = torch.rand(batch) * 60 + 30
    loss_function = AgeLoss("mean_variance", age_bins=bins)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        with context():
            loss = loss_function(net(images, raw=True), ages)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - started)
    return steps * batch / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--shape", type=int, nargs=2, default=(256, 128))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    import torch

    print(f"CPU flags: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model} at {tuple(args.shape)}, batch {args.batch_size}")
    ways = [("fp32 NCHW (plain)", False, False), ("fp32 channels_last (ours)", True, False)]
    if not args.skip_bf16:
        ways.append(("bf16 autocast + channels_last", True, True))
    baseline = None
    print(f"{'way':32s} {'samples/s':>10s} {'ratio':>7s}")
    for name, channels_last, bf16 in ways:
        rate = time_way(args.model, tuple(args.shape), args.batch_size, args.steps, args.repeats, channels_last, bf16)
        baseline = baseline or rate
        print(f"{name:32s} {rate:10.1f} {rate / baseline:6.2f}x")


if __name__ == "__main__":
    main()
