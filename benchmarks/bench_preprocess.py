"""Time preprocessing: series per second, ours against a plain MONAI ``Compose`` doing the same steps.

Usage:
    .venv/bin/python benchmarks/bench_preprocess.py [--raw data/raw] [--n 40] [--workers 2] [--repeats 3]

Without ``--raw`` it generates the ci phantom cohort once into
``benchmarks/out/ci-raw`` (about 10 s) and uses its MRI series.

Three ways over the same files, in the same run, each after one warm-up series:

* **plain MONAI**, one process: ``LoadImaged`` -> ``EnsureChannelFirstd`` ->
  ``Orientationd(RAS)`` -> ``Spacingd`` (bilinear image, nearest label) -> the
  spine mask of the resampled label (our ``SpineMask``: region + 5 mm in a
  ``Lambdad``, since MONAI has no dilation in mm) -> ``MaskIntensityd`` ->
  ``NormalizeIntensityd(nonzero=True)`` (MONAI's normalisation within the
  mask) -> ``CropForegroundd`` on the mask + ``ResizeWithPadOrCropd``
  (a crop centred on the mask's bounding box) -> float16. Torch uses
  ``--torch-threads`` threads (1 by default: ours is single-threaded too);
* **ours**, one process: ``load_volume`` + ``load_label_like`` +
  ``preprocess_volume`` (one separable interpolation straight onto the
  output grid centred on the mask, mask dilated on that small grid);
* **ours, the stage**: ``build_processed`` with ``--workers`` processes,
  including what the stage adds (input hashes, writing the arrays atomically,
  the manifest).

Each way runs ``--repeats`` times; the best time is reported (the least
disturbed by other work on the machine). The two single-process figures are
the like-for-like comparison. Dice of the non-zero voxels of the two outputs
shows they mask the same anatomy (their normalisations differ: percentiles
within the mask against MONAI's mean/std within it).
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ci_raw() -> Path:
    """The ci phantom cohort, generated once."""
    folder = ROOT / "benchmarks" / "out" / "ci-raw"
    if not (folder / "sessions.csv").is_file():
        command = [str(Path(sys.executable).with_name("spineage")), "synth", "--params", str(ROOT / "params.yaml"),
                   "--out", str(folder), "--profile", "ci"]
        subprocess.run(command, check=True, cwd=ROOT)
    return folder


def mri_series(raw: Path, n: int | None) -> list[dict[str, str]]:
    """``{"series_id", "image", "label"}`` of the MRI series with a label map, in sessions.csv order."""
    import pandas as pd

    sessions = pd.read_csv(raw / "sessions.csv", dtype=str, keep_default_na=False)
    mri = sessions[(sessions["modality"] == "mri_t2_sag") & (sessions["label"] != "")]
    files = [{"series_id": r.series_id, "image": str(raw / r.image), "label": str(raw / r.label)} for r in mri.itertuples()]
    return files[:n] if n else files


def monai_pipeline(settings):
    """The plain MONAI way to the same array."""
    import torch
    from monai.transforms import (
        CastToTyped,
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        Lambdad,
        LoadImaged,
        MaskIntensityd,
        NormalizeIntensityd,
        Orientationd,
        ResizeWithPadOrCropd,
        Spacingd,
    )

    from spineage.imaging.masking import SpineMask

    masker = SpineMask(settings.region, settings.dilation_mm, settings.target_spacing_mm)

    def spine_mask(label):
        return torch.as_tensor(masker(np.asarray(label[0]).astype(np.uint8))[None])

    keys = ["image", "label"]
    return Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=None),
        Spacingd(keys=keys, pixdim=settings.target_spacing_mm, mode=("bilinear", "nearest")),
        Lambdad(keys="label", func=spine_mask),
        MaskIntensityd(keys="image", mask_key="label"),
        NormalizeIntensityd(keys="image", nonzero=True),
        CropForegroundd(keys=keys, source_key="label", allow_smaller=True),
        ResizeWithPadOrCropd(keys=keys, spatial_size=settings.shape),
        CastToTyped(keys="image", dtype=np.float16),
    ])


def ours(item, settings) -> np.ndarray:
    from spineage.imaging.io import load_label_like, load_volume
    from spineage.imaging.preprocess import preprocess_volume

    volume = load_volume(item["image"])
    array, _ = preprocess_volume(volume, load_label_like(item["label"], volume), settings)
    return array


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a != 0, b != 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=None, help="raw-cohort folder (default: the ci phantom)")
    parser.add_argument("--n", type=int, default=None, help="series to use (default: all MRI series with labels)")
    parser.add_argument("--workers", type=int, default=2, help="processes of the stage run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way; the best is reported")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of the MONAI run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    import pandas as pd
    import torch

    from spineage.imaging.preprocess import PreprocessSettings
    from spineage.imaging.stage import build_processed

    torch.set_num_threads(args.torch_threads)
    raw = args.raw or ci_raw()
    files = mri_series(raw, args.n)
    if not files:
        raise SystemExit(f"no MRI series with a label map in {raw}")
    # Label-map masks: the benchmark compares the preprocessing itself, not the segmenter.
    settings = PreprocessSettings(workers=args.workers, masks="labels", segmentation_model=None)
    pipeline = monai_pipeline(settings)

    # Warm up both (imports, torch initialisation, caches), and compare what they produce.
    plain_first = pipeline(dict(files[0]))["image"][0].numpy()
    ours_first = ours(files[0], settings)
    agreement = dice(plain_first, ours_first)

    n = len(files)
    plain_s = best_of(args.repeats, lambda: [pipeline(dict(item)) for item in files])
    ours_s = best_of(args.repeats, lambda: [ours(item, settings) for item in files])

    cohort_rows = [{"series_id": f["series_id"], "age": 50, "split": "train"} for f in files]
    with tempfile.TemporaryDirectory() as folder:
        cohort = Path(folder) / "cohort.csv"
        pd.DataFrame(cohort_rows).to_csv(cohort, index=False)

        runs = itertools.count()

        def stage():
            out = Path(folder) / f"run{next(runs)}"  # a fresh output folder each time: nothing to reuse
            build_processed(raw, cohort, out / "processed", out / "reports",
                            PreprocessSettings(workers=args.workers, max_failure_fraction=1.0, masks="labels",
                                               segmentation_model=None), progress=False)

        stage_s = best_of(args.repeats, stage)

    shape = " x ".join(str(v) for v in ours_first.shape)
    figures = {
        "raw": str(raw),
        "series": n,
        "output_shape": list(settings.shape),
        "plain_monai_series_per_s": round(n / plain_s, 2),
        "ours_series_per_s": round(n / ours_s, 2),
        "ours_stage_series_per_s": round(n / stage_s, 2),
        "ratio_ours_vs_plain": round(plain_s / ours_s, 2),
        "ratio_stage_vs_plain": round(plain_s / stage_s, 2),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "torch_threads": args.torch_threads,
        "dice_nonzero_first_series": round(agreement, 3),
    }
    print(f"{n} MRI series from {raw} -> {shape} float16, best of {args.repeats}")
    print(f"  plain MONAI Compose, 1 process : {figures['plain_monai_series_per_s']:8.2f} series/s")
    print(f"  ours, 1 process                : {figures['ours_series_per_s']:8.2f} series/s  ({figures['ratio_ours_vs_plain']:.2f}x)")
    print(f"  ours, the stage, {args.workers} workers     : {figures['ours_stage_series_per_s']:8.2f} series/s  "
          f"({figures['ratio_stage_vs_plain']:.2f}x; hashing and writing included)")
    print(f"  masks agree: Dice {agreement:.3f} on the first series")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
