"""Findings driven by biological spine age: who has which degeneration, where, how severe.

Each disc has a latent *degeneration load* that rises with biological age,
differs by region and level (lumbar L4/5 and L5/S1 and cervical C5/6 and C6/7
most, mid-thoracic least) and carries a subject's susceptibility. Conditions
appear when the load crosses condition-specific thresholds; the random parts
are drawn once per subject (:class:`SubjectLatents`), so a repeat scan of an
older subject only ever shows the same findings or worse ones.

Example:
    >>> import numpy as np
    >>> from spineage.synth.anatomy import default_levels
    >>> latents = draw_latents(default_levels(), np.random.default_rng(0))
    >>> findings = draw_findings(latents, bio_age=35.0, sex="F", prevalent_fracture=False)
    >>> all(f["condition"] for f in findings)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from spineage.findings.vocabulary import SEVERITY_ORDINAL, region_of

# Level-specific offset of the degeneration load: where spines wear first.
_LEVEL_OFFSET = {
    "C2": -1.2, "C3": -0.6, "C4": -0.2, "C5": 0.35, "C6": 0.3, "C7": -0.5,
    "L1": -0.45, "L2": -0.3, "L3": 0.0, "L4": 0.5, "L5": 0.45, "L6": 0.3,
}
_THORACIC_OFFSET = -2.0

LOAD_SLOPE_PER_DECADE = 0.6
"""Rise of the disc degeneration load per decade of biological age up to 60, half that after (the planted ageing signal)."""


def level_offset(level: str) -> float:
    """How early a disc degenerates relative to others (0 for an average lumbar disc)."""
    if level in _LEVEL_OFFSET:
        return _LEVEL_OFFSET[level]
    if level.startswith("T"):
        number = int(level[1:])
        # Lower thoracic discs behave more like lumbar ones.
        return _THORACIC_OFFSET + (0.5 if number >= 11 else 0.0)
    raise ValueError(f"Expected a vertebral level, found {level!r}")


@dataclass(frozen=True)
class SubjectLatents:
    """The random parts of one subject's degeneration, fixed for life.

    Args:
        levels: vertebrae present, top to bottom.
        susceptibility: subject-wide shift of the degeneration load.
        disc_noise: per-disc shift of the load.
        uniforms: per (disc, condition) uniform draws deciding presence.
        scan_uniforms: per pathology uniform draws.
        picks: per pathology uniform draws choosing the level.
        focal: uniform draws for the subject's focal lesions (see :func:`_focal_findings`).
    """

    levels: tuple[str, ...]
    susceptibility: float
    disc_noise: np.ndarray
    uniforms: np.ndarray
    scan_uniforms: np.ndarray
    picks: np.ndarray
    focal: np.ndarray


_DISC_CONDITIONS = ("desiccation", "contour", "protrusion", "extrusion", "osteophyte", "uncovertebral", "endplate", "fissure")
_SCAN_FINDINGS = (
    "bone_lesion", "congenital_canal_narrowing", "cord_abnormality", "soft_tissue_edema",
    "spinal_stenosis", "spondylolisthesis", "scoliosis", "kyphosis_or_lordosis", "tarlov_cyst",
)


def draw_latents(levels: list[str], rng: np.random.Generator) -> SubjectLatents:
    """Draw a subject's lifelong degeneration latents."""
    n = len(levels)
    return SubjectLatents(
        levels=tuple(levels),
        susceptibility=float(rng.normal(0.0, 0.7)),
        disc_noise=rng.normal(0.0, 0.45, size=n),
        uniforms=rng.uniform(size=(n, len(_DISC_CONDITIONS))),
        scan_uniforms=rng.uniform(size=len(_SCAN_FINDINGS)),
        picks=rng.uniform(size=len(_SCAN_FINDINGS) + 2),
        focal=rng.uniform(size=(4, 3)),
    )


def disc_loads(latents: SubjectLatents, bio_age: float) -> np.ndarray:
    """The degeneration load of every disc at a biological age."""
    offsets = np.array([level_offset(level) for level in latents.levels])
    decades = (bio_age - 50.0) / 10.0
    # Degeneration slows after 60: past a point most discs that will wear have worn.
    decades = np.where(decades > 1.0, 1.0 + 0.5 * (decades - 1.0), decades)
    return LOAD_SLOPE_PER_DECADE * decades + offsets + latents.susceptibility + latents.disc_noise


def _grade(value: float, cuts: tuple[float, ...]) -> int:
    """0 below the first cut, then 1, 2, ... for each cut passed."""
    return int(sum(value > cut for cut in cuts))


def draw_findings(latents: SubjectLatents, bio_age: float, sex: str, prevalent_fracture: bool, fracture_grade: int = 1) -> list[dict]:
    """All findings of one scan: degenerative per disc, pathologies and other findings per scan.

    Args:
        latents: the subject's lifelong random parts.
        bio_age: biological spine age at the scan.
        sex: "F" or "M" (spondylolisthesis is commoner in women).
        prevalent_fracture: whether the subject has a vertebral fracture (from the outcomes model).
        fracture_grade: its Genant grade 1-3.

    Returns:
        Dicts with level, condition and severity, in a fixed order.
    """
    loads = disc_loads(latents, bio_age)
    levels = latents.levels
    findings: list[dict] = []
    old = (bio_age - 50.0) / 10.0
    for i, level in enumerate(levels):
        region = region_of(level)
        load = loads[i]
        u = latents.uniforms[i]
        desiccation = _grade(load + 0.6 * (u[0] - 0.5), (0.9, 1.7, 2.4, 3.1))
        if desiccation:
            findings.append(_f(level, "desiccation", ("mild", "moderate", "severe", "near_complete")[desiccation - 1]))
        # One contour abnormality per disc: the worst of bulge, protrusion, extrusion, disc-osteophyte complex.
        cervical_old = region == "cervical" and u[4] < expit(1.6 * (load - 1.6) + 0.2 * old)
        if cervical_old:
            severity = _grade(load + 0.5 * (u[1] - 0.5), (0.7, 1.6))
            findings.append(_f(level, "disc_osteophyte_complex", ("mild", "moderate", "severe")[severity]))
        elif u[3] < expit(2.0 * (load - 3.0)):
            findings.append(_f(level, "extrusion", "moderate" if load > 3.0 else "mild"))
        elif u[2] < expit(2.0 * (load - 2.0)):
            findings.append(_f(level, "protrusion", ("mild", "moderate", "severe")[_grade(load, (1.6, 2.4))]))
        elif u[1] < expit(2.2 * (load - (0.8 if region == "lumbar" else 1.3))):
            findings.append(_f(level, "disc_bulge", ("mild", "moderate", "severe")[_grade(load, (1.3, 2.2))]))
        if region == "cervical" and level != "C2" and u[5] < expit(1.8 * (load - 1.9) + 0.2 * old):
            findings.append(_f(level, "uncovertebral_osteophyte", ("mild", "moderate", "severe")[_grade(load, (1.5, 2.3))]))
        if region == "lumbar" and u[6] < expit(2.0 * (load - 2.3)):
            findings.append(_f(level, "endplate_change", "present"))
        if region != "thoracic" and u[7] < expit(2.0 * (load - 2.5)):
            findings.append(_f(level, "annular_fissure", "present"))

    findings = _focal_findings(latents, bio_age, findings)
    findings += _scan_findings(latents, loads, bio_age, sex, prevalent_fracture, fracture_grade, findings)
    return _worst_per_level(findings)


def _worst_per_level(findings: list[dict]) -> list[dict]:
    """One finding per (level, condition): a focal complex and the per-scan model may both name one."""
    kept: dict[tuple[str, str], dict] = {}
    for finding in findings:
        key = (finding["level"], finding["condition"])
        if key not in kept or SEVERITY_ORDINAL[finding["severity"]] > SEVERITY_ORDINAL[kept[key]["severity"]]:
            kept[key] = finding
    return list(kept.values())


FOCAL_PROBABILITY_AT_50 = 0.5
"""Share of 50-year-olds with a focal lesion complex beyond the age-typical pattern (the atypical spines)."""

FOCAL_AGE_SLOPE = 0.15
"""Rise of the log-odds of a focal lesion complex per decade of biological age."""

SECOND_COMPLEX_PROBABILITY = 0.15
"""Share of atypical spines with a second focal lesion complex."""

FOCAL_COMPLEXES: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("thoracic disc herniation", ("T",), (
        ("protrusion", ("moderate", "severe")), ("desiccation", ("severe",)),
        ("endplate_change", ("present",)), ("annular_fissure", ("present",)),
    )),
    ("lumbar herniation with Modic changes", ("L4", "L5"), (
        ("protrusion", ("severe",)), ("annular_fissure", ("present",)), ("endplate_change", ("present",)),
    )),
    ("lumbar disc extrusion", ("L4", "L5"), (
        ("extrusion", ("moderate",)), ("desiccation", ("near_complete",)), ("annular_fissure", ("present",)),
    )),
    ("cervical spondylotic disc", ("C4", "C5", "C6"), (
        ("disc_osteophyte_complex", ("severe",)), ("uncovertebral_osteophyte", ("severe",)),
        ("desiccation", ("near_complete",)), ("annular_fissure", ("present",)),
    )),
    ("cervical disc extrusion", ("C5", "C6"), (
        ("extrusion", ("mild", "moderate")), ("annular_fissure", ("present",)),
        ("desiccation", ("near_complete",)), ("endplate_change", ("present",)),
    )),
)
"""The focal lesion complexes of atypical spines: (name, level prefixes, (condition, severities) at one disc).

A complex is several findings at one disc, as a worn or herniated disc shows
them together (a herniation with its fissure, Modic changes and a black disc).
Each complex sets findings that age-typical spines of any age rarely combine,
so the atypical spines stand apart in the region vectors: that is what lets
the data-driven normal-cohort definition (UMAP + HDBSCAN per age bracket)
leave them out. The severity index is shared by the findings of a complex.
"""

_CONTOUR = ("disc_bulge", "protrusion", "extrusion", "disc_osteophyte_complex")


def _focal_findings(latents: SubjectLatents, bio_age: float, findings: list[dict]) -> list[dict]:
    """Add the focal lesion complexes that make some spines atypical for their age.

    Not every spine wears evenly: some carry one (sometimes two) focal lesion
    complexes (:data:`FOCAL_COMPLEXES`), a herniated or worn disc with its
    companions, beyond the age-typical pattern. These are what the
    data-driven normal cohort should leave out. Their prevalence rises with
    age. A complex's contour abnormality replaces the disc's own (one contour
    abnormality per disc); its other findings keep the worse of the two grades.
    """
    old = (bio_age - 50.0) / 10.0
    probability = expit(np.log(FOCAL_PROBABILITY_AT_50 / (1 - FOCAL_PROBABILITY_AT_50)) + FOCAL_AGE_SLOPE * old)
    first = latents.focal[0]
    if first[0] >= probability:
        return findings
    n_complexes = 1 + int(first[1] > 1.0 - SECOND_COMPLEX_PROBABILITY)
    by_key = {(f["level"], f["condition"]): f for f in findings}
    for k in range(n_complexes):
        u_kind, u_level, u_grade = latents.focal[k + 1]
        _, prefixes, parts = FOCAL_COMPLEXES[int(u_kind * len(FOCAL_COMPLEXES))]
        candidates = [lv for lv in latents.levels if lv != "C2" and lv.startswith(prefixes)]
        level = candidates[int(u_level * len(candidates))]
        for condition, severities in parts:
            severity = severities[int(u_grade * len(severities))]
            if condition in _CONTOUR:
                for other in _CONTOUR:
                    by_key.pop((level, other), None)
            elif (level, condition) in by_key:
                if SEVERITY_ORDINAL[by_key[(level, condition)]["severity"]] >= SEVERITY_ORDINAL[severity]:
                    continue
            by_key[(level, condition)] = _f(level, condition, severity)
    order = {level: i for i, level in enumerate(latents.levels)}
    return sorted(by_key.values(), key=lambda f: (order[f["level"]], f["condition"]))


def _f(level: str, condition: str, severity: str) -> dict:
    return {"level": level, "condition": condition, "severity": severity}


def _pick(levels: tuple[str, ...], weights: dict[str, float], u: float) -> str:
    """Choose a level by weights with one uniform draw (deterministic given ``u``)."""
    candidates = [level for level in levels if level in weights]
    w = np.array([weights[level] for level in candidates], float)
    return candidates[int(np.searchsorted(np.cumsum(w) / w.sum(), u))]


FRACTURE_LEVEL_WEIGHTS = {"T6": 1, "T7": 2, "T8": 3, "T9": 3, "T10": 3, "T11": 5, "T12": 8, "L1": 8, "L2": 4, "L3": 2, "L4": 1}


def _scan_findings(
    latents: SubjectLatents, loads: np.ndarray, bio_age: float, sex: str,
    prevalent_fracture: bool, fracture_grade: int, degenerative: list[dict],
) -> list[dict]:
    levels = latents.levels
    u, picks = latents.scan_uniforms, latents.picks
    old = (bio_age - 50.0) / 10.0
    out: list[dict] = []
    probability = {
        "bone_lesion": expit(-2.6 + 0.25 * old),
        "congenital_canal_narrowing": 0.03,  # congenital: not age-related
        "cord_abnormality": expit(-4.2 + 0.5 * old),
        "soft_tissue_edema": expit(-3.6 + 0.2 * old),
        "spondylolisthesis": expit(-3.1 + 0.55 * old + (0.4 if sex == "F" else 0.0)),
        "scoliosis": expit(-3.0 + 0.45 * old),
        "kyphosis_or_lordosis": expit(-2.6 + 0.45 * old),
        "tarlov_cyst": 0.04,
    }
    for k, name in enumerate(_SCAN_FINDINGS):
        if name == "spinal_stenosis":
            # Stenosis follows the worst contour abnormality, where it is large enough.
            worst = max((i for i in range(len(levels)) if region_of(levels[i]) != "thoracic"), key=lambda i: loads[i])
            if u[k] < expit(2.0 * (loads[worst] - 2.2)):
                grade = _grade(loads[worst], (2.6, 3.2))
                out.append(_f(levels[worst], name, ("mild", "moderate", "severe")[grade]))
            continue
        if u[k] >= probability[name]:
            continue
        if name == "bone_lesion":
            out.append(_f(_pick(levels, {lv: 1.0 for lv in levels if not lv.startswith("C")}, picks[k]), name, "present"))
        elif name == "congenital_canal_narrowing":
            out.append(_f("", name, "present"))
        elif name == "cord_abnormality":
            out.append(_f(_pick(levels, {"C3": 1, "C4": 2, "C5": 3, "C6": 3, "T2": 0.5, "T6": 0.5}, picks[k]), name, "present"))
        elif name == "soft_tissue_edema":
            out.append(_f(_pick(levels, {lv: 1.0 for lv in levels if lv.startswith(("C", "L"))}, picks[k]), name, "present"))
        elif name == "spondylolisthesis":
            slipped = _pick(levels, {"C4": 1, "L3": 1, "L4": 6, "L5": 3}, picks[k])
            out.append(_f(slipped, name, "moderate" if u[k] < probability[name] * 0.2 else "mild"))
        elif name == "scoliosis":
            apex = _pick(levels, {"T8": 1, "T10": 2, "T12": 2, "L1": 2, "L2": 2}, picks[k])
            out.append(_f(apex, name, ("mild", "moderate", "severe")[_grade(picks[-1], (0.7, 0.93))]))
        elif name == "kyphosis_or_lordosis":
            out.append(_f("", name, "present"))
        elif name == "tarlov_cyst":
            out.append(_f("", name, "present"))
    if prevalent_fracture:
        level = _pick(levels, FRACTURE_LEVEL_WEIGHTS, picks[-2])
        out.append(_f(level, "fracture", ("mild", "moderate", "severe")[min(max(fracture_grade, 1), 3) - 1]))
    extra = [lv for lv in levels if lv in ("T13", "L6")]
    for level in extra:
        out.append(_f(level, "transitional_vertebra", "present"))
    return out
