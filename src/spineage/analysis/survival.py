"""The radiograph paper's outcome analyses: incident fracture and death against the spine age difference.

VERTE-X (Cho, Hong et al. 2025) follows the subjects of its radiograph test set and asks whether
the *age difference* (bias-corrected spine age minus chronological age) predicts what happens
next. This module reproduces those analyses on a per-subject table (``subject_id``, ``age``,
``sex`` F/M, ``age_difference`` and the columns of ``outcomes.csv``):

* :func:`fracture_outcomes` turns ``outcomes.csv`` into times and events. Fracture outcomes are
  **cause-specific**: for the vertebral model a non-vertebral fracture and death censor at their
  time, and vice versa; any fracture counts both types (and a fracture of unknown type, a flag
  without a type, counts for any fracture only). Death is followed over ``followup_years``.
* :func:`km_groups`, :func:`kaplan_meier_failure` and :func:`group_hazard_ratios`: the Kaplan–Meier
  figure, four groups by chronological age (at or above the median: older) and age difference
  (at or above the top-tertile cut of the derivation test set: accelerated), with each group's
  unadjusted Cox HR against the young, not accelerated group.
* :func:`cox_per_sd` and :func:`cox_table`: Tables 2 (overall, vertebral and non-vertebral
  fracture) and 3 (all-cause death), the HR per SD of the age difference in the models of
  :data:`PAPER_MODELS`, each with a Schoenfeld-residual check of proportional hazards.
* :func:`age_difference_explained`: Supplementary Table 4's analogue, an OLS of the age difference
  on clinical covariates.
* :func:`frax_reclassification`: how many subjects cross a FRAX treatment threshold when FRAX is
  computed at the spine age instead of the chronological age.

Rows lacking a value the analysis needs are left out (complete cases); ``n`` says how many were
used. Bad values a user can cause (negative follow-up, an event flag of 2, an unknown fracture
type, FRAX outside its range) are :class:`~spineage.errors.UserError` with a one-line message.

Example:
    >>> outcomes = pd.DataFrame({"followup_years": [5.0, 3.0, 4.0], "death": [0, 1, 0],
    ...                          "fracture_followup_years": [2.0, 3.0, 1.5], "incident_fracture": [1, 0, 1],
    ...                          "incident_fracture_type": ["vertebral", "", "non_vertebral"]})
    >>> events = fracture_outcomes(outcomes)
    >>> events[["event_any_fracture", "event_vertebral_fracture", "event_nonvertebral_fracture"]].to_numpy().tolist()
    [[1, 1, 0], [0, 0, 0], [1, 0, 1]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from spineage.analysis.associations import adjustment_covariates
from spineage.errors import UserError

FOLLOWUP_COLUMNS: tuple[str, ...] = (
    "followup_years", "death", "fracture_followup_years", "incident_fracture", "incident_fracture_type",
)
"""The columns of ``outcomes.csv`` that :func:`fracture_outcomes` needs."""

FRACTURE_TYPES: tuple[str, ...] = ("vertebral", "non_vertebral", "")
"""The values of ``incident_fracture_type`` ("" for no fracture, or a fracture of unknown type)."""

FRACTURE_OUTCOMES: dict[str, tuple[str, str]] = {
    "any fracture": ("time_fracture", "event_any_fracture"),
    "vertebral fracture": ("time_fracture", "event_vertebral_fracture"),
    "non-vertebral fracture": ("time_fracture", "event_nonvertebral_fracture"),
}
"""Table 2's outcomes: (time, event) columns of :func:`fracture_outcomes`."""

MORTALITY_OUTCOMES: dict[str, tuple[str, str]] = {"all-cause death": ("time_death", "event_death")}
"""Table 3's outcome: (time, event) columns of :func:`fracture_outcomes`."""

PAPER_MODELS: dict[str, tuple[str, ...]] = {
    "model 1": ("age", "sex"),
    "model 2": ("age", "sex", "prevalent_vertebral_fracture", "diabetes", "glucocorticoids", "rheumatoid_arthritis", "bmi"),
    "model 3": ("age", "sex", "prevalent_vertebral_fracture", "diabetes", "glucocorticoids", "rheumatoid_arthritis", "bmi",
                "osteoporosis"),
}
"""The adjustment sets of Tables 2 and 3 (besides the age difference per SD)."""

KM_GROUPS: tuple[str, ...] = ("younger, not accelerated", "younger, accelerated", "older, not accelerated", "older, accelerated")
"""The Kaplan–Meier groups, in order; the first is the reference of the hazard ratios."""

PH_ALPHA = 0.05
"""Proportional hazards are accepted when every term's Schoenfeld test has p at or above this, divided by the
number of terms tested (Bonferroni): with eight terms, an uncorrected 0.05 would reject a third of models whose
hazards are proportional."""

COX_TABLE_COLUMNS: tuple[str, ...] = (
    "outcome", "model", "hr_per_sd", "ci_low", "ci_high", "p", "n", "events", "ph_p_min", "ph_ok", "note",
)
"""Columns of :func:`cox_table`."""

GROUP_HR_COLUMNS: tuple[str, ...] = ("group", "hazard_ratio", "ci_low", "ci_high", "p", "n", "events", "note")
"""Columns of :func:`group_hazard_ratios`."""

KM_COLUMNS: tuple[str, ...] = ("group", "time", "cumulative_failure", "ci_low", "ci_high", "at_risk", "events")
"""Columns of :func:`kaplan_meier_failure`."""

TERM_COLUMNS: tuple[str, ...] = ("term", "effect", "std_error", "ci_low", "ci_high", "p")
"""Columns of :func:`age_difference_explained`'s terms."""

EXPLAINED_COVARIATES: tuple[str, ...] = (
    "height_cm", "bmd_t_lumbar", "diabetes", "prevalent_vertebral_fracture", "spinal_prosthesis", "sex",
)
"""Supplementary Table 4's covariates of the age difference."""

FRAX_MAJOR: tuple[str, str] = ("frax_major_chronological", "frax_major_spine")
"""10-year major osteoporotic fracture probability at chronological and at spine age."""

FRAX_HIP: tuple[str, str] = ("frax_hip_chronological", "frax_hip_spine")
"""10-year hip fracture probability at chronological and at spine age."""

FRAX_MAJOR_THRESHOLD = 0.20
"""Treatment threshold of the major osteoporotic fracture probability (NOF: 20 %)."""

FRAX_HIP_THRESHOLD = 0.03
"""Treatment threshold of the hip fracture probability (NOF: 3 %)."""

FRAX_SCALES: tuple[str, str] = ("percent", "probability")


# --- shared checks ---------------------------------------------------------------------------


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if missing:
        raise UserError(f"Expected column(s) {', '.join(missing)} in {what}, found "
                        f"{', '.join(map(str, table.columns)) or 'none'}")


def _example(table: pd.DataFrame, mask: pd.Series) -> str:
    """'subject <id>' (or 'row <index>') of the first row of ``mask``, for an error message."""
    first = mask[mask].index[0]
    if "subject_id" in table.columns:
        return f"subject {table.loc[first, 'subject_id']}"
    return f"row {first}"


def _numbers(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as floats (missing stays NaN); text that is not a number is a UserError."""
    raw = table[column]
    if raw.dtype == bool:
        return raw.astype(float)
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    text = raw.where(raw.notna(), "").astype(str).str.strip()
    bad = values.isna() & raw.notna() & (text != "")
    if bad.any():
        raise UserError(f"Expected numbers in {column}, found {int(bad.sum())} that are not "
                        f"(e.g. {raw[bad].iloc[0]!r} for {_example(table, bad)})")
    return values


def _flags(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as 0/1 floats (missing stays NaN); any other value is a UserError."""
    values = _numbers(table, column)
    bad = values.notna() & ~values.isin([0.0, 1.0])
    if bad.any():
        raise UserError(f"Expected {column} as 0 or 1, found {int(bad.sum())} other value(s) "
                        f"(e.g. {values[bad].iloc[0]:g} for {_example(table, bad)})")
    return values


def _durations(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as non-negative finite floats (missing stays NaN); a negative or infinite time is a UserError."""
    values = _numbers(table, column)
    bad = values.notna() & ~((values >= 0) & np.isfinite(values))
    if bad.any():
        raise UserError(f"Expected {column} as a finite time of at least 0 years, found {int(bad.sum())} that is not "
                        f"(e.g. {values[bad].iloc[0]:g} for {_example(table, bad)})")
    return values


def _covariate(table: pd.DataFrame, column: str) -> pd.Series:
    """A model term: ``sex`` as ``sex[M]`` (1 male, 0 female), any other column as numbers."""
    if column != "sex":
        return _numbers(table, column).rename(column)
    male = adjustment_covariates(table, ("sex",))["sex[M]"]
    bad = male.isna() & table["sex"].notna() & (table["sex"].astype(str).str.strip() != "")
    if bad.any():
        raise UserError(f"Expected sex as F or M, found {int(bad.sum())} other value(s) "
                        f"(e.g. {table['sex'][bad].iloc[0]!r} for {_example(table, bad)})")
    return male.astype(float)


def _term(column: str) -> str:
    return "sex[M]" if column == "sex" else column


# --- outcomes --------------------------------------------------------------------------------


def fracture_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Times and events of the fracture and death analyses, added to a copy of ``outcomes``.

    Added columns: ``time_fracture`` (``fracture_followup_years``), ``event_any_fracture``,
    ``event_vertebral_fracture``, ``event_nonvertebral_fracture`` (cause-specific: the other type
    and death are censoring), ``time_death`` (``followup_years``), ``event_death``, and ``bmi``
    (kg/m², from ``weight_kg`` and ``height_cm`` when both are present).

    Args:
        outcomes: a table with the columns of ``outcomes.csv`` (at least :data:`FOLLOWUP_COLUMNS`).

    Raises:
        UserError: for a missing column, a missing, negative or non-numeric follow-up, an event flag
            other than 0/1, a fracture type outside :data:`FRACTURE_TYPES`, a type without the
            ``incident_fracture`` flag, or a fracture follow-up longer than the follow-up.

    Example:
        >>> table = pd.DataFrame({"followup_years": [4.0], "death": [1], "fracture_followup_years": [4.0],
        ...                       "incident_fracture": [0], "incident_fracture_type": [""],
        ...                       "height_cm": [160.0], "weight_kg": [64.0]})
        >>> row = fracture_outcomes(table).iloc[0]
        >>> float(row["time_death"]), int(row["event_death"]), round(float(row["bmi"]), 2)
        (4.0, 1, 25.0)
    """
    _require(outcomes, FOLLOWUP_COLUMNS, "the outcomes table")
    times = {}
    for column in ("followup_years", "fracture_followup_years"):
        values = _durations(outcomes, column)
        if values.isna().any():
            missing = values.isna()
            raise UserError(f"Expected a follow-up time in every row of {column}, found {int(missing.sum())} missing "
                            f"(e.g. {_example(outcomes, missing)})")
        times[column] = values
    flags = {}
    for column in ("death", "incident_fracture"):
        values = _flags(outcomes, column)
        if values.isna().any():
            missing = values.isna()
            raise UserError(f"Expected {column} as 0 or 1 in every row, found {int(missing.sum())} missing "
                            f"(e.g. {_example(outcomes, missing)})")
        flags[column] = values.astype(int)
    types = outcomes["incident_fracture_type"].where(outcomes["incident_fracture_type"].notna(), "").astype(str).str.strip()
    unknown = ~types.isin(FRACTURE_TYPES)
    if unknown.any():
        raise UserError(f"Expected incident_fracture_type vertebral, non_vertebral or empty, found "
                        f"{types[unknown].iloc[0]!r} ({int(unknown.sum())} row(s), e.g. {_example(outcomes, unknown)})")
    orphan = (types != "") & (flags["incident_fracture"] == 0)
    if orphan.any():
        raise UserError(f"Expected incident_fracture = 1 wherever incident_fracture_type is set, found "
                        f"{int(orphan.sum())} typed fracture(s) without the flag (e.g. {_example(outcomes, orphan)})")
    # Fracture follow-up ends at the fracture, death or censoring: never after the end of follow-up.
    longer = times["fracture_followup_years"] > times["followup_years"] + 1e-9
    if longer.any():
        raise UserError(f"Expected fracture_followup_years at most followup_years, found {int(longer.sum())} longer "
                        f"(e.g. {_example(outcomes, longer)})")
    table = outcomes.copy()
    table["time_fracture"] = times["fracture_followup_years"]
    table["event_any_fracture"] = flags["incident_fracture"]
    table["event_vertebral_fracture"] = (types == "vertebral").astype(int)
    table["event_nonvertebral_fracture"] = (types == "non_vertebral").astype(int)
    table["time_death"] = times["followup_years"]
    table["event_death"] = flags["death"]
    if "height_cm" in table.columns and "weight_kg" in table.columns:
        height_m = _numbers(table, "height_cm") / 100.0
        table["bmi"] = (_numbers(table, "weight_kg") / height_m**2).where(height_m > 0)
    return table


# --- Kaplan–Meier groups ---------------------------------------------------------------------


def km_groups(table: pd.DataFrame, age_median: float, accelerated_threshold: float) -> pd.Series:
    """Each subject's Kaplan–Meier group (:data:`KM_GROUPS`), a categorical named ``km_group``.

    Older is ``age >= age_median``; accelerated is ``age_difference >= accelerated_threshold``
    (the top-tertile cut of the age difference in the derivation test set). A subject without
    age or age difference has no group (NaN).

    Args:
        table: ``age`` and ``age_difference`` per subject.
        age_median: the median chronological age that splits younger from older.
        accelerated_threshold: the age difference (years) from which ageing counts as accelerated.

    Example:
        >>> table = pd.DataFrame({"age": [50.0, 60.0, 70.0], "age_difference": [-1.0, 2.0, 3.0]})
        >>> km_groups(table, age_median=60.0, accelerated_threshold=2.0).tolist()
        ['younger, not accelerated', 'older, accelerated', 'older, accelerated']
    """
    _require(table, ("age", "age_difference"), "the subjects table")
    for name, value in (("age_median", age_median), ("accelerated_threshold", accelerated_threshold)):
        if not isinstance(value, (int, float, np.number)) or not math.isfinite(float(value)):
            raise UserError(f"Expected {name} as a finite number of years, found {value!r}")
    age, difference = _numbers(table, "age"), _numbers(table, "age_difference")
    codes = 2 * (age >= age_median).astype(int) + (difference >= accelerated_threshold).astype(int)
    codes = codes.where(age.notna() & difference.notna(), -1)
    return pd.Series(pd.Categorical.from_codes(codes.to_numpy(), categories=list(KM_GROUPS)), index=table.index,
                     name="km_group")


def _survival_frame(table: pd.DataFrame, time: str, event: str, group: str) -> pd.DataFrame:
    """Complete rows of (time, event, group), checked: time >= 0, event 0/1."""
    _require(table, (time, event, group), "the subjects table")
    frame = pd.DataFrame({"time": _durations(table, time), "event": _flags(table, event), "group": table[group]})
    return frame.dropna().astype({"event": int})


def _group_order(labels: pd.Series) -> list:
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return list(labels.cat.categories)
    return sorted(labels.dropna().unique(), key=str)


def kaplan_meier_failure(table: pd.DataFrame, time: str, event: str, group: str, alpha: float = 0.05) -> pd.DataFrame:
    """Kaplan–Meier cumulative failure (1 − survival) of each group, as a long table (:data:`KM_COLUMNS`).

    One row per group and time of the group's event table (0 first): the cumulative failure just
    after that time, its ``1 − alpha`` interval (lifelines' exponential Greenwood interval of the
    survival, turned over), the number at risk just before it and the events at it. Groups without
    subjects have no rows.

    Args:
        table: one row per subject.
        time: the column of follow-up times (years).
        event: the column of event flags (0/1).
        group: the column of group labels (a categorical's order is kept).
        alpha: 1 − the interval's coverage.

    Example:
        >>> table = pd.DataFrame({"t": [1.0, 2.0, 3.0, 4.0, 5.0], "e": [1, 0, 1, 0, 0], "g": "all"})
        >>> curve = kaplan_meier_failure(table, "t", "e", "g")
        >>> curve["cumulative_failure"].round(4).tolist(), curve["at_risk"].tolist()
        ([0.0, 0.2, 0.2, 0.4667, 0.4667, 0.4667], [5, 5, 4, 3, 2, 1])
    """
    from lifelines import KaplanMeierFitter

    data = _survival_frame(table, time, event, group)
    parts = []
    for label in _group_order(data["group"]):
        members = data[data["group"] == label]
        if members.empty:
            continue
        fitter = KaplanMeierFitter(alpha=alpha).fit(members["time"], members["event"], label="survival")
        survival = fitter.survival_function_.iloc[:, 0]
        interval = fitter.confidence_interval_survival_function_
        counts = fitter.event_table.reindex(survival.index)
        parts.append(pd.DataFrame({
            "group": label,
            "time": survival.index.to_numpy(float),
            "cumulative_failure": 1.0 - survival.to_numpy(float),
            "ci_low": 1.0 - interval.iloc[:, 1].to_numpy(float),
            "ci_high": 1.0 - interval.iloc[:, 0].to_numpy(float),
            "at_risk": counts["at_risk"].to_numpy(np.int64),
            "events": counts["observed"].to_numpy(np.int64),
        }))
    if not parts:
        return pd.DataFrame(columns=list(KM_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(KM_COLUMNS)]


def group_hazard_ratios(table: pd.DataFrame, time: str, event: str, group: str, reference: str,
                        alpha: float = 0.05) -> pd.DataFrame:
    """Unadjusted Cox hazard ratio of each group against ``reference`` (:data:`GROUP_HR_COLUMNS`).

    One Cox model with an indicator per group. The reference row has HR 1 and no interval. A group
    without subjects or without events has a NaN row (its note says why) and is left out of the
    model (a group with no events would push its coefficient to −∞); when the reference group has
    no subjects or no events every HR is NaN.

    Args:
        table: one row per subject.
        time: the column of follow-up times (years).
        event: the column of event flags (0/1).
        group: the column of group labels (e.g. :func:`km_groups`).
        reference: the group the others are compared with.
        alpha: 1 − the intervals' coverage.

    Raises:
        UserError: if ``group`` is categorical and ``reference`` is not one of its categories.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> table = pd.DataFrame({"g": np.repeat(["a", "b"], 200), "e": 1,
        ...                       "t": np.r_[rng.exponential(1.0, 200), rng.exponential(0.5, 200)]})
        >>> ratios = group_hazard_ratios(table, "t", "e", "g", reference="a")
        >>> ratios["group"].tolist(), bool(1.5 < ratios["hazard_ratio"].iloc[1] < 2.7)
        (['a', 'b'], True)
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    data = _survival_frame(table, time, event, group)
    order = _group_order(data["group"])
    if isinstance(data["group"].dtype, pd.CategoricalDtype) and reference not in order:
        raise UserError(f"Expected the reference group {reference!r} among the groups of {group} "
                        f"({', '.join(map(str, order))}), found it missing")
    if reference not in order:
        order = [reference, *order]
    counts = {label: (int((data["group"] == label).sum()), int(data.loc[data["group"] == label, "event"].sum()))
              for label in order}
    rows = {label: {"group": label, "hazard_ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan,
                    "n": n, "events": events, "note": ""} for label, (n, events) in counts.items()}
    reference_n, reference_events = counts[reference]
    rows[reference].update(hazard_ratio=1.0, note="reference")
    if reference_n == 0 or reference_events == 0:
        why = "no subjects" if reference_n == 0 else "no events"
        for label in order:
            rows[label]["note"] = f"not estimable: the reference group {reference!r} has {why}"
        rows[reference]["hazard_ratio"] = math.nan
    else:
        compared = []
        for label in order:
            n, events = counts[label]
            if label == reference:
                continue
            if n == 0 or events == 0:
                rows[label]["note"] = "no subjects" if n == 0 else "no events"
            else:
                compared.append(label)
        if compared:
            members = data[data["group"].isin([reference, *compared])]
            design = pd.DataFrame({f"group_{i}": (members["group"] == label).astype(float) for i, label in enumerate(compared)})
            design["time"], design["event"] = members["time"].to_numpy(), members["event"].to_numpy()
            try:
                fitter = CoxPHFitter(alpha=alpha).fit(design, duration_col="time", event_col="event")
            except ConvergenceError as error:
                for label in compared:
                    rows[label]["note"] = f"not estimable: {str(error).splitlines()[0]}"
            else:
                interval = fitter.confidence_intervals_
                for i, label in enumerate(compared):
                    term = f"group_{i}"
                    rows[label].update(hazard_ratio=float(np.exp(fitter.params_[term])),
                                       ci_low=float(np.exp(interval.loc[term].iloc[0])),
                                       ci_high=float(np.exp(interval.loc[term].iloc[1])),
                                       p=float(fitter.summary.loc[term, "p"]))
    out = pd.DataFrame([rows[label] for label in order], columns=list(GROUP_HR_COLUMNS))
    return out.astype({"n": np.int64, "events": np.int64})


# --- Cox models per SD of the age difference -------------------------------------------------


def _nan_cox_result(exposure: str, n: int, events: int, sd: float, mean: float, covariates: list[str],
                    dropped: list[str], note: str, alpha: float) -> dict[str, Any]:
    return {"exposure": exposure, "hr_per_sd": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan,
            "n": n, "events": events, "sd_of_exposure": sd, "mean_of_exposure": mean, "covariates": covariates,
            "dropped_covariates": dropped, "ph_p": {}, "ph_p_min": math.nan, "ph_ok": None, "note": note, "alpha": alpha}


def cox_per_sd(table: pd.DataFrame, time: str, event: str, exposure: str = "age_difference",
               covariates: Sequence[str] = ("age", "sex"), alpha: float = 0.05) -> dict[str, Any]:
    """Cox hazard ratio per SD of ``exposure``, adjusted for ``covariates``, with a proportional-hazards check.

    The exposure is standardised over the rows used, ``z = (x − mean) / SD`` (``ddof=1``; both
    reported), and fitted with the covariates in lifelines' ``CoxPHFitter`` (Efron's ties). ``sex``
    enters as ``sex[M]`` (1 male, 0 female). Rows lacking any of the values are left out. The
    check is lifelines' ``proportional_hazard_test`` (scaled Schoenfeld residuals against the rank
    of time) for every term; ``ph_ok`` when the smallest p is at least :data:`PH_ALPHA` over the number of
    terms (``ph_threshold``; Bonferroni).

    A covariate constant over the rows used is dropped (listed in ``dropped_covariates`` and the
    note). Without events, or when the fit does not converge, the estimates are NaN, ``ph_ok`` is
    None and the note says why.

    Args:
        table: one row per subject.
        time: the column of follow-up times (years).
        event: the column of event flags (0/1).
        exposure: the column whose hazard ratio per SD is wanted.
        covariates: the adjustment columns.
        alpha: 1 − the interval's coverage.

    Returns:
        ``exposure``, ``hr_per_sd``, ``ci_low``, ``ci_high``, ``p``, ``n``, ``events``,
        ``sd_of_exposure``, ``mean_of_exposure``, ``covariates`` (the terms fitted),
        ``dropped_covariates``, ``ph_p`` (term → p), ``ph_p_min``, ``ph_ok``, ``note``, ``alpha``.

    Raises:
        UserError: for a missing column, a bad time, flag or covariate value, the exposure among
            the covariates, no complete row, or an exposure that does not vary.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> x = rng.normal(0, 4, 600)
        >>> table = pd.DataFrame({"x": x, "t": rng.exponential(1 / np.exp(np.log(2) * x / 4)), "e": 1})
        >>> result = cox_per_sd(table, "t", "e", exposure="x", covariates=())
        >>> bool(result["ci_low"] < 2.0 < result["ci_high"]), result["n"], result["ph_ok"]
        (True, 600, True)
    """
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    covariates = list(dict.fromkeys(covariates))
    if exposure in covariates:
        raise UserError(f"Expected the exposure {exposure!r} apart from the covariates, found it among them "
                        f"({', '.join(covariates)})")
    _require(table, (time, event, exposure, *covariates), "the subjects table")
    frame = pd.DataFrame({"__time": _durations(table, time), "__event": _flags(table, event),
                          exposure: _numbers(table, exposure)})
    for column in covariates:
        frame[_term(column)] = _covariate(table, column)
    frame = frame.dropna()
    if frame.empty:
        raise UserError(f"Expected complete rows of {', '.join([time, event, exposure, *covariates])}, "
                        f"found none among {len(table)}")
    n, events = len(frame), int(frame["__event"].sum())
    mean, sd = float(frame[exposure].mean()), float(frame[exposure].std(ddof=1)) if n > 1 else math.nan
    if not (sd > 0):
        raise UserError(f"Expected {exposure} to vary over the {n} complete row(s), found it constant")
    frame[exposure] = (frame[exposure] - mean) / sd
    terms = [_term(c) for c in covariates]
    dropped = [c for c, term in zip(covariates, terms) if frame[term].nunique() < 2]
    kept = [term for c, term in zip(covariates, terms) if c not in dropped]
    frame = frame[["__time", "__event", exposure, *kept]]
    notes = [f"dropped constant covariate(s): {', '.join(dropped)}"] if dropped else []
    if events == 0:
        return _nan_cox_result(exposure, n, 0, sd, mean, kept, dropped, "; ".join(["not estimable: no events", *notes]), alpha)
    try:
        fitter = CoxPHFitter(alpha=alpha).fit(frame, duration_col="__time", event_col="__event")
    except ConvergenceError as error:
        note = f"not estimable: the Cox fit did not converge ({str(error).splitlines()[0]})"
        return _nan_cox_result(exposure, n, events, sd, mean, kept, dropped, "; ".join([note, *notes]), alpha)
    interval = fitter.confidence_intervals_.loc[exposure]
    result = {"exposure": exposure, "hr_per_sd": float(np.exp(fitter.params_[exposure])),
              "ci_low": float(np.exp(interval.iloc[0])), "ci_high": float(np.exp(interval.iloc[1])),
              "p": float(fitter.summary.loc[exposure, "p"]), "n": n, "events": events, "sd_of_exposure": sd,
              "mean_of_exposure": mean, "covariates": kept, "dropped_covariates": dropped}
    try:
        test = proportional_hazard_test(fitter, frame, time_transform="rank")
        ph_p = {str(term): float(p) for term, p in test.summary["p"].items()}
    except (ValueError, np.linalg.LinAlgError) as error:  # too few events for the residuals' variance
        ph_p = {}
        notes.append(f"proportional hazards not tested ({str(error).splitlines()[0]})")
    ph_p_min = min(ph_p.values()) if ph_p else math.nan
    threshold = PH_ALPHA / max(len(ph_p), 1)
    result.update(ph_p=ph_p, ph_p_min=ph_p_min, ph_threshold=threshold, ph_ok=bool(ph_p_min >= threshold) if ph_p else None,
                  note="; ".join(notes), alpha=alpha)
    return result


def cox_table(table: pd.DataFrame, outcomes: Mapping[str, tuple[str, str]], models: Mapping[str, Sequence[str]],
              exposure: str = "age_difference", alpha: float = 0.05) -> pd.DataFrame:
    """Tables 2 and 3: :func:`cox_per_sd` for every outcome and model, one row each (:data:`COX_TABLE_COLUMNS`).

    Args:
        table: one row per subject (e.g. :func:`fracture_outcomes` joined with age, sex and the age difference).
        outcomes: name → (time column, event column), e.g. :data:`FRACTURE_OUTCOMES`.
        models: name → covariates, e.g. :data:`PAPER_MODELS`.
        exposure: the column whose hazard ratio per SD is wanted.
        alpha: 1 − the intervals' coverage.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> table = pd.DataFrame({"age_difference": rng.normal(0, 3, 300), "age": rng.uniform(40, 80, 300),
        ...                       "sex": rng.choice(["F", "M"], 300), "t": rng.exponential(5, 300), "e": 1})
        >>> rows = cox_table(table, {"death": ("t", "e")}, {"model 1": ("age", "sex"), "crude": ()})
        >>> rows[["outcome", "model", "n", "events"]].values.tolist()
        [['death', 'model 1', 300, 300], ['death', 'crude', 300, 300]]
    """
    rows = []
    for outcome, (time, event) in outcomes.items():
        for model, covariates in models.items():
            result = cox_per_sd(table, time, event, exposure, covariates, alpha)
            rows.append({"outcome": outcome, "model": model, **{k: result[k] for k in COX_TABLE_COLUMNS[2:]}})
    out = pd.DataFrame(rows, columns=list(COX_TABLE_COLUMNS))
    return out.astype({"n": np.int64, "events": np.int64})


# --- what the age difference goes with -----------------------------------------------------------


def age_difference_explained(table: pd.DataFrame, covariates: Sequence[str] = EXPLAINED_COVARIATES,
                             outcome: str = "age_difference", alpha: float = 0.05) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Supplementary Table 4's analogue: OLS of the age difference on clinical covariates together.

    ``sex`` enters as ``sex[M]``. A covariate absent from ``table`` is skipped; one constant over
    the complete rows (or a linear combination of those before it) is dropped; both are listed.

    Args:
        table: one row per subject.
        covariates: the explanatory columns.
        outcome: the column explained.
        alpha: 1 − the intervals' coverage.

    Returns:
        The terms (:data:`TERM_COLUMNS`, the intercept first) and a summary: ``n``, ``r_squared``,
        ``adj_r_squared`` (1 − (1 − R²)(n − 1)/(n − k − 1) for k terms), ``skipped_covariates``,
        ``dropped_covariates``.

    Raises:
        UserError: if ``outcome`` is missing, no covariate is left, or there are no more complete
            rows than parameters.

    Example:
        >>> rng = np.random.default_rng(3)
        >>> table = pd.DataFrame({"diabetes": rng.integers(0, 2, 200), "sex": rng.choice(["F", "M"], 200)})
        >>> table["age_difference"] = 2.0 * table["diabetes"] + rng.normal(0, 1, 200)
        >>> terms, summary = age_difference_explained(table)
        >>> terms["term"].tolist(), summary["skipped_covariates"][:2]
        (['intercept', 'diabetes', 'sex[M]'], ['height_cm', 'bmd_t_lumbar'])
    """
    import statsmodels.api as sm

    from spineage.analysis.explain import _independent

    _require(table, (outcome,), "the subjects table")
    present = [c for c in dict.fromkeys(covariates) if c in table.columns and c != outcome]
    skipped = [c for c in dict.fromkeys(covariates) if c not in present]
    frame = pd.DataFrame({outcome: _numbers(table, outcome)})
    for column in present:
        frame[_term(column)] = _covariate(table, column)
    frame = frame.dropna()
    kept, dropped_terms = _independent(frame[[_term(c) for c in present]])
    dropped = [c for c in present if _term(c) in dropped_terms]
    if not kept:
        raise UserError(f"Expected at least one varying covariate of {outcome} among {', '.join(covariates)}, "
                        f"found none (skipped as absent: {', '.join(skipped) or 'none'}; "
                        f"constant: {', '.join(dropped) or 'none'})")
    if len(frame) <= len(kept) + 1:
        raise UserError(f"Expected more complete rows than the {len(kept) + 1} parameters of the model of {outcome}, "
                        f"found {len(frame)}")
    fit = sm.OLS(frame[outcome].to_numpy(float), sm.add_constant(frame[kept].to_numpy(float), has_constant="add")).fit()
    intervals = fit.conf_int(alpha)
    terms = pd.DataFrame({"term": ["intercept", *kept], "effect": fit.params, "std_error": fit.bse,
                          "ci_low": intervals[:, 0], "ci_high": intervals[:, 1], "p": fit.pvalues})
    summary = {"n": len(frame), "r_squared": float(fit.rsquared), "adj_r_squared": float(fit.rsquared_adj),
               "skipped_covariates": skipped, "dropped_covariates": dropped}
    return terms, summary


# --- FRAX at the spine age -----------------------------------------------------------------------


def frax_columns_present(table: pd.DataFrame) -> dict[str, bool]:
    """Which of the four FRAX columns (:data:`FRAX_MAJOR`, :data:`FRAX_HIP`) ``table`` has.

    Example:
        >>> frax_columns_present(pd.DataFrame({"frax_major_spine": [0.1]}))["frax_major_spine"]
        True
    """
    return {column: column in table.columns for column in (*FRAX_MAJOR, *FRAX_HIP)}


def frax_reclassification(table: pd.DataFrame, chronological: str = FRAX_MAJOR[0], spine: str = FRAX_MAJOR[1],
                          threshold: float = FRAX_MAJOR_THRESHOLD, scale: str | None = None) -> dict[str, Any]:
    """How many subjects cross a FRAX treatment threshold when FRAX uses the spine age instead of the age.

    A subject is above the threshold at ``probability >= threshold``. Values may be percentages
    (0–100) or probabilities (0–1): when ``scale`` is None, any value above 1 means percentages
    (a table of percentages that are all at most 1 %, as hip FRAX can be, needs ``scale="percent"``).
    Rows lacking either value are left out.

    Args:
        table: one row per subject.
        chronological: the column of FRAX at the chronological age.
        spine: the column of FRAX at the spine age.
        threshold: the treatment threshold as a probability (0.20 major, 0.03 hip).
        scale: "percent", "probability", or None to detect.

    Returns:
        ``n``, ``below_to_above``, ``above_to_below``, ``unchanged`` (``unchanged_below``,
        ``unchanged_above``), ``reclassified_share`` ((up + down)/n), ``net_reclassified_share``
        ((up − down)/n), ``threshold``, ``scale``, ``n_missing``.

    Raises:
        UserError: for a missing column, a value that is not a number or outside 0–1 (0–100 for
            percentages), a threshold outside (0, 1) or an unknown scale.

    Example:
        >>> table = pd.DataFrame({"frax_major_chronological": [15.0, 25.0, 10.0], "frax_major_spine": [22.0, 18.0, 12.0]})
        >>> result = frax_reclassification(table)
        >>> result["below_to_above"], result["above_to_below"], result["unchanged"], result["scale"]
        (1, 1, 1, 'percent')
    """
    _require(table, (chronological, spine), "the FRAX table")
    if not (0 < threshold < 1):
        raise UserError(f"Expected a FRAX threshold as a probability between 0 and 1, found {threshold!r}")
    if scale is not None and scale not in FRAX_SCALES:
        raise UserError(f"Expected the FRAX scale 'percent', 'probability' or None, found {scale!r}")
    values = pd.DataFrame({"chronological": _numbers(table, chronological), "spine": _numbers(table, spine)})
    complete = values.dropna()
    if scale is None:
        scale = "percent" if (complete.to_numpy() > 1).any() else "probability"
    top = 100.0 if scale == "percent" else 1.0
    for side, column in (("chronological", chronological), ("spine", spine)):
        outside = (complete[side] < 0) | (complete[side] > top)
        if outside.any():
            raise UserError(f"Expected {column} between 0 and {top:g} ({scale}), found "
                            f"{complete.loc[outside, side].iloc[0]:g} ({int(outside.sum())} row(s), "
                            f"e.g. {_example(table, outside.reindex(table.index, fill_value=False))})")
    above = complete / top >= threshold
    up = int((~above["chronological"] & above["spine"]).sum())
    down = int((above["chronological"] & ~above["spine"]).sum())
    stay_below = int((~above["chronological"] & ~above["spine"]).sum())
    stay_above = int((above["chronological"] & above["spine"]).sum())
    n = len(complete)
    return {"n": n, "below_to_above": up, "above_to_below": down, "unchanged": stay_below + stay_above,
            "unchanged_below": stay_below, "unchanged_above": stay_above,
            "reclassified_share": (up + down) / n if n else math.nan,
            "net_reclassified_share": (up - down) / n if n else math.nan,
            "threshold": threshold, "scale": scale, "n_missing": len(values) - n}


def frax_hip_reclassification(table: pd.DataFrame, scale: str | None = None) -> dict[str, Any]:
    """:func:`frax_reclassification` of the hip fracture probability (:data:`FRAX_HIP`) at 3 %.

    Example:
        >>> table = pd.DataFrame({"frax_hip_chronological": [0.02, 0.04], "frax_hip_spine": [0.035, 0.05]})
        >>> frax_hip_reclassification(table)["below_to_above"]
        1
    """
    return frax_reclassification(table, *FRAX_HIP, threshold=FRAX_HIP_THRESHOLD, scale=scale)
