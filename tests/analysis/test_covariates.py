"""The analysis table: findings as categories per region, lifestyle checked, predictions of the analysed splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.analysis.covariates import (
    FLAG_FINDINGS,
    analysis_table,
    degenerative_columns,
    finding_categories,
    lifestyle_covariates,
)
from spineage.analysis.settings import SagSettings
from spineage.errors import UserError


def _findings(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["series_id", "level", "condition", "severity", "negated"]).assign(source="report")


def test_the_most_severe_severity_per_region_wins_and_negations_do_not_count() -> None:
    findings = _findings([
        ("s1", "L3", "desiccation", "near_complete", False),
        ("s1", "L4", "desiccation", "severe", False),
        ("s1", "L5", "desiccation", "mild", False),
        ("s1", "C5", "desiccation", "mild", False),
        ("s1", "C6", "desiccation", "severe", True),  # negated: must not lift cervical to severe
        ("s1", "T13", "disc_bulge", "moderate", False),  # supernumerary thoracic level
        ("s1", "L6", "extrusion", "mild", False),
        ("s1", "L2", "extrusion", "moderate", False),
        ("s1", "", "protrusion", "severe", False),  # no level: no region
        ("s1", None, "endplate_change", "present", False),
        ("s2", "C2", "annular_fissure", "present", False),
        ("s2", "", "spinal_stenosis", "severe", False),
        ("s2", "", "tarlov_cyst", "present", True),
        ("elsewhere", "L4", "disc_bulge", "severe", False),
    ])
    table = finding_categories(findings, ["s2", "s1", "s3"])
    assert table["series_id"].tolist() == ["s2", "s1", "s3"]
    assert table.columns.tolist() == ["series_id", *degenerative_columns(), *FLAG_FINDINGS]
    s1 = table.set_index("series_id").loc["s1"]
    # near_complete outranks severe although "severe" sorts after it alphabetically
    assert s1["lumbar_desiccation"] == "near_complete"
    assert s1["cervical_desiccation"] == "mild"
    assert s1["thoracic_desiccation"] == "none"
    assert s1["thoracic_disc_bulge"] == "moderate" and s1["lumbar_disc_bulge"] == "none"
    assert s1["lumbar_extrusion"] == "moderate"
    assert (s1[[c for c in degenerative_columns() if c.endswith(("protrusion", "endplate_change"))]] == "none").all()
    s2 = table.set_index("series_id").loc["s2"]
    assert s2["cervical_annular_fissure"] == "present" and s2["lumbar_annular_fissure"] == "none"
    assert s2["spinal_stenosis"] == 1 and s2["tarlov_cyst"] == 0
    s3 = table.set_index("series_id").loc["s3"]  # no findings at all
    assert (s3[list(degenerative_columns())] == "none").all()
    assert (s3[list(FLAG_FINDINGS)] == 0).all()


def test_no_findings_at_all_gives_a_row_per_series() -> None:
    table = finding_categories(_findings([]), ["a", "b"])
    assert len(table) == 2 and (table[list(degenerative_columns())] == "none").all().all()
    assert table[list(FLAG_FINDINGS)].to_numpy().sum() == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("s1", "L4", "disc_bulge", "near_complete", False), "severity of disc_bulge"),
        (("s1", "S1", "disc_bulge", "mild", False), "'S1'"),
        (("s1", "L4", "herniation", "mild", False), "'herniation'"),
    ],
)
def test_findings_outside_the_vocabulary_are_user_errors(row: tuple, message: str) -> None:
    with pytest.raises(UserError, match=message):
        finding_categories(_findings([row]), ["s1"])


def _lifestyle(**changes) -> pd.DataFrame:
    table = pd.DataFrame({"subject_id": ["a", "b"], "packs_per_day": ["0", "1.5"], "alcohol_days_per_week": ["2", ""],
                          "sedentary_hours_per_day": ["8", "6.5"], "work": ["heavy", "sedentary"], "exercise": ["none", ""]})
    return table.assign(**changes)


def test_lifestyle_numbers_become_numbers_and_empty_cells_missing() -> None:
    table = lifestyle_covariates(_lifestyle())
    assert table["packs_per_day"].tolist() == [0.0, 1.5]
    assert np.isnan(table.loc[1, "alcohol_days_per_week"])
    assert table["work"].tolist() == ["heavy", "sedentary"]
    assert table.loc[1, "exercise"] is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (_lifestyle().drop(columns="exercise"), "exercise"),
        (_lifestyle(work=["heavy", "office"]), "'office'"),
        (_lifestyle(exercise=["daily", "none"]), "'daily'"),
        (_lifestyle(packs_per_day=["0", "lots"]), "'lots'"),
        (_lifestyle(subject_id=["a", "a"]), "repeated"),
    ],
)
def test_a_bad_lifestyle_table_is_a_one_line_user_error(table: pd.DataFrame, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        lifestyle_covariates(table)
    assert "\n" not in str(error.value)


def _predictions() -> pd.DataFrame:
    return pd.DataFrame({
        "series_id": ["s1", "s2", "s3", "s4"], "subject_id": ["a", "b", "c", "a"],
        "split": ["test", "full_test_abnormal", "train", "full_test_other"],
        "age": [40.0, 60.0, 50.0, 90.0], "sex": ["F", "M", "F", "F"], "sag": [1.0, -2.0, 0.5, 3.0],
    })


def test_the_analysis_table_keeps_the_analysed_splits_and_joins_findings_and_lifestyle() -> None:
    findings = _findings([("s2", "", "fracture", "mild", False), ("s3", "", "fracture", "mild", False)])
    table = analysis_table(_predictions(), findings, _lifestyle(), SagSettings())
    assert table["series_id"].tolist() == ["s1", "s2"]
    assert table["fracture"].tolist() == [0, 1]
    assert table["work"].tolist() == ["heavy", "sedentary"] and table["packs_per_day"].tolist() == [0.0, 1.5]
    without = analysis_table(_predictions(), findings, None, SagSettings(splits=("test", "full_test_other")))
    assert without["series_id"].tolist() == ["s1", "s4"] and "work" not in without


def test_bad_predictions_are_user_errors() -> None:
    with pytest.raises(UserError, match="sag"):
        analysis_table(_predictions().drop(columns="sag"), _findings([]), None, SagSettings())
    with pytest.raises(UserError, match="'X'"):
        analysis_table(_predictions().assign(sex=["F", "X", "M", "F"]), _findings([]), None, SagSettings())
