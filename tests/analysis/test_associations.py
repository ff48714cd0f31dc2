"""Table 5: each variable's SAG effect against hand-computed values, a planted effect found, a null one not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spineage.analysis.associations import (
    ASSOCIATION_COLUMNS,
    associations_markdown,
    sag_associations,
)
from spineage.analysis.settings import SagSettings

TINY = SagSettings(min_group_size=3)


def _row(table: pd.DataFrame, variable: str, category: str) -> pd.Series:
    rows = table[(table["variable"] == variable) & (table["category"] == category)]
    assert len(rows) == 1, (variable, category)
    return rows.iloc[0]


def _tiny() -> pd.DataFrame:
    return pd.DataFrame({
        "sag": [0.5, -1.0, 2.0, 1.5, 0.0, 4.0, 6.5, 3.0, 5.0],
        "age": [35.0, 42, 51, 60, 67, 44, 58, 70, 49],
        "sex": ["F", "M", "F", "M", "F", "M", "F", "M", "M"],
        "fracture": [0, 0, 0, 0, 0, 1, 1, 1, 1],
    })


def test_a_flag_effect_is_the_difference_of_means_with_the_pooled_t_interval() -> None:
    table = _tiny()
    row = _row(sag_associations(table, TINY), "fracture", "present")
    with_, without = table.loc[table.fracture == 1, "sag"], table.loc[table.fracture == 0, "sag"]
    difference = with_.mean() - without.mean()
    dof = len(table) - 2
    pooled = ((len(with_) - 1) * with_.var() + (len(without) - 1) * without.var()) / dof
    se = math.sqrt(pooled * (1 / len(with_) + 1 / len(without)))
    t = stats.t.ppf(0.975, dof)
    assert (row["model"], row["n"], row["n_reference"]) == ("pathologies", 4, 5)
    assert row["effect"] == pytest.approx(difference, rel=1e-10)
    assert row["ci_low"] == pytest.approx(difference - t * se, rel=1e-10)
    assert row["ci_high"] == pytest.approx(difference + t * se, rel=1e-10)
    assert row["p"] == pytest.approx(2 * stats.t.sf(abs(difference / se), dof), rel=1e-8)
    # adjusted: the flag's coefficient of sag ~ 1 + flag + age + male by least squares
    design = np.column_stack([np.ones(len(table)), table.fracture, table.age, table.sex == "M"]).astype(float)
    assert row["adj_effect"] == pytest.approx(np.linalg.lstsq(design, table.sag, rcond=None)[0][1], rel=1e-8)
    assert row["note"] == ""


def test_the_table_has_the_contract_columns_and_only_the_variables_present() -> None:
    table = sag_associations(_tiny(), TINY)
    assert table.columns.tolist() == list(ASSOCIATION_COLUMNS)
    assert table["variable"].tolist() == ["fracture"]


def test_severities_are_each_compared_with_none_and_small_ones_get_a_note() -> None:
    rng = np.random.default_rng(1)
    category = ["none"] * 12 + ["mild"] * 10 + ["severe"] * 8 + ["moderate"] * 4
    sag = rng.normal(0, 1, len(category)) + np.array([{"none": 0, "mild": 1, "moderate": 9, "severe": 3}[c] for c in category])
    table = pd.DataFrame({"sag": sag, "age": rng.uniform(30, 80, len(sag)), "sex": rng.choice(["F", "M"], len(sag)),
                          "lumbar_disc_bulge": category})
    result = sag_associations(table, SagSettings(min_group_size=5))
    assert result["category"].tolist() == ["mild", "moderate", "severe"]
    assert set(result["model"]) == {"lumbar_degenerative"} and (result["n_reference"] == 12).all()
    none = table.loc[table.lumbar_disc_bulge == "none", "sag"].mean()
    for severity in ("mild", "severe"):
        row = _row(result, "disc_bulge", severity)
        # the 4 moderate series leave the model, so each estimate stays a plain difference from none
        assert row["effect"] == pytest.approx(table.loc[table.lumbar_disc_bulge == severity, "sag"].mean() - none, rel=1e-9)
    moderate = _row(result, "disc_bulge", "moderate")
    assert moderate["n"] == 4 and "too few series" in moderate["note"]
    assert all(math.isnan(moderate[c]) for c in ("effect", "ci_low", "ci_high", "p", "adj_effect", "adj_p"))


def test_an_absent_variable_has_no_row_and_a_small_group_keeps_its_row_without_estimates() -> None:
    table = _tiny().assign(spinal_stenosis=0, scoliosis=[1] * 7 + [0] * 2, fracture=[1] + [0] * 8)
    result = sag_associations(table, TINY)
    assert not (result["variable"] == "spinal_stenosis").any()
    fracture, scoliosis = _row(result, "fracture", "present"), _row(result, "scoliosis", "present")
    assert fracture["n"] == 1 and fracture["n_reference"] == 8 and "too few series" in fracture["note"]
    assert math.isnan(fracture["effect"])
    assert scoliosis["n"] == 7 and "reference" in scoliosis["note"] and math.isnan(scoliosis["effect"])


def test_lifestyle_factors_per_unit_and_by_level() -> None:
    rng = np.random.default_rng(2)
    n = 60
    table = pd.DataFrame({"age": rng.uniform(30, 80, n), "sex": rng.choice(["F", "M"], n),
                          "packs_per_day": rng.choice([0.0, 0.5, 1.0, 2.0], n),
                          "work": rng.choice(["sedentary", "moderate", "heavy"], n)})
    table["sag"] = 1.5 * table["packs_per_day"] + rng.normal(0, 1, n)
    table.loc[3, "packs_per_day"] = np.nan  # a missing answer leaves that factor's model only
    result = sag_associations(table, TINY)
    assert result["model"].eq("lifestyle").all()
    packs = _row(result, "packs_per_day", "per unit")
    known = table.dropna(subset=["packs_per_day"])
    assert packs["n"] == n - 1 and pd.isna(packs["n_reference"])
    assert packs["effect"] == pytest.approx(np.polyfit(known.packs_per_day, known.sag, 1)[0], rel=1e-9)
    heavy = _row(result, "work", "heavy")
    sedentary = table.loc[table.work == "sedentary", "sag"]
    assert heavy["n_reference"] == len(sedentary)
    assert heavy["effect"] == pytest.approx(table.loc[table.work == "heavy", "sag"].mean() - sedentary.mean(), rel=1e-9)


def _confounded(effect: float, seed: int, n: int = 400) -> pd.DataFrame:
    """sag = 0.1 * age + effect * flag + noise, the flag far more common in the old."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 80, n)
    flag = (rng.uniform(size=n) < 1 / (1 + np.exp(-(age - 55) / 5))).astype(int)
    sag = 0.1 * age + effect * flag + rng.normal(0, 1, n)
    return pd.DataFrame({"sag": sag, "age": age, "sex": rng.choice(["F", "M"], n), "fracture": flag})


def test_adjustment_for_age_recovers_a_planted_effect_the_crude_model_overstates() -> None:
    row = _row(sag_associations(_confounded(2.0, seed=3), SagSettings()), "fracture", "present")
    assert row["adj_ci_low"] <= 2.0 <= row["adj_ci_high"]
    assert abs(row["adj_effect"] - 2.0) < 0.3
    assert row["ci_low"] > 2.5  # confounded by age: the crude CI lies well above the planted 2
    unadjusted_only = _row(sag_associations(_confounded(2.0, seed=3), SagSettings(adjust_for=())), "fracture", "present")
    assert unadjusted_only["adj_effect"] == pytest.approx(unadjusted_only["effect"])


def test_a_null_effect_is_not_found() -> None:
    rng = np.random.default_rng(4)
    n = 400
    table = pd.DataFrame({"sag": rng.normal(0, 3, n), "age": rng.uniform(30, 80, n), "sex": rng.choice(["F", "M"], n),
                          "fracture": rng.integers(0, 2, n)})
    row = _row(sag_associations(table, SagSettings()), "fracture", "present")
    assert row["p"] > 0.05 and row["adj_p"] > 0.05
    assert row["ci_low"] <= 0.0 <= row["ci_high"] and row["adj_ci_low"] <= 0.0 <= row["adj_ci_high"]


def test_the_markdown_table_has_a_section_per_model_and_marks_significance() -> None:
    table = _confounded(2.0, seed=3).assign(spinal_stenosis=0, work="sedentary")
    table.loc[:199, "work"] = "heavy"
    table.loc[:1, "spinal_stenosis"] = 1
    text = associations_markdown(sag_associations(table, SagSettings()))
    assert "## pathologies" in text and "## lifestyle" in text and "## other findings" not in text
    fracture = next(line for line in text.splitlines() if line.startswith("| fracture |"))
    assert fracture.count("*") == 2 and "p < 0.001*" in fracture
    stenosis = next(line for line in text.splitlines() if line.startswith("| spinal stenosis |"))
    assert "—" in stenosis and "too few series" in stenosis and "*" not in stenosis
