"""Tests of the radiograph branch's subject-level outcomes (spineage.synth.outcomes)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from spineage.errors import UserError
from spineage.synth.outcomes import (
    OUTCOME_COLUMNS,
    OutcomeEffects,
    simulate_outcomes,
    spine_age_gap_sd,
    standardized_spine_age_gap,
)

BINARY_COLUMNS = (
    "osteoporosis",
    "prevalent_vertebral_fracture",
    "diabetes",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "spinal_prosthesis",
    "death",
    "incident_fracture",
)
T_SCORE_COLUMNS = ("bmd_t_lumbar", "bmd_t_femoral_neck", "bmd_t_total_hip")


def make_subjects(n: int, seed: int) -> pd.DataFrame:
    """Subjects as the phantom generator hands them over: ages 25-84, bio_age = age + N(0, 3)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(25.0, 84.0, n)
    return pd.DataFrame(
        {
            "subject_id": [f"sub-{i:05d}" for i in range(n)],
            "sex": rng.choice(["F", "M"], n),
            "age": age,
            "bio_age": age + rng.normal(0.0, 3.0, n),
        }
    )


@pytest.fixture(scope="module")
def subjects() -> pd.DataFrame:
    return make_subjects(4000, seed=11)


@pytest.fixture(scope="module")
def outcomes(subjects: pd.DataFrame) -> pd.DataFrame:
    return simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(12))


@pytest.fixture(scope="module")
def large_cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    """20,000 subjects: about 1,700 deaths and 900 vertebral fractures, enough to pin an HR to +-0.1."""
    subjects = make_subjects(20_000, seed=21)
    return subjects, simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(22))


def cox_gap_hazard_ratio(subjects: pd.DataFrame, durations: pd.Series, events: pd.Series) -> tuple[float, float, float]:
    """HR per SD of the gap, with its 95 % CI, from a Cox model on (standardized gap, age, sex)."""
    data = pd.DataFrame(
        {
            "gap_z": standardized_spine_age_gap(subjects),
            "age": subjects["age"].to_numpy(),
            "male": (subjects["sex"] == "M").astype(int).to_numpy(),
            "T": durations.to_numpy(),
            "E": events.astype(int).to_numpy(),
        }
    )
    fitter = CoxPHFitter().fit(data, duration_col="T", event_col="E")
    low, high = np.exp(fitter.confidence_intervals_.loc["gap_z"])
    return float(np.exp(fitter.params_["gap_z"])), float(low), float(high)


def gap_coefficient(y: np.ndarray, subjects: pd.DataFrame) -> float:
    """OLS coefficient of the spine age gap on y, adjusted for age and sex."""
    design = np.column_stack(
        [
            np.ones(len(subjects)),
            subjects["age"],
            subjects["sex"] == "F",
            subjects["bio_age"] - subjects["age"],
        ]
    ).astype(float)
    return float(np.linalg.lstsq(design, y, rcond=None)[0][3])


# --- schema and determinism -------------------------------------------------------------


def test_schema_order_and_dtypes(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    assert list(outcomes.columns) == list(OUTCOME_COLUMNS)
    assert len(outcomes) == len(subjects)
    assert outcomes["subject_id"].tolist() == subjects["subject_id"].tolist()
    for column in BINARY_COLUMNS:
        assert outcomes[column].dtype == np.int64, column
        assert set(outcomes[column].unique()) == {0, 1}, column
    for column in (*T_SCORE_COLUMNS, "height_cm", "weight_kg", "followup_years", "fracture_followup_years"):
        assert outcomes[column].dtype == np.float64, column
        assert outcomes[column].notna().all(), column
    assert set(outcomes["incident_fracture_type"].unique()) == {"", "vertebral", "non_vertebral"}
    # Rounding as written to outcomes.csv.
    for column, decimals in [("bmd_t_lumbar", 1), ("height_cm", 1), ("followup_years", 2)]:
        np.testing.assert_allclose(outcomes[column], outcomes[column].round(decimals), atol=1e-9)


def test_same_rng_state_gives_identical_frame(subjects: pd.DataFrame) -> None:
    first = simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(5))
    second = simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(5))
    other = simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(6))
    pd.testing.assert_frame_equal(first, second)
    assert not first.equals(other)


def test_standardization_is_reported(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    gap = subjects["bio_age"] - subjects["age"]
    assert outcomes.attrs["sag_sd"] == pytest.approx(gap.std(ddof=1))
    assert outcomes.attrs["sag_sd"] == pytest.approx(spine_age_gap_sd(subjects))
    assert outcomes.attrs["sag_mean"] == pytest.approx(gap.mean())
    z = standardized_spine_age_gap(subjects)
    assert z.mean() == pytest.approx(0.0, abs=1e-9)
    assert z.std(ddof=1) == pytest.approx(1.0)


def test_effects_serialize_for_ground_truth() -> None:
    written = json.loads(json.dumps(dataclasses.asdict(OutcomeEffects())))
    assert written["hr_death_per_sd"] == 1.31
    assert written["hr_fracture_per_sd"] == 1.40


# --- bone density, prevalent fracture, body size ----------------------------------------


def test_t_scores_fall_with_biological_age_and_are_lower_in_women(
    subjects: pd.DataFrame, outcomes: pd.DataFrame
) -> None:
    for column in T_SCORE_COLUMNS:
        t = outcomes[column].to_numpy()
        assert np.corrcoef(subjects["bio_age"], t)[0, 1] < -0.3, column
        # The gap itself lowers bone density at a given chronological age.
        assert gap_coefficient(t, subjects) < -0.01, column
        female = subjects["sex"] == "F"
        assert t[female].mean() < t[~female].mean() - 0.2, column
    # The three sites describe one skeleton.
    assert outcomes[list(T_SCORE_COLUMNS)].corr().to_numpy().min() > 0.5


def test_osteoporosis_follows_lowest_t_score(outcomes: pd.DataFrame) -> None:
    lowest = outcomes[list(T_SCORE_COLUMNS)].min(axis=1)
    assert (outcomes["osteoporosis"] == (lowest <= -2.5).astype(int)).all()
    assert 0.05 < outcomes["osteoporosis"].mean() < 0.30


def test_prevalent_vertebral_fracture_rises_with_age(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    fracture = outcomes["prevalent_vertebral_fracture"]
    middle = fracture[subjects["age"].between(45, 55)].mean()
    old = fracture[subjects["age"] >= 75].mean()
    young = fracture[subjects["age"] < 40].mean()
    assert young < middle < old
    assert 0.01 < middle < 0.12
    assert 0.10 < old < 0.35  # women 65+ on VFA: about 10-20 %


def test_height_and_covariates_are_plausible(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    female = (subjects["sex"] == "F").to_numpy()
    assert outcomes.loc[female, "height_cm"].mean() < outcomes.loc[~female, "height_cm"].mean() - 8
    assert outcomes.loc[female, "weight_kg"].mean() < outcomes.loc[~female, "weight_kg"].mean() - 8
    design = np.column_stack(
        [np.ones(len(subjects)), subjects["age"], female, outcomes["prevalent_vertebral_fracture"]]
    ).astype(float)
    _, per_year, _, per_fracture = np.linalg.lstsq(design, outcomes["height_cm"], rcond=None)[0]
    assert per_year < 0 and per_fracture < 0
    old = (subjects["age"] >= 65).to_numpy()
    for column, low, high in [
        ("diabetes", 0.05, 0.25),
        ("glucocorticoids", 0.005, 0.08),
        ("rheumatoid_arthritis", 0.002, 0.04),
        ("spinal_prosthesis", 0.005, 0.06),
    ]:
        assert low < outcomes[column].mean() < high, column
    assert outcomes.loc[old, "diabetes"].mean() > outcomes.loc[~old, "diabetes"].mean()
    assert outcomes.loc[old, "spinal_prosthesis"].mean() > outcomes.loc[~old, "spinal_prosthesis"].mean()


# --- follow-up, events, censoring ---------------------------------------------------------


def test_followup_is_within_bounds_and_censored(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    effects = OutcomeEffects()
    followup = outcomes["followup_years"]
    fracture_followup = outcomes["fracture_followup_years"]
    assert followup.min() >= 0.01 and followup.max() <= effects.accrual_max_years
    assert (fracture_followup <= followup).all()
    assert fracture_followup.min() >= 0.01
    # Censored subjects exist, both at administrative end and lost early.
    censored = outcomes["death"] == 0
    assert 0.8 < censored.mean() < 0.97
    assert (followup[censored] < effects.accrual_min_years).any()
    # Fracture follow-up ends at the fracture, else at death or censoring.
    no_fracture = outcomes["incident_fracture"] == 0
    assert (fracture_followup[no_fracture] == followup[no_fracture]).all()
    assert (fracture_followup[~no_fracture] <= followup[~no_fracture]).all()
    assert ((outcomes["incident_fracture_type"] != "") == ~no_fracture).all()


def test_event_rates_are_realistic_and_higher_in_the_old(subjects: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    assert 0.08 <= outcomes["incident_fracture"].mean() <= 0.15
    assert 0.05 <= outcomes["death"].mean() <= 0.12
    old = (subjects["age"] >= 65).to_numpy()
    young = (subjects["age"] < 45).to_numpy()
    for column in ("death", "incident_fracture"):
        assert outcomes.loc[old, column].mean() > 2 * outcomes.loc[young, column].mean(), column
    types = outcomes["incident_fracture_type"].value_counts()
    assert types["vertebral"] > 0.25 * outcomes["incident_fracture"].sum()
    assert types["non_vertebral"] > 0.25 * outcomes["incident_fracture"].sum()


def test_planted_hazard_ratios_are_recovered(large_cohort: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    subjects, outcomes = large_cohort
    effects = OutcomeEffects()
    fracture_type = outcomes["incident_fracture_type"]
    cases = {
        "death": (outcomes["followup_years"], outcomes["death"], effects.hr_death_per_sd),
        "any fracture": (
            outcomes["fracture_followup_years"],
            outcomes["incident_fracture"],
            effects.hr_fracture_per_sd,
        ),
        # Cause-specific: the other fracture type and death censor.
        "vertebral": (
            outcomes["fracture_followup_years"],
            fracture_type == "vertebral",
            effects.hr_vertebral_fracture_per_sd,
        ),
        "non-vertebral": (
            outcomes["fracture_followup_years"],
            fracture_type == "non_vertebral",
            effects.hr_nonvertebral_fracture_per_sd,
        ),
    }
    for name, (durations, events, planted) in cases.items():
        estimate, low, high = cox_gap_hazard_ratio(subjects, durations, events)
        assert low <= planted <= high, f"{name}: planted {planted}, estimated {estimate:.3f} [{low:.3f}, {high:.3f}]"
        assert abs(estimate - planted) < 0.15, name


def test_no_planted_effect_means_no_gap_effect() -> None:
    # With every HR at 1 the gap must not reach the hazards by any other path
    # (bone density, covariates), or the planted HRs would be misstated.
    subjects = make_subjects(20_000, seed=31)
    null = OutcomeEffects(
        hr_fracture_per_sd=1.0,
        hr_vertebral_fracture_per_sd=1.0,
        hr_nonvertebral_fracture_per_sd=1.0,
        hr_death_per_sd=1.0,
    )
    outcomes = simulate_outcomes(subjects, null, np.random.default_rng(32))
    for durations, events in [
        (outcomes["followup_years"], outcomes["death"]),
        (outcomes["fracture_followup_years"], outcomes["incident_fracture"]),
    ]:
        estimate, low, high = cox_gap_hazard_ratio(subjects, durations, events)
        assert low <= 1.0 <= high, f"estimated {estimate:.3f} [{low:.3f}, {high:.3f}]"


def test_vertebral_share_is_solved_from_the_hazard_ratios() -> None:
    effects = OutcomeEffects()
    share = effects.vertebral_fracture_share
    assert 0 < share < 1
    blended = share * np.log(effects.hr_vertebral_fracture_per_sd) + (1 - share) * np.log(
        effects.hr_nonvertebral_fracture_per_sd
    )
    assert np.exp(blended) == pytest.approx(effects.hr_fracture_per_sd)
    assert OutcomeEffects(
        hr_fracture_per_sd=1.5, hr_vertebral_fracture_per_sd=1.5, hr_nonvertebral_fracture_per_sd=1.5
    ).vertebral_fracture_share == pytest.approx(effects.vertebral_share_fallback)


def test_tiny_cohort_without_gap_variation_runs() -> None:
    one = pd.DataFrame({"subject_id": [7], "sex": ["M"], "age": [50.0], "bio_age": [52.0]})
    result = simulate_outcomes(one, OutcomeEffects(), np.random.default_rng(0))
    assert len(result) == 1 and result["subject_id"].iloc[0] == 7
    assert np.isnan(result.attrs["sag_sd"])


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="bio_age"), "bio_age"),
        (lambda df: df.assign(sex=["F", "X", "M"]), "'X'"),
        (lambda df: df.assign(sex=["F", None, "M"]), "sex"),
        (lambda df: df.assign(age=[40.0, np.nan, 60.0]), "age"),
        (lambda df: df.assign(bio_age=[40.0, np.inf, 60.0]), "bio_age"),
        (lambda df: df.assign(age=["40", "old", "60"]), "age"),
    ],
)
def test_bad_subjects_raise_value_error(change, message: str) -> None:
    good = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c"],
            "sex": ["F", "M", "M"],
            "age": [40.0, 50.0, 60.0],
            "bio_age": [41.0, 49.0, 62.0],
        }
    )
    with pytest.raises(ValueError, match=message) as raised:
        simulate_outcomes(change(good), OutcomeEffects(), np.random.default_rng(0))
    # The CLI reports it as a one-line user error, not a traceback.
    assert isinstance(raised.value, UserError)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"hr_fracture_per_sd": 2.0},
        {"hr_death_per_sd": 0.0},
        {"diabetes_prevalence_at_60": 1.2},
        {"accrual_min_years": 12.0, "accrual_max_years": 2.0},
        {"bmd_site_correlation": 1.5},
        {"death_rate_at_60": float("nan")},
    ],
)
def test_impossible_effects_raise_value_error(settings: dict) -> None:
    with pytest.raises(ValueError, match="OutcomeEffects"):
        OutcomeEffects(**settings)
