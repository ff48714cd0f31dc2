"""Who is in the phantom cohort: demographics, lifestyle, biological spine age, sessions.

Ages follow the MRI paper's Table 1 mix of series per age bracket; biological
spine age is chronological age plus the planted lifestyle effects plus
individual noise. Everything here is tabular and vectorised: images come later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spineage.findings.vocabulary import BRACKETS

TABLE1_SERIES_PER_BRACKET: dict[int, int] = {30: 1897, 40: 5045, 50: 4802, 60: 3891, 70: 1975, 80: 460}
"""Series per age bracket in the MRI paper's Table 1 (18,070 series)."""

WORK_LEVELS = ("sedentary", "moderate", "heavy")
EXERCISE_LEVELS = ("none", "moderate", "vigorous")
LIFESTYLE_COLUMNS = ("packs_per_day", "alcohol_days_per_week", "sedentary_hours_per_day", "work", "exercise")


def draw_subjects(n_subjects: int, lifestyle_effects: dict[str, float], noise_sd: float, rng: np.random.Generator) -> pd.DataFrame:
    """Draw subjects with age, sex, lifestyle and biological spine age.

    Args:
        n_subjects: how many.
        lifestyle_effects: years of biological age per unit (see ``params.yaml``).
        noise_sd: SD of the individual biological-age noise (years).
        rng: the cohort's random source.

    Returns:
        One row per subject: subject_id, sex, age, scan_year, birth_year, the
        lifestyle columns, lifestyle_effect, individual_noise, bio_age, supernumerary.
    """
    brackets = np.array(list(TABLE1_SERIES_PER_BRACKET))
    weights = np.array(list(TABLE1_SERIES_PER_BRACKET.values()), float)
    bracket = rng.choice(brackets, size=n_subjects, p=weights / weights.sum())
    low = np.array([BRACKETS[b][0] for b in bracket], float)
    age = np.round(low + rng.uniform(0.0, 10.0, n_subjects), 2)
    age = np.minimum(age, 84.99)
    sex = np.where(rng.uniform(size=n_subjects) < 0.5, "F", "M")
    male = sex == "M"
    scan_year = rng.integers(2012, 2024, n_subjects)
    birth_year = scan_year - np.floor(age).astype(int) - (rng.uniform(size=n_subjects) < 0.5)

    smoker = rng.uniform(size=n_subjects) < np.where(male, 0.27, 0.18)
    packs = np.where(smoker, np.clip(np.round(rng.gamma(2.2, 0.33, n_subjects) * 20) / 20, 0.05, 3.0), 0.0)
    drinks = rng.uniform(size=n_subjects) > 0.35
    alcohol = np.where(drinks, rng.choice(np.arange(1, 8), size=n_subjects, p=_normalised([8, 6, 4, 3, 2, 1.5, 2])), 0)
    sedentary = np.clip(np.round(rng.normal(7.5, 2.5, n_subjects) * 2) / 2, 1.0, 16.0)
    work_p = np.where(male[:, None], [0.42, 0.34, 0.24], [0.58, 0.32, 0.10])
    work = np.array(WORK_LEVELS)[_choose_rows(work_p, rng)]
    vigorous = np.clip(0.28 - 0.004 * (age - 25), 0.05, None)
    exercise_p = np.column_stack([0.30 + 0.004 * (age - 25), 0.70 - vigorous - 0.004 * (age - 25), vigorous])
    exercise = np.array(EXERCISE_LEVELS)[_choose_rows(exercise_p, rng)]

    e = lifestyle_effects
    lifestyle_effect = (
        e["packs_per_day"] * packs
        + e["alcohol_days_per_week"] * alcohol
        + e["sedentary_hours_per_day"] * sedentary
        + e["work_moderate"] * (work == "moderate")
        + e["work_heavy"] * (work == "heavy")
        + e["exercise_moderate"] * (exercise == "moderate")
        + e["exercise_vigorous"] * (exercise == "vigorous")
    )
    noise = rng.normal(0.0, noise_sd, n_subjects)
    u = rng.uniform(size=n_subjects)
    supernumerary = np.where(u < 0.01, "T13", np.where(u < 0.07, "L6", ""))
    return pd.DataFrame(
        {
            "subject_id": [f"sub-{i:05d}" for i in range(1, n_subjects + 1)],
            "sex": sex,
            "age": age,
            "scan_year": scan_year,
            "birth_year": birth_year,
            "packs_per_day": packs,
            "alcohol_days_per_week": alcohol,
            "sedentary_hours_per_day": sedentary,
            "work": work,
            "exercise": exercise,
            "lifestyle_effect": lifestyle_effect,
            "individual_noise": noise,
            "bio_age": age + lifestyle_effect + noise,
            "supernumerary": supernumerary,
        }
    )


def _normalised(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, float)
    return w / w.sum()


def _choose_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability table."""
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    return (rng.uniform(size=(len(p), 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)


def plan_sessions(subjects: pd.DataFrame, site_names: list[str], site_weights: list[float], repeat_fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Every scan of the cohort: baseline MRI, repeat MRI, lateral radiograph, DXA VFA (65+).

    Returns:
        One row per series: series_id, subject_id, subject_index, modality, age,
        bio_age, session (1 or 2), site.
    """
    n = len(subjects)
    weights = _normalised(site_weights)
    site = rng.choice(site_names, size=n, p=weights)
    repeat = rng.uniform(size=n) < repeat_fraction
    interval = rng.uniform(0.5, 3.0, n)
    moves = rng.uniform(size=n) < 0.3
    other_site = rng.choice(site_names, size=n, p=weights)
    rows = []
    for i, subject in enumerate(subjects.itertuples(index=False)):
        number = subject.subject_id.split("-")[1]
        base = dict(subject_id=subject.subject_id, subject_index=i, age=subject.age, bio_age=subject.bio_age, session=1)
        rows.append(dict(base, series_id=f"mri-{number}-1", modality="mri_t2_sag", site=site[i]))
        if repeat[i]:
            later = dict(base, age=subject.age + interval[i], bio_age=subject.bio_age + interval[i], session=2)
            rows.append(dict(later, series_id=f"mri-{number}-2", modality="mri_t2_sag", site=other_site[i] if moves[i] else site[i]))
        rows.append(dict(base, series_id=f"xr-{number}", modality="xray_lat", site=site[i]))
        if subject.age >= 65:
            rows.append(dict(base, series_id=f"vfa-{number}", modality="dxa_vfa", site=site[i]))
    columns = ["series_id", "subject_id", "subject_index", "modality", "age", "bio_age", "session", "site"]
    return pd.DataFrame(rows, columns=columns)
