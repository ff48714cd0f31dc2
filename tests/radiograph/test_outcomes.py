"""The radiograph outcome analyses on simulated subjects with planted hazards: ROC/DeLong, KM, Cox, truth recovery."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.radiograph.outcomes import write_radiograph_outcomes
from spineage.synth.outcomes import OutcomeEffects, simulate_outcomes


def write_inputs(folder: Path, n: int = 1500, error_sd: float = 1.0, seed: int = 4) -> tuple[Path, Path, Path]:
    """A raw cohort (outcomes.csv, ground_truth.json) of n subjects and the evaluate stage's outputs for it:
    the corrected spine age is the biological age read with an error of ``error_sd`` years."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 85, n)
    subjects = pd.DataFrame({"subject_id": [f"sub-{i:05d}" for i in range(n)], "sex": rng.choice(["F", "M"], n), "age": age,
                             "bio_age": age + rng.normal(0, 3, n)})
    effects = OutcomeEffects()
    outcomes = simulate_outcomes(subjects, effects, rng)
    raw = folder / "raw"
    raw.mkdir(parents=True)
    outcomes.to_csv(raw / "outcomes.csv", index=False)
    truth = {"outcome_effects": asdict(effects), "subjects": {s: {"bio_age": float(b)} for s, b in zip(subjects.subject_id, subjects.bio_age)}}
    (raw / "ground_truth.json").write_text(json.dumps(truth))
    corrected = subjects.bio_age + rng.normal(0, error_sd, n)
    split = np.where(np.arange(n) % 3 == 0, "test", np.where(np.arange(n) % 3 == 1, "external", "train"))
    predictions = pd.DataFrame({
        "series_id": [f"xr-{i:05d}" for i in range(n)], "subject_id": subjects.subject_id, "modality": "xray_lat", "sex": subjects.sex,
        "split": split, "age": age.round(2), "predicted_age": corrected.round(3), "corrected_age": corrected.round(3),
        "age_difference": (corrected - age).round(3),
    })
    evaluate = folder / "evaluate"
    evaluate.mkdir()
    predictions.to_csv(evaluate / "predictions.csv", index=False)
    threshold = float(np.quantile(predictions.loc[split == "test", "age_difference"], 2 / 3))
    (evaluate / "metrics.json").write_text(json.dumps({"accelerated_threshold": threshold}))
    return evaluate / "predictions.csv", evaluate / "metrics.json", raw


@pytest.mark.slow
def test_every_analysis_is_written_and_the_planted_hazards_are_recovered(tmp_path: Path) -> None:
    predictions, metrics_json, raw = write_inputs(tmp_path)
    out = tmp_path / "outcomes"
    metrics = write_radiograph_outcomes(predictions, metrics_json, raw, out)
    for name in ("roc.csv", "roc.png", "km_test.png", "km_external.png", "km_hazard_ratios.csv", "cox.csv", "explained.csv",
                 "truth_recovery.json", "metrics.json"):
        assert (out / name).is_file(), name
    roc = pd.read_csv(out / "roc.csv")
    # the spine age carries the planted gap, so it discriminates prevalent fracture better than age alone
    fracture = roc[(roc.condition == "prevalent_vertebral_fracture") & (roc.set == "test")].iloc[0]
    assert fracture.auc_spine_age > fracture.auc_chronological_age - 0.02 and 0 <= fracture.delong_p <= 1
    cox = pd.read_csv(out / "cox.csv")
    assert set(cox.model) == {"model 1", "model 2", "model 3"}
    assert set(cox.outcome) == {"any fracture", "vertebral fracture", "non-vertebral fracture", "all-cause death"}
    assert set(cox.set) == {"test", "external"}
    truth = json.loads((out / "truth_recovery.json").read_text())
    assert truth["planted_truth"] and truth["subjects"] == 1000
    rows = {row["outcome"]: row for row in truth["hazards"]}
    assert rows["vertebral fracture"]["oracle_ci_low"] <= 1.71 <= rows["vertebral fracture"]["oracle_ci_high"]
    assert rows["any fracture"]["pipeline_hr_per_sd"] > 1.0 and rows["any fracture"]["p"] < 0.05
    assert truth["age_difference_vs_planted_gap_r"] > 0.9
    assert "absent" in metrics["sets"]["test"]["frax"]
    groups = pd.read_csv(out / "km_hazard_ratios.csv")
    assert set(groups.group) == {"younger, not accelerated", "younger, accelerated", "older, not accelerated", "older, accelerated"}


def test_a_missing_input_is_a_one_line_user_error(tmp_path: Path) -> None:
    predictions, metrics_json, raw = write_inputs(tmp_path, n=60)
    with pytest.raises(UserError, match="radiograph evaluate"):
        write_radiograph_outcomes(tmp_path / "none.csv", metrics_json, raw, tmp_path / "out")
    (raw / "outcomes.csv").write_text(pd.read_csv(raw / "outcomes.csv").assign(followup_years=-1.0).to_csv(index=False))
    with pytest.raises(UserError):
        write_radiograph_outcomes(predictions, metrics_json, raw, tmp_path / "out")


def test_a_model_that_predicts_one_age_gets_notes_not_a_crash(tmp_path: Path) -> None:
    predictions, metrics_json, raw = write_inputs(tmp_path, n=90)
    table = pd.read_csv(predictions)
    table["corrected_age"], table["age_difference"] = table["age"], 0.0  # Beheshti's correction of a constant prediction
    table.to_csv(predictions, index=False)
    metrics = write_radiograph_outcomes(predictions, metrics_json, raw, tmp_path / "out")
    assert "does not vary" in metrics["sets"]["test"]["note"]
    truth = json.loads((tmp_path / "out" / "truth_recovery.json").read_text())
    assert truth["hazards"] == [] and "does not vary" in truth["note"]


def test_a_subject_with_a_radiograph_and_a_vfa_image_is_counted_once_by_its_radiograph() -> None:
    from spineage.analysis.survival import fracture_outcomes
    from spineage.radiograph.outcomes import subject_table

    predictions = pd.DataFrame({
        "series_id": ["vfa-1", "xr-1", "xr-2"], "subject_id": ["s1", "s1", "s2"], "split": ["external", "test", "test"],
        "age": [70.0, 70.0, 50.0], "sex": ["F", "F", "M"], "corrected_age": [72.0, 71.0, 49.0], "age_difference": [2.0, 1.0, -1.0]})
    outcomes = pd.DataFrame({"subject_id": ["s1", "s2"], "followup_years": [5.0, 6.0], "death": [0, 0], "fracture_followup_years": [5.0, 6.0],
                             "incident_fracture": [0, 1], "incident_fracture_type": ["", "vertebral"]})
    followup = fracture_outcomes(outcomes)
    table = subject_table(predictions, followup, ("test", "external"))
    assert list(table.series_id) == ["xr-1", "xr-2"]
    assert list(subject_table(predictions, followup, ("external", "test")).series_id) == ["vfa-1", "xr-2"]


def test_a_noisy_age_difference_finds_the_planted_hazards_attenuated_as_its_calibration_slope_predicts() -> None:
    from spineage.analysis.survival import fracture_outcomes
    from spineage.radiograph.outcomes import calibration_slope, planted_hazards_recovered

    rng = np.random.default_rng(12)
    n = 8000
    age = rng.uniform(40, 85, n)
    subjects = pd.DataFrame({"subject_id": [f"sub-{i:05d}" for i in range(n)], "sex": rng.choice(["F", "M"], n), "age": age,
                             "bio_age": age + rng.normal(0, 3, n)})
    effects = OutcomeEffects()
    table = subjects.merge(fracture_outcomes(simulate_outcomes(subjects, effects, rng)), on="subject_id")
    # a radiograph that reads the gap with r near 0.45: 6 years of error on a 3-year gap
    table["age_difference"] = table.bio_age - table.age + rng.normal(0, 6, n)
    truth = {"outcome_effects": asdict(effects), "subjects": {s: {"bio_age": float(b)} for s, b in zip(subjects.subject_id, subjects.bio_age)}}
    result = planted_hazards_recovered(table.drop(columns="bio_age"), truth)
    assert 0.35 < result["calibration_slope"] < 0.55
    assert result["calibration_slope"] == pytest.approx(calibration_slope(table.assign(planted_gap=table.bio_age - table.age)))
    rows = {row["outcome"]: row for row in result["hazards"]}
    vertebral = rows["vertebral fracture"]
    assert vertebral["expected_hr_per_sd"] == pytest.approx(1.71 ** result["calibration_slope"])
    assert not vertebral["ci_holds_planted"], "the attenuated HR leaves the planted one out"
    assert vertebral["oracle_ci_low"] <= 1.71 <= vertebral["oracle_ci_high"]
    assert result["cis_holding_expected"] == 4, rows
    # the same analysis on an age difference shuffled across subjects expects 1 and finds it
    shuffled = planted_hazards_recovered(table.drop(columns="bio_age").assign(age_difference=rng.permutation(table.age_difference)), truth)
    assert abs(shuffled["calibration_slope"]) < 0.05
