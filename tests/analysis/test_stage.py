"""The sag stage end to end on a small fabricated set of the evaluate stage's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spineage.analysis.associations import ASSOCIATION_COLUMNS
from spineage.analysis.odds import ODDS_COLUMNS
from spineage.analysis.settings import SagSettings
from spineage.analysis.stage import write_sag_analysis
from spineage.errors import UserError
from tests.analysis.conftest import FRACTURE_EFFECT, fabricated_inputs

FAST = SagSettings(bootstrap_samples=20)
OUTPUTS = ("associations.csv", "associations.md", "odds_ratios.csv", "odds_ratios.png", "sag_vs_age_work.png",
           "multivariable.csv", "series.csv", "metrics.json")


def test_every_output_is_written_and_the_planted_effect_is_found(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    predictions, findings, lifestyle = inputs
    out = tmp_path / "sag"
    metrics = write_sag_analysis(predictions, findings, lifestyle, out, FAST, seed=1)
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["n_series"] == 80 and metrics["n_subjects"] == 80  # the 10 train series are left out
    assert metrics["splits"] == ["test", "full_test_abnormal"] and metrics["lifestyle_present"] is True
    series = pd.read_csv(out / "series.csv")
    assert metrics["n_high"] == int((series.sag > 5).sum()) and metrics["n_low"] == int((series.sag < -5).sum())
    assert metrics["thresholds"] == {"high_gap_years": 5.0, "low_gap_years": -5.0}
    assert metrics["multivariable_n"] == 79  # one subject has no lifestyle row
    assert 0 < metrics["multivariable_adj_r_squared"] < metrics["multivariable_r_squared"] < 1

    associations = pd.read_csv(out / "associations.csv", keep_default_na=False, na_values=[""])
    assert associations.columns.tolist() == list(ASSOCIATION_COLUMNS)
    fracture = associations.set_index("variable").loc["fracture"]
    assert fracture["ci_low"] <= FRACTURE_EFFECT <= fracture["ci_high"] and fracture["p"] < 0.001
    assert metrics["significant_associations"]["unadjusted"] == int((associations.p < 0.05).sum()) >= 1
    assert {"work", "exercise", "packs_per_day"} <= set(associations.loc[associations.model == "lifestyle", "variable"])
    assert pd.read_csv(out / "odds_ratios.csv").columns.tolist() == list(ODDS_COLUMNS)
    assert "fracture" in set(pd.read_csv(out / "multivariable.csv")["term"])
    assert "## lifestyle" in (out / "associations.md").read_text()
    assert not list(out.glob(".*.tmp"))


def test_without_lifestyle_the_rest_is_written_and_metrics_say_so(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    predictions, findings, _ = inputs
    out = tmp_path / "sag"
    out.mkdir()
    (out / "sag_vs_age_work.png").write_bytes(b"stale")
    metrics = write_sag_analysis(predictions, findings, tmp_path / "no-such-lifestyle.csv", out, FAST, seed=1)
    assert metrics["lifestyle_present"] is False and "lifestyle" in metrics["notes"][0]
    # every declared output is there (DVC expects them), Figure 7 redrawn with one group
    assert (out / "sag_vs_age_work.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    associations = pd.read_csv(out / "associations.csv")
    assert "lifestyle" not in set(associations["model"])
    assert metrics["multivariable_n"] == 80
    assert write_sag_analysis(predictions, findings, None, tmp_path / "none", FAST, seed=1)["lifestyle_present"] is False


def test_missing_inputs_and_too_few_series_are_one_line_user_errors(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    predictions, findings, lifestyle = inputs
    with pytest.raises(UserError, match="predictions") as error:
        write_sag_analysis(tmp_path / "missing.csv", findings, lifestyle, tmp_path / "sag", FAST, seed=1)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="findings"):
        write_sag_analysis(predictions, tmp_path / "missing.parquet", lifestyle, tmp_path / "sag", FAST, seed=1)
    small = fabricated_inputs(tmp_path / "small", n=9)
    with pytest.raises(UserError, match="at least 10 series"):
        write_sag_analysis(*small, tmp_path / "sag", FAST, seed=1)
    assert not (tmp_path / "sag").exists()


def test_the_same_seed_writes_the_same_outputs(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    first = write_sag_analysis(*inputs, tmp_path / "a", FAST, seed=2)
    second = write_sag_analysis(*inputs, tmp_path / "b", FAST, seed=2)
    assert first == second
    for name in ("associations.csv", "odds_ratios.csv", "multivariable.csv", "series.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_findings_file_that_is_not_parquet_is_a_user_error(inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    predictions, _, lifestyle = inputs
    bad = tmp_path / "findings.parquet"
    bad.write_text("series_id,level\n")
    with pytest.raises(UserError, match="Parquet"):
        write_sag_analysis(predictions, bad, lifestyle, tmp_path / "sag", FAST, seed=1)
