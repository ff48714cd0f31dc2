"""Tests of the findings stage: each findings.source, the reader measured against findings.csv, the vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.findings.stage import (
    FINDINGS_TABLE_COLUMNS,
    FindingsSettings,
    build_findings,
    parse_findings_settings,
)

SESSIONS = """series_id,subject_id,age,modality,image
mri-a,sub-1,41.5,mri_t2_sag,images/mri-a.nii.gz
mri-b,sub-2,55.0,mri_t2_sag,images/mri-b.nii.gz
mri-c,sub-3,63.2,mri_t2_sag,images/mri-c.nii.gz
xr-a,sub-1,41.5,xray_lat,images/xr-a.png
"""
FINDINGS = """series_id,level,condition,severity
mri-a,L4,disc_bulge,mild
mri-a,L5,disc_bulge,moderate
mri-a,,scoliosis,mild
"""
REPORTS = {
    # Under source auto, ignored: mri-a has rows in findings.csv.
    "mri-a": "Severe disc extrusion at C5/6.",
    "mri-b": "L4/5: moderate disc protrusion and annular fissure.\nNo fracture. Possible Tarlov cyst. Chondrosis L2/3.",
}


AUTO = FindingsSettings(source="auto")


def make_raw(folder: Path, findings: str | None = FINDINGS, reports: dict[str, str] = REPORTS, sessions: str = SESSIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sessions.csv").write_text(sessions)
    if findings is not None:
        (folder / "findings.csv").write_text(findings)
    (folder / "reports").mkdir(exist_ok=True)
    for series_id, text in reports.items():
        (folder / "reports" / f"{series_id}.txt").write_text(text)
    return folder


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return make_raw(tmp_path / "raw")


def run(raw: Path, settings: FindingsSettings | None = None):
    out, reports = raw.parent / "interim", raw.parent / "reports"
    summary = build_findings(raw, out, reports, settings, progress=False)
    return summary, pd.read_parquet(out / "findings.parquet"), out, reports


def test_auto_takes_the_table_where_given_and_the_reader_where_not(raw: Path):
    summary, findings, _out, _ = run(raw, AUTO)
    assert tuple(findings.columns) == FINDINGS_TABLE_COLUMNS
    by_series = findings.groupby("series_id")["source"].agg(set).to_dict()
    assert by_series == {"mri-a": {"table"}, "mri-b": {"report"}}
    a = findings[findings.series_id == "mri-a"]
    assert sorted(zip(a.level, a.condition, a.severity)) == [
        ("", "scoliosis", "mild"), ("L4", "disc_bulge", "mild"), ("L5", "disc_bulge", "moderate")
    ]
    assert "extrusion" not in set(findings.condition)  # mri-a's report is not read
    b = findings[(findings.series_id == "mri-b") & ~findings.negated]
    assert {("L4", "protrusion", "moderate"), ("L4", "annular_fissure", "present"), ("", "tarlov_cyst", "present")} <= set(
        zip(b.level, b.condition, b.severity)
    )
    negated = findings[findings.negated]
    assert negated.condition.tolist() == ["fracture"] and negated.source.tolist() == ["report"]
    assert summary.series_from_table == 1 and summary.series_from_reports == 1 and summary.series_without_findings == 1
    assert summary.mri_series == 3 and summary.uncertain_from_reports == 1
    assert summary.source == "auto" and summary.reader_agreement is None  # no report was read for a series in the table
    assert findings.negated.dtype == bool


def test_vectors_cover_every_mri_series_with_the_right_columns(raw: Path):
    from spineage.findings.features import LEVEL_COLUMNS, REGION_COLUMNS

    _, _, out, _ = run(raw, AUTO)
    levels = pd.read_parquet(out / "level_vectors.parquet")
    regions = pd.read_parquet(out / "region_vectors.parquet")
    for vectors, columns in ((levels, LEVEL_COLUMNS), (regions, REGION_COLUMNS)):
        assert vectors.index.name == "series_id"
        assert vectors.index.tolist() == ["mri-a", "mri-b", "mri-c"]  # sessions.csv order, MRI only
        assert tuple(vectors.columns) == columns
    assert regions.loc["mri-a", "lumbar__disc_bulge__mild"] == 1
    assert regions.loc["mri-a", "lumbar__disc_bulge__moderate"] == 1
    assert regions.loc["mri-b", "lumbar__protrusion__moderate"] == 1
    assert regions.loc["mri-b", "fracture"] == 0  # negated in the report
    assert regions.loc["mri-c"].sum() == 0 and levels.loc["mri-c"].sum() == 0
    assert levels.loc["mri-a", "L5__disc_bulge"] == 2


def test_summary_and_unmapped_text_are_written(raw: Path):
    summary, _, out, reports = run(raw)
    written = json.loads((reports / "summary.json").read_text())
    assert written["mri_series"] == 3 and written["unmapped_report_rows"] == summary.unmapped_report_rows >= 1
    unmapped = pd.read_csv(reports / "unmapped.csv", keep_default_na=False)
    assert any("Chondrosis" in text for text in unmapped.source_text)
    # Atomic writes leave no temporary files behind.
    assert not [p for p in list(out.iterdir()) + list(reports.iterdir()) if p.name.startswith(".")]


def test_without_findings_csv_every_series_is_read_from_its_report(tmp_path: Path):
    raw = make_raw(tmp_path / "raw", findings=None)
    summary, findings, _, _ = run(raw)
    assert set(findings.source) == {"report"}
    assert ("C5", "extrusion", "moderate") in set(zip(findings.level, findings.condition, findings.severity))
    assert summary.series_from_table == 0 and summary.series_from_reports == 2


def test_uncertain_findings_can_be_left_out(raw: Path):
    summary, findings, _, _ = run(raw, FindingsSettings(count_uncertain=False))
    assert "tarlov_cyst" not in set(findings.condition)
    assert summary.uncertain_dropped == 1


def test_table_rows_of_other_series_are_counted_not_used(tmp_path: Path):
    raw = make_raw(tmp_path / "raw", findings=FINDINGS + "xr-a,L1,fracture,mild\nghost,L2,fracture,mild\n")
    summary, findings, _, _ = run(raw)
    assert summary.table_rows_for_other_series == 2
    assert not set(findings.series_id) & {"xr-a", "ghost"}


@pytest.mark.parametrize(
    "findings, message",
    [
        ("series_id,level,condition,severity\nmri-a,L4,disc_herniation,mild\n", "Unknown finding 'disc_herniation'"),
        ("series_id,level,condition,severity\nmri-a,L4,extrusion,severe\n", "severity of extrusion"),
        ("series_id,level,condition,severity\nmri-a,S1,disc_bulge,mild\n", "level from C2 to L7"),
        ("series_id,level,condition\nmri-a,L4,disc_bulge\n", "severity"),
    ],
)
def test_bad_findings_tables_are_user_errors_and_nothing_is_written(tmp_path: Path, findings: str, message: str):
    raw = make_raw(tmp_path / "raw", findings=findings)
    with pytest.raises(UserError, match=message):
        build_findings(raw, tmp_path / "interim", tmp_path / "reports", progress=False)
    assert not (tmp_path / "interim").exists()


def test_missing_inputs_are_user_errors(tmp_path: Path):
    with pytest.raises(UserError, match="raw-cohort folder"):
        build_findings(tmp_path / "nowhere", tmp_path / "i", tmp_path / "r", progress=False)
    (tmp_path / "raw").mkdir()
    with pytest.raises(UserError, match="sessions.csv"):
        build_findings(tmp_path / "raw", tmp_path / "i", tmp_path / "r", progress=False)
    (tmp_path / "raw" / "sessions.csv").write_text("series_id,modality\nxr-1,xray_lat\n")
    with pytest.raises(UserError, match="MRI series"):
        build_findings(tmp_path / "raw", tmp_path / "i", tmp_path / "r", progress=False)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"count_uncertain": "yes"}, "true or false"),
        ({"keep": True}, "keys of the findings section among"),
        ([1], "mapping"),
        ({"source": "csv"}, r"^Expected findings.source among \['reports', 'table', 'auto'\], found 'csv'$"),
        ({"source": None}, "findings.source among"),
    ],
)
def test_bad_findings_settings(section, message):
    with pytest.raises(UserError, match=message):
        parse_findings_settings(section)
    assert parse_findings_settings(None) == FindingsSettings()


def test_cli_writes_the_outputs(raw: Path, tmp_path: Path):
    result = CliRunner().invoke(
        app, ["findings", "--raw", str(raw), "--out", str(tmp_path / "i"), "--reports", str(tmp_path / "r"),
              "--params", str(Path(__file__).resolve().parents[2] / "params.yaml")],
    )
    assert result.exit_code == 0, result.output
    assert "3 MRI series (findings.source reports)" in result.output
    assert (tmp_path / "i" / "region_vectors.parquet").is_file() and (tmp_path / "r" / "summary.json").is_file()


@pytest.mark.parametrize("missing", ["folder", "sessions"])
def test_cli_bad_inputs_exit_2_with_one_line(tmp_path: Path, missing: str):
    raw = tmp_path / "raw"
    if missing == "sessions":
        raw.mkdir()
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    result = CliRunner().invoke(app, ["findings", "--raw", str(raw), "--out", str(tmp_path / "i"), "--params", str(params)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Expected")
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------
# findings.source
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, by_series, counts",
    [
        # reports: every series from its report, mri-a's table rows only as truth; mri-c has no report.
        ("reports", {"mri-a": {"report"}, "mri-b": {"report"}},
         {"series_from_table": 0, "series_from_reports": 2, "series_without_findings": 1, "series_without_report": 1}),
        # table: findings.csv only; mri-b and mri-c have no rows, their reports are not read.
        ("table", {"mri-a": {"table"}},
         {"series_from_table": 1, "series_from_reports": 0, "series_without_findings": 2, "series_without_report": 0}),
        ("auto", {"mri-a": {"table"}, "mri-b": {"report"}},
         {"series_from_table": 1, "series_from_reports": 1, "series_without_findings": 1, "series_without_report": 1}),
    ],
)
def test_each_source_takes_its_findings_from_where_it_says(raw: Path, source: str, by_series: dict, counts: dict):
    summary, findings, _, reports = run(raw, FindingsSettings(source=source))
    assert findings.groupby("series_id")["source"].agg(set).to_dict() == by_series
    conditions = set(zip(findings.series_id, findings.condition))
    assert (("mri-a", "extrusion") in conditions) == (source == "reports")  # mri-a's report
    assert (("mri-a", "disc_bulge") in conditions) == (source != "reports")  # mri-a's table rows
    assert {k: getattr(summary, k) for k in counts} == counts
    written = json.loads((reports / "summary.json").read_text())
    assert written["source"] == source
    assert written["series_from_table"] == counts["series_from_table"]
    assert written["series_from_reports"] == counts["series_from_reports"]


def test_reports_is_the_default(raw: Path):
    assert FindingsSettings().source == "reports" == parse_findings_settings({}).source
    summary, findings, _, _ = run(raw)
    assert summary.source == "reports" and set(findings.source) == {"report"}


TRUTH = """series_id,level,condition,severity
mri-a,L4,disc_bulge,mild
mri-a,L5,disc_bulge,moderate
mri-b,L4,protrusion,moderate
mri-b,L2,desiccation,mild
mri-c,C5,extrusion,moderate
"""
READ_AGAINST_TRUTH = {
    # The L5/S1 bulge is read as severe (a strict miss and extra, a lenient match).
    "mri-a": "Mild disc bulge at L4/5. Severe disc bulge at L5/S1.",
    # The L2/3 desiccation is missed, the L3/4 annular fissure is extra; the negated fracture is no finding.
    "mri-b": "Moderate disc protrusion at L4/5. Annular fissure at L3/4. No fracture.",
    # mri-c has no report: its extrusion in findings.csv is counted apart, not scored as a miss.
}


def test_the_reader_is_measured_against_findings_csv(tmp_path: Path, capsys):
    raw = make_raw(tmp_path / "raw", findings=TRUTH, reports=READ_AGAINST_TRUTH)
    summary, findings, _, reports = run(raw)
    assert set(findings.source) == {"report"} and "desiccation" not in set(findings.condition)
    agreement = json.loads((reports / "summary.json").read_text())["reader_agreement"]
    assert agreement == summary.reader_agreement
    strict, lenient = agreement["strict"], agreement["lenient"]
    # 4 true findings over the series with a report, 4 read: 2 match strictly, 3 leniently.
    assert strict["overall"] == {"truth": 4, "predicted": 4, "tp": 2, "fn": 2, "fp": 2, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert lenient["overall"] == {"truth": 4, "predicted": 4, "tp": 3, "fn": 1, "fp": 1, "precision": 0.75, "recall": 0.75, "f1": 0.75}
    assert set(strict["per_condition"]) == {"disc_bulge", "protrusion", "desiccation", "annular_fissure"}
    assert strict["per_condition"]["disc_bulge"] == {"truth": 2, "predicted": 2, "tp": 1, "fn": 1, "fp": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert lenient["per_condition"]["disc_bulge"]["precision"] == lenient["per_condition"]["disc_bulge"]["recall"] == 1.0
    assert strict["per_condition"]["desiccation"] == {"truth": 1, "predicted": 0, "tp": 0, "fn": 1, "fp": 0, "precision": None, "recall": 0.0, "f1": 0.0}
    assert strict["per_condition"]["annular_fissure"]["precision"] == 0.0
    assert strict["per_condition"]["annular_fissure"]["recall"] is None
    # mri-c: no report, rows in findings.csv that reports does not use; said on stderr, counted, no findings.
    assert summary.series_without_report == summary.series_without_report_with_table_rows == 1
    assert "mri-c" not in set(findings.series_id)
    err = capsys.readouterr().err
    assert "warning: findings.csv holds rows for 1 MRI series without a report" in err and "(mri-c;" in err
    assert "precision 0.500, recall 0.500" in str(summary) and "lenient precision 0.750" in str(summary)


def test_no_agreement_without_findings_csv(tmp_path: Path):
    summary, _, _, reports = run(make_raw(tmp_path / "raw", findings=None))
    assert summary.reader_agreement is None
    assert json.loads((reports / "summary.json").read_text())["reader_agreement"] is None


def _many_series(n: int) -> str:
    rows = [f"mri-{i:02d},sub-{i:02d},50.0,mri_t2_sag,images/mri-{i:02d}.nii.gz" for i in range(n)]
    return "series_id,subject_id,age,modality,image\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize("missing, warned", [(1, False), (2, True)])
def test_a_warning_when_more_than_a_small_share_lack_a_report(tmp_path: Path, capsys, missing: int, warned: bool):
    reports = {f"mri-{i:02d}": "Mild disc bulge at L4/5." for i in range(missing, 25)}
    raw = make_raw(tmp_path / "raw", findings=None, reports=reports, sessions=_many_series(25))
    summary, findings, _, _ = run(raw)
    assert summary.series_without_report == summary.series_without_findings == missing
    assert summary.series_without_report_with_table_rows == 0
    assert findings.series_id.nunique() == 25 - missing
    err = capsys.readouterr().err
    # 1 of 25 (4 %) is within MISSING_REPORT_WARNING_SHARE; 2 of 25 (8 %) is not.
    assert (f"warning: {missing} of 25 MRI series (" in err) == warned
    assert "findings.csv" not in err


def test_reports_without_any_report_is_a_user_error_and_nothing_is_written(tmp_path: Path):
    raw = make_raw(tmp_path / "raw", reports={})
    with pytest.raises(UserError, match=r"^Expected reports/<series_id>.txt .* findings.source 'reports', found none of 3"):
        build_findings(raw, tmp_path / "interim", tmp_path / "reports", progress=False)
    assert not (tmp_path / "interim").exists() and not (tmp_path / "reports").exists()
    # The same cohort works from its table.
    summary = build_findings(raw, tmp_path / "interim", tmp_path / "reports", FindingsSettings(source="table"), progress=False)
    assert summary.series_from_table == 1


def test_table_without_findings_csv_is_a_user_error(tmp_path: Path):
    raw = make_raw(tmp_path / "raw", findings=None)
    with pytest.raises(UserError, match=r"^Expected findings.csv in the raw cohort .* for findings.source 'table'"):
        build_findings(raw, tmp_path / "interim", tmp_path / "reports", FindingsSettings(source="table"), progress=False)
    assert not (tmp_path / "interim").exists()


def test_cli_refuses_an_unknown_source_in_one_line(raw: Path, tmp_path: Path):
    params = Path(__file__).resolve().parents[2] / "params.yaml"
    text = params.read_text()
    assert "  source: reports" in text
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace("  source: reports", "  source: csv", 1))
    result = CliRunner().invoke(app, ["findings", "--raw", str(raw), "--out", str(tmp_path / "i"), "--params", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: Expected findings.source among ['reports', 'table', 'auto'], found 'csv'"]


def test_the_summary_counts_unmapped_sentences_per_report_and_lists_the_most_common(tmp_path: Path):
    reports = {
        "mri-a": "Ligamentum flavum hypertrophy C6/7. Mild disc bulge L4/5.",
        "mri-b": "ligamentum flavum  hypertrophy C5/6. Schmorl node at T9. Chondrosis.",
        "mri-c": "Mild disc bulge L3/4.",
    }
    raw = make_raw(tmp_path / "raw", reports=reports)
    summary, _, _, out = run(raw)
    written = json.loads((out / "summary.json").read_text())
    # 1, 3 and 0 unmapped sentences in the three reports
    assert written["unmapped_per_report"] == {"mean": round(4 / 3, 3), "median": 1.0, "max": 3}
    top = written["most_common_unmapped"]
    assert top[0] == {"text": "ligamentum flavum hypertrophy <level>", "count": 2, "reports": 2}
    assert {entry["text"] for entry in top[1:]} == {"schmorl node at <level>", "chondrosis"}
    assert all(entry["count"] == 1 for entry in top[1:])
    assert written["most_common_unmapped"] == summary.most_common_unmapped
    assert "most common unmapped text: 'ligamentum flavum hypertrophy <level>' (2x)" in str(summary)


def test_the_most_common_unmapped_list_is_capped_and_ordered():
    from spineage.findings.stage import MOST_COMMON_UNMAPPED, most_common_unmapped

    texts = [f"odd finding {i}" for i in range(MOST_COMMON_UNMAPPED + 5)] + ["odd finding 3"] * 2
    unmapped = pd.DataFrame({"series_id": [f"s{i}" for i in range(len(texts))], "source_text": texts})
    listed = most_common_unmapped(unmapped)
    assert len(listed) == MOST_COMMON_UNMAPPED
    assert listed[0] == {"text": "odd finding 3", "count": 3, "reports": 3}
    assert [e["text"] for e in listed[1:3]] == ["odd finding 0", "odd finding 1"]
    assert most_common_unmapped(unmapped.iloc[:0]) == []
