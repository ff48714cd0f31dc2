"""Tests of the radiograph paper's outcome analyses (spineage.analysis.survival and survival_figures).

The statistical tests follow tests/synth/test_outcomes.py: a planted hazard ratio must sit inside
the fitted CI, and a null effect must not be found.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.analysis.survival import (
    FRACTURE_OUTCOMES,
    KM_GROUPS,
    MORTALITY_OUTCOMES,
    PAPER_MODELS,
    age_difference_explained,
    cox_per_sd,
    cox_table,
    fracture_outcomes,
    frax_columns_present,
    frax_hip_reclassification,
    frax_reclassification,
    group_hazard_ratios,
    kaplan_meier_failure,
    km_groups,
)
from spineage.analysis.survival_figures import at_risk_at, curve_while_at_risk, plot_kaplan_meier
from spineage.errors import UserError

PNG = b"\x89PNG\r\n\x1a\n"
Z_95 = 1.959963984540054


def exponential_cohort(n: int, seed: int, hr_per_sd: float, exposure_sd: float = 4.0) -> pd.DataFrame:
    """Exponential event times: the hazard rises 4 %/year of age, is 0.6× in men and ``hr_per_sd``× per SD of the exposure.

    Administrative censoring: follow-up uniform between 2 and 10 years.
    """
    rng = np.random.default_rng(seed)
    age = rng.uniform(40.0, 85.0, n)
    sex = rng.choice(["F", "M"], n)
    exposure = rng.normal(0.0, exposure_sd, n) + 0.02 * (age - 60)  # a little confounded by age
    log_hazard = (math.log(0.03) + 0.04 * (age - 60) + math.log(0.6) * (sex == "M")
                  + math.log(hr_per_sd) * (exposure - exposure.mean()) / exposure.std(ddof=1))
    event_time = rng.exponential(1.0 / np.exp(log_hazard))
    censor = rng.uniform(2.0, 10.0, n)
    return pd.DataFrame({"subject_id": [f"sub-{i:05d}" for i in range(n)], "age": age, "sex": sex,
                         "age_difference": exposure, "time": np.minimum(event_time, censor),
                         "event": (event_time <= censor).astype(int)})


def good_outcomes() -> pd.DataFrame:
    """Five subjects: a vertebral fracture, a non-vertebral one, a death, a fracture of unknown type, no event."""
    return pd.DataFrame({
        "subject_id": ["a", "b", "c", "d", "e"],
        "followup_years": [6.0, 7.0, 2.5, 5.0, 8.0],
        "death": [0, 1, 1, 0, 0],
        "fracture_followup_years": [2.0, 3.0, 2.5, 1.0, 8.0],
        "incident_fracture": [1, 1, 0, 1, 0],
        "incident_fracture_type": ["vertebral", "non_vertebral", None, "", ""],
        "height_cm": [160.0, 170.0, 150.0, 180.0, 0.0],
        "weight_kg": [51.2, 72.25, 45.0, 81.0, 60.0],
    })


# --- fracture_outcomes: cause-specific events ---------------------------------------------------


def test_cause_specific_events_count_only_their_own_type() -> None:
    table = fracture_outcomes(good_outcomes())
    assert table["event_any_fracture"].tolist() == [1, 1, 0, 1, 0]
    assert table["event_vertebral_fracture"].tolist() == [1, 0, 0, 0, 0]
    assert table["event_nonvertebral_fracture"].tolist() == [0, 1, 0, 0, 0]
    # The non-vertebral fracture is censored at its own time for the vertebral model, not followed on.
    assert table.loc[1, "time_fracture"] == 3.0 and table.loc[1, "event_vertebral_fracture"] == 0
    # Death is followed over the whole follow-up, past a fracture.
    assert table["time_death"].tolist() == [6.0, 7.0, 2.5, 5.0, 8.0]
    assert table["event_death"].tolist() == [0, 1, 1, 0, 0]
    assert table["bmi"].iloc[:4].round(6).tolist() == [20.0, 25.0, 20.0, 25.0]
    assert np.isnan(table["bmi"].iloc[4])  # a height of 0 gives no BMI, not infinity


def competing_cohort(n: int, seed: int, hr_vertebral: float, hr_nonvertebral: float) -> pd.DataFrame:
    """outcomes.csv-like table: vertebral and non-vertebral fracture, death competing, administrative censoring."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, n)
    vertebral = rng.exponential(1.0 / (0.03 * hr_vertebral**z))
    nonvertebral = rng.exponential(1.0 / (0.04 * hr_nonvertebral**z))
    death = rng.exponential(1.0 / 0.02, n)
    censor = rng.uniform(2.0, 10.0, n)
    followup = np.minimum(death, censor)
    first = np.minimum(vertebral, nonvertebral)
    fractured = first < followup
    return pd.DataFrame({
        "age_difference": 3.0 * z,
        "followup_years": followup, "death": (death <= censor).astype(int),
        "fracture_followup_years": np.where(fractured, first, followup), "incident_fracture": fractured.astype(int),
        "incident_fracture_type": np.where(fractured, np.where(vertebral < nonvertebral, "vertebral", "non_vertebral"), ""),
    })


def test_cause_specific_cox_recovers_each_type_and_finds_no_effect_where_none_was_planted() -> None:
    table = fracture_outcomes(competing_cohort(3000, seed=7, hr_vertebral=2.0, hr_nonvertebral=1.0))
    vertebral = cox_per_sd(table, *FRACTURE_OUTCOMES["vertebral fracture"], covariates=())
    nonvertebral = cox_per_sd(table, *FRACTURE_OUTCOMES["non-vertebral fracture"], covariates=())
    assert vertebral["ci_low"] <= 2.0 <= vertebral["ci_high"], vertebral
    assert nonvertebral["ci_low"] <= 1.0 <= nonvertebral["ci_high"] and nonvertebral["p"] > 0.05, nonvertebral
    # Counting the other type (or deaths) as events would pull the vertebral HR towards 1.
    assert vertebral["events"] == int((table["incident_fracture_type"] == "vertebral").sum())
    assert vertebral["events"] + nonvertebral["events"] == int(table["incident_fracture"].sum())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.assign(followup_years=[6.0, -7.0, 2.5, 5.0, 8.0]), "followup_years.*-7"),
        (lambda df: df.assign(death=[0, 2, 1, 0, 0]), "death as 0 or 1.*found 1 other.*2 for subject b"),
        (lambda df: df.assign(incident_fracture=[1, 0, 0, 1, 0]), "without the flag.*subject b"),
        (lambda df: df.assign(incident_fracture_type=["vertebral", "hip", "", "", ""]), "'hip'"),
        (lambda df: df.drop(columns="death"), "Expected column.*death"),
        (lambda df: df.assign(fracture_followup_years=[2.0, 3.0, 2.5, 1.0, 9.0]), "at most followup_years.*subject e"),
        (lambda df: df.assign(followup_years=[6.0, None, 2.5, 5.0, 8.0]), "missing.*subject b"),
        (lambda df: df.assign(followup_years=["6", "seven", "2.5", "5", "8"]), "'seven'"),
    ],
)
def test_fracture_outcomes_refuses_a_bad_table_in_one_line(change, message: str) -> None:
    with pytest.raises(UserError, match=message) as raised:
        fracture_outcomes(change(good_outcomes()))
    assert "\n" not in str(raised.value)


# --- Cox per SD ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return exponential_cohort(2000, seed=3, hr_per_sd=1.5)


def test_planted_hazard_ratio_per_sd_is_recovered(planted: pd.DataFrame) -> None:
    result = cox_per_sd(planted, "time", "event")
    assert result["ci_low"] <= 1.5 <= result["ci_high"], result
    assert abs(result["hr_per_sd"] - 1.5) < 0.15
    assert result["p"] < 1e-6
    assert result["n"] == 2000 and result["events"] == int(planted["event"].sum()) > 300
    assert result["sd_of_exposure"] == pytest.approx(planted["age_difference"].std(ddof=1))
    assert result["covariates"] == ["age", "sex[M]"] and result["dropped_covariates"] == []


def test_hazard_ratio_is_per_sd_not_per_unit(planted: pd.DataFrame) -> None:
    result = cox_per_sd(planted, "time", "event")
    scaled = cox_per_sd(planted.assign(age_difference=10 * planted["age_difference"] + 3), "time", "event")
    assert scaled["hr_per_sd"] == pytest.approx(result["hr_per_sd"], rel=1e-6)
    assert scaled["ci_low"] == pytest.approx(result["ci_low"], rel=1e-6)
    assert scaled["sd_of_exposure"] == pytest.approx(10 * result["sd_of_exposure"])


def test_null_exposure_is_not_found() -> None:
    result = cox_per_sd(exponential_cohort(2000, seed=5, hr_per_sd=1.0), "time", "event")
    assert result["ci_low"] <= 1.0 <= result["ci_high"], result
    assert result["p"] > 0.05


def test_age_and_sex_are_adjusted_for(planted: pd.DataFrame) -> None:
    # The exposure is a little confounded by age: adjusting must not move the HR off the planted value,
    # and a covariate list reaches the model (sex enters as sex[M]).
    result = cox_per_sd(planted, "time", "event", covariates=("age", "sex"))
    assert set(result["ph_p"]) == {"age_difference", "age", "sex[M]"}


def piecewise_cohort(n: int, seed: int, early_hr: float, late_hr: float) -> pd.DataFrame:
    """A binary exposure whose HR is ``early_hr`` in the first year and ``late_hr`` after."""
    rng = np.random.default_rng(seed)
    exposed = rng.integers(0, 2, n)
    early, late = 0.3 * early_hr**exposed, 0.3 * late_hr**exposed
    draw = rng.exponential(1.0, n)  # the cumulative hazard reached at the event
    event_time = np.where(draw < early, draw / early, 1.0 + (draw - early) / late)
    censor = rng.uniform(3.0, 6.0, n)
    return pd.DataFrame({"age_difference": exposed.astype(float), "age": rng.uniform(40, 80, n),
                         "time": np.minimum(event_time, censor), "event": (event_time <= censor).astype(int)})


def test_schoenfeld_check_flags_a_time_varying_effect() -> None:
    varying = cox_per_sd(piecewise_cohort(2000, seed=8, early_hr=4.0, late_hr=0.5), "time", "event", covariates=("age",))
    assert varying["ph_ok"] is False
    assert varying["ph_p"]["age_difference"] < 1e-4 and varying["ph_p_min"] == varying["ph_p"]["age_difference"]
    steady = cox_per_sd(piecewise_cohort(2000, seed=8, early_hr=2.0, late_hr=2.0), "time", "event", covariates=("age",))
    assert steady["ph_ok"] is True and steady["ph_p_min"] >= 0.05
    # Bonferroni over the two terms tested: a smallest p of 0.03 would still pass
    assert steady["ph_threshold"] == 0.025 == varying["ph_threshold"]


def test_zero_events_and_constant_covariates_do_not_crash(planted: pd.DataFrame) -> None:
    none = cox_per_sd(planted.assign(event=0), "time", "event")
    assert math.isnan(none["hr_per_sd"]) and none["events"] == 0 and "no events" in none["note"]
    assert none["ph_ok"] is None
    constant = cox_per_sd(planted.assign(glucocorticoids=0), "time", "event", covariates=("age", "glucocorticoids"))
    assert constant["dropped_covariates"] == ["glucocorticoids"] and "glucocorticoids" in constant["note"]
    assert constant["ci_low"] <= 1.5 <= constant["ci_high"]


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda df: df.assign(age_difference=2.0), {}, "age_difference to vary"),
        (lambda df: df.assign(sex="X"), {}, "sex as F or M.*'X'"),
        (lambda df: df.drop(columns="age"), {}, "Expected column.*age"),
        (lambda df: df.assign(event=2), {}, "event as 0 or 1"),
        (lambda df: df, {"covariates": ("age", "age_difference")}, "apart from the covariates"),
        (lambda df: df.assign(age=np.nan), {}, "complete rows"),
    ],
)
def test_cox_per_sd_refuses_bad_input_in_one_line(planted: pd.DataFrame, change, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as raised:
        cox_per_sd(change(planted.head(50)), "time", "event", **kwargs)
    assert "\n" not in str(raised.value)


def test_cox_table_has_a_row_per_outcome_and_model() -> None:
    rng = np.random.default_rng(13)
    cohort = competing_cohort(1500, seed=13, hr_vertebral=2.0, hr_nonvertebral=1.0)
    cohort = cohort.assign(age=rng.uniform(40, 80, 1500), sex=rng.choice(["F", "M"], 1500),
                           prevalent_vertebral_fracture=rng.integers(0, 2, 1500), diabetes=rng.integers(0, 2, 1500),
                           glucocorticoids=0, rheumatoid_arthritis=rng.integers(0, 2, 1500),
                           height_cm=rng.normal(165, 8, 1500), weight_kg=rng.normal(65, 10, 1500),
                           osteoporosis=rng.integers(0, 2, 1500))
    table = cox_table(fracture_outcomes(cohort), {**FRACTURE_OUTCOMES, **MORTALITY_OUTCOMES}, PAPER_MODELS)
    assert len(table) == 4 * 3
    assert table[["outcome", "model"]].drop_duplicates().shape[0] == 12
    vertebral = table[(table["outcome"] == "vertebral fracture") & (table["model"] == "model 3")].iloc[0]
    assert vertebral["ci_low"] <= 2.0 <= vertebral["ci_high"]
    death = table[table["outcome"] == "all-cause death"]
    assert (death["ci_low"] <= 1.0).all() and (death["ci_high"] >= 1.0).all()
    # glucocorticoids is constant in this cohort: dropped in models 2 and 3, said in the note.
    assert table.loc[table["model"] != "model 1", "note"].str.contains("glucocorticoids").all()
    assert (table.loc[table["model"] == "model 1", "note"] == "").all()


# --- Kaplan–Meier groups and curves -------------------------------------------------------------


def test_km_groups_put_the_boundaries_in_the_upper_group() -> None:
    table = pd.DataFrame({"age": [59.99, 60.0, 60.0, 59.0, np.nan], "age_difference": [2.0, 1.99, 2.0, 1.0, 5.0]})
    groups = km_groups(table, age_median=60.0, accelerated_threshold=2.0)
    assert groups.tolist()[:4] == ["younger, accelerated", "older, not accelerated", "older, accelerated",
                                   "younger, not accelerated"]
    assert pd.isna(groups.iloc[4])
    assert list(groups.cat.categories) == list(KM_GROUPS)
    with pytest.raises(UserError, match="age_median"):
        km_groups(table, age_median=float("nan"), accelerated_threshold=2.0)


def test_kaplan_meier_failure_matches_a_hand_computation() -> None:
    # Events at 1 and 3, censored at 2, 4 and 5: S(1) = 4/5, S(3) = 4/5 × 2/3.
    table = pd.DataFrame({"t": [3.0, 1.0, 2.0, 5.0, 4.0], "e": [1, 1, 0, 0, 0], "g": "one"})
    curve = kaplan_meier_failure(table, "t", "e", "g").set_index("time")
    assert curve.loc[1.0, "cumulative_failure"] == pytest.approx(0.2)
    assert curve.loc[2.0, "cumulative_failure"] == pytest.approx(0.2)
    assert curve.loc[3.0, "cumulative_failure"] == pytest.approx(1 - 0.8 * 2 / 3)
    assert curve["at_risk"].tolist() == [5, 5, 4, 3, 2, 1]
    assert curve["events"].tolist() == [0, 1, 0, 1, 0, 0]
    # The failure band is the survival's log(-log) Greenwood interval turned over: at t = 1,
    # var(log S) = 1/(5·4), and S^exp(±z·sqrt(var)/|log S|) bounds the survival.
    s = 0.8
    spread = Z_95 * math.sqrt(1 / 20) / abs(math.log(s))
    assert curve.loc[1.0, "ci_low"] == pytest.approx(1 - s ** math.exp(-spread), abs=1e-6)
    assert curve.loc[1.0, "ci_high"] == pytest.approx(1 - s ** math.exp(spread), abs=1e-6)


def test_kaplan_meier_keeps_the_groups_apart_and_in_category_order() -> None:
    table = pd.DataFrame({"t": [1.0, 2.0, 1.0, 2.0], "e": [1, 1, 0, 0],
                          "g": pd.Categorical(["b", "b", "a", "a"], categories=["b", "a", "c"])})
    curves = kaplan_meier_failure(table, "t", "e", "g")
    assert list(dict.fromkeys(curves["group"])) == ["b", "a"]  # the empty "c" has no rows
    assert curves.groupby("group")["cumulative_failure"].max().to_dict() == {"a": 0.0, "b": 1.0}


def test_group_hazard_ratios_recover_a_planted_ratio() -> None:
    rng = np.random.default_rng(12)
    groups = np.repeat(list(KM_GROUPS), 300)
    rate = 0.1 * np.select([groups == g for g in KM_GROUPS], [1.0, 1.5, 2.0, 3.0])
    event_time, censor = rng.exponential(1 / rate), rng.uniform(2, 8, len(groups))
    table = pd.DataFrame({"group": pd.Categorical(groups, categories=list(KM_GROUPS)),
                          "t": np.minimum(event_time, censor), "e": (event_time <= censor).astype(int)})
    ratios = group_hazard_ratios(table, "t", "e", "group", reference=KM_GROUPS[0]).set_index("group")
    assert ratios.loc[KM_GROUPS[0], "hazard_ratio"] == 1.0 and ratios.loc[KM_GROUPS[0], "note"] == "reference"
    for group, planted in zip(KM_GROUPS[1:], (1.5, 2.0, 3.0)):
        assert ratios.loc[group, "ci_low"] <= planted <= ratios.loc[group, "ci_high"], group
    assert ratios["n"].tolist() == [300] * 4
    assert ratios["events"].sum() == table["e"].sum()


def test_group_hazard_ratios_without_a_reference_or_events_do_not_crash() -> None:
    table = pd.DataFrame({"group": pd.Categorical(["b", "b", "c", "c", "d", "d"], categories=["a", "b", "c", "d"]),
                          "t": [1.0, 2.0, 1.5, 2.5, 1.0, 3.0], "e": [1, 0, 1, 1, 0, 0]})
    empty = group_hazard_ratios(table, "t", "e", "group", reference="a")
    assert empty["hazard_ratio"].isna().all() and empty["note"].str.contains("no subjects").all()
    with pytest.raises(UserError, match="reference group 'z'"):
        group_hazard_ratios(table, "t", "e", "group", reference="z")
    plain = group_hazard_ratios(table.assign(group=table["group"].astype(str)), "t", "e", "group", reference="z")
    assert plain["group"].iloc[0] == "z" and plain["n"].iloc[0] == 0 and plain["hazard_ratio"].isna().all()
    against_b = group_hazard_ratios(table, "t", "e", "group", reference="b").set_index("group")
    assert against_b.loc["d", "note"] == "no events" and math.isnan(against_b.loc["d", "hazard_ratio"])
    assert math.isfinite(against_b.loc["c", "hazard_ratio"])


# --- what the age difference goes with -----------------------------------------------------------


def test_age_difference_explained_recovers_planted_coefficients() -> None:
    rng = np.random.default_rng(11)
    n = 600
    table = pd.DataFrame({"height_cm": rng.normal(165, 8, n), "diabetes": rng.integers(0, 2, n),
                          "prevalent_vertebral_fracture": rng.integers(0, 2, n), "spinal_prosthesis": 0,
                          "sex": rng.choice(["F", "M"], n)})
    table["age_difference"] = (-0.1 * (table["height_cm"] - 165) + 1.5 * table["diabetes"]
                               + 3.0 * table["prevalent_vertebral_fracture"] + rng.normal(0, 2, n))
    terms, summary = age_difference_explained(table)
    terms = terms.set_index("term")
    for term, planted in [("height_cm", -0.1), ("diabetes", 1.5), ("prevalent_vertebral_fracture", 3.0), ("sex[M]", 0.0)]:
        assert terms.loc[term, "ci_low"] <= planted <= terms.loc[term, "ci_high"], term
    assert terms.loc["sex[M]", "p"] > 0.05
    assert summary["skipped_covariates"] == ["bmd_t_lumbar"]
    assert summary["dropped_covariates"] == ["spinal_prosthesis"]
    # R² and the adjusted R² by hand (4 terms fitted).
    design = np.column_stack([np.ones(n), table["height_cm"], table["diabetes"], table["prevalent_vertebral_fracture"],
                              table["sex"] == "M"]).astype(float)
    y = table["age_difference"].to_numpy()
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    r_squared = 1 - residual @ residual / ((y - y.mean()) @ (y - y.mean()))
    assert summary["n"] == n
    assert summary["r_squared"] == pytest.approx(r_squared)
    assert summary["adj_r_squared"] == pytest.approx(1 - (1 - r_squared) * (n - 1) / (n - 4 - 1))


def test_age_difference_explained_needs_a_covariate_and_rows() -> None:
    with pytest.raises(UserError, match="varying covariate"):
        age_difference_explained(pd.DataFrame({"age_difference": [1.0, 2.0, 3.0]}))
    with pytest.raises(UserError, match="more complete rows"):
        age_difference_explained(pd.DataFrame({"age_difference": [1.0, 2.0], "diabetes": [0, 1]}))


# --- FRAX ------------------------------------------------------------------------------------------


FRAX = pd.DataFrame({
    "frax_major_chronological": [0.10, 0.19, 0.25, 0.30, 0.20, 0.05, np.nan],
    "frax_major_spine": [0.22, 0.20, 0.15, 0.35, 0.19, 0.06, 0.30],
    "frax_hip_chronological": [0.010, 0.029, 0.040, 0.030, 0.020, 0.001, 0.02],
    "frax_hip_spine": [0.030, 0.020, 0.050, 0.010, 0.025, 0.002, 0.04],
})


def test_frax_reclassification_counts_a_hand_made_table() -> None:
    major = frax_reclassification(FRAX)
    # up: 0.10→0.22 and 0.19→0.20 (the threshold itself is above); down: 0.25→0.15 and 0.20→0.19.
    assert (major["below_to_above"], major["above_to_below"], major["unchanged"]) == (2, 2, 2)
    assert (major["unchanged_below"], major["unchanged_above"]) == (1, 1)
    assert major["n"] == 6 and major["n_missing"] == 1 and major["scale"] == "probability"
    assert major["reclassified_share"] == pytest.approx(4 / 6) and major["net_reclassified_share"] == 0.0
    hip = frax_hip_reclassification(FRAX)
    assert (hip["below_to_above"], hip["above_to_below"], hip["unchanged"], hip["n"]) == (2, 1, 4, 7)
    assert hip["net_reclassified_share"] == pytest.approx(1 / 7)


def test_frax_percentages_are_detected_and_give_the_same_counts() -> None:
    percent = frax_reclassification(FRAX.assign(frax_major_chronological=FRAX["frax_major_chronological"] * 100,
                                                frax_major_spine=FRAX["frax_major_spine"] * 100))
    probability = frax_reclassification(FRAX)
    assert percent["scale"] == "percent"
    assert {k: v for k, v in percent.items() if k != "scale"} == {k: v for k, v in probability.items() if k != "scale"}
    # Hip percentages all at most 1 % cannot be told from probabilities: the caller says so.
    small = pd.DataFrame({"frax_hip_chronological": [0.02, 0.5], "frax_hip_spine": [0.5, 0.02]})
    guessed = frax_hip_reclassification(small)  # read as 2 % → 50 % and back: wrong, hence scale=
    told = frax_hip_reclassification(small, scale="percent")
    assert (guessed["scale"], guessed["below_to_above"], guessed["above_to_below"]) == ("probability", 1, 1)
    assert (told["scale"], told["unchanged_below"]) == ("percent", 2)


@pytest.mark.parametrize(
    ("chronological", "spine", "message"),
    [
        ([10.0, 120.0], [12.0, 20.0], "between 0 and 100 \\(percent\\), found 120"),
        ([0.1, -0.2], [0.1, 0.3], "between 0 and 1 \\(probability\\), found -0.2"),
        ([0.1, "high"], [0.1, 0.3], "'high'"),
    ],
)
def test_frax_out_of_range_is_a_user_error(chronological: list, spine: list, message: str) -> None:
    table = pd.DataFrame({"frax_major_chronological": chronological, "frax_major_spine": spine})
    with pytest.raises(UserError, match=message) as raised:
        frax_reclassification(table)
    assert "\n" not in str(raised.value)


def test_frax_columns_absent() -> None:
    assert frax_columns_present(pd.DataFrame({"subject_id": ["a"]})) == dict.fromkeys(
        ["frax_major_chronological", "frax_major_spine", "frax_hip_chronological", "frax_hip_spine"], False)
    assert all(frax_columns_present(FRAX).values())
    with pytest.raises(UserError, match="frax_major_spine"):
        frax_reclassification(pd.DataFrame({"frax_major_chronological": [0.1]}))


# --- the figure --------------------------------------------------------------------------------------


def test_at_risk_at_counts_those_still_followed() -> None:
    curve = pd.DataFrame({"time": [0.0, 1.0, 2.0, 3.0], "at_risk": [4, 4, 3, 1]})
    assert at_risk_at(curve, np.array([0.0, 0.5, 2.0, 2.5, 3.5])).tolist() == [4, 4, 3, 1, 0]


def test_curves_stop_when_few_remain_at_risk() -> None:
    # 2 at risk from t = 3 to 4: with at least 3 wanted the curve ends at t = 3, not at the jump at 4.
    curve = pd.DataFrame({"time": [2.0, 0.0, 1.0, 3.0, 4.0], "at_risk": [4, 6, 5, 3, 2]})
    assert curve_while_at_risk(curve, 3)["time"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert curve_while_at_risk(curve, 7).empty
    assert len(curve_while_at_risk(curve, 0)) == 5


def test_kaplan_meier_plot_writes_a_png(planted: pd.DataFrame, tmp_path: Path) -> None:
    table = planted.assign(km_group=km_groups(planted, float(planted["age"].median()),
                                              float(planted["age_difference"].quantile(2 / 3))))
    curves = kaplan_meier_failure(table, "time", "event", "km_group")
    ratios = group_hazard_ratios(table, "time", "event", "km_group", reference=KM_GROUPS[0])
    # The planted exposure and age make the old, accelerated group fail fastest.
    assert ratios.set_index("group").loc["older, accelerated", "hazard_ratio"] > 2
    path = plot_kaplan_meier(curves, ratios, tmp_path / "km.png", "Events by age and age difference")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left behind
    bare = plot_kaplan_meier(curves, None, tmp_path / "bare.png", "No hazard ratios")
    assert bare.read_bytes().startswith(PNG)
    empty = plot_kaplan_meier(curves.iloc[0:0], None, tmp_path / "empty.png", "Nobody")
    assert empty.read_bytes().startswith(PNG)
