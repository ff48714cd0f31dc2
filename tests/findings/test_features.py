"""Tests of the feature vectors: the 215-entry level vector and the 67-entry region vector."""

from __future__ import annotations

import pandas as pd

from spineage.findings.features import LEVEL_COLUMNS, REGION_COLUMNS, level_vectors, region_vectors
from spineage.findings.vocabulary import CONDITION_SEVERITY_PAIRS, LEVELS, PATHOLOGIES


def table(*rows: tuple, negated: list[bool] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["series_id", "level", "condition", "severity"])
    if negated is not None:
        frame["negated"] = negated
    return frame


def test_columns_are_the_documented_215_and_67():
    assert len(LEVEL_COLUMNS) == 26 * 8 + 7 == 215
    assert len(REGION_COLUMNS) == 3 * 20 + 7 == 67
    assert len(set(LEVEL_COLUMNS)) == 215 and len(set(REGION_COLUMNS)) == 67
    assert LEVEL_COLUMNS[0] == f"{LEVELS[0]}__disc_bulge" and LEVEL_COLUMNS[-7:] == PATHOLOGIES
    assert REGION_COLUMNS[:20] == tuple(f"cervical__{c}__{s}" for c, s in CONDITION_SEVERITY_PAIRS)
    assert REGION_COLUMNS[-7:] == PATHOLOGIES


def test_shapes_order_and_index_also_for_series_without_findings():
    findings = table(("b", "L4", "disc_bulge", "mild"))
    for vectors, width in ((level_vectors(findings, ["a", "b", "c"]), 215), (region_vectors(findings, ["a", "b", "c"]), 67)):
        assert vectors.shape == (3, width)
        assert vectors.index.tolist() == ["a", "b", "c"] and vectors.index.name == "series_id"
        assert vectors.loc[["a", "c"]].to_numpy().sum() == 0
        assert (vectors.to_numpy() >= 0).all()


def test_level_vector_holds_the_worst_severity_as_an_ordinal():
    findings = table(
        ("s", "L4", "desiccation", "mild"),
        ("s", "L4", "desiccation", "near_complete"),
        ("s", "C5", "disc_osteophyte_complex", "moderate"),
        ("s", "L5", "endplate_change", "present"),
        ("s", "T12", "fracture", "severe"),
    )
    row = level_vectors(findings, ["s"]).loc["s"]
    assert row["L4__desiccation"] == 4
    assert row["C5__disc_osteophyte_complex"] == 2
    assert row["L5__endplate_change"] == 1
    assert row["fracture"] == 1  # pathologies are presence flags
    assert row.sum() == 4 + 2 + 1 + 1


def test_region_vector_counts_levels_per_condition_and_severity():
    findings = table(
        ("s", "L3", "disc_bulge", "mild"),
        ("s", "L4", "disc_bulge", "mild"),
        ("s", "L4", "disc_bulge", "mild"),  # repeated row: still one level
        ("s", "L5", "disc_bulge", "moderate"),
        ("s", "T13", "desiccation", "severe"),  # supernumerary thoracic vertebra
        ("s", "C6", "uncovertebral_osteophyte", "mild"),
        ("s", "L4", "spondylolisthesis", "mild"),
        ("s", "", "scoliosis", "mild"),  # other findings are not clustered on
    )
    row = region_vectors(findings, ["s"]).loc["s"]
    assert row["lumbar__disc_bulge__mild"] == 2
    assert row["lumbar__disc_bulge__moderate"] == 1
    assert row["thoracic__desiccation__severe"] == 1
    assert row["cervical__uncovertebral_osteophyte__mild"] == 1
    assert row["spondylolisthesis"] == 1
    assert row.sum() == 6


def test_negated_findings_do_not_count():
    findings = table(
        ("s", "L4", "protrusion", "mild"),
        ("s", "", "fracture", "present"),
        ("s", "L5", "protrusion", "mild"),
        negated=[False, True, True],
    )
    assert region_vectors(findings, ["s"]).loc["s"].sum() == 1
    assert level_vectors(findings, ["s"]).loc["s", "fracture"] == 0
