"""The radiograph paper's explainability model: the spine age gap regressed on every covariate at once.

One OLS model of SAG on

* ``settings.adjust_for`` (age in years, ``sex[M]``),
* each pathology and other finding (0/1),
* each degenerative condition present at any severity in any region (``any_<condition>``, 0/1),
* with lifestyle: the three numeric factors per unit, ``work[moderate]`` and ``work[heavy]``
  (against sedentary), ``exercise[moderate]`` and ``exercise[vigorous]`` (against none).

Series lacking any of these are left out. Terms constant over the series kept (a finding no
series has) are dropped, as are terms that add nothing new (an exact linear combination of
the terms before them), and named in the summary's ``dropped_terms``.

Example:
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"age": rng.uniform(30, 80, 50), "sex": rng.choice(["F", "M"], 50),
    ...                       "fracture": rng.integers(0, 2, 50), "tarlov_cyst": 0})
    >>> table["sag"] = 3.0 * table["fracture"] + rng.normal(0, 1, 50)
    >>> terms, summary = multivariable_gap_model(table, SagSettings())
    >>> terms["term"].tolist(), summary["n"], summary["dropped_terms"]
    (['intercept', 'age', 'sex[M]', 'fracture'], 50, ['tarlov_cyst'])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from spineage.analysis.associations import adjustment_covariates
from spineage.analysis.covariates import (
    FLAG_FINDINGS,
    LIFESTYLE_LEVELS,
    LIFESTYLE_NUMBERS,
)
from spineage.analysis.odds import finding_presence
from spineage.analysis.settings import SagSettings
from spineage.findings.vocabulary import DEGENERATIVE_CONDITIONS

TERM_COLUMNS: tuple[str, ...] = ("term", "effect", "ci_low", "ci_high", "p")
"""Columns of the model's terms (and ``multivariable.csv``)."""


def explanatory_terms(table: pd.DataFrame, settings: SagSettings) -> pd.DataFrame:
    """Every candidate term of the model (module docstring) as a numeric column, before dropping any."""
    presence = finding_presence(table)
    degenerative = presence[[c for c in DEGENERATIVE_CONDITIONS if c in presence]].add_prefix("any_")
    terms = [adjustment_covariates(table, settings.adjust_for), presence[[c for c in FLAG_FINDINGS if c in presence]], degenerative]
    lifestyle = {}
    for column in LIFESTYLE_NUMBERS:
        if column in table:
            lifestyle[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column, levels in LIFESTYLE_LEVELS.items():
        if column in table:
            known = table[column].isin(levels)
            for level in levels[1:]:
                lifestyle[f"{column}[{level}]"] = (table[column] == level).astype(float).where(known)
    terms.append(pd.DataFrame(lifestyle, index=table.index))
    return pd.concat(terms, axis=1).astype(float)


def _independent(design: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The columns kept (varying, each adding rank beside an intercept) and those dropped, in order."""
    kept, dropped = [], []
    basis = np.ones((len(design), 1))
    for column in design.columns:
        values = design[column].to_numpy(float)[:, None]
        candidate = np.hstack([basis, values])
        if design[column].nunique() > 1 and np.linalg.matrix_rank(candidate) == candidate.shape[1]:
            kept.append(column)
            basis = candidate
        else:
            dropped.append(column)
    return kept, dropped


def multivariable_gap_model(table: pd.DataFrame, settings: SagSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit the explainability model (module docstring).

    Args:
        table: the analysis table (``sag``, ``age``, ``sex``, finding and lifestyle columns).
        settings: ``adjust_for`` (the demographic terms).

    Returns:
        The terms (:data:`TERM_COLUMNS`, the intercept first) and a summary: ``n``, ``r_squared``,
        ``adj_r_squared``, ``f_pvalue``, ``dropped_terms`` (and a ``note`` when the model cannot be fitted:
        no terms, or no more series than parameters).
    """
    import statsmodels.api as sm

    candidates = explanatory_terms(table, settings)
    frame = pd.concat([pd.to_numeric(table["sag"], errors="coerce").rename("sag"), candidates], axis=1).dropna()
    kept, dropped = _independent(frame[candidates.columns])
    summary: dict[str, Any] = {"n": len(frame), "r_squared": math.nan, "adj_r_squared": math.nan, "f_pvalue": math.nan,
                               "dropped_terms": dropped}
    if not kept or len(frame) <= len(kept) + 1:
        summary["note"] = f"not fitted: {len(frame)} series for {len(kept)} varying terms"
        return pd.DataFrame(columns=list(TERM_COLUMNS)), summary
    fit = sm.OLS(frame["sag"].to_numpy(float), sm.add_constant(frame[kept].to_numpy(float), has_constant="add")).fit()
    intervals = fit.conf_int(0.05)
    terms = pd.DataFrame({
        "term": ["intercept", *kept], "effect": fit.params, "ci_low": intervals[:, 0], "ci_high": intervals[:, 1], "p": fit.pvalues,
    })
    summary.update(r_squared=float(fit.rsquared), adj_r_squared=float(fit.rsquared_adj), f_pvalue=float(fit.f_pvalue))
    return terms, summary
