"""``spineage radiograph outcomes``: what the radiograph spine age says about fracture, osteoporosis and death.

The radiograph paper's analyses (VERTE-X, Cho, Hong et al. 2025), on two sets of subjects,
each subject once: the derivation ``test`` split (its radiograph) and the ``external`` VFA set:

* prevalent vertebral fracture and osteoporosis discriminated by the corrected spine age
  against chronological age: ROC curves, AUROCs with 95 % CIs and DeLong's test of the
  two correlated AUROCs (:mod:`spineage.analysis.delong`; the paper's Figure 1);
* Kaplan–Meier cumulative incidence of any fracture in four groups, chronological age
  below/above the set's median x an accelerated spine age (age difference above the
  derivation test set's top-tertile cut, from the evaluate stage) or not, with unadjusted
  HRs (Figure 2);
* Cox models per SD of the age difference for any, vertebral and non-vertebral fracture
  (Table 2) and all-cause death (Table 3) under Models 1-3, with the Schoenfeld check
  (:mod:`spineage.analysis.survival`);
* the explainability regression of the age difference (Supplementary Table 4 analogue);
* FRAX reclassification when the user's outcomes table carries the four FRAX columns;
  said plainly when it does not.

For a phantom (``ground_truth.json``), ``truth_recovery.json`` sets each planted hazard
ratio per SD (``outcome_effects``) beside the Model 1 HR per SD of the pipeline's age
difference and of the planted gap (the oracle), on every scored subject outside train
and validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import json_ready, write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.radiograph.train import EXTERNAL, METRICS, TEST

SETS: tuple[str, ...] = (TEST, EXTERNAL)
DISCRIMINATED: tuple[str, ...] = ("prevalent_vertebral_fracture", "osteoporosis")
ROC_CSV, ROC_FIGURE, KM_CSV, COX_CSV, EXPLAINED_CSV, TRUTH = "roc.csv", "roc.png", "km_hazard_ratios.csv", "cox.csv", "explained.csv", "truth_recovery.json"
PLANTED_HAZARDS: dict[str, str] = {
    "any fracture": "hr_fracture_per_sd", "vertebral fracture": "hr_vertebral_fracture_per_sd",
    "non-vertebral fracture": "hr_nonvertebral_fracture_per_sd", "all-cause death": "hr_death_per_sd",
}
"""Each Cox outcome's planted hazard ratio per SD of the spine age gap in ground_truth.json's outcome_effects."""


NO_SPREAD = "the age difference does not vary (the model predicts one age): nothing to relate to outcomes"


def _varies(values: pd.Series) -> bool:
    return bool(np.nanstd(values.to_numpy(float)) > 1e-9)


def subject_table(predictions: pd.DataFrame, followup: pd.DataFrame, split: str | tuple[str, ...]) -> pd.DataFrame:
    """One row per subject of ``split``, with its outcome columns.

    A subject with several images keeps one from the first of ``split`` it has (the derivation
    radiograph before the VFA image), then the earliest.

    Args:
        predictions: the radiograph evaluation's per-image table.
        followup: the outcomes table as :func:`spineage.analysis.survival.fracture_outcomes` returns it.
        split: the split, or the splits in order of preference.
    """
    splits = (split,) if isinstance(split, str) else tuple(split)
    rows = predictions[predictions["split"].isin(splits)].assign(_order=lambda t: t["split"].map(splits.index))
    rows = rows.sort_values(["subject_id", "_order", "age", "series_id"]).drop_duplicates("subject_id").drop(columns="_order")
    table = rows.merge(followup, on="subject_id", how="inner", suffixes=("", "_outcomes"))
    return table.reset_index(drop=True)


def roc_rows(table: pd.DataFrame, set_name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """AUROC of spine age and of chronological age for each discriminated condition, with DeLong's test; and the curves."""
    from spineage.analysis.delong import compare_aurocs, roc_curve_points

    rows, curves = [], {}
    for condition in DISCRIMINATED:
        if condition not in table:
            continue
        labels = pd.to_numeric(table[condition], errors="coerce")
        keep = labels.notna()
        labels = labels[keep].astype(int).to_numpy()
        positives = int(labels.sum())
        if positives < 2 or len(labels) - positives < 2:
            rows.append({"set": set_name, "condition": condition, "n": int(len(labels)), "cases": positives,
                         "note": "too few cases or controls for DeLong's test (2 of each)"})
            continue
        spine, chronological = table.loc[keep, "corrected_age"].to_numpy(float), table.loc[keep, "age"].to_numpy(float)
        result = compare_aurocs(labels, spine, chronological)
        rows.append({"set": set_name, "condition": condition, "n": int(len(labels)), "cases": positives,
                     "auc_spine_age": result.auc_a, "spine_ci_low": result.ci_a[0], "spine_ci_high": result.ci_a[1],
                     "auc_chronological_age": result.auc_b, "chronological_ci_low": result.ci_b[0], "chronological_ci_high": result.ci_b[1],
                     "difference": result.difference, "delong_z": result.z, "delong_p": result.p, "note": ""})
        curves[condition] = {"spine age": roc_curve_points(labels, spine), "chronological age": roc_curve_points(labels, chronological),
                             "auc": (result.auc_a, result.auc_b), "p": result.p}
    return rows, curves


def plot_roc(curves: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """The paper's Figure 1: ROC curves of spine age and chronological age, one panel per set x condition."""
    from spineage.plotting import headless_pyplot, save_figure

    plt = headless_pyplot()
    panels = [(set_name, condition, found) for set_name, by_condition in curves.items() for condition, found in by_condition.items()]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 4.2), squeeze=False)
    for ax, (set_name, condition, found) in zip(axes[0], panels):
        for (name, (fpr, tpr)), colour, auc in zip(((k, v) for k, v in found.items() if k in ("spine age", "chronological age")), ("tab:red", "tab:blue"), found["auc"]):
            ax.step(fpr, tpr, where="post", color=colour, label=f"{name}: AUC {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.set(title=f"{condition.replace('_', ' ')}\n{set_name} (DeLong p = {found['p']:.3g})", xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(fontsize=8, loc="lower right")
    if not panels:
        axes[0][0].text(0.5, 0.5, "too few cases for ROC curves", ha="center", va="center")
        axes[0][0].set_axis_off()
    return save_figure(fig, path)


def calibration_slope(table: pd.DataFrame, exposure: str = "age_difference", truth: str = "planted_gap") -> float:
    """How much of an SD of ``truth`` one SD of ``exposure`` carries at a given age and sex: the regression calibration factor.

    The slope of the standardised ``truth`` on the standardised ``exposure`` in a least-squares fit
    with ``age`` and ``sex`` beside it. A Cox model per SD of a noisy exposure (error
    independent of the outcome) finds about ``HR ** slope`` for an ``HR`` per SD of the truth
    (Rosner, Spiegelman and Willett's regression calibration, read backwards), so
    ``planted ** slope`` is what a sound analysis of this exposure should find.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> gap = rng.normal(0, 3, 5000)
        >>> table = pd.DataFrame({"planted_gap": gap, "age_difference": gap + rng.normal(0, 3, 5000),
        ...                       "age": rng.uniform(40, 80, 5000), "sex": rng.choice(["F", "M"], 5000)})
        >>> round(calibration_slope(table), 2)  # one SD of the age difference carries r = 0.71 of an SD of the gap
        0.71
    """
    rows = table[[exposure, truth, "age", "sex"]].dropna()
    standard = [(rows[column] - rows[column].mean()) / rows[column].std(ddof=1) for column in (exposure, truth)]
    design = np.column_stack([np.ones(len(rows)), standard[0], rows["age"].astype(float), (rows["sex"] == "M").astype(float)])
    coefficients, *_ = np.linalg.lstsq(design, standard[1].to_numpy(), rcond=None)
    return float(coefficients[1])


def planted_hazards_recovered(table: pd.DataFrame, truth: dict[str, Any]) -> dict[str, Any]:
    """Each planted HR per SD beside the Model 1 HR per SD of the pipeline's age difference and of the planted gap.

    Beside them, ``expected_hr_per_sd``: what the planted HR becomes through an age difference
    that carries only part of the gap (``planted ** calibration_slope``, :func:`calibration_slope`),
    and whether the pipeline's CI holds it: the Cox analysis is sound even where the
    radiograph's read-out of the gap is too weak to find the planted HR itself.
    """
    from spineage.analysis.survival import FRACTURE_OUTCOMES, MORTALITY_OUTCOMES, cox_per_sd

    bio = {key: value["bio_age"] for key, value in (truth.get("subjects") or {}).items()}
    table = table.assign(planted_gap=table["subject_id"].map(bio) - table["age"])
    table = table.dropna(subset=["planted_gap"])
    effects = truth.get("outcome_effects") or {}
    if len(table) < 10 or not _varies(table["age_difference"]):
        return {"planted_truth": True, "subjects": int(len(table)), "hazards": [], "cis_holding_planted": 0, "planted_hazards": 0,
                "note": NO_SPREAD if len(table) >= 10 else "fewer than 10 subjects: not assessed"}
    slope = calibration_slope(table)
    rows = []
    for outcome, (time, event) in {**FRACTURE_OUTCOMES, **MORTALITY_OUTCOMES}.items():
        planted = effects.get(PLANTED_HAZARDS[outcome])
        if planted is None:
            continue
        pipeline = cox_per_sd(table, time, event, exposure="age_difference", covariates=("age", "sex"))
        oracle = cox_per_sd(table, time, event, exposure="planted_gap", covariates=("age", "sex"))
        expected = float(planted) ** slope
        rows.append({
            "outcome": outcome, "planted_hr_per_sd": float(planted),
            "pipeline_hr_per_sd": pipeline["hr_per_sd"], "ci_low": pipeline["ci_low"], "ci_high": pipeline["ci_high"], "p": pipeline["p"],
            "oracle_hr_per_sd": oracle["hr_per_sd"], "oracle_ci_low": oracle["ci_low"], "oracle_ci_high": oracle["ci_high"],
            "ci_holds_planted": bool(pipeline["ci_low"] <= planted <= pipeline["ci_high"]) if np.isfinite(pipeline["ci_low"]) else None,
            "oracle_ci_holds_planted": bool(oracle["ci_low"] <= planted <= oracle["ci_high"]) if np.isfinite(oracle["ci_low"]) else None,
            "expected_hr_per_sd": expected,
            "ci_holds_expected": bool(pipeline["ci_low"] <= expected <= pipeline["ci_high"]) if np.isfinite(pipeline["ci_low"]) else None,
            "events": pipeline["events"], "n": pipeline["n"],
        })
    r = float(np.corrcoef(table["age_difference"], table["planted_gap"])[0, 1]) if len(table) > 2 else None
    return {
        "planted_truth": True, "subjects": int(len(table)), "age_difference_vs_planted_gap_r": r,
        "model": "Cox, per SD, adjusted for age and sex (Model 1)", "hazards": rows,
        "cis_holding_planted": sum(bool(row["ci_holds_planted"]) for row in rows), "planted_hazards": len(rows),
        "calibration_slope": slope, "cis_holding_expected": sum(bool(row["ci_holds_expected"]) for row in rows),
        "note": "the pipeline's HR per SD of a noisy age difference is attenuated towards 1: about planted ** calibration_slope "
                "(expected_hr_per_sd), the slope of the planted gap on the age difference at a given age and sex",
    }


def write_radiograph_outcomes(predictions_csv: str | Path, evaluate_metrics: str | Path, raw: str | Path, reports: str | Path) -> dict[str, Any]:
    """Run every outcome analysis (module docstring) and write the tables, figures and metrics to ``reports``.

    Raises:
        UserError: for a missing input or a bad outcomes table.
    """
    from spineage.analysis.survival import (
        FRACTURE_OUTCOMES,
        KM_GROUPS,
        MORTALITY_OUTCOMES,
        PAPER_MODELS,
        age_difference_explained,
        cox_table,
        fracture_outcomes,
        frax_columns_present,
        frax_hip_reclassification,
        frax_reclassification,
        group_hazard_ratios,
        kaplan_meier_failure,
        km_groups,
    )
    from spineage.analysis.survival_figures import plot_kaplan_meier
    from spineage.raw_cohort import read_table

    predictions_csv, raw, reports = Path(predictions_csv), Path(raw), Path(reports)
    if not predictions_csv.is_file():
        raise UserError(f"Expected the radiograph predictions at {predictions_csv} (run `spineage radiograph evaluate` first), found no such file")
    if not Path(evaluate_metrics).is_file():
        raise UserError(f"Expected the radiograph evaluation's {evaluate_metrics}, found no such file")
    threshold = float(json.loads(Path(evaluate_metrics).read_text())["accelerated_threshold"])
    predictions = pd.read_csv(predictions_csv, dtype={"series_id": str, "subject_id": str, "split": str, "sex": str})
    followup = fracture_outcomes(read_table(raw / "outcomes.csv", "the outcomes table"))
    reports.mkdir(parents=True, exist_ok=True)

    roc, curves, km, cox, metrics = [], {}, [], [], {"accelerated_threshold": threshold, "sets": {}}
    for set_name in SETS:
        table = subject_table(predictions, followup, set_name)
        if len(table) < 10:
            metrics["sets"][set_name] = {"subjects": int(len(table)), "note": "fewer than 10 subjects: not analysed"}
            continue
        rows, found = roc_rows(table, set_name)
        roc += rows
        if found:
            curves[set_name] = found
        if not _varies(table["age_difference"]):
            metrics["sets"][set_name] = {"subjects": int(len(table)), "note": NO_SPREAD}
            continue
        median = float(table["age"].median())
        table["km_group"] = km_groups(table, median, threshold)
        failure = kaplan_meier_failure(table, "time_fracture", "event_any_fracture", "km_group")
        ratios = group_hazard_ratios(table, "time_fracture", "event_any_fracture", "km_group", KM_GROUPS[0])
        plot_kaplan_meier(failure, ratios, reports / f"km_{set_name}.png",
                          f"Any incident fracture, {set_name}: age median {median:.1f} y, accelerated above {threshold:+.2f} y")
        km.append(ratios.assign(set=set_name, age_median=median))
        cox.append(cox_table(table, {**FRACTURE_OUTCOMES, **MORTALITY_OUTCOMES}, PAPER_MODELS).assign(set=set_name))
        metrics["sets"][set_name] = {
            "subjects": int(len(table)), "fractures": int(table["event_any_fracture"].sum()), "deaths": int(table["event_death"].sum()),
            "age_median": median, "frax_columns": frax_columns_present(table),
        }
        present = frax_columns_present(table)
        if present and all(present.values()):
            metrics["sets"][set_name]["frax_major"] = frax_reclassification(table)
            metrics["sets"][set_name]["frax_hip"] = frax_hip_reclassification(table)
        else:
            metrics["sets"][set_name]["frax"] = "absent: outcomes.csv has no frax_major_/frax_hip_ chronological and spine columns (FRAX is not open; compute them with chronological and with spine age to compare)"
    test = subject_table(predictions, followup, TEST)
    terms, explained = age_difference_explained(test) if len(test) >= 10 else (pd.DataFrame(), {"note": "fewer than 10 test subjects"})
    metrics["explained"] = explained

    write_atomic(reports / ROC_CSV, lambda p: pd.DataFrame(roc).to_csv(p, index=False, float_format="%.6g"))
    plot_roc(curves, reports / ROC_FIGURE)
    write_atomic(reports / KM_CSV, lambda p: (pd.concat(km) if km else pd.DataFrame()).to_csv(p, index=False, float_format="%.6g"))
    write_atomic(reports / COX_CSV, lambda p: (pd.concat(cox) if cox else pd.DataFrame()).to_csv(p, index=False, float_format="%.6g"))
    write_atomic(reports / EXPLAINED_CSV, lambda p: terms.to_csv(p, index=False, float_format="%.6g"))
    truth_path = raw / "ground_truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        recovered = planted_hazards_recovered(subject_table(predictions, followup, SETS), truth)
    else:
        recovered = {"planted_truth": False, "reason": f"{truth_path} does not exist: not a phantom cohort"}
    write_json_atomic(reports / TRUTH, json_ready(recovered))
    metrics["truth_cis_holding_planted"] = recovered.get("cis_holding_planted")
    write_json_atomic(reports / METRICS, json_ready(metrics))
    return metrics

