"""How much of the planted spine age gap the anatomy a lateral radiograph shows carries: an anatomy oracle.

``bench_xray_signal.py`` measures what a plain model reads from the phantom's
radiographs (r about 0.2-0.3 with the planted gap). This script asks what a
model could read if it measured the anatomy itself, exactly or with a given
error. It rebuilds the anatomy of every derivation-age radiograph of
a phantom exactly as the phantom rendered it (the same cohort tables, the same
per-subject random stream; one radiograph is re-rendered and compared with its
PNG to prove it), takes the anatomical quantities themselves instead of pixels,
and fits cross-validated regressions of the planted gap on them:

* what an X-ray projection can show (disc and body heights, body depths,
  wedging, slips, osteophytes, bulges, endplate changes, lesions, bone density,
  curves), exactly, and with Gaussian errors of SD 0.1 ... 1 mm added to the
  heights (heights divided by the body size, which the oracle knows exactly
  and a radiograph does not: the figures are generous);
* what it cannot (disc hydration, marrow fat, stenosis, fissures, oedema, cord
  lesions), which only MRI shows.

``r`` is the correlation of the cross-validated prediction with the planted gap,
both with a cubic in chronological age taken out. A Cox model per SD of an age
difference that reads the gap with ``r`` finds about ``HR ** r``, so the radiograph
branch can recover the planted HRs only where ``r`` is near 1.

Usage (the truth cohort, after ``make truth``; about 3 minutes on one core):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_xray_oracle.py --raw pipelines/truth/data/raw
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENT_SD_MM = (0.1, 0.25, 0.5, 1.0)
"""SDs of the Gaussian error added to each height (a radiograph's pixel is about 2 mm at the phantom's detector size)."""


def rebuilt_anatomies(raw: Path, min_age: float) -> tuple[pd.DataFrame, list, dict]:
    """The derivation-age radiographs' rows and the anatomy each was rendered from, plus the phantom's ground truth."""
    from spineage.config import SynthSettings
    from spineage.synth import generate
    from spineage.synth.anatomy import build_anatomy, default_levels

    truth = json.loads((raw / "ground_truth.json").read_text())
    effects = {k: tuple(v) if isinstance(v, list) else v for k, v in truth["outcome_effects"].items()}
    settings = SynthSettings(noise_sd=truth["noise_sd"], repeat_fraction=truth["repeat_fraction"],
                             lifestyle_effects=truth["lifestyle_effects"], outcome_effects=effects)
    tables = generate.draw_cohort_tables(truth["n_subjects"], settings, truth["seed"])
    drawn = tables.subjects.set_index("subject_id").bio_age
    written = pd.Series({k: v["bio_age"] for k, v in truth["subjects"].items()})
    if not np.allclose(drawn.loc[written.index], written, atol=1e-3):
        raise SystemExit(f"the cohort drawn again from {raw / 'ground_truth.json'} differs from the one written: another code version?")
    sessions = tables.sessions
    chosen = sessions[(sessions.modality == "xray_lat") & (sessions.age >= min_age)]
    chosen = chosen.assign(male=(tables.subjects.sex.to_numpy()[chosen.subject_index] == "M").astype(float))
    anatomies = []
    for index, row in chosen.iterrows():  # as generate._render builds them
        subject, outcome = tables.subjects.iloc[row.subject_index], tables.outcomes.iloc[row.subject_index]
        bmi = outcome.weight_kg / (outcome.height_cm / 100) ** 2
        anatomies.append(build_anatomy(
            height_cm=float(outcome.height_cm), bio_age=float(row.bio_age), sex=subject.sex, findings=tables.findings[index],
            levels=default_levels(subject.supernumerary or None), rng=generate._rng(truth["seed"], generate._ANATOMY, row.subject_index),
            bone_density=float(np.clip(1.0 + 0.1 * outcome.bmd_t_lumbar, 0.5, 1.3)),
            fat_mm=float(np.clip(8.0 + 2.2 * (bmi - 20.0), 5.0, 45.0)),
        ))
    # Proof of faithfulness: the first radiograph rendered again from its rebuilt anatomy is its PNG.
    from PIL import Image

    from spineage.synth.scanner import acquire_radiograph

    first = chosen.iloc[0]
    png = np.asarray(Image.open(raw / "images" / f"{first.series_id}.png"))
    again = acquire_radiograph(anatomies[0], png.shape, generate._rng(truth["seed"], generate._SCAN, chosen.index[0]))
    if not np.array_equal(again, png):
        raise SystemExit(f"{first.series_id} rendered again from its rebuilt anatomy differs from its PNG")
    return chosen.reset_index(drop=True), anatomies, truth


def anatomy_features(anatomy) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One subject's quantities: (visible in a lateral projection, their heights, invisible to X-rays)."""
    visible = {
        "bone_density": anatomy.bone_density, "cervical_lordosis": anatomy.cervical_lordosis_deg,
        "thoracic_kyphosis": anatomy.thoracic_kyphosis_deg, "lumbar_lordosis": anatomy.lumbar_lordosis_deg,
        "scoliosis": abs(anatomy.scoliosis_mm), "fat_mm": anatomy.fat_mm,
    }
    heights: dict[str, float] = {}
    invisible = {"marrow_fat": anatomy.marrow_fat, "canal_factor": anatomy.canal_factor, "tarlov": float(anatomy.tarlov_cyst)}
    for vertebra, disc in zip(anatomy.vertebrae, anatomy.discs):
        level = vertebra.level
        heights[f"disc_height_{level}"] = disc.height / anatomy.scale
        heights[f"body_height_{level}"] = vertebra.height / anatomy.scale
        visible.update({
            f"body_depth_{level}": vertebra.depth / anatomy.scale, f"wedge_{level}": vertebra.wedge,
            f"listhesis_{level}": vertebra.listhesis, f"lesion_{level}": float(vertebra.lesion),
            f"osteophyte_{level}": disc.osteophyte, f"uncovertebral_{level}": disc.uncovertebral,
            f"bulge_{level}": disc.bulge, f"focal_{level}": disc.focal, f"endplate_{level}": float(disc.endplate_change),
        })
        invisible.update({
            f"hydration_{level}": disc.hydration, f"stenosis_{level}": disc.stenosis, f"fissure_{level}": float(disc.annular_fissure),
            f"oedema_{level}": float(vertebra.edema), f"cord_lesion_{level}": float(vertebra.cord_lesion),
        })
    return visible, heights, invisible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=ROOT / "pipelines/truth/data/raw", help="a phantom's raw folder (ground_truth.json)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from spineage.radiograph.settings import load_radiograph_settings

    started = time.perf_counter()
    rows, anatomies, truth = rebuilt_anatomies(args.raw, load_radiograph_settings(args.params).derivation_min_age)
    parts = [anatomy_features(a) for a in anatomies]
    visible, heights, invisible = (pd.DataFrame([p[i] for p in parts]).fillna(0.0) for i in range(3))
    covariates = pd.DataFrame({"age": rows.age, "male": rows.male, "scale": [a.scale for a in anatomies]})
    age, gap = rows.age.to_numpy(float), (rows.bio_age - rows.age).to_numpy(float)
    cubic = np.column_stack([np.ones_like(age), age, age**2, age**3])

    def without_age(values: np.ndarray) -> np.ndarray:
        return values - cubic @ np.linalg.lstsq(cubic, values, rcond=None)[0]

    folds = KFold(5, shuffle=True, random_state=0)
    models = {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 30))),
        "boosting": HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20,
                                                  l2_regularization=1.0, random_state=0),
    }
    print(f"{len(rows)} radiographs of subjects aged {load_radiograph_settings(args.params).derivation_min_age:g}+ "
          f"(seed {truth['seed']}), rebuilt in {time.perf_counter() - started:.0f} s; planted gap SD {gap.std():.2f} y")
    print("r: cross-validated prediction against the planted gap, chronological age (cubic) taken out of both")
    print(f"{'features':<58} {'n':>4} {'ridge':>6} {'boosting':>9}")
    rng = np.random.default_rng(0)
    measured = {f"X-ray-visible, heights with error SD {sd:g} mm": pd.concat(
        [covariates, visible, heights + rng.normal(0.0, sd, heights.shape)], axis=1) for sd in MEASUREMENT_SD_MM}
    table = {
        "age, sex, body size only": covariates,
        "X-ray-visible, heights exact": pd.concat([covariates, visible, heights], axis=1),
        **measured,
        "X-ray-visible, without heights": pd.concat([covariates, visible], axis=1),
        "X-ray-invisible only (hydration, marrow fat, ...)": pd.concat([covariates, invisible], axis=1),
    }
    for name, features in table.items():
        scores = [float(np.corrcoef(without_age(cross_val_predict(m, features.to_numpy(float), gap, cv=folds)), without_age(gap))[0, 1])
                  for m in models.values()]
        print(f"{name:<58} {features.shape[1]:>4} {scores[0]:>6.3f} {scores[1]:>9.3f}")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
