"""The phantom's spine as numbers: vertebrae, discs, curves and their pathology.

A :class:`SpineAnatomy` is everything the renderers need to draw one spine at
one moment of its life. It is built from a subject (body size, biological age,
bone density) and the findings drawn for that scan, so that every finding in
``findings.csv`` has a geometric cause in the image.

Coordinates are millimetres in a *spine frame*: ``s`` runs down the posterior
wall of the vertebral bodies from the tip of the dens, ``d`` points anterior
from that wall (the bodies lie in ``0 <= d <= depth``, the canal behind them),
and ``x`` is left-right from the midline.

Example:
    >>> import numpy as np
    >>> anatomy = build_anatomy(height_cm=170, bio_age=40, sex="F", findings=[],
    ...                         levels=default_levels(), rng=np.random.default_rng(0))
    >>> anatomy.levels[0], anatomy.levels[-1]
    ('C2', 'L5')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spineage.findings.vocabulary import SEVERITY_ORDINAL, region_of

MARROW_FAT_PER_YEAR = 1.0 / 70.0
"""Rise of the marrow fat fraction per year of biological age from 20 (T2-bright marrow; an image ageing signal)."""

MARROW_FAT_SD = 0.01
"""SD of one scan's marrow fat fraction around its age trend (0.01 is about 0.7 years)."""

DISC_HYDRATION_LOSS_PER_YEAR = 0.005
"""Loss of disc nucleus T2 brightness per year of biological age from 20, with or without a reported finding."""

DISC_HYDRATION_AGE_FLOOR = 0.68
"""Age alone dims a disc no further than this (a reported desiccation goes lower: 0.62 to 0.08)."""

# Reference sizes (mm) for a 170 cm adult: body height, depth (AP) and width (LR) per region.
_BODY_HEIGHT = {"cervical": 14.0, "thoracic": (17.0, 24.0), "lumbar": 28.0}
_BODY_DEPTH = {"cervical": 16.0, "thoracic": (20.0, 30.0), "lumbar": 34.0}
_BODY_WIDTH = {"cervical": 22.0, "thoracic": (26.0, 40.0), "lumbar": 46.0}
_DISC_HEIGHT = {"cervical": 5.0, "thoracic": (4.0, 6.0), "lumbar": 10.0}
_CANAL_AP = {"cervical": 15.0, "thoracic": 14.0, "lumbar": 17.0}

SACRUM_LENGTH = 100.0
CONTOUR_SIZE_MM = {"disc_bulge": (2.0, 3.5, 5.0), "protrusion": (3.5, 5.5, 7.5), "extrusion": (6.0, 8.5)}
"""Posterior extent of the disc beyond the vertebral wall per severity (mild, moderate, severe)."""


def default_levels(extra: str | None = None) -> list[str]:
    """The vertebrae of a spine top to bottom: C2-C7, T1-T12, L1-L5, plus one supernumerary."""
    levels = [f"C{i}" for i in range(2, 8)] + [f"T{i}" for i in range(1, 13)]
    if extra == "T13":
        levels.append("T13")
    levels += [f"L{i}" for i in range(1, 6)]
    if extra == "L6":
        levels.append("L6")
    return levels


def _regional(table: dict, region: str, fraction: float) -> float:
    value = table[region]
    if isinstance(value, tuple):
        return value[0] + (value[1] - value[0]) * fraction
    return value


@dataclass
class Disc:
    """The disc below vertebra ``level``; sizes in mm, severities as ordinals (0 absent)."""

    level: str
    height: float
    hydration: float = 1.0  # 1 young and bright, ~0.1 near-complete desiccation
    bulge: float = 0.0  # diffuse posterior extent
    focal: float = 0.0  # protrusion/extrusion posterior extent at focal_x
    focal_x: float = 0.0
    extruded: bool = False
    osteophyte: float = 0.0  # posterior disc-osteophyte ridge
    uncovertebral: float = 0.0
    endplate_change: bool = False
    annular_fissure: bool = False
    stenosis: float = 0.0  # posterior canal wall moved forward (ligamentum flavum)


@dataclass
class Vertebra:
    """One vertebra: its level, body size (mm) and pathology."""

    level: str
    height: float
    depth: float
    width: float
    canal_ap: float
    wedge: float = 0.0  # anterior height loss as a fraction (fracture)
    lesion: bool = False
    edema: bool = False
    cord_lesion: bool = False
    listhesis: float = 0.0  # anterior slip over the vertebra below (mm)


@dataclass
class SpineAnatomy:
    """One spine at one moment: vertebrae and the discs below them, curves, body habitus."""

    vertebrae: list[Vertebra]
    discs: list[Disc]
    scale: float
    bio_age: float
    marrow_fat: float  # 0 young red marrow .. 1 fatty
    bone_density: float  # relative to a young adult (1.0)
    cervical_lordosis_deg: float
    thoracic_kyphosis_deg: float
    lumbar_lordosis_deg: float
    scoliosis_mm: float = 0.0
    scoliosis_apex: float = 0.0  # s of the apex
    canal_factor: float = 1.0
    tarlov_cyst: bool = False
    fat_mm: float = 20.0
    sex: str = "F"
    texture_seed: int = 0
    tops: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def levels(self) -> list[str]:
        """The vertebral levels, top to bottom."""
        return [v.level for v in self.vertebrae]

    def segment_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Arc-length of the top of each vertebral body and of each disc below it (mm)."""
        body_tops, disc_tops = [], []
        s = 0.0
        for vertebra, disc in zip(self.vertebrae, self.discs):
            body_tops.append(s)
            s += vertebra.height
            disc_tops.append(s)
            s += disc.height
        return np.asarray(body_tops), np.asarray(disc_tops)

    @property
    def sacrum_top(self) -> float:
        """Arc-length of the top of the sacrum (below the last disc)."""
        body_tops, disc_tops = self.segment_bounds()
        return float(disc_tops[-1] + self.discs[-1].height)

    def level_centre(self, level: str, disc: bool = False) -> float:
        """Arc-length of the centre of a vertebral body, or of the disc below it."""
        index = self.levels.index(level)
        body_tops, disc_tops = self.segment_bounds()
        if disc:
            return float(disc_tops[index] + self.discs[index].height / 2)
        return float(body_tops[index] + self.vertebrae[index].height / 2)


def build_anatomy(
    height_cm: float,
    bio_age: float,
    sex: str,
    findings: list[dict],
    levels: list[str],
    rng: np.random.Generator,
    bone_density: float = 1.0,
    fat_mm: float = 20.0,
) -> SpineAnatomy:
    """Build the spine of one scan from its subject and its findings.

    Args:
        height_cm: the subject's height; sizes scale with it.
        bio_age: biological spine age; drives marrow fat, curves and disc height.
        sex: "F" or "M" (men have larger vertebrae).
        findings: the scan's findings as dicts with level, condition, severity.
        levels: the vertebrae present, top to bottom (see :func:`default_levels`).
        rng: random source for small anatomical variation (a per-subject stream
            keeps repeat scans anatomically the same).
        bone_density: relative bone mineral density (1.0 young adult), for radiographs.
        fat_mm: subcutaneous fat thickness of the back.
    """
    scale = height_cm / 170.0 * (1.03 if sex == "M" else 1.0)
    n_thoracic = sum(1 for level in levels if level.startswith("T"))
    vertebrae, discs = [], []
    thoracic_index = 0
    for level in levels:
        region = region_of(level)
        fraction = 0.0
        if region == "thoracic":
            fraction = thoracic_index / max(1, n_thoracic - 1)
            thoracic_index += 1
        jitter = 1.0 + 0.03 * rng.standard_normal()
        height = _regional(_BODY_HEIGHT, region, fraction) * scale * jitter
        if level == "C2":
            height *= 2.0  # body plus dens
        vertebrae.append(
            Vertebra(
                level=level,
                height=height,
                depth=_regional(_BODY_DEPTH, region, fraction) * scale * jitter,
                width=_regional(_BODY_WIDTH, region, fraction) * scale * jitter,
                canal_ap=_CANAL_AP[region] * scale * (1.0 + 0.05 * rng.standard_normal()),
            )
        )
        # Discs lose a little height with age even without a reported finding.
        age_loss = 1.0 - 0.002 * max(0.0, bio_age - 30.0)
        hydration = max(DISC_HYDRATION_AGE_FLOOR, 1.0 - DISC_HYDRATION_LOSS_PER_YEAR * max(0.0, bio_age - 20.0))
        discs.append(Disc(level=level, height=_regional(_DISC_HEIGHT, region, fraction) * scale * age_loss, hydration=hydration))

    anatomy = SpineAnatomy(
        vertebrae=vertebrae,
        discs=discs,
        scale=scale,
        bio_age=bio_age,
        marrow_fat=float(np.clip(MARROW_FAT_PER_YEAR * (bio_age - 20.0) + MARROW_FAT_SD * rng.standard_normal(), 0.0, 1.0)),
        bone_density=bone_density,
        cervical_lordosis_deg=25.0 + 4.0 * rng.standard_normal() - 0.1 * max(0.0, bio_age - 40.0),
        thoracic_kyphosis_deg=32.0 + 5.0 * rng.standard_normal() + 0.3 * max(0.0, bio_age - 40.0),
        lumbar_lordosis_deg=48.0 + 6.0 * rng.standard_normal() - 0.1 * max(0.0, bio_age - 40.0),
        fat_mm=fat_mm,
        sex=sex,
        texture_seed=int(rng.integers(2**31)),
    )
    by_level = {v.level: i for i, v in enumerate(vertebrae)}
    for finding in findings:
        _apply_finding(anatomy, by_level, finding, rng)
    return anatomy


def _apply_finding(anatomy: SpineAnatomy, by_level: dict[str, int], finding: dict, rng: np.random.Generator) -> None:
    """Turn one finding into geometry (the single place where findings meet anatomy)."""
    condition, severity, level = finding["condition"], finding["severity"], finding.get("level") or ""
    grade = SEVERITY_ORDINAL[severity]
    index = by_level.get(level)
    if level and index is None:
        raise ValueError(f"Finding {condition} at {level} but the spine has no {level}")
    disc = anatomy.discs[index] if index is not None else None
    vertebra = anatomy.vertebrae[index] if index is not None else None
    side = float(rng.uniform(-0.25, 0.25))
    if condition == "desiccation":
        disc.hydration = min(disc.hydration, (0.62, 0.38, 0.2, 0.08)[grade - 1])
        disc.height *= (0.92, 0.8, 0.66, 0.5)[grade - 1]
    elif condition == "disc_bulge":
        disc.bulge = CONTOUR_SIZE_MM["disc_bulge"][grade - 1] * anatomy.scale
    elif condition in ("protrusion", "extrusion"):
        disc.focal = CONTOUR_SIZE_MM[condition][grade - 1] * anatomy.scale
        disc.focal_x = side * vertebra.width
        disc.extruded = condition == "extrusion"
    elif condition == "disc_osteophyte_complex":
        disc.osteophyte = (2.0, 3.5, 5.0)[grade - 1] * anatomy.scale
        disc.bulge = max(disc.bulge, (1.5, 2.5, 3.5)[grade - 1])
    elif condition == "uncovertebral_osteophyte":
        disc.uncovertebral = (2.0, 3.0, 4.5)[grade - 1] * anatomy.scale
    elif condition == "endplate_change":
        disc.endplate_change = True
    elif condition == "annular_fissure":
        disc.annular_fissure = True
        disc.focal_x = side * vertebra.width
    elif condition == "spinal_stenosis":
        disc.stenosis = (3.0, 5.0, 7.5)[grade - 1] * anatomy.scale
    elif condition == "fracture":
        vertebra.wedge = (0.22, 0.32, 0.45)[grade - 1]
        vertebra.height *= 1.0 - vertebra.wedge / 3
    elif condition == "bone_lesion":
        vertebra.lesion = True
    elif condition == "soft_tissue_edema":
        vertebra.edema = True
    elif condition == "cord_abnormality":
        vertebra.cord_lesion = True
    elif condition == "spondylolisthesis":
        vertebra.listhesis = (0.15, 0.35)[min(grade, 2) - 1] * vertebra.depth
    elif condition == "congenital_canal_narrowing":
        anatomy.canal_factor = 0.7
    elif condition == "scoliosis":
        anatomy.scoliosis_mm = (8.0, 16.0, 28.0)[grade - 1] * float(rng.choice([-1.0, 1.0]))
        anatomy.scoliosis_apex = anatomy.level_centre(level) if level else 300.0
    elif condition == "kyphosis_or_lordosis":
        anatomy.thoracic_kyphosis_deg += 18.0
    elif condition == "tarlov_cyst":
        anatomy.tarlov_cyst = True
    # transitional_vertebra is carried by the level list itself (T13 or L6 present).
