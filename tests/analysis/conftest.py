"""Fixtures of the SAG analysis tests: a small fabricated set of the evaluate stage's predictions and their inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FRACTURE_EFFECT = 4.0
"""Years of SAG planted for a fracture in the fabricated set."""


def fabricated_inputs(folder: Path, n: int = 80, seed: int = 5) -> tuple[Path, Path, Path]:
    """predictions.csv, findings.parquet and lifestyle.csv of ``n`` analysed series (+ 10 train series) in ``folder``.

    A third of the series have a fracture (+4 years of SAG); lumbar disc bulges of every severity,
    a cervical desiccation, some negated findings, and lifestyle for every subject but one.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, findings = [], []
    for i in range(n + 10):
        series, subject = f"mri-{i:03d}-1", f"sub-{i:03d}"
        split = "train" if i >= n else ("test" if i % 3 == 0 else "full_test_abnormal")
        age = float(rng.uniform(28, 82))
        fracture = i % 3 == 1
        sag = FRACTURE_EFFECT * fracture + float(rng.normal(0, 1.5))
        rows.append({"series_id": series, "subject_id": subject, "split": split, "age": round(age, 2), "sex": "FM"[i % 2],
                     "bracket": int(min(80, max(30, 10 * round(age / 10)))), "predicted_age": round(age + sag, 3),
                     "corrected_age": round(age + sag, 3), "sag": round(sag, 3)})
        if fracture:
            findings.append((series, "L1", "fracture", "mild", False))
        findings.append((series, "L4", "disc_bulge", ("mild", "moderate", "severe")[i % 3], False))
        findings.append((series, "C5", "desiccation", "moderate", i % 4 == 0))
        findings.append((series, "", "scoliosis", "mild", i % 5 != 0))
    predictions = folder / "predictions.csv"
    pd.DataFrame(rows).to_csv(predictions, index=False)
    parquet = folder / "findings.parquet"
    pd.DataFrame(findings, columns=["series_id", "level", "condition", "severity", "negated"]).assign(source="report").to_parquet(parquet)
    lifestyle = pd.DataFrame({
        "subject_id": [f"sub-{i:03d}" for i in range(1, n + 10)],
        "packs_per_day": rng.choice([0.0, 0.0, 0.5, 1.0], n + 9),
        "alcohol_days_per_week": rng.integers(0, 8, n + 9),
        "sedentary_hours_per_day": rng.uniform(2, 12, n + 9).round(1),
        "work": rng.choice(["sedentary", "moderate", "heavy"], n + 9),
        "exercise": rng.choice(["none", "moderate", "vigorous"], n + 9),
    })
    lifestyle_csv = folder / "lifestyle.csv"
    lifestyle.to_csv(lifestyle_csv, index=False)
    return predictions, parquet, lifestyle_csv


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return fabricated_inputs(tmp_path / "inputs")
