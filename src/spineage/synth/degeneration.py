"""Findings driven by biological spine age: who has which degeneration, where, how severe.

A spine's findings come in three layers:

* **Age-typical degeneration.** Each disc has a latent *degeneration load*
  that rises with biological age, differs by region and level (lumbar L4/5
  and L5/S1 and cervical C5/6 and C6/7 most, mid-thoracic least) and carries
  a subject's susceptibility. Conditions appear as the load passes their
  onsets (:data:`TYPICAL_ONSET`), mild first: 1-3 mild lumbar bulges in the
  30s, then desiccation, cervical disc-osteophyte complexes and uncovertebral
  osteophytes, then moderate grades and lumbar protrusions. This layer never
  grades a finding severe, desiccation never near-complete, and it draws no
  extrusion, endplate change or annular fissure.
* **Atypical patterns** (:data:`ATYPICAL_PATTERNS`), each rare: the seven
  structural pathologies, each with the findings that come with it where it
  sits (a degenerative spondylolisthesis with its collapsed, bulging disc; a
  compressive myelopathy under a spondylotic segment; an osteoporotic
  fracture with its broken endplates), and focal lesion complexes
  (:data:`FOCAL_COMPLEXES`: herniated discs, a spondylotic cervical segment,
  Scheuermann-type thoracic endplate changes). They come in four families
  whose members share a core of findings that age-typical spines never show
  (a collapsed lumbar segment; a spondylotic cervical segment; herniated
  discs in the neck and the low back; a collapsed thoracic segment), as the
  lesions of a diseased segment come together in real spines. Prevalences
  per MRI series follow the MRI paper's Table 5 where it gives them
  (spondylolisthesis 8.5 %, fracture 2.7 %, spinal stenosis 1.5 %,
  congenital canal narrowing 2.3 %, cord abnormality 2.3 %, each within a
  factor of 2; ``benchmarks/bench_phantom_cohort.py`` prints them); vertebral
  fractures come from the outcomes model (:mod:`spineage.synth.outcomes`).
* **Common variants** (:data:`COMMON_VARIANTS`): scoliosis (17 %), kyphosis
  or lordosis (36 %), Tarlov cysts (7 %) and transitional vertebrae (6.4 %,
  the supernumerary T13 or L6 drawn with the subject). They alone never make
  a spine atypical, and the region vector leaves them out.

A spine is **atypical** when it carries an atypical pattern, so every spine
with a structural pathology is atypical. The findings of a pattern carry its
reason under the key ``atypical`` (``"spondylolisthesis"``, ``"focal: lumbar
disc extrusion"``); :func:`atypical_reasons` lists a scan's reasons, which the
generator writes to ``ground_truth.json`` (``series_atypical``) so that the
normal-cohort definition can be scored against them.

The random parts are drawn once per subject (:class:`SubjectLatents`) and no
probability falls with age, so a repeat scan of an older subject only ever
shows the same findings or worse ones, and the same atypical patterns or more.

Example:
    >>> import numpy as np
    >>> from spineage.synth.anatomy import default_levels
    >>> latents = draw_latents(default_levels(), np.random.default_rng(0))
    >>> findings = draw_findings(latents, bio_age=35.0, sex="F", prevalent_fracture=False)
    >>> all(f["condition"] for f in findings)
    True
    >>> atypical_reasons(findings) == sorted({f["atypical"] for f in findings if "atypical" in f})
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit

from spineage.findings.vocabulary import PATHOLOGIES, SEVERITY_ORDINAL, region_of

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


# --------------------------------------------------------------------------- atypical patterns


@dataclass(frozen=True)
class AtypicalPattern:
    """A rare way for a spine to be atypical for its age: findings that come together at one place.

    Args:
        reason: why a spine carrying it is atypical: the structural pathology
            it brings (``"spondylolisthesis"``), or ``"focal: <name>"`` for a
            focal lesion complex.
        prevalence_at_50: probability at biological age 50 (None: drawn
            elsewhere; the vertebral fracture comes from the outcomes model).
        log_odds_per_decade: rise of its log-odds per decade of biological
            age (0 for congenital and developmental patterns; never negative,
            so a spine keeps its patterns as it ages).
        levels: where it sits, as weights of the anchor level.
        parts: ``(condition, severities, where)``: a finding at the disc or
            vertebra ``where`` levels below the anchor (an int), at a second
            anchor chosen among the levels of ``where`` (a dict of weights, for
            a pattern in two regions) or per scan (``None``); its severity
            picked from ``severities`` by one draw shared by the parts, so that
            a worse pattern is worse throughout.
        female_odds_ratio: odds ratio for women.
        name: what it is in words, when the reason does not say it (two kinds of spondylolisthesis).
    """

    reason: str
    prevalence_at_50: float | None
    log_odds_per_decade: float
    levels: dict[str, float]
    parts: tuple[tuple[str, tuple[str, ...], int | dict[str, float] | None], ...]
    female_odds_ratio: float = 1.0
    name: str = field(default="", compare=False)

    def probability(self, bio_age: float, sex: str) -> float:
        """Its probability at a biological age, for a sex."""
        if self.prevalence_at_50 is None:
            raise ValueError(f"Expected a pattern with its own prevalence, found {self.reason!r}, drawn elsewhere")
        log_odds = logit(self.prevalence_at_50) + self.log_odds_per_decade * (bio_age - 50.0) / 10.0
        if sex == "F":
            log_odds += np.log(self.female_odds_ratio)
        return float(expit(log_odds))


FRACTURE_LEVEL_WEIGHTS = {"T6": 1, "T7": 2, "T8": 3, "T9": 3, "T10": 3, "T11": 5, "T12": 8, "L1": 8}

# The atypical patterns come in four families, each with a core of findings that age-typical
# spines never show, as the lesions of a diseased segment come together in real spines: a
# collapsed, slipped or narrowed lumbar segment; a spondylotic cervical segment compromising the
# canal; herniated discs in the neck and the low back (disc disease rarely keeps to one region);
# broken or irregular thoracic endplates with their worn discs. The pathology or the kind of
# lesion adds the rest.
_LUMBAR_SEGMENT = (
    ("disc_bulge", ("moderate", "severe"), 0), ("desiccation", ("near_complete",), 0), ("endplate_change", ("present",), 0),
    ("desiccation", ("severe",), -1), ("protrusion", ("moderate",), -1),
)
_CERVICAL_SEGMENT = (
    ("disc_osteophyte_complex", ("severe",), 0), ("uncovertebral_osteophyte", ("severe",), 0),
    ("desiccation", ("near_complete",), 0), ("endplate_change", ("present",), 0), ("desiccation", ("severe",), 1),
    ("protrusion", ("moderate",), 1),
)
_LOW_CERVICAL = {"C4": 1, "C5": 2, "C6": 1}
_HERNIATION_LEVELS = {"L4": 1, "L5": 1}
# Herniated discs, in the neck and in the low back: the part in the other region is placed among
# its own levels.
_CERVICAL_HERNIATION = (("annular_fissure", ("present",), 0), ("protrusion", ("moderate",), 1), ("protrusion", ("mild",), -1))
_LUMBAR_HERNIATION = (("annular_fissure", ("present",), 0), ("desiccation", ("severe",), 0))
_NECK_HERNIATION = (("protrusion", ("moderate",), _LOW_CERVICAL), ("annular_fissure", ("present",), _LOW_CERVICAL))
_BACK_HERNIATION = (
    ("protrusion", ("moderate",), _HERNIATION_LEVELS), ("annular_fissure", ("present",), _HERNIATION_LEVELS),
    ("desiccation", ("severe",), _HERNIATION_LEVELS),
)
_THORACIC_COLLAPSE = (
    ("desiccation", ("severe", "near_complete", "near_complete"), -1), ("disc_bulge", ("moderate",), -1),
    ("endplate_change", ("present",), -1), ("annular_fissure", ("present",), -1),
    ("desiccation", ("severe",), -2), ("protrusion", ("mild",), -2),
    ("desiccation", ("moderate",), 0), ("protrusion", ("moderate",), 0), ("endplate_change", ("present",), 0),
)

STRUCTURAL_PATTERNS: tuple[AtypicalPattern, ...] = (
    # Degenerative spondylolisthesis: the slipped segment's disc collapses (vacuum disc) and bulges
    # beyond the slip (pseudo-bulge); the segment above takes the load. Commoner with age and in women.
    AtypicalPattern("spondylolisthesis", 0.02, 0.3, {"L3": 1, "L4": 6, "L5": 1}, (
        ("spondylolisthesis", ("mild", "mild", "mild", "moderate"), 0), *_LUMBAR_SEGMENT,
    ), female_odds_ratio=1.8, name="degenerative spondylolisthesis"),
    # Isthmic spondylolisthesis: a pars defect from youth; the disc below the slip degenerates early.
    AtypicalPattern("spondylolisthesis", 0.063, 0.0, {"L5": 1}, (
        ("spondylolisthesis", ("mild", "mild", "moderate"), 0), *_LUMBAR_SEGMENT,
    ), name="isthmic spondylolisthesis"),
    # Canal stenosis at a collapsed or spondylotic segment.
    AtypicalPattern("spinal_stenosis", 0.005, 0.5, {"L3": 2, "L4": 3}, (
        ("spinal_stenosis", ("mild", "moderate", "severe"), 0), *_LUMBAR_SEGMENT,
    ), name="lumbar canal stenosis"),
    AtypicalPattern("spinal_stenosis", 0.004, 0.5, _LOW_CERVICAL, (
        ("spinal_stenosis", ("mild", "moderate", "severe"), 0), *_CERVICAL_SEGMENT,
    ), name="cervical canal stenosis"),
    # Compressive myelopathy: cord signal change under a spondylotic segment.
    AtypicalPattern("cord_abnormality", 0.02, 0.4, _LOW_CERVICAL, (
        ("cord_abnormality", ("present",), 0), *_CERVICAL_SEGMENT,
    ), name="compressive myelopathy"),
    # A developmentally narrow canal, made tight by a spondylotic segment.
    AtypicalPattern("congenital_canal_narrowing", 0.032, 0.0, _LOW_CERVICAL, (
        ("congenital_canal_narrowing", ("present",), None), *_CERVICAL_SEGMENT,
    ), name="congenitally narrow canal"),
    # A hyperextension injury: prevertebral oedema in front of a torn, extruded cervical disc.
    AtypicalPattern("soft_tissue_edema", 0.012, 0.0, _LOW_CERVICAL, (
        ("soft_tissue_edema", ("present",), 0), ("extrusion", ("mild",), 0), *_CERVICAL_HERNIATION, *_BACK_HERNIATION,
    ), name="cervical hyperextension injury"),
    # A vertebral body lesion reaching the endplates, the discs beside it reacting.
    AtypicalPattern("bone_lesion", 0.006, 0.3, {lv: 1.0 for lv in ("T8", "T9", "T10", "T11", "T12")}, (
        ("bone_lesion", ("present",), 0), *_THORACIC_COLLAPSE,
    ), name="vertebral body lesion"),
)
"""The structural pathologies, each with the findings that come with it where it sits."""

FRACTURE_PATTERN = AtypicalPattern("fracture", None, 0.0, FRACTURE_LEVEL_WEIGHTS, (
    ("fracture", ("mild", "moderate", "severe"), 0), *_THORACIC_COLLAPSE,
), name="osteoporotic vertebral fracture")
"""A prevalent vertebral fracture (drawn by the outcomes model, graded by Genant): its broken
endplates and the discs beside it, the one above pushed into it."""

FOCAL_COMPLEXES: tuple[AtypicalPattern, ...] = (
    # A collapsed lumbar segment without a slip: a vacuum disc with Modic changes.
    AtypicalPattern("focal: collapsed lumbar segment", 0.025, 0.0, {"L3": 1, "L4": 2, "L5": 2}, _LUMBAR_SEGMENT),
    AtypicalPattern("focal: lumbar disc herniation", 0.04, 0.0, {"L4": 1, "L5": 1}, (
        ("protrusion", ("moderate",), 0), ("extrusion", ("mild",), -1), *_LUMBAR_HERNIATION, *_NECK_HERNIATION,
    )),
    AtypicalPattern("focal: lumbar disc extrusion", 0.04, 0.0, {"L4": 1, "L5": 1}, (
        ("extrusion", ("moderate",), 0), ("protrusion", ("moderate",), -1), *_LUMBAR_HERNIATION, *_NECK_HERNIATION,
    )),
    AtypicalPattern("focal: cervical disc extrusion", 0.025, 0.0, _LOW_CERVICAL, (
        ("extrusion", ("moderate",), 0), *_CERVICAL_HERNIATION, *_BACK_HERNIATION,
    )),
    AtypicalPattern("focal: cervical spondylotic segment", 0.03, 0.2, _LOW_CERVICAL, _CERVICAL_SEGMENT),
    AtypicalPattern("focal: thoracic disc herniation", 0.03, 0.0, {f"T{i}": 1.0 for i in range(6, 12)}, (
        *_THORACIC_COLLAPSE, ("protrusion", ("severe",), -1),
    )),
    # Scheuermann-type change: endplate irregularity and early desiccation over three thoracic discs.
    AtypicalPattern("focal: multilevel thoracic endplate changes", 0.045, 0.0, {"T6": 1, "T7": 1, "T8": 1, "T9": 1}, (
        *_THORACIC_COLLAPSE, ("endplate_change", ("present",), 1), ("desiccation", ("moderate",), 1),
    )),
)
"""The focal lesion complexes: findings at one disc (or a few neighbouring ones) that
age-typical spines of any age never combine, a herniated or worn disc with its companions."""

ATYPICAL_PATTERNS: tuple[AtypicalPattern, ...] = (FRACTURE_PATTERN, *STRUCTURAL_PATTERNS, *FOCAL_COMPLEXES)
"""Every atypical pattern, in the order of the subject's draws (:attr:`SubjectLatents.atypical`)."""

COMMON_VARIANTS: tuple[str, ...] = ("scoliosis", "kyphosis_or_lordosis", "tarlov_cyst", "transitional_vertebra")
"""Findings that are common variants: they never make a spine atypical by themselves."""


@dataclass(frozen=True)
class SubjectLatents:
    """The random parts of one subject's degeneration, fixed for life.

    Args:
        levels: vertebrae present, top to bottom.
        susceptibility: subject-wide shift of the degeneration load.
        disc_noise: per-disc shift of the load.
        uniforms: per disc, uniform draws deciding its age-typical findings (:data:`_DISC_DRAWS`).
        atypical: per atypical pattern (:data:`ATYPICAL_PATTERNS`), uniform draws for
            (presence, anchor level, severity).
        variants: per common variant, uniform draws for (presence, level, grade).
    """

    levels: tuple[str, ...]
    susceptibility: float
    disc_noise: np.ndarray
    uniforms: np.ndarray
    atypical: np.ndarray
    variants: np.ndarray


_DISC_DRAWS = ("desiccation", "disc_osteophyte_complex", "protrusion", "disc_bulge", "uncovertebral_osteophyte")
_VARIANTS = ("scoliosis", "kyphosis_or_lordosis", "tarlov_cyst")


SUSCEPTIBILITY_SD = 0.45
"""SD of a subject's lifelong shift of every disc's degeneration load (0.6 is ten years of ageing)."""

DISC_NOISE_SD = 0.45
"""SD of a disc's lifelong shift of its degeneration load (which discs wear first in a spine)."""


def draw_latents(levels: list[str], rng: np.random.Generator) -> SubjectLatents:
    """Draw a subject's lifelong degeneration latents."""
    n = len(levels)
    return SubjectLatents(
        levels=tuple(levels),
        susceptibility=float(rng.normal(0.0, SUSCEPTIBILITY_SD)),
        disc_noise=rng.normal(0.0, DISC_NOISE_SD, size=n),
        uniforms=rng.uniform(size=(n, len(_DISC_DRAWS))),
        atypical=rng.uniform(size=(len(ATYPICAL_PATTERNS), 3)),
        variants=rng.uniform(size=(len(_VARIANTS), 3)),
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
    """All findings of one scan: age-typical degeneration, atypical patterns, common variants.

    Args:
        latents: the subject's lifelong random parts.
        bio_age: biological spine age at the scan.
        sex: "F" or "M" (spondylolisthesis is commoner in women).
        prevalent_fracture: whether the subject has a vertebral fracture (from the outcomes model).
        fracture_grade: its Genant grade 1-3.

    Returns:
        Dicts with level, condition and severity, one per (level, condition), in a
        fixed order; findings of an atypical pattern also carry ``atypical``, the
        pattern's reason (see :func:`atypical_reasons`).
    """
    findings = _typical_findings(latents, disc_loads(latents, bio_age))
    for k, pattern in enumerate(ATYPICAL_PATTERNS):
        u_present, u_level, u_grade = latents.atypical[k]
        if pattern is FRACTURE_PATTERN:
            if not prevalent_fracture:
                continue
            u_grade = (min(max(fracture_grade, 1), 3) - 0.5) / 3.0
        elif u_present >= pattern.probability(bio_age, sex):
            continue
        findings = _overlay(findings, _pattern_findings(pattern, latents.levels, u_level, u_grade))
    findings += _variant_findings(latents, bio_age)
    order = {level: i for i, level in enumerate(latents.levels)}
    return sorted(findings, key=lambda f: (order.get(f["level"], -1), f["condition"]))


def atypical_reasons(findings: list[dict]) -> list[str]:
    """Why a scan is atypical for its age: its structural pathologies and focal complexes, sorted.

    An empty list means a typical spine. Every structural pathology counts, whether or not a
    finding carries its reason (a findings table read back from a report carries none).

    Example:
        >>> atypical_reasons([{"level": "L4", "condition": "spondylolisthesis", "severity": "mild"},
        ...                   {"level": "L5", "condition": "extrusion", "severity": "moderate",
        ...                    "atypical": "focal: lumbar disc extrusion"},
        ...                   {"level": "", "condition": "scoliosis", "severity": "mild"}])
        ['focal: lumbar disc extrusion', 'spondylolisthesis']
    """
    reasons = {f["atypical"] for f in findings if f.get("atypical")}
    reasons |= {f["condition"] for f in findings if f["condition"] in PATHOLOGIES}
    return sorted(reasons)


def _f(level: str, condition: str, severity: str) -> dict:
    return {"level": level, "condition": condition, "severity": severity}


TYPICAL_ONSET: dict[str, tuple[float, ...]] = {
    "desiccation": (0.2, 1.1),
    "lumbar_bulge": (-0.6, 1.1),
    "bulge": (1.0, 1.1),
    "lumbar_protrusion": (1.6,),
    "disc_osteophyte_complex": (1.0, 1.2),
    "uncovertebral_osteophyte": (1.0, 1.3),
}
"""Disc loads of the age-typical findings: where a finding is as likely as not, then where it turns moderate.

Desiccation grades by the load itself (give or take a lifelong draw); lumbar
and other bulges, lumbar protrusions, cervical disc-osteophyte complexes and
uncovertebral osteophytes appear with a probability that rises with the load
(logistic curves centred at the first value) and turn moderate past the second.
None is ever graded severe: severe grades belong to the atypical patterns.
"""


def _typical_findings(latents: SubjectLatents, loads: np.ndarray) -> list[dict]:
    """The age-typical degeneration of every disc: mild first, moderate with load; never severe.

    Each condition appears at a disc with a probability that rises with the
    disc's load (:data:`TYPICAL_ONSET`; one lifelong draw per disc and
    condition), so that the findings of a spine come in the order they do with
    age: lumbar bulges, then desiccation, cervical disc-osteophyte complexes and
    uncovertebral osteophytes, then moderate grades and protrusions. One contour
    abnormality per disc.
    """
    onset = TYPICAL_ONSET
    mild_or_moderate = ("mild", "moderate")
    findings: list[dict] = []
    for i, level in enumerate(latents.levels):
        region = region_of(level)
        load = loads[i]
        u = latents.uniforms[i]
        desiccation = _grade(load + 0.6 * (u[0] - 0.5), onset["desiccation"])
        if desiccation:
            findings.append(_f(level, "desiccation", mild_or_moderate[desiccation - 1]))
        bulge = onset["lumbar_bulge" if region == "lumbar" else "bulge"]
        if region == "cervical" and u[1] < expit(1.6 * (load - onset["disc_osteophyte_complex"][0])):
            grade = _grade(load, onset["disc_osteophyte_complex"][1:])
            findings.append(_f(level, "disc_osteophyte_complex", mild_or_moderate[grade]))
        elif region == "lumbar" and u[2] < expit(1.2 * (load - onset["lumbar_protrusion"][0])):
            findings.append(_f(level, "protrusion", "mild"))
        elif u[3] < expit(2.2 * (load - bulge[0])):
            findings.append(_f(level, "disc_bulge", mild_or_moderate[_grade(load, bulge[1:])]))
        if region == "cervical" and level != "C2" and u[4] < expit(1.8 * (load - onset["uncovertebral_osteophyte"][0])):
            grade = _grade(load, onset["uncovertebral_osteophyte"][1:])
            findings.append(_f(level, "uncovertebral_osteophyte", mild_or_moderate[grade]))
    return findings


_CONTOUR = ("disc_bulge", "protrusion", "extrusion", "disc_osteophyte_complex")


def _pick(levels: tuple[str, ...], weights: dict[str, float], u: float) -> str:
    """Choose a level by weights with one uniform draw (deterministic given ``u``)."""
    candidates = [level for level in levels if level in weights]
    w = np.array([weights[level] for level in candidates], float)
    return candidates[min(int(np.searchsorted(np.cumsum(w) / w.sum(), u)), len(candidates) - 1)]


def _pattern_findings(pattern: AtypicalPattern, levels: tuple[str, ...], u_level: float, u_grade: float) -> list[dict]:
    """The findings of one atypical pattern, each carrying its reason."""
    anchor = levels.index(_pick(levels, pattern.levels, u_level))
    out = []
    for condition, severities, where in pattern.parts:
        severity = severities[min(int(u_grade * len(severities)), len(severities) - 1)]
        if where is None:
            level = ""
        elif isinstance(where, dict):
            level = _pick(levels, where, u_level)
        else:
            level = levels[min(max(anchor + where, 0), len(levels) - 1)]
        out.append({**_f(level, condition, severity), "atypical": pattern.reason})
    return out


def _overlay(findings: list[dict], pattern: list[dict]) -> list[dict]:
    """Add a pattern's findings to a scan's: one finding per (level, condition), one contour per disc.

    A pattern's contour abnormality replaces the disc's own; its other findings
    keep the worse of the two grades, and the kept finding carries the pattern's
    reason either way (the finding belongs to the pattern too).
    """
    by_key = {(f["level"], f["condition"]): f for f in findings}
    for finding in pattern:
        level, condition = finding["level"], finding["condition"]
        if condition in _CONTOUR:
            own = [by_key.pop((level, other)) for other in _CONTOUR if (level, other) in by_key]
            worse = [f for f in own if f["condition"] == condition and SEVERITY_ORDINAL[f["severity"]] > SEVERITY_ORDINAL[finding["severity"]]]
            if worse:  # another pattern's worse contour of the same kind stays
                finding = {**worse[0], "atypical": worse[0].get("atypical") or finding["atypical"]}
        elif (level, condition) in by_key:
            kept = by_key[(level, condition)]
            if SEVERITY_ORDINAL[kept["severity"]] >= SEVERITY_ORDINAL[finding["severity"]]:
                finding = {**kept, "atypical": kept.get("atypical") or finding["atypical"]}
        by_key[(level, condition)] = finding
    return list(by_key.values())


def _variant_findings(latents: SubjectLatents, bio_age: float) -> list[dict]:
    """Common variants: scoliosis and kyphosis or lordosis (commoner with age), Tarlov cysts, transitional vertebrae."""
    levels = latents.levels
    old = (bio_age - 50.0) / 10.0
    probability = {
        "scoliosis": expit(-1.75 + 0.45 * old),
        "kyphosis_or_lordosis": expit(-0.7 + 0.4 * old),
        "tarlov_cyst": 0.07,
    }
    out: list[dict] = []
    for k, name in enumerate(_VARIANTS):
        u_present, u_level, u_grade = latents.variants[k]
        if u_present >= probability[name]:
            continue
        if name == "scoliosis":
            apex = _pick(levels, {"T8": 1, "T10": 2, "T12": 2, "L1": 2, "L2": 2}, u_level)
            out.append(_f(apex, name, ("mild", "moderate", "severe")[_grade(u_grade, (0.7, 0.93))]))
        else:
            out.append(_f("", name, "present"))
    for level in levels:
        if level in ("T13", "L6"):
            out.append(_f(level, "transitional_vertebra", "present"))
    return out
