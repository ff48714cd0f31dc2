"""The output grid of a scan and resampling onto it: one interpolation does resample, crop and pad.

Every preprocessed scan lives on a :class:`Grid`: a fixed shape at a fixed
spacing, axis-aligned in RAS millimetres, centred on the centre of the spine
mask's bounding box (not on the centre of the scanner's field of view, which
holds the brain at one end and the pelvis at the other). Resampling maps each
output voxel back into the scan's voxels through the two affines and
interpolates there, so only the voxels that will be kept are computed, in one
pass: no full-resolution resampled volume is ever built and then cropped.

Example:
    >>> import numpy as np
    >>> grid = Grid.centred(centre_mm=(0.0, 0.0, 0.0), shape=(2, 2, 2), spacing=(4.0, 3.0, 4.0))
    >>> grid.affine[:3, 3].tolist()
    [-2.0, -1.5, -2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid in RAS millimetres.

    Args:
        shape: voxels along X (left-right), Y (posterior-anterior), Z (inferior-superior).
        affine: 4x4 map from voxel indices to RAS mm.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def centred(cls, centre_mm: Sequence[float], shape: Sequence[int], spacing: Sequence[float]) -> Grid:
        """An axis-aligned RAS grid of ``shape`` voxels of ``spacing`` mm whose centre is ``centre_mm``."""
        shape = tuple(int(n) for n in shape)
        spacing = np.asarray(spacing, dtype=np.float64)
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = np.asarray(centre_mm, dtype=np.float64) - spacing * (np.asarray(shape) - 1) / 2.0
        return cls(shape, affine)  # type: ignore[arg-type]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each axis."""
        norms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def centre_mm(self) -> np.ndarray:
        """RAS mm of the grid's centre."""
        return self.affine[:3, :3] @ ((np.asarray(self.shape) - 1) / 2.0) + self.affine[:3, 3]

    def padded(self, margin: Sequence[int]) -> Grid:
        """The same grid grown by ``margin`` voxels on both sides of each axis."""
        margin = np.asarray(margin, dtype=np.int64)
        affine = self.affine.copy()
        affine[:3, 3] -= self.affine[:3, :3] @ margin
        return Grid(tuple(int(n) for n in np.asarray(self.shape) + 2 * margin), affine)  # type: ignore[arg-type]


def bounding_box_centre_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS mm of the centre of ``mask``'s bounding box (voxel indices through ``affine``).

    Raises:
        ValueError: for an empty mask.
    """
    corners = []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            raise ValueError("Expected a non-empty mask to centre on, found no voxel in it")
        corners.append((hits[0] + hits[-1]) / 2.0)
    return affine[:3, :3] @ np.asarray(corners) + affine[:3, 3]


def resample_to_grid(
    array: np.ndarray,
    affine: np.ndarray,
    grid: Grid,
    *,
    order: int,
    cval: float = 0.0,
    dtype: np.dtype | type | None = None,
) -> np.ndarray:
    """Sample ``array`` (voxels mapped to RAS mm by ``affine``) at every voxel of ``grid``.

    An output voxel whose source coordinates fall outside the first and last
    voxel centres of any axis gets ``cval`` (the padding). When the two grids
    are axis-aligned (a canonical scan, no obliquity: the usual case) the
    interpolation is separable and runs one axis at a time, shrinking axes
    first; otherwise scipy's ``affine_transform`` does the general case.

    Args:
        array: a 3D image or label map.
        affine: its voxel-to-RAS affine.
        grid: where to sample.
        order: 1 for (tri)linear interpolation of intensities, 0 for nearest
            neighbour (label maps: codes are never blended).
        cval: the value of output voxels outside the scan (the padding).
        dtype: the output dtype (default: the input's).

    Returns:
        An array of ``grid.shape``.
    """
    if order not in (0, 1):
        raise ValueError(f"Expected interpolation order 0 or 1, found {order}")
    dtype = np.dtype(dtype or array.dtype)
    to_source = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ grid.affine
    matrix, offset = to_source[:3, :3], to_source[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        coords = [np.diag(matrix)[axis] * np.arange(grid.shape[axis]) + offset[axis] for axis in range(3)]
        return _separable(np.asarray(array), coords, order, cval, dtype)
    from scipy.ndimage import affine_transform

    return affine_transform(
        array, matrix, offset=offset, output_shape=grid.shape, output=dtype,
        order=order, mode="constant", cval=cval, prefilter=False,
    )


_TOLERANCE = 1e-6
"""Source coordinates this close beyond the first or last voxel centre still count as inside."""


def _separable(array: np.ndarray, coords: list[np.ndarray], order: int, cval: float, dtype: np.dtype) -> np.ndarray:
    """Nearest or linear interpolation at ``coords[axis]`` along each axis in turn (an axis-aligned grid)."""
    out = array if order == 0 else array.astype(np.float32, copy=False)
    # Axes that shrink most go first, so that later passes touch fewer voxels.
    for axis in sorted(range(3), key=lambda a: len(coords[a]) / array.shape[a]):
        n = array.shape[axis]
        where = np.clip(coords[axis], 0, n - 1)
        if order == 0:
            out = np.take(out, np.floor(where + 0.5).astype(np.intp), axis=axis)
            continue
        low = np.minimum(np.floor(where).astype(np.intp), max(n - 2, 0))
        high = np.minimum(low + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis] = len(where)
        weight = (where - low).astype(np.float32).reshape(shape)
        below = np.take(out, low, axis=axis)
        out = below + (np.take(out, high, axis=axis) - below) * weight
    out = out.astype(dtype, copy=False)
    for axis in range(3):
        outside = (coords[axis] < -_TOLERANCE) | (coords[axis] > array.shape[axis] - 1 + _TOLERANCE)
        if outside.any():
            index = [slice(None)] * 3
            index[axis] = outside
            out[tuple(index)] = cval
    return np.ascontiguousarray(out)


def fraction_inside(mask: np.ndarray, affine: np.ndarray, grid: Grid) -> float:
    """The fraction of ``mask``'s voxels (centres, through ``affine``) that fall inside ``grid``; 0 for an empty mask."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 0.0
    to_grid = np.linalg.inv(grid.affine) @ np.asarray(affine, dtype=np.float64)
    matrix, offset = to_grid[:3, :3], to_grid[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        # Axis-aligned: the grid covers a box of the scan's voxels; count the mask inside it.
        box = []
        for axis in range(3):
            position = matrix[axis, axis] * np.arange(mask.shape[axis]) + offset[axis]
            inside = np.flatnonzero((position >= -0.5) & (position < grid.shape[axis] - 0.5))
            if inside.size == 0:
                return 0.0
            box.append(slice(inside[0], inside[-1] + 1))
        return float(np.count_nonzero(mask[tuple(box)]) / total)
    points = np.argwhere(mask) @ matrix.T + offset
    inside = np.all((points >= -0.5) & (points < np.asarray(grid.shape) - 0.5), axis=1)
    return float(inside.mean())


def inside_scan(shape: Sequence[int], affine: np.ndarray, grid: Grid) -> np.ndarray:
    """Boolean mask of the ``grid`` voxels that sample inside a scan of ``shape`` (the rest is padding).

    Consistent with :func:`resample_to_grid`: a voxel is inside when its source
    coordinates lie between the first and the last voxel centre on every axis.
    """
    to_source = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ grid.affine
    matrix, offset = to_source[:3, :3], to_source[:3, 3]
    tolerance = _TOLERANCE
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        inside = np.ones(grid.shape, dtype=bool)
        for axis in range(3):
            coords = matrix[axis, axis] * np.arange(grid.shape[axis]) + offset[axis]
            along = (coords >= -tolerance) & (coords <= shape[axis] - 1 + tolerance)
            view = [1, 1, 1]
            view[axis] = grid.shape[axis]
            inside &= along.reshape(view)
        return inside
    ones = np.ones(tuple(int(n) for n in shape), dtype=np.uint8)
    return resample_to_grid(ones, affine, grid, order=0).astype(bool)
