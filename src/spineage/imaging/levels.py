"""Vertebral levels for a segmentation without them: discs counted up from the sacrum.

The segmenter labels every vertebra 100 and every disc 130 (:mod:`spineage.labels`);
a radiologist names them by counting from a landmark. :func:`assign_levels` does
the same from the one landmark a sagittal scan of the low back or the whole spine
holds: the sacrum, the bone below the last disc. With the sacrum in view, the
lowest disc is L5/S1 and every disc above it takes the next level up (L4/L5,
L3/L4, ... C2/C3); each vertebra voxel takes the level of the body between the
two discs it lies between, measured along the spine's own axis (the line through
neighbouring discs, so a curved spine is followed); bone farther from that axis
than the discs reach (the posterior elements) takes the code of the nearest
bone near the axis counted in steps through the bone, where the lower level wins
a tie, since a thoracic spinous process slopes down past the body below; and
bone below L5/S1 is the sacrum (bone that runs on below the lowest disc for more than a disc spacing:
a vertebral body would end at the next disc). Counting stops at a gap wider than
:data:`MAX_GAP_FACTOR` times its neighbouring gaps (a disc the segmenter missed
would shift every name above it), and bone near the axis beyond the last named
disc keeps the unlevelled code.

Without the sacrum in view (a cervical crop, a thoracic scan) nothing is named:
the answer says so. Like counting by eye, a spine with a transitional vertebra
(a sixth lumbar or a thirteenth thoracic vertebra) is named one level off above
it; the phantom draws them in 6 % of subjects.

Example:
    >>> import numpy as np
    >>> from spineage.labels import LABEL_NAMES
    >>> labels = np.zeros((5, 5, 60), np.uint8)
    >>> labels[:, :, :20] = 100                       # the sacrum
    >>> for z in (20, 30, 40): labels[:, :, z:z + 2] = 130; labels[:, :, z + 2:z + 10] = 100
    >>> levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    >>> levelled.reason, levelled.discs
    ('', ('disc_L3', 'disc_L4', 'disc_L5'))
    >>> [LABEL_NAMES[int(levelled.labels[2, 2, z])] for z in (5, 21, 25, 35, 45)]
    ['sacrum', 'disc_L5', 'L5', 'L4', 'L3']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spineage.findings.vocabulary import LEVELS, SUPERNUMERARY_LEVELS
from spineage.labels import (
    DISC_LABELS,
    FIRST_DISC_LABEL,
    FIRST_VERTEBRA_LABEL,
    LABEL_NAMES,
    SACRUM_LABEL,
    UNLEVELLED_DISC,
    UNLEVELLED_VERTEBRA,
    VERTEBRA_LABELS,
)

USUAL_LEVELS: tuple[str, ...] = tuple(level for level in LEVELS if level not in SUPERNUMERARY_LEVELS)
"""C2 to L5: the levels counted, top to bottom (a spine without transitional vertebrae)."""

MIN_DISC_ML: float = 0.15
"""A disc piece smaller than this (ml) is a speck, not a disc."""

SACRUM_GAP_FACTOR: float = 1.0
"""Bone must reach this many disc spacings below the lowest disc, along the spine, to be the sacrum.

A vertebral body below the lowest disc ends at the next disc, within one spacing (or
at the edge of the field of view, sooner); the sacrum runs on for 8-10 cm. The
spacing is the one just above the lowest disc (on the real lumbar scan 34.5 mm,
with 36.9 mm of sacrum in view)."""

USUAL_SPACING_MM: float = 35.0
"""The disc spacing assumed where fewer than two discs give one (a lumbar level)."""

MAX_GAP_FACTOR: float = 1.8
"""Counting stops at a gap between discs wider than this times the median of its neighbouring gaps (a missed disc)."""

SPLIT_GAP_FACTOR: float = 0.4
"""Disc pieces closer from top to bottom than this times the median such distance are one disc cut in two."""

SACRAL_REMNANT_SHARE: float = 0.35
"""A bottom piece under this share of the largest of the three discs above it is a sacral remnant, not L5/S1."""


@dataclass(frozen=True)
class Levels:
    """A label map with levels where they could be inferred.

    Attributes:
        labels: the map in the phantom's level codes where named (vertebrae 1-26, sacrum 27,
            discs 31-56), 100 and 130 where not, the canal and cord unchanged.
        discs: the names of the discs named, top to bottom (``disc_L4`` is L4/L5).
        reason: why nothing (or not everything) was named; empty when every disc was.
    """

    labels: np.ndarray
    discs: tuple[str, ...]
    reason: str


def without_levels(labels: np.ndarray) -> np.ndarray:
    """A levelled label map with its levels taken away: every vertebra and the sacrum 100, every disc 130 (a copy).

    What the segmenter writes, so that :func:`assign_levels` can be checked against a map whose levels are known.
    """
    out = np.array(labels, copy=True)
    out[np.isin(labels, [*VERTEBRA_LABELS, SACRUM_LABEL])] = UNLEVELLED_VERTEBRA
    out[np.isin(labels, list(DISC_LABELS))] = UNLEVELLED_DISC
    return out


def _disc_pieces(labels: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The disc pieces large enough to count, inferior first: (centres in mm, their piece numbers, the piece map)."""
    from scipy import ndimage

    pieces, count = ndimage.label(labels == UNLEVELLED_DISC, structure=np.ones((3, 3, 3), dtype=bool))
    if not count:
        return np.zeros((0, 3)), np.zeros(0, dtype=int), pieces
    indices = np.arange(1, count + 1)
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:] * float(np.prod(spacing)) / 1000.0
    centres = np.asarray(ndimage.center_of_mass(pieces > 0, pieces, indices), dtype=float) * spacing
    keep = sizes >= MIN_DISC_ML
    order = np.argsort(centres[keep][:, 2])
    centres, numbers, sizes = centres[keep][order], indices[keep][order], sizes[keep][order]
    # The sacrum's rudimentary discs sit below L5/S1 and are much smaller than the discs above;
    # a disc cut by the bottom of the field of view is small too, but it is a disc.
    lowest_slice = ndimage.minimum(np.broadcast_to(np.arange(labels.shape[2]), labels.shape), pieces, numbers) if len(numbers) else []
    cut = {number: low == 0 for number, low in zip(numbers, np.atleast_1d(lowest_slice))}
    while len(sizes) > 1 and sizes[0] < SACRAL_REMNANT_SHARE * sizes[1:4].max() and not cut[numbers[0]]:
        centres, numbers, sizes = centres[1:], numbers[1:], sizes[1:]
    # A disc the segmenter cut in two is one disc: join pieces much closer from top to bottom than discs usually are.
    if len(centres) >= 2:
        usual = float(np.median(np.diff(centres[:, 2]))) if len(centres) > 2 else USUAL_SPACING_MM
        groups = [[0]]
        for i in range(1, len(centres)):
            if centres[i, 2] - centres[groups[-1][-1], 2] < SPLIT_GAP_FACTOR * usual:
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            pieces[np.isin(pieces, numbers[group])] = numbers[group[0]]
        centres = np.asarray([np.average(centres[g], axis=0, weights=sizes[g]) for g in groups])
        numbers = np.asarray([numbers[g[0]] for g in groups])
    return centres, numbers, pieces


def _axes(centres: np.ndarray) -> np.ndarray:
    """The spine's direction (unit, inferior to superior) at each disc: through its neighbours."""
    before = np.vstack([centres[:1], centres[:-1]])
    after = np.vstack([centres[1:], centres[-1:]])
    direction = after - before
    direction[np.linalg.norm(direction, axis=1) == 0] = (0.0, 0.0, 1.0)
    return direction / np.linalg.norm(direction, axis=1, keepdims=True)


def _disc_radii(pieces: np.ndarray, numbers: np.ndarray, centres: np.ndarray, axes: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Each named disc's radius (mm): the 95th percentile of its voxels' distances from the spine's axis."""
    radii = np.zeros(len(numbers))
    for k, number in enumerate(numbers):
        offsets = np.argwhere(pieces == number) * spacing - centres[k]
        across = offsets - np.outer(offsets @ axes[k], axes[k])
        radii[k] = float(np.percentile(np.linalg.norm(across, axis=1), 95)) if len(offsets) else 0.0
    return radii


def _off_axis(bone_mm: np.ndarray, centres: np.ndarray, axes: np.ndarray, nearest: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Which bone voxels lie farther from the spine's axis than the radius of their nearest disc."""
    offsets = bone_mm - centres[nearest]
    across = offsets - np.einsum("ij,ij->i", offsets, axes[nearest])[:, None] * axes[nearest]
    return np.linalg.norm(across, axis=1) > radii[nearest]


def _grown_from_bodies(bone: np.ndarray, codes: np.ndarray, far: np.ndarray) -> np.ndarray:
    """The far bone voxels' codes taken from the nearest bone near the axis, in steps through the bone.

    A step reaches any of the 26 neighbours (thin processes touch at edges and corners);
    where two codes arrive in the same step the larger wins (the lower level, the sacrum, or
    100 for unlevelled bone). Far voxels nothing reaches (a separate piece of bone) keep the
    code they had.
    """
    from scipy import ndimage

    low = bone.min(axis=0)
    box = tuple(int(n) for n in bone.max(axis=0) - low + 1)
    local = bone - low
    grid = np.zeros(box, dtype=np.int16)  # 0: not bone, or not reached yet
    grid[tuple(local[~far].T)] = codes[~far]
    waiting = np.zeros(box, dtype=bool)
    waiting[tuple(local[far].T)] = True
    step = np.ones((3, 3, 3), dtype=bool)
    while True:
        grown = ndimage.grey_dilation(grid, footprint=step)
        reached = waiting & (grown > 0)
        if not reached.any():
            break
        grid[reached] = grown[reached]
        waiting &= ~reached
    taken = grid[tuple(local[far].T)]
    result = codes.copy()
    result[far] = np.where(taken > 0, taken, codes[far])
    return result


def assign_levels(labels: np.ndarray, spacing: Sequence[float]) -> Levels:
    """Name the discs and vertebrae of an unlevelled label map by counting up from the sacrum (module docstring).

    Args:
        labels: a label map in :mod:`spineage.labels` codes (100 vertebra, 130 disc, 60, 61),
            canonical RAS (the third axis runs inferior to superior).
        spacing: voxel size (mm) per axis.

    Returns:
        The :class:`Levels`; ``labels`` is a new array, the input is not changed.
    """
    spacing = np.asarray(spacing, dtype=float)
    out = np.array(labels, copy=True)
    centres, numbers, pieces = _disc_pieces(out, spacing)
    if len(centres) == 0:
        return Levels(out, (), "no disc found: levels are counted from the sacrum up")
    bone = np.argwhere(out == UNLEVELLED_VERTEBRA)
    if not len(bone):
        return Levels(out, (), "no vertebra found: levels are counted from the sacrum up")
    bone_mm = bone * spacing
    axes = _axes(centres)
    gaps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    along_lowest = (bone_mm - centres[0]) @ axes[0]
    if -along_lowest.min() < SACRUM_GAP_FACTOR * (gaps[0] if len(gaps) else USUAL_SPACING_MM):
        return Levels(out, (), "no sacrum in view below the lowest disc: levels are counted from the sacrum up")
    named = len(centres)
    reason = ""
    if len(gaps) >= 2:
        # Each gap against its neighbours' (discs are closer in the neck than in the low back).
        local = np.asarray([np.median(np.delete(gaps[max(0, i - 2) : i + 3], min(i, 2))) for i in range(len(gaps))])
        wide = np.flatnonzero(gaps > MAX_GAP_FACTOR * local)
        if len(wide):
            named = int(wide[0]) + 1
            reason = f"a gap between discs {named} and {named + 1} from the bottom (a missed disc?): the discs above it are not named"
    if named > len(USUAL_LEVELS):
        named = len(USUAL_LEVELS)
        reason = f"more discs than the {len(USUAL_LEVELS)} of a usual spine: the ones above C2/C3 are not named"
    centres, axes = centres[:named], axes[:named]
    # The level of the body above disc k (k = 0 is L5/S1) and the level index in LEVELS.
    upper = [LEVELS.index(USUAL_LEVELS[len(USUAL_LEVELS) - 1 - k]) for k in range(named)]

    # Each bone voxel: its nearest named disc, and which side of it along the spine.
    from scipy.spatial import cKDTree

    nearest = cKDTree(centres).query(bone_mm)[1]
    above = np.einsum("ij,ij->i", bone_mm - centres[nearest], axes[nearest]) > 0
    codes = np.full(len(bone), UNLEVELLED_VERTEBRA, dtype=out.dtype)
    top_spacing = float(gaps[named - 2]) if named >= 2 else USUAL_SPACING_MM  # the spacing below the top named disc
    for k in range(named):
        mine_above = (nearest == k) & above
        if k == named - 1:  # above the top named disc: its upper body only within about one level's height
            mine_above &= np.einsum("ij,j->i", bone_mm - centres[k], axes[k]) <= 1.1 * top_spacing
        codes[mine_above] = FIRST_VERTEBRA_LABEL + upper[k]
        below = (nearest == k) & ~above
        codes[below] = SACRUM_LABEL if k == 0 else FIRST_VERTEBRA_LABEL + upper[k - 1]
    # Bone well off the discs' axis (the posterior elements) belongs to the body it grows out of:
    # a thoracic spinous process slopes down past the body below, where the count along the axis
    # would name it.
    far = _off_axis(bone_mm, centres, axes, nearest, _disc_radii(pieces, numbers[:named], centres, axes, spacing))
    if far.any() and not far.all():
        codes = _grown_from_bodies(bone, codes, far)
    out[tuple(bone.T)] = codes

    for number, level in zip(numbers[:named], upper):
        out[pieces == number] = FIRST_DISC_LABEL + level
    names = tuple(LABEL_NAMES[FIRST_DISC_LABEL + level] for level in reversed(upper))
    return Levels(out, names, reason)
