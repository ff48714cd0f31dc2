"""The explainability model: planted coefficients recovered, adjusted R² by its formula, useless terms dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.analysis.explain import TERM_COLUMNS, multivariable_gap_model
from spineage.analysis.settings import SagSettings

PLANTED = {"age": 0.05, "sex[M]": -1.0, "fracture": 3.0, "scoliosis": -2.0, "any_desiccation": 1.5,
           "packs_per_day": 1.2, "work[heavy]": 2.0, "work[moderate]": 0.0}


def _simulated(n: int = 600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({
        "age": rng.uniform(30, 80, n), "sex": rng.choice(["F", "M"], n),
        "fracture": rng.integers(0, 2, n), "scoliosis": rng.integers(0, 2, n), "tarlov_cyst": 0,
        "lumbar_desiccation": rng.choice(["none", "mild", "severe"], n), "cervical_desiccation": "none",
        "packs_per_day": rng.choice([0.0, 0.5, 1.0, 2.0], n), "work": rng.choice(["sedentary", "moderate", "heavy"], n),
    })
    sag = (PLANTED["age"] * table.age + PLANTED["sex[M]"] * (table.sex == "M") + PLANTED["fracture"] * table.fracture
           + PLANTED["scoliosis"] * table.scoliosis + PLANTED["any_desiccation"] * (table.lumbar_desiccation != "none")
           + PLANTED["packs_per_day"] * table.packs_per_day + PLANTED["work[heavy]"] * (table.work == "heavy"))
    table["sag"] = sag + rng.normal(0, 1.0, n)
    return table


def test_planted_coefficients_are_recovered() -> None:
    terms, summary = multivariable_gap_model(_simulated(), SagSettings())
    assert terms.columns.tolist() == list(TERM_COLUMNS)
    by_term = terms.set_index("term")
    assert set(PLANTED) <= set(by_term.index)
    for term, planted in PLANTED.items():
        row = by_term.loc[term]
        assert row["ci_low"] <= planted <= row["ci_high"], f"{term}: planted {planted}, got {row['effect']:.3f}"
        assert abs(row["effect"] - planted) < 0.35, term
    assert by_term.loc["fracture", "p"] < 1e-10 and by_term.loc["work[moderate]", "p"] > 0.01
    assert summary["n"] == 600 and summary["f_pvalue"] < 1e-10


def test_adjusted_r_squared_follows_its_formula() -> None:
    terms, summary = multivariable_gap_model(_simulated(n=120, seed=8), SagSettings())
    n, p = summary["n"], len(terms) - 1  # predictors, without the intercept
    r2 = summary["r_squared"]
    assert summary["adj_r_squared"] == pytest.approx(1 - (1 - r2) * (n - 1) / (n - p - 1), rel=1e-12)
    assert 0 < summary["adj_r_squared"] < r2 < 1


def test_constant_and_redundant_terms_are_dropped() -> None:
    table = _simulated(n=200)
    table["spinal_stenosis"] = table["fracture"]  # an exact copy adds nothing
    terms, summary = multivariable_gap_model(table, SagSettings())
    assert "tarlov_cyst" not in set(terms["term"]) and "spinal_stenosis" not in set(terms["term"])
    assert {"tarlov_cyst", "spinal_stenosis"} <= set(summary["dropped_terms"])
    assert terms["term"].iloc[0] == "intercept" and terms["term"].is_unique


def test_adjust_for_chooses_the_demographic_terms_and_too_few_series_fit_nothing() -> None:
    terms, _ = multivariable_gap_model(_simulated(n=100), SagSettings(adjust_for=("age",)))
    assert "age" in set(terms["term"]) and "sex[M]" not in set(terms["term"])
    terms, summary = multivariable_gap_model(_simulated(n=6), SagSettings())
    assert terms.empty and np.isnan(summary["r_squared"]) and "not fitted" in summary["note"]
