"""Tests of the findings stage: findings.csv where given, the report reader where not, the vectors."""

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
    # Ignored: mri-a has rows in findings.csv.
    "mri-a": "Severe disc extrusion at C5/6.",
    "mri-b": "L4/5: moderate disc protrusion and annular fissure.\nNo fracture. Possible Tarlov cyst. Chondrosis L2/3.",
}


def make_raw(folder: Path, findings: str | None = FINDINGS, reports: dict[str, str] = REPORTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sessions.csv").write_text(SESSIONS)
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


def test_table_where_given_and_the_reader_where_not(raw: Path):
    summary, findings, out, _ = run(raw)
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
    assert findings.negated.dtype == bool


def test_vectors_cover_every_mri_series_with_the_right_columns(raw: Path):
    from spineage.findings.features import LEVEL_COLUMNS, REGION_COLUMNS

    _, _, out, _ = run(raw)
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
    [({"count_uncertain": "yes"}, "true or false"), ({"keep": True}, "keys of the findings section among"), ([1], "mapping")],
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
    assert "3 MRI series" in result.output
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
