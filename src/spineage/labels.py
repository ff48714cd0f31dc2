"""The label-map codes: the one place that says which number is which structure.

A spine label map (the phantom's, a user's manual one, or the segmenter's) codes
each voxel:

=========  =====================================================
code       structure
=========  =====================================================
0          background
1-26       vertebrae C2 ... L7 (in the order of ``LEVELS``)
27         sacrum
31-56      the disc below each vertebra (31 = C2/3)
60         canal CSF
61         cord
100        a vertebra (or the sacrum) whose level is not identified
130        a disc whose level is not identified
=========  =====================================================

The last two are what segmentation without levels writes. The phantom, the
masking, the segmenter and the gates all import these names from here.

Example:
    >>> vertebra_label("C2"), disc_label("L5"), LABEL_NAMES[60]
    (1, 54, 'canal_csf')
    >>> sorted(KNOWN_LABEL_CODES - set(LABEL_NAMES))
    [0, 100, 130]
"""

from __future__ import annotations

from spineage.findings.vocabulary import LEVELS

BACKGROUND = 0
FIRST_VERTEBRA_LABEL = 1
"""C2; the vertebrae run 1-26 in the order of ``LEVELS``."""
SACRUM_LABEL = 27
FIRST_DISC_LABEL = 31
"""The disc below C2; the discs run 31-56."""
CANAL_LABEL = 60
CORD_LABEL = 61
UNLEVELLED_VERTEBRA = 100
"""A vertebra (or the sacrum) whose level is not identified."""
UNLEVELLED_DISC = 130
"""A disc whose level is not identified."""

VERTEBRA_LABELS: range = range(FIRST_VERTEBRA_LABEL, FIRST_VERTEBRA_LABEL + len(LEVELS))
DISC_LABELS: range = range(FIRST_DISC_LABEL, FIRST_DISC_LABEL + len(LEVELS))

LABEL_NAMES: dict[int, str] = {
    **{FIRST_VERTEBRA_LABEL + i: level for i, level in enumerate(LEVELS)},
    **{FIRST_DISC_LABEL + i: f"disc_{level}" for i, level in enumerate(LEVELS)},
    SACRUM_LABEL: "sacrum",
    CANAL_LABEL: "canal_csf",
    CORD_LABEL: "cord",
}
"""The named structures of a levelled label map (the phantom's)."""

KNOWN_LABEL_CODES: frozenset[int] = frozenset({BACKGROUND, *LABEL_NAMES, UNLEVELLED_VERTEBRA, UNLEVELLED_DISC})
"""Every code a spine label map may hold."""


def vertebra_label(level: str) -> int:
    """The label code of a vertebra."""
    return LEVELS.index(level) + FIRST_VERTEBRA_LABEL


def disc_label(level: str) -> int:
    """The label code of the disc below a vertebra."""
    return LEVELS.index(level) + FIRST_DISC_LABEL
