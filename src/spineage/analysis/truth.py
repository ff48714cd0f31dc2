"""``spineage validate-truth``: what the pipeline found on a phantom cohort against what was planted.

A phantom's ``ground_truth.json`` holds each series' biological spine age and the
lifestyle effects planted on it (``lifestyle_effects``: years per unit, keyed by a
numeric ``lifestyle.csv`` column, e.g. ``packs_per_day``, or by ``<column>_<level>``
for a categorical one, e.g. ``work_heavy`` against the levels not named). The planted
gap of a series is its biological spine age minus its chronological age. This module
compares, on one series per subject (the first), the pipeline's bias-corrected gap
(SAG) with it:

* agreement: r(SAG, planted gap), the slope of SAG on the planted gap, and the MAE
  of the raw and corrected spine age against biological age;
* every planted effect: the *oracle* regression (the planted gap as outcome) and the
  *pipeline's* (SAG as outcome) of one multivariable model, the effects together and
  adjusted for age and sex (as the generator plants them: additively); their ratio
  (the attenuation that prediction error causes), whether the pipeline's 95 % CI holds
  the planted value, and whether an effect of at least ``min_effect_years`` is found
  with the right sign at p < alpha;
* the power of the pipeline's tests at this size, and the subjects that reach
  ``target_power`` (:mod:`spineage.analysis.power`);
* the normal-cohort definition against the planted typical/atypical marks, when the
  cohort table is given.

A raw cohort without ``ground_truth.json`` (a real one) gets ``{"planted_truth": false}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.analysis.truth_settings import TruthSettings
from spineage.atomic import json_ready, write_json_atomic
from spineage.errors import UserError

TRUTH_FILE = "ground_truth.json"
ADJUSTMENT = ("age", "sex_male")
"""Covariates of both regressions besides the planted effects' columns."""


def read_ground_truth(raw: str | Path) -> dict[str, Any] | None:
    """The raw cohort's ``ground_truth.json``, or None when it has none (a real cohort).

    Raises:
        UserError: for a file that is not JSON or lacks series_bio_age or lifestyle_effects.
    """
    path = Path(raw) / TRUTH_FILE
    if not path.is_file():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"Expected {path} to be readable JSON, found: {error}") from None
    for key in ("series_bio_age", "lifestyle_effects"):
        if not isinstance(truth, dict) or not isinstance(truth.get(key), dict):
            raise UserError(f"Expected a {key} mapping in {path}, found none")
    return truth


def planted_design(lifestyle: pd.DataFrame, effects: dict[str, float]) -> pd.DataFrame:
    """One column per planted effect, named by it: the numeric column, or the 0/1 indicator of ``<column>_<level>``.

    Example:
        >>> table = pd.DataFrame({"packs_per_day": [0.0, 1.0], "work": ["heavy", "sedentary"]})
        >>> planted_design(table, {"packs_per_day": 0.9, "work_heavy": 0.7}).to_dict("list")
        {'packs_per_day': [0.0, 1.0], 'work_heavy': [1.0, 0.0]}

    Raises:
        UserError: for an effect that names neither a numeric column nor a column's level.
    """
    design = {}
    for name in effects:
        if name in lifestyle.columns and pd.api.types.is_numeric_dtype(lifestyle[name]):
            design[name] = lifestyle[name].astype(float).to_numpy()
            continue
        matches = [
            column for column in lifestyle.columns
            if name.startswith(f"{column}_") and not pd.api.types.is_numeric_dtype(lifestyle[column])
        ]
        if not matches:
            raise UserError(
                f"Expected the planted effect {name!r} to name a numeric lifestyle column or <column>_<level>, "
                f"found columns {', '.join(map(str, lifestyle.columns))}"
            )
        column = max(matches, key=len)
        design[name] = (lifestyle[column].astype(str) == name[len(column) + 1:]).astype(float).to_numpy()
    return pd.DataFrame(design, index=lifestyle.index)


def truth_table(predictions: pd.DataFrame, truth: dict[str, Any], lifestyle: pd.DataFrame, splits: Sequence[str] | None) -> pd.DataFrame:
    """The judged series, one per subject (its first), with SAG, the planted gap and the planted effects' columns.

    Args:
        predictions: series_id, subject_id, age, sex, predicted_age, corrected_age, sag (and split).
        truth: the ground truth (series_bio_age, lifestyle_effects).
        lifestyle: lifestyle.csv (subject_id and its columns).
        splits: keep these splits only; None keeps every row.

    Raises:
        UserError: for a missing column, or a judged series without a planted biological age.
    """
    needed = ("series_id", "subject_id", "age", "sex", "predicted_age", "corrected_age", "sag")
    missing = [c for c in needed + (("split",) if splits is not None else ()) if c not in predictions.columns]
    if missing:
        raise UserError(f"Expected prediction columns {list(needed)}, found {missing[0]!r} missing")
    table = predictions if splits is None else predictions[predictions["split"].isin(list(splits))]
    table = table.dropna(subset=["sag"]).sort_values(["subject_id", "age", "series_id"]).drop_duplicates("subject_id")
    bio = truth["series_bio_age"]
    unknown = [s for s in table["series_id"] if s not in bio]
    if unknown:
        raise UserError(f"Expected a planted biological age for every judged series, found none for {unknown[0]!r}")
    if "subject_id" not in lifestyle.columns:
        raise UserError("Expected a subject_id column in lifestyle.csv, found none")
    effects = truth["lifestyle_effects"]
    design = planted_design(lifestyle.set_index("subject_id"), effects)
    table = table.merge(design, left_on="subject_id", right_index=True, how="inner")
    table["bio_age"] = table["series_id"].map(bio).astype(float)
    table["planted_gap"] = table["bio_age"] - table["age"].astype(float)
    table["sex_male"] = (table["sex"].astype(str) == "M").astype(float)
    return table.reset_index(drop=True)


def fit_effects(table: pd.DataFrame, outcome: str, effects: Sequence[str], alpha: float) -> tuple[pd.DataFrame, Any]:
    """OLS of ``outcome`` on the effects' columns together, adjusted for age and sex.

    Returns:
        Per effect (index): effect, se, ci_low, ci_high, p; and the fitted statsmodels result.
    """
    import statsmodels.api as sm

    covariates = list(effects) + [c for c in ADJUSTMENT if table[c].nunique() > 1]
    design = sm.add_constant(table[covariates].astype(float), has_constant="add")
    fit = sm.OLS(table[outcome].astype(float), design).fit()
    interval = fit.conf_int(alpha)
    rows = {
        name: {"effect": fit.params[name], "se": fit.bse[name], "ci_low": interval.loc[name, 0], "ci_high": interval.loc[name, 1], "p": fit.pvalues[name]}
        for name in effects
    }
    return pd.DataFrame.from_dict(rows, orient="index"), fit


def effect_recovery(table: pd.DataFrame, effects: dict[str, float], settings: TruthSettings) -> dict[str, Any]:
    """Every planted effect: the oracle's and the pipeline's estimates, attenuation, CI and sign checks, power.

    Raises:
        UserError: for fewer subjects than coefficients plus 10.
    """
    from spineage.analysis.power import subjects_for_power, two_sided_power

    names = list(effects)
    if len(table) < len(names) + len(ADJUSTMENT) + 10:
        raise UserError(f"Expected at least {len(names) + len(ADJUSTMENT) + 10} subjects to fit the planted effects, found {len(table)}")
    oracle, oracle_fit = fit_effects(table, "planted_gap", names, settings.alpha)
    pipeline, pipeline_fit = fit_effects(table, "sag", names, settings.alpha)
    slope = float(np.polyfit(table["planted_gap"], table["sag"], 1)[0])
    n = len(table)
    rows = []
    for name in names:
        planted, found = float(effects[name]), pipeline.loc[name]
        expected = slope * planted
        target = abs(planted) >= settings.min_effect_years
        right_sign = planted != 0 and np.sign(found["effect"]) == np.sign(planted)
        rows.append({
            "name": name,
            "planted": planted,
            "oracle_effect": float(oracle.loc[name, "effect"]),
            "oracle_ci_low": float(oracle.loc[name, "ci_low"]),
            "oracle_ci_high": float(oracle.loc[name, "ci_high"]),
            "oracle_p": float(oracle.loc[name, "p"]),
            "pipeline_effect": float(found["effect"]),
            "ci_low": float(found["ci_low"]),
            "ci_high": float(found["ci_high"]),
            "p": float(found["p"]),
            "attenuation": float(found["effect"] / oracle.loc[name, "effect"]) if oracle.loc[name, "effect"] != 0 else None,
            "ci_holds_planted": bool(found["ci_low"] <= planted <= found["ci_high"]),
            "target": bool(target),
            "recovered": bool(right_sign and found["p"] < settings.alpha) if planted != 0 else None,
            "falsely_found": bool(found["p"] < settings.alpha) if planted == 0 else None,
            "power": two_sided_power(expected, float(found["se"]), settings.alpha) if planted != 0 else None,
            "subjects_for_target_power": subjects_for_power(expected, float(found["se"]), n, settings.alpha, settings.target_power),
        })
    targets = [row for row in rows if row["target"]]
    needed = [row["subjects_for_target_power"] for row in targets if row["subjects_for_target_power"] is not None]
    joint = float(np.prod([row["power"] for row in targets])) if targets else None
    return {
        "effects": rows,
        "power": {
            "subjects": n,
            "alpha": settings.alpha,
            "target_power": settings.target_power,
            "min_effect_years": settings.min_effect_years,
            "expected_effect": "planted effect x the slope of SAG on the planted gap",
            "slope_sag_on_planted_gap": slope,
            "residual_sd_pipeline": float(np.sqrt(pipeline_fit.scale)),
            "residual_sd_oracle": float(np.sqrt(oracle_fit.scale)),
            "power_of_each_target_effect": {row["name"]: row["power"] for row in targets},
            "power_all_target_effects": joint,
            "subjects_for_target_power": max(needed) if needed else None,
        },
        "target_met": bool(all(row["recovered"] for row in targets) and all(row["ci_holds_planted"] for row in rows)),
        "targets_recovered": sum(bool(row["recovered"]) for row in targets),
        "targets": len(targets),
        "cis_holding_planted": sum(row["ci_holds_planted"] for row in rows),
        "planted_effects": len(rows),
    }


def agreement(table: pd.DataFrame) -> dict[str, Any]:
    """How close the pipeline's ages and gaps are to the planted ones."""
    return {
        "subjects": len(table),
        "sag_vs_planted_gap_r": float(np.corrcoef(table["sag"], table["planted_gap"])[0, 1]),
        "mae_vs_biological_age_raw": float(np.mean(np.abs(table["predicted_age"] - table["bio_age"]))),
        "mae_vs_biological_age_corrected": float(np.mean(np.abs(table["corrected_age"] - table["bio_age"]))),
        "mae_vs_chronological_age_corrected": float(np.mean(np.abs(table["corrected_age"] - table["age"]))),
        "planted_gap_sd": float(table["planted_gap"].std(ddof=1)),
        "sag_sd": float(table["sag"].std(ddof=1)),
    }


def normal_cohort_agreement(cohort_csv: str | Path | None, raw: str | Path) -> dict[str, Any] | None:
    """The cohort stage's confusion table (normal/abnormal against planted typical/atypical), overall; None without either."""
    from spineage.cohort.stage import read_atypical_marks, truth_confusion

    marks = read_atypical_marks(raw)
    if cohort_csv is None or not Path(cohort_csv).is_file() or marks is None:
        return None
    from spineage.raw_cohort import read_cohort_table

    cohort = read_cohort_table(Path(cohort_csv), ("series_id", "bracket", "normal"))
    cohort["bracket"] = pd.to_numeric(cohort["bracket"].replace("", np.nan))
    cohort["normal"] = cohort["normal"].str.lower() == "true"
    confusion = truth_confusion(cohort, marks)
    return {"overall": confusion["overall"]}


def validate_truth(
    predictions_csv: str | Path, raw: str | Path, out: str | Path, settings: TruthSettings,
    cohort_csv: str | Path | None = None, all_splits: bool = False,
) -> dict[str, Any]:
    """Compare the pipeline's spine age gap with the phantom's planted truth and write ``out`` (JSON).

    Args:
        predictions_csv: a prediction table (the evaluate stage's, or ``spineage score``'s).
        raw: the raw cohort the predictions are of (ground_truth.json, lifestyle.csv, participants.csv).
        out: the JSON file to write.
        settings: the ``truth`` section.
        cohort_csv: the cohort stage's table, to judge the normal-cohort definition; None to skip.
        all_splits: judge every row (an external cohort scored whole) instead of ``settings.splits``.

    Returns:
        What was written.

    Raises:
        UserError: for a missing or malformed input.
    """
    from spineage.raw_cohort import read_table

    raw, out = Path(raw), Path(out)
    truth = read_ground_truth(raw)
    if truth is None:
        result: dict[str, Any] = {"planted_truth": False, "reason": f"{raw / TRUTH_FILE} does not exist: not a phantom cohort"}
        write_json_atomic(out, result)
        return result
    predictions = _numeric(read_table(Path(predictions_csv), "the prediction table"), ("age", "predicted_age", "corrected_age", "sag"))
    lifestyle = read_table(raw / "lifestyle.csv", "lifestyle.csv")
    lifestyle = _numeric(lifestyle, [c for c in lifestyle.columns if c != "subject_id" and _parses(lifestyle[c])])
    table = truth_table(predictions, truth, lifestyle, None if all_splits else settings.splits)
    effects = {name: float(value) for name, value in truth["lifestyle_effects"].items()}
    result = {
        "planted_truth": True,
        "generator_version": truth.get("generator_version"),
        "phantom_seed": truth.get("seed"),
        "predictions": str(predictions_csv),
        "splits": "all" if all_splits else list(settings.splits),
        "one_series_per_subject": True,
        "adjusted_for": list(ADJUSTMENT),
        **agreement(table),
        **effect_recovery(table, effects, settings),
        "normal_cohort": normal_cohort_agreement(cohort_csv, raw),
    }
    write_json_atomic(out, json_ready(result))
    return result


def _parses(column: pd.Series) -> bool:
    """Whether every non-empty value of a text column is a number."""
    values = column[column != ""]
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().all()


def _numeric(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` of a text table as numbers (empty: NaN).

    Raises:
        UserError: for a missing column or a value that is not a number.
    """
    table = table.copy()
    for column in columns:
        if column not in table.columns:
            raise UserError(f"Expected a {column} column, found {', '.join(map(str, table.columns))}")
        values = pd.to_numeric(table[column].replace("", np.nan), errors="coerce")
        bad = values.isna() & (table[column] != "")
        if bad.any():
            raise UserError(f"Expected numbers in column {column}, found {table.loc[bad, column].iloc[0]!r}")
        table[column] = values
    return table


def truth_line(result: dict[str, Any]) -> str:
    """The verdict in one line."""
    if not result.get("planted_truth"):
        return "no planted truth (not a phantom cohort): nothing to validate"
    power = result["power"]
    return (
        f"{result['subjects']} subjects: r(SAG, planted gap) {result['sag_vs_planted_gap_r']:.2f}; "
        f"{result['targets_recovered']}/{result['targets']} planted effects >= {power['min_effect_years']:g} y recovered, "
        f"{result['cis_holding_planted']}/{result['planted_effects']} CIs hold the planted value; "
        f"power of all targets {power['power_all_target_effects'] or 0:.2f}, subjects for {power['target_power']:.0%} each: "
        f"{power['subjects_for_target_power']}; target {'met' if result['target_met'] else 'NOT met'}"
    )
