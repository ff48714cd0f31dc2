"""The phantom's findings are as common as the MRI paper's, and its atypical spines are marked as such.

Prevalences are per MRI series, the MRI paper's Table 5 beside each. The
band is a factor of 2 either way of the paper's value; on 1,500 subjects the
sampling error is well inside it (about +-0.4 points at 2 %), so a test fails
on a planted prevalence that left the band, not on chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.config import parse_params
from spineage.findings.vocabulary import PATHOLOGIES, SEVERITY_ORDINAL, bracket_of
from spineage.synth.anatomy import default_levels
from spineage.synth.degeneration import (
    ATYPICAL_PATTERNS,
    COMMON_VARIANTS,
    FOCAL_COMPLEXES,
    atypical_reasons,
    draw_findings,
    draw_latents,
)
from spineage.synth.generate import draw_cohort_tables

TABLE5_PERCENT = {
    "spondylolisthesis": 8.5,
    "scoliosis": 17.0,
    "kyphosis_or_lordosis": 36.0,
    "fracture": 2.7,
    "spinal_stenosis": 1.5,
    "congenital_canal_narrowing": 2.3,
    "cord_abnormality": 2.3,
    "transitional_vertebra": 6.4,
    "tarlov_cyst": 7.0,
}
"""Share of MRI series with each finding in the MRI paper's Table 5."""

SEVERE_CONTOURS = {("extrusion", "mild"), ("extrusion", "moderate")} | {
    (condition, "severe") for condition in ("disc_bulge", "protrusion", "disc_osteophyte_complex", "uncovertebral_osteophyte")
}
"""Severe contour abnormalities and extrusions: rare, and never in an age-typical spine."""

SEVERE = SEVERE_CONTOURS | {("desiccation", "severe"), ("desiccation", "near_complete")}
"""Disc findings that no age-typical spine has (the worn disc at the heart of an atypical pattern)."""


@pytest.fixture(scope="module")
def mri() -> pd.DataFrame:
    """One row per MRI series of 1,500 phantom subjects: age, findings, atypical reasons."""
    tables = draw_cohort_tables(1500, parse_params({}).synth, seed=5)
    sessions = tables.sessions.reset_index(drop=True)
    keep = (sessions.modality == "mri_t2_sag").to_numpy()
    frame = sessions[keep].copy()
    frame["findings"] = [tables.findings[i] for i in np.nonzero(keep)[0]]
    frame["reasons"] = frame["findings"].map(atypical_reasons)
    return frame


def _share(frame: pd.DataFrame, condition: str) -> float:
    return 100 * float(np.mean([any(f["condition"] == condition for f in found) for found in frame["findings"]]))


@pytest.mark.parametrize("condition", list(TABLE5_PERCENT))
def test_prevalences_are_within_a_factor_of_two_of_table_5(mri, condition: str) -> None:
    paper = TABLE5_PERCENT[condition]
    assert paper / 2 <= _share(mri, condition) <= 2 * paper, (condition, _share(mri, condition))


def test_mild_findings_are_common_and_rise_with_age_and_severe_ones_are_rare(mri) -> None:
    by_bracket = mri.groupby(mri["age"].map(bracket_of))
    mild_lumbar_bulge = by_bracket["findings"].apply(
        lambda column: np.mean([any(f["condition"] == "disc_bulge" and f["level"].startswith("L") and f["severity"] == "mild"
                                    for f in found) for found in column])
    )
    # 1-3 mild lumbar bulges dominate the 30s (the MRI paper, section 4.1); more with age.
    assert mild_lumbar_bulge[30] > 0.5
    any_finding = by_bracket["findings"].apply(lambda column: np.mean([len(found) > 0 for found in column]))
    assert any_finding[70] > any_finding[30]
    for condition, severity in SEVERE_CONTOURS:
        share = np.mean([any((f["condition"], f["severity"]) == (condition, severity) for f in found) for found in mri["findings"]])
        assert share < 0.10, (condition, severity, share)
    lumbar_severe_protrusion = np.mean([
        any(f["condition"] == "protrusion" and f["severity"] == "severe" and f["level"].startswith("L") for f in found)
        for found in mri["findings"]
    ])
    assert lumbar_severe_protrusion < 0.03


def test_atypical_marks_follow_the_findings(mri) -> None:
    for found, reasons in zip(mri["findings"], mri["reasons"]):
        pathologies = {f["condition"] for f in found if f["condition"] in PATHOLOGIES}
        # Every structural pathology makes a spine atypical, and is named.
        assert pathologies <= set(reasons)
        if not reasons:
            # A typical spine: no pathology, no severe grade, no extrusion, no endplate change or fissure.
            assert not any((f["condition"], f["severity"]) in SEVERE for f in found)
            assert not any(f["condition"] in ("endplate_change", "annular_fissure") for f in found)
            assert all(SEVERITY_ORDINAL[f["severity"]] <= 2 for f in found if f["condition"] not in COMMON_VARIANTS)
        else:
            assert all(reason in PATHOLOGIES or reason.startswith("focal: ") for reason in reasons)
    atypical = mri["reasons"].map(bool)
    # Common variants alone never make a spine atypical: typical spines carry them too.
    typical = mri.loc[~atypical, "findings"]
    assert np.mean([any(f["condition"] in ("scoliosis", "kyphosis_or_lordosis") for f in found) for found in typical]) > 0.2
    # Atypical spines are a real share, not the rule, and commoner with age (the paper: 32-54 % abnormal).
    by_bracket = atypical.groupby(mri["age"].map(bracket_of)).mean()
    assert 0.15 < atypical.mean() < 0.5
    assert by_bracket[30] < by_bracket[70]


def test_every_pattern_is_drawn_with_its_findings_and_reason() -> None:
    latents = draw_latents(default_levels(), np.random.default_rng(11))
    for index, pattern in enumerate(ATYPICAL_PATTERNS):
        draws = np.ones_like(latents.atypical)
        draws[index] = (0.0, 0.5, 0.0)  # this pattern only
        fractured = pattern.reason == "fracture"
        findings = draw_findings(
            type(latents)(**{**latents.__dict__, "atypical": draws}), bio_age=45.0, sex="F", prevalent_fracture=fractured,
        )
        assert atypical_reasons(findings) == sorted({pattern.reason}), pattern.name or pattern.reason
        conditions = {f["condition"] for f in findings if f.get("atypical") == pattern.reason}
        assert {condition for condition, _, _ in pattern.parts} <= conditions | {"disc_bulge", "protrusion"}
        # One finding per (level, condition) and one contour abnormality per disc.
        keys = [(f["level"], f["condition"]) for f in findings]
        assert len(keys) == len(set(keys))
        contours = [f["level"] for f in findings if f["condition"] in ("disc_bulge", "protrusion", "extrusion", "disc_osteophyte_complex")]
        assert len(contours) == len(set(contours))
    assert all(pattern.reason.startswith("focal: ") for pattern in FOCAL_COMPLEXES)


def test_a_repeat_scan_keeps_its_patterns() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        latents = draw_latents(default_levels(), rng)
        age = float(rng.uniform(25, 80))
        before = atypical_reasons(draw_findings(latents, age, "M", prevalent_fracture=False))
        after = atypical_reasons(draw_findings(latents, age + 3.0, "M", prevalent_fracture=False))
        assert set(before) <= set(after)
