"""``spineage show``: mid-sagittal slices from young to old, with the label map beside each.

A person should see the phantom age: discs darken and flatten, marrow
brightens, curves change. Works on any raw cohort with MRI series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spineage.atomic import write_atomic
from spineage.errors import UserError


def mid_sagittal(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The middle left-right slice of a NIfTI volume in RAS order, shaped (y, z), and the voxel size."""
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for broken files
        raise UserError(f"Expected a readable NIfTI volume at {path}, found: {error}") from None
    if data.ndim != 3:
        raise UserError(f"Expected a 3-D volume at {path}, found shape {data.shape}")
    return data[data.shape[0] // 2].astype(np.float32), tuple(float(z) for z in image.header.get_zooms()[:3])


def render_montage(raw: Path, out: Path, n_scans: int = 8) -> Path:
    """Write a PNG montage of ``n_scans`` MRI series spread over the age range of ``raw``.

    Args:
        raw: a raw-cohort folder with sessions.csv.
        out: the PNG to write (atomically).
        n_scans: how many scans, from youngest to oldest.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from spineage.raw_cohort import read_mri_series

    if n_scans < 1:
        raise UserError(f"Expected at least one scan to show, found {n_scans}")
    mri = read_mri_series(raw, columns=("image", "age"))
    mri["age"] = pd.to_numeric(mri["age"], errors="coerce")
    mri = mri.sort_values("age", kind="stable").reset_index(drop=True)
    picks = np.unique(np.linspace(0, len(mri) - 1, min(n_scans, len(mri))).round().astype(int))
    has_labels = "label" in mri.columns
    fig, axes = plt.subplots(1, 2 * len(picks) if has_labels else len(picks), figsize=(2.2 * len(picks) * (2 if has_labels else 1), 9), squeeze=False)
    axes = axes[0]
    for k, index in enumerate(picks):
        row = mri.iloc[index]
        image, zooms = mid_sagittal(Path(raw) / row.image)
        aspect = zooms[2] / zooms[1]
        ax = axes[2 * k if has_labels else k]
        ax.imshow(np.flipud(image.T), cmap="gray", aspect=aspect, vmin=0, vmax=np.percentile(image, 99.5))
        ax.set_title(f"{row.series_id}\nage {row.age:.0f}", fontsize=8)
        ax.axis("off")
        if has_labels and isinstance(row.label, str) and row.label:
            labels, _ = mid_sagittal(Path(raw) / row.label)
            label_ax = axes[2 * k + 1]
            label_ax.imshow(np.flipud(labels.T), cmap="nipy_spectral", vmin=0, vmax=64, aspect=aspect, interpolation="nearest")
            label_ax.set_title("labels", fontsize=8)
            label_ax.axis("off")
    fig.tight_layout()
    try:
        return write_atomic(Path(out), lambda p: fig.savefig(p, dpi=90, format="png"))
    finally:
        plt.close(fig)
