"""The findings vocabulary shared by the phantom, the report reader and the cohort.

Everything here is fixed by ``shared/docs/DESIGN.md``: the 26 vertebral levels,
the 8 degenerative conditions with their severities (20 condition-severity
pairs), the 7 structural and canal pathologies, the other findings kept for the
SAG analysis, and the age brackets. Disc findings are keyed by the vertebra
above the disc (C5/6 is ``C5``).

Example:
    >>> from spineage.findings.vocabulary import LEVELS, region_of
    >>> len(LEVELS), region_of("T13")
    (26, 'thoracic')
"""

from __future__ import annotations

REGIONS: tuple[str, ...] = ("cervical", "thoracic", "lumbar")

CERVICAL_LEVELS: tuple[str, ...] = tuple(f"C{i}" for i in range(2, 8))
THORACIC_LEVELS: tuple[str, ...] = tuple(f"T{i}" for i in range(1, 14))
LUMBAR_LEVELS: tuple[str, ...] = tuple(f"L{i}" for i in range(1, 8))
LEVELS: tuple[str, ...] = CERVICAL_LEVELS + THORACIC_LEVELS + LUMBAR_LEVELS
"""The 26 levels, top to bottom; T13, L6 and L7 exist only in supernumerary spines."""

SUPERNUMERARY_LEVELS: frozenset[str] = frozenset({"T13", "L6", "L7"})

DEGENERATIVE_SEVERITIES: dict[str, tuple[str, ...]] = {
    "disc_bulge": ("mild", "moderate", "severe"),
    "disc_osteophyte_complex": ("mild", "moderate", "severe"),
    "uncovertebral_osteophyte": ("mild", "moderate", "severe"),
    "protrusion": ("mild", "moderate", "severe"),
    "extrusion": ("mild", "moderate"),
    "desiccation": ("mild", "moderate", "severe", "near_complete"),
    "endplate_change": ("present",),
    "annular_fissure": ("present",),
}
DEGENERATIVE_CONDITIONS: tuple[str, ...] = tuple(DEGENERATIVE_SEVERITIES)

CONDITION_SEVERITY_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (condition, severity)
    for condition, severities in DEGENERATIVE_SEVERITIES.items()
    for severity in severities
)
"""The 20 condition-severity pairs counted per region in the region vector."""

PATHOLOGIES: tuple[str, ...] = (
    "bone_lesion",
    "congenital_canal_narrowing",
    "cord_abnormality",
    "fracture",
    "soft_tissue_edema",
    "spinal_stenosis",
    "spondylolisthesis",
)
"""Structural and canal pathologies: one presence flag per scan in the feature vectors."""

OTHER_FINDINGS: tuple[str, ...] = (
    "scoliosis",
    "kyphosis_or_lordosis",
    "transitional_vertebra",
    "tarlov_cyst",
)
"""Findings kept for the SAG analysis but not clustered on."""

PATHOLOGY_SEVERITIES: tuple[str, ...] = ("present", "mild", "moderate", "severe")
"""Severities allowed for pathologies and other findings (``present`` when ungraded)."""

ALL_CONDITIONS: tuple[str, ...] = DEGENERATIVE_CONDITIONS + PATHOLOGIES + OTHER_FINDINGS

SEVERITY_ORDINAL: dict[str, int] = {
    "present": 1,
    "mild": 1,
    "moderate": 2,
    "severe": 3,
    "near_complete": 4,
}
"""Severity as an ordinal, used in the level vector (0 means absent)."""

BRACKETS: dict[int, tuple[int, int]] = {
    30: (25, 34),
    40: (35, 44),
    50: (45, 54),
    60: (55, 64),
    70: (65, 74),
    80: (75, 84),
}
"""Age brackets of the MRI paper: bracket label -> inclusive (low, high) age in whole years."""

MODALITIES: tuple[str, ...] = ("mri_t2_sag", "xray_lat", "dxa_vfa")


def region_of(level: str) -> str:
    """Return the region (cervical, thoracic or lumbar) of a vertebral level.

    Args:
        level: a level of :data:`LEVELS`, e.g. ``"C5"``.

    Raises:
        ValueError: if ``level`` is not one of the 26 levels.
    """
    if level in CERVICAL_LEVELS:
        return "cervical"
    if level in THORACIC_LEVELS:
        return "thoracic"
    if level in LUMBAR_LEVELS:
        return "lumbar"
    raise ValueError(f"Expected a vertebral level from C2 to L7, found {level!r}")


def bracket_of(age: float) -> int | None:
    """Return the age bracket (30, 40, ..., 80) holding ``age``, or None outside 25-84.

    Brackets are 10 years wide and centred on their label: 35 <= age < 45 is 40.
    """
    if age < 25 or age >= 85:
        return None
    return int(min(80, max(30, 10 * ((age + 5) // 10))))


def check_finding(condition: str, severity: str, level: str | None) -> None:
    """Raise ValueError if a (condition, severity, level) triple is outside the vocabulary.

    Degenerative conditions need one of the 26 levels and one of their own
    severities; pathologies and other findings take an optional level and a
    severity of :data:`PATHOLOGY_SEVERITIES`.
    """
    if condition in DEGENERATIVE_SEVERITIES:
        allowed = DEGENERATIVE_SEVERITIES[condition]
        if severity not in allowed:
            raise ValueError(
                f"Expected a severity of {condition} among {allowed}, found {severity!r}"
            )
        if level not in LEVELS:
            raise ValueError(f"Expected a level from C2 to L7 for {condition}, found {level!r}")
        return
    if condition in PATHOLOGIES or condition in OTHER_FINDINGS:
        if severity not in PATHOLOGY_SEVERITIES:
            raise ValueError(
                f"Expected a severity of {condition} among {PATHOLOGY_SEVERITIES}, found {severity!r}"
            )
        if level not in (None, "") and level not in LEVELS:
            raise ValueError(f"Expected a level from C2 to L7 or none for {condition}, found {level!r}")
        return
    raise ValueError(f"Unknown finding {condition!r}; expected one of {ALL_CONDITIONS}")
