"""The report's radiograph section, from the outcome stage's real outputs on simulated subjects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spineage.radiograph.outcomes import write_radiograph_outcomes
from spineage.reporting.html import render_report
from spineage.reporting.radiograph_section import radiograph_section
from spineage.reporting.sections import gather_report
from tests.radiograph.test_outcomes import write_inputs
from tests.reporting.conftest import make_reports, parse_page


@pytest.mark.slow
def test_the_radiograph_section_shows_accuracy_roc_km_cox_and_the_planted_hazards(tmp_path: Path) -> None:
    reports = make_reports(tmp_path / "pipeline")
    predictions, metrics_json, raw = write_inputs(tmp_path / "inputs", n=600)
    folder = reports / "radiograph"
    write_radiograph_outcomes(predictions, metrics_json, raw, folder / "outcomes")
    (folder / "metrics.json").write_text(json.dumps({
        "bias_correction": {"method": "beheshti"}, "accelerated_threshold": 1.3,
        "test": {"n": 200, "raw": {"mae": 3.1}, "corrected": {"mae": 2.9, "r": 0.93}, "baseline_mean_age_mae": 11.2},
        "external": {"n": 150, "raw": {"mae": 3.9}, "corrected": {"mae": 3.4, "r": 0.71}, "baseline_mean_age_mae": 5.1},
    }))
    external = tmp_path / "truth" / "truth_recovery.json"
    external.parent.mkdir()
    external.write_text(json.dumps({"planted_truth": True, "subjects": 3036, "model": "Cox", "hazards": [
        {"outcome": "death (truth cohort)", "planted_hr_per_sd": 1.31, "pipeline_hr_per_sd": 0.93, "ci_low": 0.77, "ci_high": 1.13,
         "ci_holds_planted": False, "expected_hr_per_sd": 1.061, "ci_holds_expected": True, "events": 208}], "calibration_slope": 0.22}))
    page = gather_report(reports, extra_sections=[radiograph_section(reports, external)])
    text = render_report(page)
    parsed = parse_page_text(tmp_path, text)
    assert "Radiographs and DXA VFA" in text and "11.2" in parsed.cells and "2.90" in parsed.cells
    for heading in ("Prevalent fracture and osteoporosis (Figure 1)", "Incident fracture (Figure 2)", "Planted hazard ratios"):
        assert heading in text
    assert "vertebral fracture" in parsed.cells and "model 3" in parsed.cells
    assert "death (truth cohort)" in parsed.cells and "3,036 subjects of the truth cohort" in text
    assert "1.06" in parsed.cells and "calibration slope 0.22" in text and "Expected through the age difference" in text
    assert text.count("data:image/png;base64,") >= 3 + 3  # roc and the two KM figures beside the MRI figures


def test_without_the_branch_the_section_says_so(tmp_path: Path) -> None:
    section = radiograph_section(tmp_path, tmp_path / "absent.json")
    assert "has not run" in section.blocks[0].text


def parse_page_text(tmp_path: Path, text: str):
    path = tmp_path / "page.html"
    path.write_text(text, encoding="utf-8")
    return parse_page(path)
