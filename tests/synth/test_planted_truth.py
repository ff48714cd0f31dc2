"""The planted truth is in the raw data: demographics, lifestyle effects, ageing findings, anatomy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.config import parse_params
from spineage.findings.vocabulary import (
    BRACKETS,
    DEGENERATIVE_CONDITIONS,
    PATHOLOGIES,
    bracket_of,
    region_of,
)
from spineage.labels import disc_label, vertebra_label
from spineage.synth.anatomy import build_anatomy, default_levels
from spineage.synth.cohort import TABLE1_SERIES_PER_BRACKET
from spineage.synth.degeneration import atypical_reasons
from spineage.synth.generate import draw_cohort_tables
from spineage.synth.phantom import rasterize
from spineage.synth.scanner import acquire_vfa

SETTINGS = parse_params({}).synth


@pytest.fixture(scope="module")
def tables():
    return draw_cohort_tables(4000, SETTINGS, seed=3)


@pytest.fixture(scope="module")
def mri(tables) -> pd.DataFrame:
    """One row per MRI series with its findings as a frame-in-a-column."""
    sessions = tables.sessions.reset_index(drop=True)
    keep = sessions.modality == "mri_t2_sag"
    frame = sessions[keep].copy()
    frame["findings"] = [tables.findings[i] for i in np.nonzero(keep.to_numpy())[0]]
    frame["sex"] = tables.subjects.sex.to_numpy()[frame.subject_index]
    frame["chrono_gap"] = frame.bio_age - frame.age
    return frame


def _has(findings: list[dict], condition: str, region: str | None = None, severities: tuple[str, ...] | None = None) -> bool:
    return any(
        f["condition"] == condition
        and (region is None or (f["level"] and region_of(f["level"]) == region))
        and (severities is None or f["severity"] in severities)
        for f in findings
    )


def test_age_brackets_follow_table_1_and_sexes_are_balanced(tables) -> None:
    subjects = tables.subjects
    brackets = subjects.age.map(bracket_of)
    assert brackets.notna().all()
    share = brackets.value_counts(normalize=True)
    expected = pd.Series(TABLE1_SERIES_PER_BRACKET, dtype=float)
    expected /= expected.sum()
    for bracket, value in expected.items():
        assert share[bracket] == pytest.approx(value, abs=0.025)
    assert subjects.age.between(25, 85).all()
    assert (subjects.sex == "F").mean() == pytest.approx(0.5, abs=0.04)
    assert set(BRACKETS) == set(share.index)


def test_lifestyle_effects_on_biological_age_are_recoverable(tables) -> None:
    import statsmodels.formula.api as smf

    subjects = tables.subjects.assign(gap=lambda d: d.bio_age - d.age)
    fit = smf.ols(
        "gap ~ packs_per_day + alcohol_days_per_week + sedentary_hours_per_day + C(work, Treatment('sedentary')) + C(exercise, Treatment('none'))",
        subjects,
    ).fit()
    planted = SETTINGS.lifestyle_effects
    estimates = {
        "packs_per_day": fit.params["packs_per_day"],
        "alcohol_days_per_week": fit.params["alcohol_days_per_week"],
        "sedentary_hours_per_day": fit.params["sedentary_hours_per_day"],
        "work_heavy": fit.params["C(work, Treatment('sedentary'))[T.heavy]"],
        "exercise_vigorous": fit.params["C(exercise, Treatment('none'))[T.vigorous]"],
    }
    for name, value in estimates.items():
        assert value == pytest.approx(planted[name], abs=0.45), name
    assert fit.resid.std() == pytest.approx(SETTINGS.noise_sd, abs=0.2)
    # Smoking is common enough, and its effect large enough, to be detected.
    assert fit.pvalues["packs_per_day"] < 0.01


def test_findings_follow_biological_not_chronological_age(mri) -> None:
    import statsmodels.formula.api as smf

    mri = mri.assign(
        desiccated=[int(_has(f, "desiccation", "lumbar", ("moderate", "severe", "near_complete"))) for f in mri.findings],
        n_findings=[len(f) for f in mri.findings],
    )
    fit = smf.logit("desiccated ~ age + chrono_gap", mri).fit(disp=0)
    # Given chronological age, a spine that is biologically older has more desiccation:
    # a year of gap counts about as much as a year of age, because both act through biological age.
    assert fit.pvalues["chrono_gap"] < 1e-3
    assert fit.params["chrono_gap"] == pytest.approx(fit.params["age"], rel=0.5)
    # Age-typical spines (an atypical one carries a worn disc at any age, by design):
    typical = mri[[not atypical_reasons(f) for f in mri.findings]]
    by_bracket = typical.groupby(typical.age.map(bracket_of))
    prevalence = by_bracket.desiccated.mean()
    assert prevalence.is_monotonic_increasing
    assert prevalence[30] < 0.15 and prevalence[70] > 0.4 and prevalence[70] > 5 * prevalence[30]
    # A clean spine is common only in the young (1-3 mild lumbar bulges dominate the 30s); common
    # variants (kyphosis or lordosis in a third of series) do not count as degeneration.
    clean = typical.findings.map(lambda found: not any(f["condition"] in DEGENERATIVE_CONDITIONS for f in found))
    clean_share = clean.groupby(typical.age.map(bracket_of)).mean()
    assert clean_share[30] > 0.1 and clean_share[30] > 3 * clean_share[40] and clean_share[70] < 0.02


def test_regional_patterns(mri) -> None:
    young = mri[mri.age < 45]
    old = mri[mri.age >= 65]
    lumbar_bulge = np.mean([_has(f, "disc_bulge", "lumbar") for f in mri.findings])
    cervical_bulge = np.mean([_has(f, "disc_bulge", "cervical") for f in mri.findings])
    assert lumbar_bulge > 2 * cervical_bulge
    for condition in ("disc_osteophyte_complex", "uncovertebral_osteophyte"):
        assert np.mean([_has(f, condition, "cervical") for f in old.findings]) > 2 * np.mean([_has(f, condition, "cervical") for f in young.findings]) + 0.05
    thoracic = np.mean([_has(f, "desiccation", "thoracic") for f in mri.findings])
    assert thoracic < np.mean([_has(f, "desiccation", "lumbar") for f in mri.findings]) / 2


def test_structural_pathologies_are_rarer_and_rise_with_age(mri) -> None:
    for pathology in ("bone_lesion", "spondylolisthesis", "spinal_stenosis", "fracture"):
        young = np.mean([_has(f, pathology) for f in mri[mri.age < 45].findings])
        old = np.mean([_has(f, pathology) for f in mri[mri.age >= 65].findings])
        assert old > young, pathology
    any_pathology = np.mean([any(f["condition"] in PATHOLOGIES for f in fs) for fs in mri.findings])
    bulges = np.mean([_has(f, "disc_bulge") or _has(f, "desiccation") for f in mri.findings])
    assert any_pathology < bulges


def test_repeat_scans_are_the_same_subject_older(tables) -> None:
    sessions = tables.sessions.reset_index(drop=True)
    repeats = sessions[(sessions.modality == "mri_t2_sag") & (sessions.session == 2)]
    assert len(repeats) / len(tables.subjects) == pytest.approx(SETTINGS.repeat_fraction, abs=0.015)
    ordinal = {"mild": 1, "moderate": 2, "severe": 3, "near_complete": 4}
    for index, later in repeats.iterrows():
        first_index = sessions[(sessions.subject_id == later.subject_id) & (sessions.session == 1) & (sessions.modality == "mri_t2_sag")].index[0]
        first = sessions.loc[first_index]
        assert 0.5 <= later.age - first.age <= 3.0
        assert later.bio_age - later.age == pytest.approx(first.bio_age - first.age)
        before = {f["level"]: ordinal[f["severity"]] for f in tables.findings[first_index] if f["condition"] == "desiccation"}
        after = {f["level"]: ordinal[f["severity"]] for f in tables.findings[index] if f["condition"] == "desiccation"}
        assert all(after.get(level, 0) >= grade for level, grade in before.items())
        levels_before = {f["level"] for f in tables.findings[first_index] if f["level"]}
        levels_after = {f["level"] for f in tables.findings[index] if f["level"]}
        assert levels_before <= levels_after


def _render(findings: list[dict], levels: list[str] | None = None):
    anatomy = build_anatomy(170, 60, "F", findings, levels or default_levels(), np.random.default_rng(5))
    x = np.arange(-3, 4) * 4.0
    y = np.arange(-110, 130, 2.0)
    z = np.arange(-740, 100, 2.0)
    return anatomy, rasterize(anatomy, x, y, z, properties=("t2",))


def test_a_wedge_fracture_is_drawn_at_its_level() -> None:
    _, plain = _render([])
    _, broken = _render([{"level": "T12", "condition": "fracture", "severity": "severe"}])
    code = vertebra_label("T12")
    assert (broken.labels == code).sum() < 0.85 * (plain.labels == code).sum()
    neighbour = vertebra_label("T10")
    assert (broken.labels == neighbour).sum() == pytest.approx((plain.labels == neighbour).sum(), rel=0.1)


def test_a_protrusion_reaches_into_the_canal_at_its_disc() -> None:
    anatomy, plain = _render([])
    _, herniated = _render([{"level": "L4", "condition": "protrusion", "severity": "severe"}])
    code = disc_label("L4")
    assert (herniated.labels == code).sum() > (plain.labels == code).sum() + 5
    assert (herniated.labels == disc_label("L2")).sum() == (plain.labels == disc_label("L2")).sum()


def test_desiccation_darkens_and_flattens_the_disc() -> None:
    _, plain = _render([])
    _, dry = _render([{"level": "L3", "condition": "desiccation", "severity": "near_complete"}])
    code = disc_label("L3")
    assert (dry.labels == code).sum() < (plain.labels == code).sum()
    assert np.percentile(dry.t2[dry.labels == code], 90) < 0.5 * np.percentile(plain.t2[plain.labels == code], 90)


def test_a_transitional_spine_has_an_sixth_lumbar_vertebra() -> None:
    _, six = _render([], default_levels("L6"))
    assert (six.labels == vertebra_label("L6")).sum() > 50
    _, five = _render([])
    assert (five.labels == vertebra_label("L6")).sum() == 0


def test_marrow_brightens_with_biological_age() -> None:
    x, y, z = np.array([0.0]), np.arange(-110, 130, 2.0), np.arange(-740, 100, 2.0)
    signal = []
    for age in (30, 80):
        anatomy = build_anatomy(170, age, "F", [], default_levels(), np.random.default_rng(5))
        rendered = rasterize(anatomy, x, y, z, properties=("t2",))
        signal.append(np.median(rendered.t2[rendered.labels == vertebra_label("L2")]))
    assert signal[1] > signal[0] + 0.05


def test_disc_nuclei_dim_with_biological_age_without_any_finding() -> None:
    x, y, z = np.array([0.0]), np.arange(-110, 130, 2.0), np.arange(-740, 100, 2.0)
    signal = []
    for age in (25, 85):
        anatomy = build_anatomy(170, age, "F", [], default_levels(), np.random.default_rng(5))
        rendered = rasterize(anatomy, x, y, z, properties=("t2",))
        signal.append(np.percentile(rendered.t2[rendered.labels == disc_label("L3")], 90))
    assert signal[1] < 0.85 * signal[0]
    # A reported desiccation never brightens an old disc.
    old = build_anatomy(170, 95, "F", [{"level": "L3", "condition": "desiccation", "severity": "mild"}], default_levels(), np.random.default_rng(5))
    assert old.discs[old.levels.index("L3")].hydration <= 0.62


def test_vfa_shows_bone_density() -> None:
    images = []
    for density in (1.0, 0.7):
        anatomy = build_anatomy(165, 70, "F", [], default_levels(), np.random.default_rng(2), bone_density=density)
        images.append(acquire_vfa(anatomy, (192, 64), np.random.default_rng(0)).astype(float))
    assert np.percentile(images[1], 95) < 0.85 * np.percentile(images[0], 95)


def test_atypical_spines_carry_a_whole_lesion_complex_at_one_disc() -> None:
    from spineage.synth.degeneration import (
        FOCAL_COMPLEXES,
        SubjectLatents,
        draw_findings,
        draw_latents,
    )

    latents = draw_latents(default_levels(), np.random.default_rng(11))
    first = len(latents.atypical) - len(FOCAL_COMPLEXES)
    for index, complex_ in enumerate(FOCAL_COMPLEXES):
        draws = np.ones_like(latents.atypical)
        draws[first + index] = (0.0, 0.5, 0.0)  # this complex only
        findings = draw_findings(SubjectLatents(**{**latents.__dict__, "atypical": draws}), bio_age=40.0, sex="F",
                                 prevalent_fracture=False)
        marked = [f for f in findings if f.get("atypical") == complex_.reason]
        # Its findings sit together: at its anchor disc and the discs beside it (or at a second anchor).
        anchors = [lv for lv in complex_.levels if lv in {f["level"] for f in marked}]
        assert anchors, complex_.reason
        anchor = default_levels().index(anchors[0])
        for f in marked:
            assert abs(default_levels().index(f["level"]) - anchor) <= 2 or region_of(f["level"]) != region_of(anchors[0]), f
        # A worn or herniated disc at its heart: a grade no age-typical spine reaches, or an extrusion.
        assert any(f["severity"] in ("severe", "near_complete") or f["condition"] == "extrusion" for f in marked), complex_.reason
        for level in {f["level"] for f in marked}:
            contours = [f for f in findings if f["level"] == level and f["condition"] in ("disc_bulge", "protrusion", "extrusion", "disc_osteophyte_complex")]
            assert len(contours) <= 1, (complex_.reason, level)


def test_atypical_spines_become_commoner_with_age(mri) -> None:
    atypical = np.array([bool(atypical_reasons(f)) for f in mri.findings])
    young = atypical[(mri.age < 45).to_numpy()].mean()
    old = atypical[(mri.age >= 65).to_numpy()].mean()
    assert 0.1 < young < old < 0.7
