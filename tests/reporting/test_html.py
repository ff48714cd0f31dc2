"""The HTML report: every section and its numbers, self-contained, escaped, and honest about what is missing."""

from __future__ import annotations

import base64
import io
import json
import re
import tomllib
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import pytest

from spineage.errors import UserError
from spineage.reporting.blocks import Section, Table, Text
from spineage.reporting.html import write_report
from tests.reporting.conftest import FIGURE_SIZES, SCRIPT_LABEL, parse_page

SECTIONS = ["1. The cohort", "2. The model", "3. The SAG analysis", "4. Truth recovery", "5. Provenance"]
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _write(reports: Path, **options) -> Path:
    return write_report(reports, reports.parent / "out" / "report.html", generated=WHEN, **options)


def _decoded_png_size(uri: str) -> tuple[int, int]:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):], validate=True)))
    assert image.format == "PNG"
    image.load()  # decodes every pixel: a truncated PNG fails here
    return image.size


def test_the_page_holds_every_section_in_the_papers_order_and_the_tables_numbers(full_reports: Path) -> None:
    out = _write(full_reports, ablations=full_reports.parent / "ablations")
    page = parse_page(out)
    text = page.all_text

    assert page.headings == SECTIONS
    for expected in [
        # the cohort: summary, normal share per bracket (1 − 0.197), clusters, planted truth
        "405 of them (65.4 %)", "80.3 %", "36.4", "spondylolisthesis", "Against the planted truth",
        # the model against the baselines and the noise floor
        "2.74", "2.75", "10.9", "baseline: ridge on intensity percentiles", "2.34 y", "1.17 times the floor",
        "± 5.45 y", "83.8 % (n 37)", "0.982", "0.860 to 1.00", "<0.001", "0.903", "models:/spine-seg-mri/3",
        "9.64 / 11.5", "(as params.yaml)", "16.6", "-19.0", "L4 severe desiccation",
        # the SAG analysis (Table 5, Figure 6, the explainability model)
        "1.23 (0.500 to 2.00)", "0.003", "1.11 (0.400 to 1.80)", "few cases", "not estimable",
        "3.91 (1.24 to 12.3)", "14 / 100", "2.35 (1.20 to 3.50)", "adjusted R² 0.412", "610 series",
        # truth recovery
        "packs_per_day", "0.908", "1.61 (0.544 to 2.67)", "Subjects for 90.0 % power", "0.775", "3.1 %",
        # provenance
        "734677b31ee9a78aba3ff489ddea3240.dir", "f8874c91bdfe49a7c5941a08b634d690bbf2f85e", "models:/spine-age-mri/6",
        "d5f53224bd2c443b964a5829117d5c85", "2026-01-02 03:04:05 UTC", "0.1.0",
    ]:
        assert expected in text, expected
    assert "not available" not in text and "not run" not in text
    assert page.cells.index("80.3 %") < page.cells.index("67.4 %")  # brackets in order (30 before 40), whatever the JSON's order


def test_the_association_blocks_follow_the_papers_table_5_whatever_the_csv_order(full_reports: Path) -> None:
    page = _write(full_reports).read_text()
    blocks = re.findall(r'<tr class="group"><th colspan="9">([^<]*)</th></tr>', page)
    assert blocks == ["Lumbar degenerative findings", "Cervical degenerative findings", "Structural and canal pathologies", "Lifestyle"]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", page)
    variables = [variable for variable, _ in rows if variable in ("desiccation", "protrusion", "disc bulge", "fracture", "packs per day")]
    assert variables == ["desiccation", "protrusion", "disc bulge", "fracture", "packs per day"]


def test_the_page_loads_nothing_from_elsewhere_and_every_image_is_an_embedded_png(full_reports: Path) -> None:
    out = _write(full_reports, ablations=full_reports.parent / "ablations")
    page = parse_page(out)
    raw = out.read_text()

    assert not re.search(r"""(src|href|action|srcset|poster|data)\s*=\s*["']?\s*(https?:)?//""", raw, re.IGNORECASE)
    assert "http://" not in raw and "https://" not in raw
    assert not [tag for tag, _ in page.tags if tag in ("script", "link", "iframe", "object", "embed")]
    assert "default-src 'none'" in raw  # the Content-Security-Policy: a browser would refuse any other load
    images = page.images()
    assert len(images) == len(FIGURE_SIZES)
    sizes = sorted(_decoded_png_size(img["src"]) for img in images)
    assert sizes == sorted(FIGURE_SIZES.values())
    for img in images:
        assert (int(img["width"]), int(img["height"])) == _decoded_png_size(img["src"])
    assert all(href.startswith("#") for tag, attrs in page.tags for name, href in attrs.items() if name == "href")


def test_absent_optional_parts_say_they_are_not_available_and_the_page_still_renders(bare_reports: Path) -> None:
    (bare_reports / "evaluate" / "gradcam.png").unlink()
    (bare_reports / "segment" / "metrics.json").unlink()
    out = _write(bare_reports)
    page = parse_page(out)
    text = page.all_text

    assert page.headings == SECTIONS
    assert "The SAG analysis is not available: reports/sag/ is missing (run the sag stage)." in text
    assert "The cohort has no planted truth (reports/truth_recovery.json is absent or says so)" in text
    assert "Ablations: not run (make ablations)." in text
    assert "Figure not available: reports/evaluate/gradcam.png is missing." in text
    assert "Segmentation metrics not available: reports/segment/metrics.json is missing." in text
    shown = {_decoded_png_size(img["src"]) for img in page.images()}
    assert FIGURE_SIZES["evaluate/gradcam.png"] not in shown and len(page.images()) == 5
    assert "2.74" in text  # the model's figures are all still there


def test_a_sag_folder_with_some_parts_shows_them_and_names_the_missing_ones(full_reports: Path) -> None:
    for name in ("odds_ratios.csv", "odds_ratios.png", "multivariable.csv", "metrics.json"):
        (full_reports / "sag" / name).unlink()
    text = parse_page(_write(full_reports)).all_text

    assert "1.23 (0.500 to 2.00)" in text
    assert "Odds ratios not available: reports/sag/odds_ratios.csv is missing." in text
    assert "Figure not available: reports/sag/odds_ratios.png is missing." in text
    assert "The multivariable model is not available: reports/sag/multivariable.csv is missing." in text


def test_a_figure_that_is_not_a_png_is_left_out_with_a_note(full_reports: Path) -> None:
    (full_reports / "evaluate" / "gradcam.png").write_text("not an image")
    page = parse_page(_write(full_reports))
    assert "Figure not shown: reports/evaluate/gradcam.png is not a PNG image." in page.all_text
    assert len(page.images()) == len(FIGURE_SIZES) - 1


def test_text_from_the_reports_is_escaped_never_markup(full_reports: Path) -> None:
    out = _write(full_reports)
    raw = out.read_text()
    page = parse_page(out)

    assert "<script>" not in raw
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in raw
    assert SCRIPT_LABEL in page.cells


def test_without_evaluate_metrics_the_report_is_a_one_line_user_error_and_an_old_page_stays(full_reports: Path) -> None:
    out = full_reports.parent / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("the previous page")
    (full_reports / "evaluate" / "metrics.json").unlink()

    with pytest.raises(UserError, match=r"evaluate.*metrics\.json.*make repro") as caught:
        write_report(full_reports, out)
    assert "\n" not in str(caught.value)
    assert out.read_text() == "the previous page"
    with pytest.raises(UserError, match="make repro"):
        write_report(full_reports.parent / "nowhere", out)


def test_an_unreadable_metrics_file_is_a_user_error_naming_it(full_reports: Path) -> None:
    (full_reports / "train" / "metrics.json").write_text("{not json")
    with pytest.raises(UserError, match=r"train/metrics\.json"):
        _write(full_reports)


def test_extra_sections_come_after_truth_recovery_and_before_provenance(full_reports: Path) -> None:
    radiographs = Section("Radiographs and DXA VFA", [Text("The radiograph branch."), Table(("AUC",), (("0.812",),), "Fracture")])
    page = parse_page(_write(full_reports, extra_sections=[radiographs]))

    assert page.headings == [*SECTIONS[:4], "5. Radiographs and DXA VFA", "6. Provenance"]
    assert "The radiograph branch." in page.all_text and "0.812" in page.cells
    assert ("a", {"href": "#radiographs-and-dxa-vfa"}) in page.tags
    with pytest.raises(TypeError, match="Section"):
        _write(full_reports, extra_sections=["not a section"])


def test_truth_recovery_shows_oracle_against_pipeline_for_every_planted_effect(full_reports: Path) -> None:
    page = parse_page(_write(full_reports))
    for header in ("Effect", "Planted (y)", "Oracle: planted gap (95 % CI)", "Pipeline: SAG (95 % CI)", "Attenuation", "CI holds planted", "Found", "Power"):
        assert header in page.cells, header
    # packs per day: planted 0.93, found 1.46 (0.082 to 2.83), p 0.038; the zero sedentary effect not found
    assert "1.46 (0.082 to 2.83)" in page.cells and "0.038" in page.cells and "no (none planted)" in page.cells
    assert "1 of 3" in page.cells and "3,674" in page.cells and "86.3 %" in page.cells
    assert any("seed 20251121" in cell for cell in page.cells)


def test_the_ablation_markdown_table_stands_in_for_a_missing_csv(full_reports: Path) -> None:
    ablations = full_reports.parent / "ablations"
    (ablations / "table.csv").unlink()
    (ablations / "table.md").write_text("| Factor | Setting | MAE (y) raw / corrected |\n|---|---|---:|\n| loss | smooth_l1 | 3.20 / 2.81 |\n")
    page = parse_page(_write(full_reports, ablations=ablations))
    assert "3.20 / 2.81" in page.cells and "smooth_l1" in page.cells


def test_the_report_reads_the_files_the_stages_write() -> None:
    from spineage.evaluation import ablations, stage
    from spineage.reporting import sections

    for name in ("METRICS", "PREDICTED_VS_AGE", "BY_BRACKET_SEX", "ERROR_BY_BRACKET_SEX", "GRADCAM", "LARGE_GAPS"):
        assert getattr(sections, name) == getattr(stage, name), name
    assert (sections.ABLATION_CSV, sections.ABLATION_MARKDOWN) == (ablations.TABLE_CSV, ablations.TABLE_MARKDOWN)


def test_the_template_ships_with_the_package() -> None:
    import spineage.reporting
    from spineage.reporting.html import TEMPLATE

    root = Path(__file__).resolve().parents[2]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    template = Path(spineage.reporting.__file__).parent / "templates" / TEMPLATE
    assert template.is_file()
    assert any(fnmatch(f"templates/{TEMPLATE}", pattern) for pattern in package_data["spineage.reporting"])


def test_the_page_is_written_atomically_in_place(full_reports: Path) -> None:
    out = _write(full_reports)
    first = out.read_text()
    _write(full_reports)
    assert out.read_text() == first  # same inputs and time stamp, same page
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left behind


def test_the_external_truth_cohort_is_shown_when_make_truth_has_run(full_reports: Path) -> None:
    absent = _write(full_reports).read_text(encoding="utf-8")
    assert "The external truth cohort (make truth)" in absent and "Not run: `make truth`" in absent
    external = full_reports.parent / "truth_recovery.json"
    external.write_text(json.dumps({"planted_truth": True, "subjects": 3987, "effects": [{"name": "work_heavy", "planted": 0.67, "p": 0.0004}]}))
    page = parse_page(_write(full_reports, external_truth=external))
    assert "3,987" in page.cells or "3987" in page.cells
    assert "work_heavy" in page.cells and "Not run: `make truth`" not in page.text
