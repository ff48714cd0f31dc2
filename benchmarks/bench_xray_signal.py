"""How much of the planted spine age gap the phantom's radiographs carry: a linear read-out, and the hazard ratios it allows.

A Cox model per SD of a noisy age difference ``d`` finds about ``HR ** r`` for a
planted ``HR`` per SD of the gap ``g``, where ``r`` is the correlation of ``d``
with ``g`` at a given age (the attenuation of a mismeasured exposure). So the
radiograph branch can put the planted HRs inside its CIs only if its images let
a model read the gap with an ``r`` near 1. This script measures what a plain
model reads: it preprocesses the derivation-age lateral radiographs of a phantom
as the pipeline does (``radiograph_transform``), fits ridge regressions of age
on area-averaged pixels at three resolutions on ``--n-train`` images, and on the
others prints the MAE, the correlation of the age-detrended residual with the
planted gap, and the HR per SD that ``r`` leaves of each planted one.

Usage (the truth cohort, after ``make truth``; about 3 minutes on one core):
    .venv/bin/python benchmarks/bench_xray_signal.py --raw pipelines/truth/data/raw --images 2400 --n-train 1800
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=ROOT / "pipelines/truth/data/raw", help="a phantom's raw folder (ground_truth.json)")
    parser.add_argument("--images", type=int, default=2400, help="derivation-age radiographs read (the first, by series id)")
    parser.add_argument("--n-train", type=int, default=1800, help="of which the ridge is fitted on (a seeded draw)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from sklearn.linear_model import RidgeCV

    from spineage.radiograph.preprocess import radiograph_transform, read_radiograph
    from spineage.radiograph.settings import load_radiograph_settings

    settings = load_radiograph_settings(args.params)
    truth = json.loads((args.raw / "ground_truth.json").read_text())
    sessions = pd.read_csv(args.raw / "sessions.csv", dtype=str)
    sessions = sessions[sessions.modality == "xray_lat"].assign(age=lambda t: t.age.astype(float))
    sessions = sessions[sessions.age >= settings.derivation_min_age].sort_values("series_id").head(args.images)
    if len(sessions) <= args.n_train + 10:
        raise SystemExit(f"need more than {args.n_train + 10} derivation-age radiographs, found {len(sessions)}")
    transform = radiograph_transform("xray_lat", settings)
    images = np.stack([transform(read_radiograph(args.raw / image)) for image in sessions.image])
    age = sessions.age.to_numpy()
    gap = sessions.subject_id.map({k: v["bio_age"] for k, v in truth["subjects"].items()}).to_numpy(float) - age
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[: args.n_train], order[args.n_train :]
    planted = truth.get("outcome_effects") or {}
    hrs = {k: v for k, v in planted.items() if k.startswith("hr_") and k.endswith("_per_sd")}
    print(f"{len(images)} radiographs at {settings.image_shape[0]} x {settings.image_shape[1]}, ridge on {len(train)}, "
          f"scored on {len(test)}; planted gap SD {gap.std():.2f} y")
    print(f"{'pixels':>10} {'MAE (y)':>8} {'r(gap)':>7}  " + "  ".join(f"{k[3:-7]} {v:g}->" for k, v in hrs.items()))
    for pool in (8, 4, 2):
        n, rows, cols = images.shape
        features = images[:, : rows // pool * pool, : cols // pool * pool].reshape(n, rows // pool, pool, cols // pool, pool).mean((2, 4)).reshape(n, -1)
        features = (features - features[train].mean(0)) / (features[train].std(0) + 1e-6)
        model = RidgeCV(alphas=np.logspace(0, 5, 11)).fit(features[train], age[train])
        difference = model.predict(features[test]) - age[test]
        residual = difference - np.polyval(np.polyfit(age[test], difference, 1), age[test])
        r = float(np.corrcoef(residual, gap[test])[0, 1])
        shown = "  ".join(f"{k[3:-7]} {math.exp(r * math.log(v)):.2f}".rjust(len(f"{k[3:-7]} {v:g}->")) for k, v in hrs.items())
        print(f"{features.shape[1]:>10} {np.abs(difference).mean():>8.2f} {r:>7.3f}  {shown}")


if __name__ == "__main__":
    main()
