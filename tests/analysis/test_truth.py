"""Truth recovery: a strong planted effect is recovered, a zero one is not found, any planted effects work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.analysis.power import subjects_for_power, two_sided_power
from spineage.analysis.truth import planted_design, truth_line, validate_truth
from spineage.analysis.truth_settings import TruthSettings, parse_truth_settings
from spineage.cli import app
from spineage.errors import UserError


def write_phantom(folder: Path, effects: dict[str, float], n: int = 600, error_sd: float = 1.0, seed: int = 5) -> Path:
    """A raw cohort's truth files and a prediction table: SAG = the planted gap + N(0, error_sd)."""
    rng = np.random.default_rng(seed)
    subjects = [f"sub-{i:05d}" for i in range(n)]
    lifestyle = pd.DataFrame({
        "subject_id": subjects,
        "packs_per_day": np.where(rng.uniform(size=n) < 0.3, rng.uniform(0.2, 2.0, n).round(2), 0.0),
        "alcohol_days_per_week": rng.integers(0, 8, n),
        "sedentary_hours_per_day": rng.uniform(2, 12, n).round(1),
        "work": rng.choice(["sedentary", "moderate", "heavy"], n, p=[0.5, 0.3, 0.2]),
        "exercise": rng.choice(["none", "moderate", "vigorous"], n, p=[0.4, 0.4, 0.2]),
    })
    design = planted_design(lifestyle.set_index("subject_id"), effects)
    age = rng.uniform(25, 85, n)
    planted_gap = design.to_numpy() @ np.array(list(effects.values())) + rng.normal(0, 3.0, n)
    sag = planted_gap + rng.normal(0, error_sd, n)
    series = [f"mri-{i:05d}-1" for i in range(n)]
    predictions = pd.DataFrame({
        "series_id": series, "subject_id": subjects, "split": np.where(np.arange(n) % 5 == 0, "train", "full_test_abnormal"),
        "age": age.round(2), "sex": rng.choice(["F", "M"], n), "predicted_age": (age + sag * 0.9).round(3),
        "corrected_age": (age + sag).round(3), "sag": sag.round(3),
    })
    folder.mkdir(parents=True, exist_ok=True)
    lifestyle.to_csv(folder / "lifestyle.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    truth = {
        "seed": seed, "lifestyle_effects": effects,
        "series_bio_age": {s: float(a + g) for s, a, g in zip(series, age, planted_gap)},
        "series_atypical": {s: ([] if i % 3 else ["fracture"]) for i, s in enumerate(series)},
    }
    (folder / "ground_truth.json").write_text(json.dumps(truth))
    return folder


def test_a_strong_planted_effect_is_recovered_and_a_zero_one_is_not_found(tmp_path: Path) -> None:
    effects = {"packs_per_day": 2.0, "work_heavy": 1.5, "sedentary_hours_per_day": 0.0}
    raw = write_phantom(tmp_path / "raw", effects)
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings(splits=("full_test_abnormal",)))
    rows = {row["name"]: row for row in result["effects"]}
    assert rows["packs_per_day"]["recovered"] and rows["work_heavy"]["recovered"]
    assert rows["packs_per_day"]["ci_low"] <= 2.0 <= rows["packs_per_day"]["ci_high"]
    assert rows["sedentary_hours_per_day"]["falsely_found"] is False
    assert rows["sedentary_hours_per_day"]["recovered"] is None
    assert result["target_met"] and result["targets"] == 2
    # the train split is never judged: 600 subjects, 120 of them train
    assert result["subjects"] == 480
    # SAG is the planted gap plus error SD 1 on a gap of SD ~3: r near 3 / sqrt(10)
    assert 0.9 < result["sag_vs_planted_gap_r"] < 0.97
    assert 0.8 < rows["packs_per_day"]["attenuation"] < 1.25
    written = json.loads((tmp_path / "truth.json").read_text())
    assert written["targets_recovered"] == 2 and "met" in truth_line(result)


def test_an_effect_the_gap_does_not_carry_is_not_recovered(tmp_path: Path) -> None:
    """The pipeline's gap is noise unrelated to the planted one: nothing is found, the target is not met."""
    raw = write_phantom(tmp_path / "raw", {"exercise_vigorous": -1.5})
    predictions = pd.read_csv(raw / "predictions.csv")
    predictions["sag"] = np.random.default_rng(0).normal(0, 3, len(predictions))
    predictions.to_csv(raw / "predictions.csv", index=False)
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings(splits=("full_test_abnormal",)))
    (row,) = result["effects"]
    assert row["name"] == "exercise_vigorous" and row["oracle_p"] < 0.05
    assert not row["recovered"] and not result["target_met"]
    assert abs(result["sag_vs_planted_gap_r"]) < 0.15


def test_the_power_calculation_matches_the_normal_approximation_and_sizes_the_cohort(tmp_path: Path) -> None:
    raw = write_phantom(tmp_path / "raw", {"work_heavy": 0.5}, n=300, error_sd=3.0)
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings(splits=("full_test_abnormal",)))
    (row,) = result["effects"]
    slope = result["power"]["slope_sag_on_planted_gap"]
    se = (row["ci_high"] - row["ci_low"]) / 2 / 1.97  # t quantile at ~230 degrees of freedom
    assert row["power"] == pytest.approx(two_sided_power(0.5 * slope, se), abs=0.01)
    needed = result["power"]["subjects_for_target_power"]
    assert needed == row["subjects_for_target_power"] > result["subjects"]
    # at the size it asks for, the expected power is the target
    assert two_sided_power(0.5 * slope, se * np.sqrt(result["subjects"] / needed)) == pytest.approx(0.9, abs=0.005)


def test_power_against_hand_values() -> None:
    assert two_sided_power(0.0, 1.0) == pytest.approx(0.05)
    assert two_sided_power(2.8, 1.0) == pytest.approx(0.80, abs=0.002)  # 1.96 + 0.84
    assert subjects_for_power(1.0, 0.5, n=100, power=0.8) == 197  # 100 * (0.5 * 2.8016)^2
    assert subjects_for_power(0.0, 0.5, n=100) is None
    with pytest.raises(UserError, match="standard error"):
        two_sided_power(1.0, 0.0)


def test_effects_are_read_from_the_truth_not_a_fixed_list(tmp_path: Path) -> None:
    raw = write_phantom(tmp_path / "raw", {"alcohol_days_per_week": 0.6, "exercise_moderate": -1.0})
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings(splits=("full_test_abnormal",)))
    assert [row["name"] for row in result["effects"]] == ["alcohol_days_per_week", "exercise_moderate"]
    assert all(row["recovered"] for row in result["effects"])


def test_planted_design_refuses_an_effect_it_cannot_map() -> None:
    table = pd.DataFrame({"packs_per_day": [0.0, 1.0], "work": ["heavy", "moderate"]})
    assert planted_design(table, {"work_moderate": 0.3}).to_dict("list") == {"work_moderate": [0.0, 1.0]}
    with pytest.raises(UserError, match="'coffee_cups'"):
        planted_design(table, {"coffee_cups": 0.1})


def test_the_normal_cohort_is_judged_against_the_planted_marks(tmp_path: Path) -> None:
    raw = write_phantom(tmp_path / "raw", {"packs_per_day": 1.0})
    predictions = pd.read_csv(raw / "predictions.csv")
    marks = json.loads((raw / "ground_truth.json").read_text())["series_atypical"]
    cohort = predictions[["series_id"]].assign(bracket="50", normal=[not marks[s] for s in predictions.series_id])
    cohort.loc[:9, "bracket"] = ""  # outside the brackets: never clustered, not counted
    cohort.to_csv(tmp_path / "cohort.csv", index=False)
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "t.json", TruthSettings(), cohort_csv=tmp_path / "cohort.csv")
    overall = result["normal_cohort"]["overall"]
    assert overall["atypical"]["abnormal_share"] == 1.0 and overall["typical"]["abnormal"] == 0
    assert overall["atypical"]["series"] + overall["typical"]["series"] == len(cohort) - 10


def test_a_real_cohort_has_nothing_to_validate(tmp_path: Path) -> None:
    raw = write_phantom(tmp_path / "raw", {"packs_per_day": 1.0})
    (raw / "ground_truth.json").unlink()
    result = validate_truth(raw / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings())
    assert result["planted_truth"] is False
    assert json.loads((tmp_path / "truth.json").read_text())["planted_truth"] is False


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    raw = write_phantom(tmp_path / "raw", {"packs_per_day": 1.0})
    result = CliRunner().invoke(app, ["validate-truth", "--predictions", str(tmp_path / "none.csv"), "--raw", str(raw),
                                      "--out", str(tmp_path / "t.json"), "--params", str(Path(__file__).parents[2] / "params.yaml")])
    assert result.exit_code == 2
    assert "none.csv" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()


def test_truth_settings_refuse_bad_values() -> None:
    assert parse_truth_settings(None) == TruthSettings()
    with pytest.raises(UserError, match="train"):
        parse_truth_settings({"splits": ["train", "test"]})
    with pytest.raises(UserError, match="truth.alpha"):
        parse_truth_settings({"alpha": 0.9})
    with pytest.raises(UserError, match="seedd"):
        parse_truth_settings({"seedd": 1})


@pytest.mark.slow
def test_on_a_generated_phantom_strong_effects_are_recovered_and_a_zero_one_is_not_found(tmp_path: Path) -> None:
    """The generator's own tables (lifestyle.csv, ground_truth.json, sessions) through validate-truth, with a
    stand-in for the pipeline: the planted biological age read with an error of SD 1.5 years."""
    from spineage.config import parse_params
    from spineage.synth.generate import generate_cohort

    effects = {"packs_per_day": 4.0, "alcohol_days_per_week": 0.0, "sedentary_hours_per_day": 0.0, "work_moderate": 0.0,
               "work_heavy": 3.0, "exercise_moderate": 0.0, "exercise_vigorous": 0.0}
    synth = parse_params({"synth": {"lifestyle_effects": effects}}).synth
    raw = tmp_path / "raw"
    generate_cohort(raw, synth, seed=3, profile="ci", n_subjects=160, workers=1, progress=False)
    truth = json.loads((raw / "ground_truth.json").read_text())
    sessions = pd.read_csv(raw / "sessions.csv")
    mri = sessions[sessions.modality == "mri_t2_sag"].merge(pd.read_csv(raw / "participants.csv"), on="subject_id")
    bio = mri.series_id.map(truth["series_bio_age"])
    corrected = bio + np.random.default_rng(0).normal(0, 1.5, len(mri))
    predictions = mri[["series_id", "subject_id", "age", "sex"]].assign(
        split="external", predicted_age=mri.age + 0.8 * (corrected - mri.age), corrected_age=corrected, sag=corrected - mri.age)
    predictions.to_csv(tmp_path / "predictions.csv", index=False)

    result = validate_truth(tmp_path / "predictions.csv", raw, tmp_path / "truth.json", TruthSettings(), all_splits=True)
    rows = {row["name"]: row for row in result["effects"]}
    assert result["subjects"] == 160 and result["phantom_seed"] == 3
    assert rows["packs_per_day"]["recovered"] and rows["work_heavy"]["recovered"]
    assert rows["packs_per_day"]["ci_low"] <= 4.0 <= rows["packs_per_day"]["ci_high"]
    assert rows["sedentary_hours_per_day"]["falsely_found"] is False
    assert result["sag_vs_planted_gap_r"] > 0.8
