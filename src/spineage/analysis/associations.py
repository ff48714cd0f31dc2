"""The MRI paper's Table 5: the spine age gap regressed on each finding and lifestyle factor, one model per variable.

Each variable gets its own ordinary least-squares model of SAG (as the paper):

=========================  =====================================  ===============================
model                      variable (column)                      categories against reference
=========================  =====================================  ===============================
``<region>_degenerative``  each degenerative condition in the     each severity (the most severe
                           region (``lumbar_disc_bulge`` …)       present) against ``none``
``pathologies``            each pathology (0/1)                   ``present`` against absent
``other_findings``         each other finding (0/1)               ``present`` against absent
``lifestyle``              packs, alcohol days, sedentary hours   ``per unit``
                           work; exercise                         each level against sedentary; none
=========================  =====================================  ===============================

Each model is fitted twice: unadjusted (``effect``, ``ci_low``, ``ci_high``, ``p``: the paper) and
adjusted for ``settings.adjust_for`` (``adj_*``: + age + sex by default). 95 % CIs are
t-based. A category with fewer than ``settings.min_group_size`` series (or a reference that small)
keeps its row with ``n`` but NaN estimates and a ``note``; its series leave the model, so the
other categories are still compared with the reference alone. A category no series has is left
out (a variable none has, entirely).

Example:
    >>> table = pd.DataFrame({"sag": [1.0, 2.0, 3.0, 5.0, 6.0, 7.0], "age": [40.0, 50, 60, 45, 55, 65],
    ...                       "sex": ["F", "M"] * 3, "fracture": [0, 0, 0, 1, 1, 1]})
    >>> row = sag_associations(table, SagSettings(min_group_size=3)).iloc[0]
    >>> row["variable"], row["category"], int(row["n"]), int(row["n_reference"]), round(float(row["effect"]), 6)
    ('fracture', 'present', 3, 3, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spineage.analysis.covariates import (
    LIFESTYLE_LEVELS,
    LIFESTYLE_NUMBERS,
    NONE,
    region_column,
)
from spineage.analysis.settings import SagSettings
from spineage.findings.vocabulary import (
    DEGENERATIVE_CONDITIONS,
    DEGENERATIVE_SEVERITIES,
    OTHER_FINDINGS,
    PATHOLOGIES,
)

MODELS: tuple[str, ...] = (
    "lumbar_degenerative", "cervical_degenerative", "thoracic_degenerative", "pathologies", "other_findings", "lifestyle",
)
"""The sections of Table 5, in its order."""

ASSOCIATION_COLUMNS: tuple[str, ...] = (
    "model", "variable", "category", "n", "n_reference",
    "effect", "ci_low", "ci_high", "p", "adj_effect", "adj_ci_low", "adj_ci_high", "adj_p", "note",
)
"""Columns of :func:`sag_associations` (and ``associations.csv``)."""

PRESENT, ABSENT, PER_UNIT = "present", "absent", "per unit"
SIGNIFICANCE = 0.05
"""p below this is marked ``*`` in the Markdown table and counted as significant."""

_ESTIMATES = ("effect", "ci_low", "ci_high", "p")


@dataclass(frozen=True)
class Variable:
    """One row group of Table 5: a column of the analysis table and how it is compared.

    Args:
        model: the section of Table 5.
        name: the variable as shown (the condition or lifestyle factor).
        column: its column in the analysis table.
        reference: the reference category (None for a factor per unit).
        categories: the categories compared with the reference, in the order shown.
    """

    model: str
    name: str
    column: str
    reference: str | None = None
    categories: tuple[str, ...] = ()


def table5_variables(table: pd.DataFrame) -> list[Variable]:
    """The variables of Table 5 whose column ``table`` holds, in Table 5's order."""
    variables: list[Variable] = []
    for region in ("lumbar", "cervical", "thoracic"):
        for condition in DEGENERATIVE_CONDITIONS:
            variables.append(Variable(f"{region}_degenerative", condition, region_column(region, condition), NONE,
                                      DEGENERATIVE_SEVERITIES[condition]))
    variables += [Variable("pathologies", name, name, ABSENT, (PRESENT,)) for name in PATHOLOGIES]
    variables += [Variable("other_findings", name, name, ABSENT, (PRESENT,)) for name in OTHER_FINDINGS]
    variables += [Variable("lifestyle", name, name) for name in LIFESTYLE_NUMBERS]
    variables += [Variable("lifestyle", name, name, levels[0], levels[1:]) for name, levels in LIFESTYLE_LEVELS.items()]
    return [v for v in variables if v.column in table.columns]


def adjustment_covariates(table: pd.DataFrame, adjust_for: tuple[str, ...]) -> pd.DataFrame:
    """The adjustment columns: ``age`` (years) and ``sex[M]`` (1 for M, 0 for F), those of ``adjust_for``."""
    columns = {}
    if "age" in adjust_for:
        columns["age"] = pd.to_numeric(table["age"], errors="coerce").astype(float)
    if "sex" in adjust_for:
        columns["sex[M]"] = table["sex"].map({"M": 1.0, "F": 0.0})
    return pd.DataFrame(columns, index=table.index)


def ols_terms(y: pd.Series, design: pd.DataFrame, terms: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """OLS of ``y`` on ``design`` plus an intercept: (effect, ci_low, ci_high, p) of each of ``terms``.

    Constant design columns (other than ``terms``) are dropped. NaN for every term when the model
    cannot be estimated (fewer series than parameters + 1, or collinear columns).
    """
    import statsmodels.api as sm

    nan = {term: (math.nan,) * 4 for term in terms}
    design = design[[c for c in design.columns if c in terms or design[c].nunique() > 1]].astype(float)
    exog = np.column_stack([np.ones(len(design)), design.to_numpy()]) if len(design) else np.empty((0, design.shape[1] + 1))
    if len(y) <= exog.shape[1] or np.linalg.matrix_rank(exog) < exog.shape[1]:
        return nan
    fit = sm.OLS(np.asarray(y, float), exog).fit()
    intervals = fit.conf_int(0.05)
    out = {}
    for term in terms:
        i = 1 + list(design.columns).index(term)
        out[term] = (float(fit.params[i]), float(intervals[i, 0]), float(intervals[i, 1]), float(fit.pvalues[i]))
    return out


def _labels(table: pd.DataFrame, variable: Variable) -> pd.Series:
    values = table[variable.column]
    if variable.reference == ABSENT:  # a 0/1 flag
        return pd.to_numeric(values, errors="coerce").map({0: ABSENT, 1: PRESENT})
    return values.astype(object).where(values.notna(), None)


def _row(variable: Variable, category: str, n: int, n_reference, fits: tuple[dict, dict], note: str) -> dict:
    plain, adjusted = fits
    row = {"model": variable.model, "variable": variable.name, "category": category, "n": n, "n_reference": n_reference}
    row.update(dict(zip(_ESTIMATES, plain.get(category, (math.nan,) * 4))))
    row.update({f"adj_{k}": v for k, v in zip(_ESTIMATES, adjusted.get(category, (math.nan,) * 4))})
    row["note"] = note
    return row


def _categorical_rows(table: pd.DataFrame, variable: Variable, settings: SagSettings) -> list[dict]:
    adjust = adjustment_covariates(table, settings.adjust_for)
    frame = pd.concat([table["sag"].astype(float).rename("_sag"), _labels(table, variable).rename("_label"), adjust], axis=1).dropna()
    counts = frame["_label"].value_counts()
    n_reference = int(counts.get(variable.reference, 0))
    small = f"too few series (n < {settings.min_group_size})"
    if n_reference < settings.min_group_size:
        notes = {c: f"too few series in the reference group ({variable.reference}: n < {settings.min_group_size})" for c in variable.categories}
    else:
        notes = {c: small for c in variable.categories if counts.get(c, 0) < settings.min_group_size}
    estimable = [c for c in variable.categories if c not in notes]
    fits: tuple[dict, dict] = ({}, {})
    if estimable:
        data = frame[frame["_label"].isin([variable.reference, *estimable])]
        dummies = pd.DataFrame({c: (data["_label"] == c).astype(float) for c in estimable}, index=data.index)
        fits = (ols_terms(data["_sag"], dummies, estimable),
                ols_terms(data["_sag"], pd.concat([dummies, data[adjust.columns]], axis=1), estimable))
        for category in estimable:
            if math.isnan(fits[0][category][0]):
                notes[category] = "too few series to fit"
            elif math.isnan(fits[1][category][0]):
                notes[category] = "adjusted model not estimable"
    # A category no series has (a severe lumbar uncovertebral osteophyte) is not a row of the table.
    return [_row(variable, c, int(counts.get(c, 0)), n_reference, fits, notes.get(c, "")) for c in variable.categories if counts.get(c, 0)]


def _per_unit_rows(table: pd.DataFrame, variable: Variable, settings: SagSettings) -> list[dict]:
    adjust = adjustment_covariates(table, settings.adjust_for)
    values = pd.to_numeric(table[variable.column], errors="coerce").astype(float).rename(PER_UNIT)
    frame = pd.concat([table["sag"].astype(float).rename("_sag"), values, adjust], axis=1).dropna()
    note, fits = "", ({}, {})
    if len(frame) < settings.min_group_size:
        note = f"too few series (n < {settings.min_group_size})"
    elif frame[PER_UNIT].nunique() < 2:
        note = "no variation"
    else:
        fits = (ols_terms(frame["_sag"], frame[[PER_UNIT]], [PER_UNIT]),
                ols_terms(frame["_sag"], frame[[PER_UNIT, *adjust.columns]], [PER_UNIT]))
        note = "too few series to fit" if math.isnan(fits[0][PER_UNIT][0]) else (
            "adjusted model not estimable" if math.isnan(fits[1][PER_UNIT][0]) else "")
    return [_row(variable, PER_UNIT, len(frame), pd.NA, fits, note)]


def sag_associations(table: pd.DataFrame, settings: SagSettings) -> pd.DataFrame:
    """Table 5 (module docstring) as a long table of :data:`ASSOCIATION_COLUMNS`, one row per variable and category.

    Args:
        table: the analysis table (:func:`spineage.analysis.covariates.analysis_table`): ``sag``,
            ``age``, ``sex`` and whichever variable columns it holds (the others are left out).
        settings: ``adjust_for`` and ``min_group_size``.
    """
    rows = []
    for variable in table5_variables(table):
        rows += _per_unit_rows(table, variable, settings) if variable.reference is None else _categorical_rows(table, variable, settings)
    out = pd.DataFrame(rows, columns=list(ASSOCIATION_COLUMNS))
    out["n"] = out["n"].astype("Int64")
    out["n_reference"] = out["n_reference"].astype("Int64")
    for column in ASSOCIATION_COLUMNS[5:13]:
        out[column] = out[column].astype(float)
    return out


def _estimate(effect: float, low: float, high: float, p: float) -> str:
    if math.isnan(effect):
        return "—"
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return f"{effect:+.2f} ({low:+.2f} to {high:+.2f}), {p_text}{'*' if p < SIGNIFICANCE else ''}"


def associations_markdown(table: pd.DataFrame, adjusted_for: tuple[str, ...] = ("age", "sex")) -> str:
    """Table 5 as Markdown: a section per model, a row per variable and category.

    Args:
        table: :func:`sag_associations`'s table.
        adjusted_for: the covariates of the adjusted columns, for the legend.
    """
    adjusted = " + ".join(adjusted_for) if adjusted_for else "nothing"
    lines = [
        "# Associations of the spine age gap (Table 5)",
        "",
        (
            "SAG effect: years of spine age gap of the category against its reference (per unit for numbers), "
            f"one OLS model per variable; adjusted: + {adjusted}. 95 % CI (t). * p < {SIGNIFICANCE:g}."
        ),
    ]
    for model in [m for m in MODELS if m in set(table["model"])] + sorted(set(table["model"]) - set(MODELS)):
        rows = table[table["model"] == model]
        lines += ["", f"## {model.replace('_', ' ')}", "",
                  "| variable | category | n | reference n | SAG effect (95 % CI), p | adjusted SAG effect (95 % CI), p | note |",
                  "|---|---|---:|---:|---|---|---|"]
        previous = None
        for r in rows.itertuples(index=False):
            name = r.variable.replace("_", " ") if r.variable != previous else ""
            previous = r.variable
            reference = "" if pd.isna(r.n_reference) else str(int(r.n_reference))
            lines.append(
                f"| {name} | {r.category} | {int(r.n)} | {reference} | {_estimate(r.effect, r.ci_low, r.ci_high, r.p)} | "
                f"{_estimate(r.adj_effect, r.adj_ci_low, r.adj_ci_high, r.adj_p)} | {r.note or ''} |"
            )
    return "\n".join(lines) + "\n"
