"""The report's radiograph and DXA VFA section (the VERTE-X branch), handed to the page as an extra section.

From ``reports/radiograph/``: the model's accuracy raw and corrected against the mean-age
baseline (derivation test and external VFA), the ROC curves with DeLong's test (Figure 1),
the Kaplan-Meier curves (Figure 2), the Cox tables (Tables 2 and 3) with the
proportional-hazards check, the explainability regression, FRAX (or why it is absent), and
for a phantom the planted hazard ratios against the pipeline's and the oracle's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spineage.reporting.blocks import Column, Heading, Note, Section, Text, figure_from_png, key_value_table, table_from_records
from spineage.reporting.formatting import format_count, format_estimate, format_number, format_p, format_value
from spineage.reporting.sections import read_csv_report, read_json_report

TITLE = "Radiographs and DXA VFA"


def radiograph_section(reports: Path, external_hazards: Path | None = None) -> Section:
    """The section, built from ``reports/radiograph``; a single note when the branch has not run.

    Args:
        reports: the ``reports/`` folder.
        external_hazards: ``make truth``'s radiograph truth_recovery.json (the truth cohort's planted hazards);
            None or absent: "not run".
    """
    folder = Path(reports) / "radiograph"
    metrics = read_json_report(folder / "metrics.json")
    if metrics is None:
        return Section(TITLE, [Note(f"The radiograph branch has not run ({folder}/metrics.json is missing).")])
    blocks: list = [Heading("Accuracy"), Text(
        f"EfficientNet with the mean-variance loss; {metrics.get('bias_correction', {}).get('method', '?')} correction fitted on the "
        f"derivation validation split. Accelerated spine age: an age difference above {format_number(metrics.get('accelerated_threshold'))} y "
        "(the derivation test set's top tertile).")]
    rows = []
    for split in ("test", "external"):
        figures = metrics.get(split)
        if isinstance(figures, dict):
            rows.append({"set": split, "n": figures.get("n"), "raw": figures.get("raw", {}).get("mae"),
                         "corrected": figures.get("corrected", {}).get("mae"), "baseline": figures.get("baseline_mean_age_mae"),
                         "ridge": figures.get("baseline_ridge_pixels_mae"),
                         "r": figures.get("corrected", {}).get("r")})
    blocks.append(table_from_records(rows, [
        Column("Set", "set", str, numeric=False), Column("n", "n", format_count), Column("MAE raw (y)", "raw", format_number),
        Column("MAE corrected (y)", "corrected", format_number), Column("Mean-age baseline MAE (y)", "baseline", format_number),
        Column("Pixel-ridge baseline MAE (y)", "ridge", format_number),
        Column("r corrected", "r", format_number),
    ], caption="Spine age against chronological age."))

    outcomes = folder / "outcomes"
    blocks.append(Heading("Prevalent fracture and osteoporosis (Figure 1)"))
    blocks.append(figure_from_png(outcomes / "roc.png", "ROC curves of spine age and chronological age, DeLong's test of the two AUROCs."))
    roc = read_csv_report(outcomes / "roc.csv")
    if roc:
        blocks.append(table_from_records(roc, [
            Column("Set", "set", str, numeric=False), Column("Condition", "condition", lambda v: str(v).replace("_", " "), numeric=False),
            Column("Cases / n", lambda r: f"{format_count(r.get('cases'))} / {format_count(r.get('n'))}"),
            Column("AUROC spine age (95 % CI)", lambda r: format_estimate(r.get("auc_spine_age"), r.get("spine_ci_low"), r.get("spine_ci_high"))),
            Column("AUROC age (95 % CI)", lambda r: format_estimate(r.get("auc_chronological_age"), r.get("chronological_ci_low"), r.get("chronological_ci_high"))),
            Column("DeLong p", "delong_p", format_p),
        ], caption="AUROCs, spine age against chronological age."))
    blocks.append(Heading("Incident fracture (Figure 2)"))
    for split in ("test", "external"):
        blocks.append(figure_from_png(outcomes / f"km_{split}.png", f"Cumulative incidence of any fracture, {split}: age below/above the median x accelerated spine age."))
    blocks.append(Heading("Cox models per SD of the age difference (Tables 2 and 3)"))
    cox = read_csv_report(outcomes / "cox.csv")
    if cox:
        blocks.append(table_from_records(cox, [
            Column("Set", "set", str, numeric=False), Column("Outcome", "outcome", str, numeric=False), Column("Model", "model", str, numeric=False),
            Column("HR per SD (95 % CI)", lambda r: format_estimate(r.get("hr_per_sd"), r.get("ci_low"), r.get("ci_high"))),
            Column("p", "p", format_p), Column("Events / n", lambda r: f"{format_count(r.get('events'))} / {format_count(r.get('n'))}"),
            Column("PH check (smallest p)", lambda r: f"{format_value(r.get('ph_ok'))} ({format_p(r.get('ph_p_min'))})", numeric=False),
        ], caption="Model 1: age, sex; Model 2: + prevalent fracture, diabetes, glucocorticoids, rheumatoid arthritis, BMI; Model 3: + osteoporosis."))
    else:
        blocks.append(Note("Cox tables not available."))
    blocks.append(Heading("What the age difference goes with"))
    outcome_metrics = read_json_report(outcomes / "metrics.json") or {}
    explained = outcome_metrics.get("explained") or {}
    blocks.append(Text(f"OLS of the age difference on the derivation test set: n {format_count(explained.get('n'))}, adjusted R² {format_number(explained.get('adj_r_squared'))}."))
    terms = read_csv_report(outcomes / "explained.csv")
    if terms:
        blocks.append(table_from_records(terms, [
            Column("Term", "term", str, numeric=False),
            Column("Effect (95 % CI)", lambda r: format_estimate(r.get("effect"), r.get("ci_low"), r.get("ci_high"))), Column("p", "p", format_p),
        ], caption="Supplementary Table 4 analogue."))
    sets = outcome_metrics.get("sets") or {}
    blocks.append(Heading("FRAX"))
    frax = [(name, format_value(values.get("frax", values.get("frax_major")))) for name, values in sets.items() if isinstance(values, dict)]
    blocks.append(key_value_table(frax, caption="FRAX reclassification (20 % major osteoporotic, 3 % hip).") if frax else Note("FRAX not assessed."))
    blocks.append(Heading("Planted hazard ratios"))
    blocks += _hazard_blocks(read_json_report(outcomes / "truth_recovery.json"), "outside train and validation")
    blocks.append(Heading("Planted hazard ratios on the external truth cohort (make truth)"))
    found = read_json_report(Path(external_hazards)) if external_hazards is not None else None
    blocks += _hazard_blocks(found, "of the truth cohort") if found else [Note("Not run: `make truth` scores the truth cohort's radiographs too.")]
    return Section(TITLE, blocks)


def _hazard_blocks(truth: dict[str, Any] | None, whose: str) -> list:
    """The planted hazard ratios of one truth_recovery.json beside the pipeline's and the oracle's."""
    if not truth or not truth.get("planted_truth"):
        return [Note("The cohort has no planted truth.")]
    return [
        Text(f"{truth.get('model', '')}; {format_count(truth.get('subjects'))} subjects {whose}; r(age difference, planted gap) "
             f"{format_number(truth.get('age_difference_vs_planted_gap_r'))}; calibration slope {format_number(truth.get('calibration_slope'))}. "
             f"{truth.get('note', '')}."),
        table_from_records(truth.get("hazards") or [], [
            Column("Outcome", "outcome", str, numeric=False), Column("Planted HR per SD", "planted_hr_per_sd", format_number),
            Column("Pipeline (95 % CI)", lambda r: format_estimate(r.get("pipeline_hr_per_sd"), r.get("ci_low"), r.get("ci_high"))),
            Column("Oracle (95 % CI)", lambda r: format_estimate(r.get("oracle_hr_per_sd"), r.get("oracle_ci_low"), r.get("oracle_ci_high"))),
            Column("CI holds planted", "ci_holds_planted", format_value, numeric=False),
            Column("Expected through the age difference", "expected_hr_per_sd", format_number),
            Column("CI holds expected", "ci_holds_expected", format_value, numeric=False), Column("Events", "events", format_count),
        ], caption="The planted hazard ratio per SD of the spine age gap against the pipeline's and the oracle's (planted gap) Model 1, "
                   "and what the planted one becomes through an age difference that carries only part of the gap (planted ** calibration slope)."),
    ]
