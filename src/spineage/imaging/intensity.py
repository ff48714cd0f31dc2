"""Intensity normalisation within the spine mask, and the checks that come before it.

MRI intensities have no unit: the same tissue reads 700 on one scanner and 3000
on another, and a bias field brightens the back of every scan. Statistics are
therefore taken only inside the spine mask (what the model sees), and robustly:

* ``percentile`` (the default): the ``low`` percentile inside the mask maps to
  0 and the ``high`` percentile to 1, then values are clipped to [0, 1]; with
  the default 1 and 99, a few hot or dark voxels cannot stretch the scale.
* ``median_iqr``: (value - median) / interquartile range inside the mask, not
  clipped (a robust z-score).

Voxels outside the mask are 0 in both.

Example:
    >>> import numpy as np
    >>> image = np.arange(8, dtype=np.float32).reshape(2, 2, 2); mask = image > 0
    >>> [round(float(v), 2) for v in normalise_in_mask(image, mask, "percentile", (0, 100))[0].ravel()]
    [0.0, 0.0, 0.17, 0.33, 0.5, 0.67, 0.83, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORMALISATIONS: tuple[str, ...] = ("percentile", "median_iqr")


def intensity_problems(values: np.ndarray, max_negative_fraction: float, percentiles: Sequence[float] = (1.0, 99.0)) -> list[str]:
    """What makes the intensities inside a mask unusable, in words; empty when they are fine.

    Args:
        values: the intensities of the voxels inside the mask (any shape).
        max_negative_fraction: the largest share of negative values allowed (a
            magnitude MRI image has none; many mean a phase map or a wrong rescale).
        percentiles: the (low, high) percentiles normalisation will use; equal
            values there mean a constant image inside the mask.
    """
    values = np.asarray(values).ravel()
    if values.size == 0:
        return ["no voxel inside the mask"]
    problems = []
    finite = np.isfinite(values)
    if not finite.all():
        problems.append(f"{int(values.size - finite.sum())} NaN or Inf voxels inside the mask")
        values = values[finite]
        if values.size == 0:
            return problems
    negative = float(np.mean(values < 0))
    if negative > max_negative_fraction:
        problems.append(f"{100 * negative:.1f}% negative voxels inside the mask (at most {100 * max_negative_fraction:g}% expected)")
    low, high = np.percentile(values, list(percentiles))
    if not high - low > 1e-6 * max(abs(float(high)), abs(float(low)), 1.0):
        problems.append(f"constant intensity inside the mask ({float(low):g} at percentiles {percentiles[0]:g} and {percentiles[1]:g})")
    return problems


def normalise_in_mask(
    image: np.ndarray,
    mask: np.ndarray,
    method: str = "percentile",
    percentiles: Sequence[float] = (1.0, 99.0),
) -> tuple[np.ndarray, tuple[float, float]]:
    """Scale ``image`` by statistics of the voxels inside ``mask``; voxels outside become 0.

    Args:
        image: intensities, any float or integer dtype.
        mask: boolean, shaped like ``image``.
        method: ``percentile`` or ``median_iqr`` (see the module docstring).
        percentiles: (low, high) percentiles for ``percentile``.

    Returns:
        (float32 normalised image, (offset, scale) in source units: value = offset + scale * normalised).

    Raises:
        ValueError: for an unknown method, an empty mask or a constant image inside it
            (check with :func:`intensity_problems` first).
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"Expected a normalisation among {list(NORMALISATIONS)}, found {method!r}")
    mask = np.asarray(mask, dtype=bool)
    values = np.asarray(image, dtype=np.float32)[mask]
    if values.size == 0:
        raise ValueError("Expected voxels inside the mask to normalise on, found none")
    if method == "percentile":
        low, high = (float(v) for v in np.percentile(values, list(percentiles)))
        offset, scale = low, high - low
    else:
        q1, median, q3 = (float(v) for v in np.percentile(values, [25.0, 50.0, 75.0]))
        offset, scale = median, q3 - q1
    if not scale > 0:
        raise ValueError(f"Expected varying intensities inside the mask, found a spread of {scale:g}")
    out = np.zeros(mask.shape, dtype=np.float32)
    scaled = (values - np.float32(offset)) / np.float32(scale)
    if method == "percentile":
        np.clip(scaled, 0.0, 1.0, out=scaled)
    out[mask] = scaled
    return out, (offset, scale)
