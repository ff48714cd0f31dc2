"""Look at a spine segmenter on real scans: mid-sagittal overlays and a few numbers per scan.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment_real.py \
        [--model models/spine-seg] [--scans ../shared/realdata/mri] [--out benchmarks/out/segment-real] [--tag name]

For every ``*.nii.gz`` in ``--scans`` it segments the scan as ``spineage predict``
does (``segment_volume_with_confidence``: the spine's large connected pieces,
the mean top-class probability inside it) and writes, into ``--out``:

* ``<scan>[-<tag>].png``: three sagittal slices around the middle (the scan in
  grey, vertebra red, disc yellow, canal CSF cyan, cord green) beside the plain
  slice, so that a person can judge whether the masks sit where the spine is;
* ``summary[-<tag>].json``: per scan, the voxels and millimetres labelled per
  class, the superior-inferior extent of each class, the number of separate
  vertebral and disc components (vertebral bodies and discs found), the
  confidence, the seconds taken, and the cord against a rough reference made
  without a network (``cord_vs_ring_reference``, :func:`ring_cord_reference`:
  per axial slice the dark hole inside the bright CSF ring; meaningful where the
  cord runs through the whole field of view, as on the cervical crop).

Torch runs on one thread (the pipeline shares the machine); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

COLOURS = {100: (1.0, 0.15, 0.15), 130: (1.0, 0.9, 0.1), 60: (0.1, 0.9, 1.0), 61: (0.1, 1.0, 0.2)}
NAMES = {100: "vertebra", 130: "disc", 60: "canal_csf", 61: "cord"}


def components(mask: np.ndarray) -> int:
    """Separate 26-connected pieces of a mask bigger than 20 voxels."""
    from scipy import ndimage

    labelled, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if not count:
        return 0
    sizes = np.bincount(labelled.ravel())[1:]
    return int((sizes > 20).sum())


def summarise(labels: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """Per-class volumes, extents and component counts of a label map (segment_volume's codes)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    summary: dict = {}
    for code, name in NAMES.items():
        mask = labels == code
        rows = np.flatnonzero(mask.any(axis=(0, 1)))
        summary[name] = {
            "ml": round(float(mask.sum()) * voxel_ml, 2),
            "si_extent_mm": round(float((rows[-1] - rows[0] + 1) * spacing[2]), 1) if rows.size else 0.0,
            "components": components(mask),
        }
    return summary


def ring_cord_reference(image: np.ndarray, percentile: float = 94.0, closing: int = 3) -> np.ndarray:
    """A rough cord mask made without any network: per axial slice, the dark hole inside the bright CSF ring.

    On a T2 scan the canal's CSF is among the brightest tissue (above the ``percentile``
    of the scan), and where it surrounds the cord the largest bright piece of a slice,
    closed by ``closing`` voxels, is a ring whose hole is the cord. Crude: slices where
    the ring is open or the cord absent (below the conus) get nothing. It is a check
    a person can see, not the held-out manual mask.
    """
    from scipy import ndimage

    reference = np.zeros(image.shape, dtype=bool)
    bright = image > np.percentile(image, percentile)
    for z in range(image.shape[2]):
        pieces, count = ndimage.label(bright[:, :, z])
        if not count:
            continue
        largest = pieces == 1 + int(np.argmax(ndimage.sum(bright[:, :, z], pieces, range(1, count + 1))))
        ring = ndimage.binary_closing(largest, iterations=closing)
        holes, found = ndimage.label(ndimage.binary_fill_holes(ring) & ~ring)
        if found:
            reference[:, :, z] = holes == 1 + int(np.argmax(ndimage.sum(holes > 0, holes, range(1, found + 1))))
    return reference


def cord_agreement(labels: np.ndarray, image: np.ndarray) -> dict:
    """The predicted cord against :func:`ring_cord_reference`: Dice, and the share of the reference inside the predicted canal."""
    reference = ring_cord_reference(np.asarray(image, dtype=np.float32))
    cord, canal = labels == 61, np.isin(labels, (60, 61))
    total = int(cord.sum() + reference.sum())
    return {
        "reference_voxels": int(reference.sum()),
        "reference_slices": int(reference.any(axis=(0, 1)).sum()),
        "dice": round(2.0 * float((cord & reference).sum()) / total, 3) if total else None,
        "reference_in_canal": round(float((reference & canal).sum()) / float(reference.sum()), 3) if reference.any() else None,
    }


def overlay(volume, labels: np.ndarray, path: Path, title: str) -> None:
    """Three mid-sagittal slices with the label colours over them, and the middle slice plain."""
    from spineage.plotting import headless_pyplot, save_figure

    plt = headless_pyplot()
    image = np.asarray(volume.array, dtype=np.float32)
    low, high = np.percentile(image, [0.5, 99.5])
    nx = image.shape[0]
    mid = nx // 2
    picks = sorted({max(0, mid - max(1, nx // 8)), mid, min(nx - 1, mid + max(1, nx // 8))})
    aspect = volume.spacing[2] / volume.spacing[1]
    fig, axes = plt.subplots(1, len(picks) + 1, figsize=(3.2 * (len(picks) + 1), 4.2))
    for ax, x in zip(axes, [mid, *picks]):
        grey = np.clip((image[x].T - low) / max(high - low, 1e-6), 0, 1)  # rows: z, columns: y
        rgb = np.repeat(grey[..., None], 3, axis=2)
        if ax is not axes[0]:
            for code, colour in COLOURS.items():
                where = labels[x].T == code
                rgb[where] = 0.45 * rgb[where] + 0.55 * np.asarray(colour)
        ax.imshow(rgb, origin="lower", aspect=aspect)
        ax.set_title(f"x={x}" + (" (plain)" if ax is axes[0] else ""), fontsize=9)
        ax.set_xlabel("posterior → anterior", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/spine-seg")
    parser.add_argument("--scans", default="../shared/realdata/mri")
    parser.add_argument("--out", default="benchmarks/out/segment-real")
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    import mlflow.pytorch
    import torch

    from spineage.imaging.io import load_volume
    from spineage.imaging.segmentation import segment_volume_with_confidence

    torch.set_num_threads(1)
    net = mlflow.pytorch.load_model(str(Path(args.model).resolve()), map_location="cpu").eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    results = {}
    for scan in sorted(Path(args.scans).glob("*.nii*")):
        volume = load_volume(scan)
        started = time.perf_counter()
        labels, confidence = segment_volume_with_confidence(volume, net)
        seconds = time.perf_counter() - started
        name = scan.name.split(".")[0]
        results[name] = {
            "confidence": round(confidence, 4), "seconds": round(seconds, 2), **summarise(labels, volume.spacing),
            "cord_vs_ring_reference": cord_agreement(labels, volume.array),
        }
        overlay(volume, labels, out / f"{name}{suffix}.png", f"{name} {args.tag}: confidence {confidence:.2f}")
        print(name, json.dumps(results[name]), file=sys.stderr)
    (out / f"summary{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
