"""Tests of report decoding: every common export encoding gives the same findings; non-text is refused."""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.findings.report_text import decode_report_text, detect_encoding, read_report_text
from spineage.findings.stage import build_findings
from tests.findings.test_findings_stage import REPORTS, make_raw

TEXT = "L4/5: mäßige Bandscheibenprotrusion – moderate disc protrusion.\r\nNo fracture. Possible Tarlov cyst."

ENCODED = {
    "utf-8": TEXT.encode("utf-8"),
    "utf-8 with BOM": codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    "utf-16 LE with BOM": TEXT.encode("utf-16"),  # this platform writes little-endian with a mark
    "utf-16 BE with BOM": codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    "utf-16 LE without BOM": TEXT.encode("utf-16-le"),
    "utf-16 BE without BOM": TEXT.encode("utf-16-be"),
    "utf-32 with BOM": TEXT.encode("utf-32"),
    "windows-1252": TEXT.encode("cp1252"),
}


@pytest.mark.parametrize("name", list(ENCODED))
def test_every_export_encoding_decodes_to_the_same_text(name: str):
    assert decode_report_text(ENCODED[name], "r.txt") == TEXT


def test_detection_order():
    assert detect_encoding(b"plain ascii") == "utf-8"
    assert detect_encoding("caf\u00e9".encode("cp1252")) == "cp1252"  # not valid UTF-8
    assert detect_encoding(codecs.BOM_UTF32_LE + "x".encode("utf-32-le")) == "utf-32"  # not mistaken for UTF-16


@pytest.mark.parametrize("data", [bytes(range(256)) * 4, b"\x00\x01\x02\x03" * 100, b"\x89PNG\r\n\x1a\n" + bytes(200)])
def test_binary_data_is_refused_in_one_line(data: bytes):
    with pytest.raises(UserError, match=r"^Expected a text report .* in scan\.txt, found bytes that decode to no text"):
        decode_report_text(data, "scan.txt")


def test_the_findings_stage_reads_utf16_reports_like_utf8(tmp_path: Path):
    plain = make_raw(tmp_path / "utf8" / "raw", findings=None)
    wide = make_raw(tmp_path / "utf16" / "raw", findings=None)
    for series_id, text in REPORTS.items():
        (wide / "reports" / f"{series_id}.txt").write_bytes(text.encode("utf-16"))
    results = []
    for raw in (plain, wide):
        summary = build_findings(raw, raw.parent / "interim", raw.parent / "reports", progress=False)
        results.append((summary, pd.read_parquet(raw.parent / "interim" / "findings.parquet")))
    assert len(results[0][1]) > 3  # the reports hold findings
    pd.testing.assert_frame_equal(results[0][1], results[1][1])


def test_the_findings_stage_refuses_a_binary_report_and_writes_nothing(tmp_path: Path):
    raw = make_raw(tmp_path / "raw", findings=None)
    (raw / "reports" / "mri-b.txt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError, match="mri-b.txt"):
        build_findings(raw, tmp_path / "interim", tmp_path / "reports", progress=False)
    assert not (tmp_path / "interim" / "findings.parquet").exists()


def test_parse_report_reads_a_utf16_table_and_stdin(tmp_path: Path):
    table = tmp_path / "notes.csv"
    table.write_bytes('series_id,report\ns1,"Mild disc bulge L4/5."\n'.encode("utf-16"))
    result = CliRunner().invoke(app, ["parse-report", "--csv", str(table)])
    assert result.exit_code == 0, result.output
    assert "s1,L4,disc_bulge,mild" in result.output
    result = CliRunner().invoke(app, ["parse-report"], input="Mild disc bulge L4/5.".encode("utf-16"))
    assert result.exit_code == 0, result.output
    assert "L4,disc_bulge,mild" in result.output


def test_read_report_text_of_a_missing_file(tmp_path: Path):
    with pytest.raises(UserError, match="readable report"):
        read_report_text(tmp_path / "none.txt")
