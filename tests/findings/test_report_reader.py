"""Tests of the report reader: free-text radiology reports to findings rows."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.findings.report_reader import (
    FINDINGS_COLUMNS,
    read_report,
    read_reports,
    summarize_findings,
)
from spineage.findings.vocabulary import (
    ALL_CONDITIONS,
    DEGENERATIVE_SEVERITIES,
    LEVELS,
    PATHOLOGY_SEVERITIES,
)

REALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"
SPINE_GENERIC = REALDATA / "spine-generic" / "participants.tsv"
needs_realdata = pytest.mark.skipif(
    not SPINE_GENERIC.is_file(),
    reason=f"real spine-generic notes not found at {SPINE_GENERIC} (../shared/realdata is absent)",
)


def rows(text: str) -> list[tuple]:
    """(level, condition, severity, negated, uncertain, mapped) of every row, in order."""
    frame = read_report(text, "r1")
    return [
        (r.level, r.condition, r.severity, bool(r.negated), bool(r.uncertain), bool(r.mapped))
        for r in frame.itertuples()
    ]


def mapped(text: str) -> list[tuple[str, str, str]]:
    """(level, condition, severity) of the mapped, affirmed, certain rows."""
    return [(lv, c, s) for lv, c, s, neg, unc, m in rows(text) if m and not neg and not unc]


def levels_of(text: str, condition: str) -> list[str]:
    return [lv for lv, c, *_ in rows(text) if c == condition]


# --------------------------------------------------------------------------- table shape


def test_columns_and_dtypes_also_for_an_empty_result():
    for frame in (read_report(""), read_report("disc bulge L4/5", "s1")):
        assert tuple(frame.columns) == FINDINGS_COLUMNS
        for column in ("negated", "uncertain", "mapped"):
            assert frame[column].dtype == bool
    assert read_report("").empty
    frame = read_report("disc bulge L4/5", "s1")
    assert frame["series_id"].tolist() == ["s1"]
    assert frame["source_text"].tolist() == ["disc bulge L4/5"]


@pytest.mark.parametrize("note", ["", "   ", "n/a", "N/A", "nan", None, math.nan, " . "])
def test_empty_notes_give_no_rows(note):
    assert read_report(note).empty


# --------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    "text, level",
    [
        ("disc bulge C5/6", "C5"),
        ("disc bulge C5-6", "C5"),
        ("disc bulge L4-L5", "L4"),
        ("disc bulge L5/S1", "L5"),
        ("disc bulge L5-S1", "L5"),
        ("disc bulge C7/T1", "C7"),
        ("disc bulge C7/Th1", "C7"),
        ("disc bulge T12/L1", "T12"),
        ("disc bulge c5 / 6", "C5"),
        ("disc bulge L4\u20135", "L4"),
    ],
)
def test_a_single_disc_is_keyed_by_the_vertebra_above(text, level):
    assert mapped(text) == [(level, "disc_bulge", "mild")]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("disc protrusions C3-7", ["C3", "C4", "C5", "C6"]),
        ("disc bulges L3-5", ["L3", "L4"]),
        ("disc protrusion C4/5/6", ["C4", "C5"]),
        ("disc protrusion C4-Th1", ["C4", "C5", "C6", "C7"]),
        ("disc bulges T11-L2", ["T11", "T12", "L1"]),
        # The report names T13, so the range T12-L2 spans T12/13, T13/L1 and L1/2.
        ("disc bulges T12-L2 and T13/L1", ["T12", "T13", "L1"]),
        ("desiccation L3-4 through L5-S1", ["L3", "L4", "L5"]),
        ("disc protrusions C3/4 and C5/6", ["C3", "C5"]),
        ("disc bulges at C4/5, C5/6 and C6/7", ["C4", "C5", "C6"]),
        ("at C4/5, C5/6 and C6/7 disc bulges", ["C4", "C5", "C6"]),
        ("disc protrusions C4-7 and Th4-6", ["C4", "C5", "C6", "T4", "T5"]),
    ],
)
def test_ranges_chains_and_lists_of_discs(text, expected):
    condition = mapped(text)[0][1]
    assert levels_of(text, condition) == expected


@pytest.mark.parametrize(
    "text, level",
    [("disc protrusion Th2/3", "T2"), ("disc protrusion T7/8", "T7"), ("disc protrusion D11/12", "T11")],
)
def test_thoracic_abbreviations(text, level):
    assert levels_of(text, "protrusion") == [level]


def test_bare_vertebrae_for_vertebral_findings():
    assert mapped("L1 compression fracture") == [("L1", "fracture", "present")]
    assert mapped("D12 wedge deformity") == [("T12", "fracture", "present")]
    assert levels_of("compression fractures T11-L2", "fracture") == ["T11", "T12", "L1", "L2"]
    assert mapped("anterolisthesis of L4 on L5") == [("L4", "spondylolisthesis", "present")]
    assert mapped("Possible haemangioma in T12") == []
    assert rows("Possible haemangioma in T12") == [("T12", "bone_lesion", "present", False, True, True)]


def test_multiple_levels_without_a_level_give_level_blank():
    assert mapped("disc bulges at multiple levels") == [("", "disc_bulge", "mild")]


def test_mri_sequence_names_are_not_levels():
    assert levels_of("loss of T2 disc signal at L4/5", "desiccation") == ["L4"]
    assert rows("T2 flow void artifacts of CSF, mild kyphosis") == [
        ("", "kyphosis_or_lordosis", "mild", False, False, True)
    ]
    assert levels_of("T2 hyperintensity in the cord at C2 level", "") == ["C2"]


def test_levels_outside_the_vocabulary_leave_level_blank():
    assert mapped("Tarlov cyst at S2") == [("", "tarlov_cyst", "present")]


def test_a_level_heading_applies_to_its_line():
    text = (
        "L4-L5: Mild disc desiccation. Broad-based disc bulge with moderate central canal stenosis.\n"
        "L5-S1: No disc herniation."
    )
    assert rows(text) == [
        ("L4", "desiccation", "mild", False, False, True),
        ("L4", "disc_bulge", "mild", False, False, True),
        ("L4", "spinal_stenosis", "moderate", False, False, True),
        ("L5", "protrusion", "mild", True, False, True),
    ]


# --------------------------------------------------------------------------- negation and uncertainty


def test_no_spinal_cord_compression_is_negated():
    # Cord compression is a narrowed canal (spinal stenosis), not a cord abnormality.
    assert rows("no spinal cord compression") == [("", "spinal_stenosis", "present", True, False, True)]
    assert rows("Spinal cord is not compressed") == [("", "spinal_stenosis", "present", True, False, True)]


@pytest.mark.parametrize(
    "text, condition",
    [
        ("No evidence of fracture", "fracture"),
        ("negative for spondylolisthesis", "spondylolisthesis"),
        ("free of stenosis", "spinal_stenosis"),
        ("absence of disc herniation", "protrusion"),
        ("Fracture is ruled out", "fracture"),
        ("Spondylolisthesis excluded", "spondylolisthesis"),
        ("Normal cervical lordosis", "kyphosis_or_lordosis"),
        ("Lumbar lordosis is preserved", "kyphosis_or_lordosis"),
    ],
)
def test_negation_cues(text, condition):
    found = rows(text)
    assert [r[1] for r in found] == [condition]
    assert found[0][3] is True


def test_negation_stays_in_its_scope():
    found = {r[1]: r for r in rows("Mild disc bulge L3/4 without stenosis")}
    assert found["disc_bulge"][3] is False and found["spinal_stenosis"][3] is True
    found = {r[1]: r for r in rows("no stenosis and mild kyphosis")}
    assert found["spinal_stenosis"][3] is True and found["kyphosis_or_lordosis"][3] is False
    found = {r[1]: r for r in rows("No fracture, listhesis or bone lesion. Mild scoliosis.")}
    assert all(found[c][3] for c in ("fracture", "spondylolisthesis", "bone_lesion"))
    assert found["scoliosis"][3] is False
    found = {r[1]: r for r in rows("no spinal cord compression, mild kyphosis")}
    assert found["spinal_stenosis"][3] is True and found["kyphosis_or_lordosis"][3] is False
    # "normal" inside a keyword negates nothing
    assert mapped("Loss of the normal cervical lordosis and disc bulge C5/6") == [
        ("", "kyphosis_or_lordosis", "present"),
        ("C5", "disc_bulge", "mild"),
    ]


@pytest.mark.parametrize(
    "text, condition",
    [
        ("possible annular fissure L4/5", "annular_fissure"),
        ("probable haemangioma L2", "bone_lesion"),
        ("questionable Modic changes L5", "endplate_change"),
        ("suspected fracture T12", "fracture"),
        ("findings may represent a metastasis in L3", "bone_lesion"),
        ("Fracture of T12 cannot be excluded", "fracture"),
        ("?fracture T12", "fracture"),
        ("anterolisthesis L4/5?", "spondylolisthesis"),
    ],
)
def test_uncertainty_cues(text, condition):
    found = rows(text)
    assert [r[1] for r in found] == [condition]
    assert found[0][4] is True and found[0][3] is False


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    "word, severity",
    [
        ("minimal", "mild"),
        ("slight", "mild"),
        ("mild", "mild"),
        ("small", "mild"),
        ("minor", "mild"),
        ("moderate", "moderate"),
        ("severe", "severe"),
        ("marked", "severe"),
        ("advanced", "severe"),
        ("large", "severe"),
        ("significant", "severe"),
        ("mild to moderate", "moderate"),
        ("mild-moderate", "moderate"),
        ("moderate to severe", "severe"),
        ("moderately severe", "severe"),
    ],
)
def test_severity_words(word, severity):
    assert mapped(f"{word} disc bulge L4/5") == [("L4", "disc_bulge", severity)]


@pytest.mark.parametrize("phrase", ["near complete", "near-complete", "almost complete", "nearly complete"])
def test_near_complete_desiccation(phrase):
    assert mapped(f"{phrase} desiccation of the L5/S1 disc") == [("L5", "desiccation", "near_complete")]


def test_severity_defaults_and_clamping():
    assert mapped("near complete stenosis L4/5") == [("L4", "spinal_stenosis", "severe")]
    assert mapped("disc protrusion C5/6") == [("C5", "protrusion", "mild")]
    assert mapped("desiccation L4/5") == [("L4", "desiccation", "mild")]
    assert mapped("severe Modic type 1 changes L4/5") == [("L4", "endplate_change", "present")]
    assert mapped("annular tear L4/5") == [("L4", "annular_fissure", "present")]
    assert mapped("large disc extrusion L5/S1") == [("L5", "extrusion", "moderate")]
    assert mapped("canal stenosis L4/5") == [("L4", "spinal_stenosis", "present")]
    assert mapped("Mild spinal cord compression")[0][2] == "mild"
    assert mapped("Grade 1 anterolisthesis of L4 on L5") == [("L4", "spondylolisthesis", "mild")]
    assert mapped("Retrolisthesis L3/4, grade 2") == [("L3", "spondylolisthesis", "moderate")]
    assert mapped("grade 2 disc bulge L3/4") == [("L3", "disc_bulge", "mild")]  # grades are for listhesis only


@pytest.mark.parametrize(
    "text, expected",
    [
        ("disc protusion C5/6", ("C5", "protrusion", "mild")),
        ("moderate desication L3/4", ("L3", "desiccation", "moderate")),
        ("spinal stenossis L4/5", ("L4", "spinal_stenosis", "present")),
        ("mild spinal cord compresion", ("", "spinal_stenosis", "mild")),
        ("mild kyfphosis", ("", "kyphosis_or_lordosis", "mild")),
        ("DISC HERNIATION L4-L5", ("L4", "protrusion", "mild")),
    ],
)
def test_typos_and_case(text, expected):
    assert mapped(text) == [expected]


# --------------------------------------------------------------------------- synonyms


@pytest.mark.parametrize(
    "text, condition",
    [
        ("bulging disc L4/5", "disc_bulge"),
        ("diffuse disc bulging L4/5", "disc_bulge"),
        ("disc-osteophyte complex C5/6", "disc_osteophyte_complex"),
        ("DOC C5/6", "disc_osteophyte_complex"),
        ("osteophytic ridging C5/6", "disc_osteophyte_complex"),
        ("uncovertebral osteophytes C5/6", "uncovertebral_osteophyte"),
        ("uncovertebral joint hypertrophy C5/6", "uncovertebral_osteophyte"),
        ("uncovertebral arthrosis C5/6", "uncovertebral_osteophyte"),
        ("disc hernia C5/6", "protrusion"),
        ("HNP L4/5", "protrusion"),
        ("disc prolapse L4/5", "protrusion"),
        ("extruded disc herniation L4/5", "extrusion"),
        ("disc herniation at L5-S1, extruded", "extrusion"),
        ("sequestered disc fragment L4/5", "extrusion"),
        ("dehydrated disc L2/3", "desiccation"),
        ("black disc L2/3", "desiccation"),
        ("loss of disc signal L2/3", "desiccation"),
        ("loss of T2 signal in the L2/3 disc", "desiccation"),
        ("Modic type 2 changes L5/S1", "endplate_change"),
        ("endplate oedema L5/S1", "endplate_change"),
        ("endplate edema L5/S1", "endplate_change"),
        ("HIZ L4/5", "annular_fissure"),
        ("high-intensity zone L4/5", "annular_fissure"),
        ("anterolisthesis L4/5", "spondylolisthesis"),
        ("retrolisthesis L2/3", "spondylolisthesis"),
        ("central canal stenosis L4/5", "spinal_stenosis"),
        ("canal narrowing L4/5", "spinal_stenosis"),
        ("congenitally narrow canal", "congenital_canal_narrowing"),
        ("developmental canal narrowing", "congenital_canal_narrowing"),
        ("cord signal change C4", "cord_abnormality"),
        ("myelopathy", "cord_abnormality"),
        ("syrinx C5-7", "cord_abnormality"),
        ("wedge deformity T12", "fracture"),
        ("haemangioma L2", "bone_lesion"),
        ("hemangioma L2", "bone_lesion"),
        ("sclerotic lesion L2", "bone_lesion"),
        ("prevertebral oedema", "soft_tissue_edema"),
        ("soft tissue edema", "soft_tissue_edema"),
        ("scoliotic curve", "scoliosis"),
        ("straightening of the cervical lordosis", "kyphosis_or_lordosis"),
        ("hyperkyphosis", "kyphosis_or_lordosis"),
        ("sacralisation of L5", "transitional_vertebra"),
        ("lumbarization of S1", "transitional_vertebra"),
        ("six lumbar vertebrae", "transitional_vertebra"),
        ("Tarlov cyst", "tarlov_cyst"),
        ("perineural cyst", "tarlov_cyst"),
    ],
)
def test_synonyms(text, condition):
    found = mapped(text)
    assert {c for _, c, _ in found} == {condition}
    assert condition in ALL_CONDITIONS


def test_anterolisthesis_is_keyed_by_the_slipped_vertebra():
    assert mapped("Grade 1 anterolisthesis of L5 on S1") == [("L5", "spondylolisthesis", "mild")]


def test_a_stenosis_called_congenital_gives_both_rows():
    found = mapped("Combined spinal canal stenosis C3-5 (congenital and degenerative) with spinal cord compression")
    assert ("C3", "spinal_stenosis", "present") in found
    assert ("C3", "congenital_canal_narrowing", "present") in found
    assert ("", "spinal_stenosis", "present") in found  # the cord compression
    assert ("", "congenital_canal_narrowing", "present") not in found


def test_one_row_per_level_and_condition():
    assert mapped("disc protrusion C4/5 and disc hernia C4/5") == [("C4", "protrusion", "mild")]
    assert mapped("disc bulge L4/5. Moderate disc bulge L4/5.") == [("L4", "disc_bulge", "moderate")]


# --------------------------------------------------------------------------- unmapped text


def test_unmapped_text_is_kept_and_counted():
    frame = read_report("Chondrosis, disc protrusions C5-7. Ligamentum flavum hypertrophy C6/7.", "s1")
    unmapped = frame[~frame["mapped"]]
    assert unmapped["condition"].tolist() == ["", ""]
    assert unmapped["severity"].tolist() == ["", ""]
    assert unmapped["source_text"].tolist() == ["Chondrosis", "Ligamentum flavum hypertrophy C6/7"]
    assert unmapped["level"].tolist() == ["", "C6"]
    summary = summarize_findings(frame, 1)
    assert (summary.findings, summary.unmapped) == (2, 2)
    assert "2 unmapped" in str(summary)


def test_text_without_keyword_or_level_is_dropped_but_a_level_keeps_it():
    assert rows("disc protrusion Th2/3, visualised central canal") == [("T2", "protrusion", "mild", False, False, True)]
    assert rows("visualised spinal canal at the level C6") == [("C6", "", "", False, False, False)]
    assert rows("L3/4: normal") == [("", "", "", False, False, False)]  # nothing else: the whole text


def test_a_report_with_nothing_mappable_keeps_its_whole_text():
    frame = read_report("Central canal visualisation", "s9")
    assert frame[["level", "condition", "mapped", "source_text"]].values.tolist() == [
        ["", "", False, "Central canal visualisation"]
    ]


# --------------------------------------------------------------------------- real notes


REAL_NOTES = {
    "mild spinal cord compression due to C5-7 disc protrusions": [
        ("", "spinal_stenosis", "mild", False, False, True),
        ("C5", "protrusion", "mild", False, False, True),
        ("C6", "protrusion", "mild", False, False, True),
    ],
    "disc protrusion C4-Th1": [(lv, "protrusion", "mild", False, False, True) for lv in ("C4", "C5", "C6", "C7")],
    "Disc protrusion, mild spinal cord impression (contour asymmetry)": [
        ("", "protrusion", "mild", False, False, True),
        ("", "", "", False, False, False),
    ],
    "Mild disc protrusions C3/4 and C5-7": [
        (lv, "protrusion", "mild", False, False, True) for lv in ("C3", "C5", "C6")
    ],
    "disc protrusion Th2/3, visualised central canal": [("T2", "protrusion", "mild", False, False, True)],
    "disc protrusion C4/5/6 and mild kyphosis": [
        ("C4", "protrusion", "mild", False, False, True),
        ("C5", "protrusion", "mild", False, False, True),
        ("", "kyphosis_or_lordosis", "mild", False, False, True),
    ],
    "disc protrusions C2-6, mild kyfphosis": [
        *[(lv, "protrusion", "mild", False, False, True) for lv in ("C2", "C3", "C4", "C5")],
        ("", "kyphosis_or_lordosis", "mild", False, False, True),
    ],
    "disc protrusions C4-7 and Th4-6": [
        (lv, "protrusion", "mild", False, False, True) for lv in ("C4", "C5", "C6", "T4", "T5")
    ],
    "Spinal cord compression due to disc protrusions C4-7 (at the level C6/7 rather severe spinal cord compression)": [
        ("", "spinal_stenosis", "present", False, False, True),
        *[(lv, "protrusion", "mild", False, False, True) for lv in ("C4", "C5", "C6")],
        ("C6", "spinal_stenosis", "severe", False, False, True),
    ],
    "Disc protrusions C4-7, mild spinal cord compression (C6/7)": [
        *[(lv, "protrusion", "mild", False, False, True) for lv in ("C4", "C5", "C6")],
        ("C6", "spinal_stenosis", "mild", False, False, True),
    ],
    "Mild spinal cord compressions due to disc protrusions and primarily narrow spinal canal": [
        ("", "spinal_stenosis", "mild", False, False, True),
        ("", "protrusion", "mild", False, False, True),
        ("", "congenital_canal_narrowing", "present", False, False, True),
    ],
    "Spinal cord T2 signal inhomogenities (extensive artifacts), no spinal cord compression; T2w SC seg is fine": [
        ("", "", "", False, False, False),
        ("", "spinal_stenosis", "present", True, False, True),
    ],
    "Chondrosis and disc protrusions C4-6, mild spinal cord compresion (contour change) at C5/6": [
        ("C4", "protrusion", "mild", False, False, True),
        ("C5", "protrusion", "mild", False, False, True),
        ("", "", "", False, False, False),
        ("C5", "spinal_stenosis", "mild", False, False, True),
    ],
    "ligamentum flavum hypertrophy C6/7": [("C6", "", "", False, False, False)],
    "C5/6 disc protrusion with mild spinal cord compression": [
        ("C5", "protrusion", "mild", False, False, True),
        ("", "spinal_stenosis", "mild", False, False, True),
    ],
    "Mild spinal cord compression due to disc protrusion C4/5 and disc hernia C5/6": [
        ("", "spinal_stenosis", "mild", False, False, True),
        ("C4", "protrusion", "mild", False, False, True),
        ("C5", "protrusion", "mild", False, False, True),
    ],
}


@pytest.mark.parametrize("note", list(REAL_NOTES))
def test_specific_real_spine_generic_notes(note):
    assert rows(note) == REAL_NOTES[note]


@needs_realdata
def test_real_notes_are_in_the_table():
    notes = set(pd.read_csv(SPINE_GENERIC, sep="\t")["notes"].dropna())
    assert set(REAL_NOTES) <= notes


@needs_realdata
def test_the_whole_real_table():
    table = pd.read_csv(SPINE_GENERIC, sep="\t", dtype=str)
    findings = read_reports(table, "participant_id", "notes")
    notes = table.set_index("participant_id")["notes"]
    non_empty = notes[notes.notna() & (notes.str.strip().str.lower() != "n/a")]
    assert len(non_empty) == 203
    # every non-empty note yields a row, empty ones none
    assert set(findings["series_id"]) == set(non_empty.index)
    # the vocabulary holds
    good = findings[findings["mapped"]]
    assert set(good["condition"]) <= set(ALL_CONDITIONS)
    assert set(good["level"]) <= set(LEVELS) | {""}
    for condition, severity in zip(good["condition"], good["severity"]):
        allowed = DEGENERATIVE_SEVERITIES.get(condition, PATHOLOGY_SEVERITIES)
        assert severity in allowed, (condition, severity)
    assert (findings.loc[~findings["mapped"], "condition"] == "").all()
    # one row per (report, level, condition) among mapped rows
    assert not good.duplicated(["series_id", "level", "condition"]).any()
    # "no ... compression" is never an affirmed finding
    for series_id, note in non_empty.items():
        if re.search(r"\bno [\w ]*compression", note, re.I):
            cord = findings[(findings["series_id"] == series_id) & (findings["condition"] == "spinal_stenosis")]
            assert len(cord) and cord["negated"].all(), note
    # most notes map to findings
    assert good["series_id"].nunique() >= 180


# --------------------------------------------------------------------------- read_reports


def test_read_reports_concatenates_and_skips_empty_notes():
    table = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "text": ["disc bulge L4/5", math.nan, "n/a", "no fracture. Mild scoliosis"]}
    )
    frame = read_reports(table, "id", "text")
    assert frame["series_id"].tolist() == ["a", "d", "d"]
    assert frame["condition"].tolist() == ["disc_bulge", "fracture", "scoliosis"]
    assert tuple(frame.columns) == FINDINGS_COLUMNS


def test_read_reports_names_a_missing_column():
    with pytest.raises(UserError, match="Expected column.*'report'.*found 'id', 'text'"):
        read_reports(pd.DataFrame({"id": [1], "text": ["x"]}), "id", "report")


# --------------------------------------------------------------------------- CLI

runner = CliRunner()


def columns_of(table: Path) -> list[str]:
    return ["--csv", str(table), "--id-column", "series_id", "--text-column", "notes"]


@pytest.fixture
def reports_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "reports.tsv"
    path.write_text(
        "series_id\tnotes\n"
        "s1\tMild disc protrusions C3/4 and C5-7\n"
        "s2\tno spinal cord compression\n"
        "s3\tn/a\n"
        "s4\tligamentum flavum hypertrophy C6/7, disc bulge L4/5\n"
    )
    return path


def test_cli_reads_a_tsv_and_writes_a_csv(reports_tsv: Path, tmp_path: Path):
    out = tmp_path / "out" / "findings.csv"
    result = runner.invoke(app, ["parse-report", *columns_of(reports_tsv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert tuple(written.columns) == FINDINGS_COLUMNS
    assert written["series_id"].tolist() == ["s1", "s1", "s1", "s2", "s4", "s4"]
    assert written["condition"].tolist() == ["protrusion"] * 3 + ["spinal_stenosis", "", "disc_bulge"]
    assert result.stderr.strip().splitlines() == [
        "read 3 reports: 5 findings (1 negated, 0 uncertain), 1 unmapped rows"
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["findings.csv"]  # no temporary left


def test_cli_writes_tsv_when_asked(reports_tsv: Path, tmp_path: Path):
    out = tmp_path / "findings.tsv"
    result = runner.invoke(app, ["parse-report", *columns_of(reports_tsv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[0] == "\t".join(FINDINGS_COLUMNS)


def test_cli_reads_one_report_from_stdin():
    result = runner.invoke(app, ["parse-report"], input="disc bulge L4/5\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines == [",".join(FINDINGS_COLUMNS), "stdin,L4,disc_bulge,mild,False,False,disc bulge L4/5,True"]
    assert "1 findings" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--id-column", "series_id", "--text-column", "report"], "Expected column(s) 'report'"),
        (["--id-column", "subject", "--text-column", "notes"], "Expected column(s) 'subject'"),
    ],
)
def test_cli_missing_column_fails_cleanly(reports_tsv: Path, tmp_path: Path, args, message):
    out = tmp_path / "findings.csv"
    result = runner.invoke(app, ["parse-report", "--csv", str(reports_tsv), *args, "--out", str(out)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_cli_missing_file_and_empty_text_column_fail_cleanly(tmp_path: Path):
    out = tmp_path / "findings.csv"
    result = runner.invoke(app, ["parse-report", "--csv", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "found no such file" in result.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("series_id,report\na,\nb,n/a\n")
    result = runner.invoke(app, ["parse-report", "--csv", str(empty), "--out", str(out)])
    assert result.exit_code == 2 and "found it empty in all 2 rows" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


# --------------------------------------------------------------------------- phrasings of the phantom's writer


@pytest.mark.parametrize(
    "text, expected",
    [
        # A list labelled with its finding: every part after ";" is that finding.
        ("Loss of T2 disc signal: mild at C6-C7; moderate at C5-C6.",
         [("C6", "desiccation", "mild"), ("C5", "desiccation", "moderate")]),
        ("Disc bulges: mild at L1/2; moderate at L5/S1.",
         [("L1", "disc_bulge", "mild"), ("L5", "disc_bulge", "moderate")]),
        # "At <level>, a, b and c": the level of every finding of the sentence, not the previous heading's.
        ("C5/6: moderate disc-osteophyte complex. At C6/7, severe DOC, severe disc desiccation and moderate canal stenosis.",
         [("C5", "disc_osteophyte_complex", "moderate"), ("C6", "disc_osteophyte_complex", "severe"),
          ("C6", "desiccation", "severe"), ("C6", "spinal_stenosis", "moderate")]),
        # Section labels with hyphens are labels, not text.
        ("C-spine: At C5/C6, minimal disc bulge.", [("C5", "disc_bulge", "mild")]),
        ("IMPRESSION: L4 anterolisthesis on L5, mild (grade 1).", [("L4", "spondylolisthesis", "mild")]),
        ("Compression fracture of L1, Genant grade 3 (severe).", [("L1", "fracture", "severe")]),
        ("Genant grade 2 compression fracture of T12.", [("T12", "fracture", "moderate")]),
        ("Mild levoconvex scoliosis with the apex at L2.", [("L2", "scoliosis", "mild")]),
        ("Slight scoliosis, apex T10.", [("T10", "scoliosis", "mild")]),
        ("At C5-7 there are HIZs.", [("C5", "annular_fissure", "present"), ("C6", "annular_fissure", "present")]),
        ("Nearly completely dehydrated disc at C4/5.", [("C4", "desiccation", "near_complete")]),
        ("Intramedullary T2 signal abnormality at the level of C4.", [("C4", "cord_abnormality", "present")]),
        ("Focal myelopathic cord signal change at the level of C6.", [("C6", "cord_abnormality", "present")]),
        ("T2 hyperintense signal within the spinal cord at the level of C3.", [("C3", "cord_abnormality", "present")]),
    ],
)
def test_writer_phrasings(text, expected):
    assert mapped(text) == expected


def test_supernumerary_vertebrae_named_anywhere_in_the_report():
    text = "Lumbosacral transitional vertebra (six lumbar-type vertebrae), labelled L6.\nModerate disc dehydration L4-S1."
    assert mapped(text) == [
        ("L6", "transitional_vertebra", "present"),
        ("L4", "desiccation", "moderate"), ("L5", "desiccation", "moderate"), ("L6", "desiccation", "moderate"),
    ]
    assert mapped("There are six lumbar-type vertebrae; the lowest, L6, is a lumbosacral transitional vertebra.") == [
        ("L6", "transitional_vertebra", "present")
    ]
    assert levels_of("Transitional lumbosacral anatomy with a supernumerary L6 vertebra.", "transitional_vertebra") == ["L6"]


@pytest.mark.parametrize(
    "text",
    [
        "No significant abnormality.",
        "Degenerative changes as described above, predominantly in the lumbar spine.",
        "Multilevel degenerative changes as detailed above.",
    ],
)
def test_normal_statements_and_summaries_leave_no_unmapped_clause(text):
    # The whole report comes back as its one unmapped row, not as clauses of unmapped text.
    frame = read_report(f"Mild disc bulge L4/5. {text}")
    assert frame["mapped"].all()


def test_a_signal_word_describing_a_finding_is_not_unmapped():
    frame = read_report("T2 hyperintense marrow lesion in the T5 vertebral body.")
    assert frame["mapped"].all() and frame["condition"].tolist() == ["bone_lesion"]
    assert not read_report("Cord inhomogeneities at C3.")["mapped"].all()
