"""How often :func:`spineage.imaging.levels.assign_levels` names discs and vertebrae right on the phantom.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_levels.py [--raw data/raw] [--scans 40] [--model models/spine-seg]

For ``--scans`` labelled series of the phantom (a seeded draw), the phantom's own
label map is stripped of its levels (every vertebra 100, every disc 130) and the
levels are inferred back, and, with ``--model``, the segmenter's label map of the
scan is levelled the same way. Printed per source: scans levelled, the share of
named disc voxels whose level is right, the share of named vertebra voxels whose
level is right, and the same shares on subjects with a transitional vertebra
(T13, L6; counted from the sacrum these are one level off by nature).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def agreement(levelled: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Named voxels (vertebra and sacrum, disc) whose code is the truth's, among the named voxels on the truth's structure."""
    from spineage.labels import DISC_LABELS, SACRUM_LABEL, VERTEBRA_LABELS

    scores = {}
    for name, codes in (("vertebra", [*VERTEBRA_LABELS, SACRUM_LABEL]), ("disc", list(DISC_LABELS))):
        named = np.isin(levelled, codes) & np.isin(truth, codes)
        scores[name] = float((levelled[named] == truth[named]).mean()) if named.any() else float("nan")
        scores[f"{name}_named"] = float(named.sum() / max(1, np.isin(truth, codes).sum()))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=ROOT / "data/raw")
    parser.add_argument("--scans", type=int, default=40)
    parser.add_argument("--model", default=None, help="a segmentation model folder: level its label maps too")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from spineage.imaging.io import load_label_like, load_volume
    from spineage.imaging.levels import assign_levels, without_levels
    from spineage.labels import LABEL_NAMES

    sessions = pd.read_csv(args.raw / "sessions.csv", dtype=str)
    sessions = sessions[sessions.label.notna() & (sessions.modality == "mri_t2_sag")].sample(args.scans, random_state=0)
    net = None
    if args.model:
        import mlflow.pytorch
        import torch

        torch.set_num_threads(1)
        net = mlflow.pytorch.load_model(str(Path(args.model).resolve()), map_location="cpu").eval()
    rows = []
    for row in sessions.itertuples(index=False):
        volume = load_volume(args.raw / row.image)
        truth = np.asarray(load_label_like(args.raw / row.label, volume)).astype(np.int16)
        transitional = any(LABEL_NAMES.get(int(code)) in ("T13", "L6", "L7") for code in np.unique(truth))
        sources = {"phantom labels": without_levels(truth)}
        if net is not None:
            from spineage.imaging.segmentation import segment_volume

            sources["segmenter"] = segment_volume(volume, net).astype(np.int16)
        for source, labels in sources.items():
            levelled = assign_levels(labels, volume.spacing)
            rows.append({"source": source, "transitional": transitional, "levelled": bool(levelled.discs), **agreement(levelled.labels, truth)})
    table = pd.DataFrame(rows)
    for (source, transitional), group in table.groupby(["source", "transitional"]):
        print(f"{source:15s} {'transitional' if transitional else 'usual':12s} scans {len(group):3d} levelled {group.levelled.mean():.2f}  "
              f"right: vertebra {group.vertebra.mean():.3f} disc {group.disc.mean():.3f}  "
              f"named: vertebra {group.vertebra_named.mean():.2f} disc {group.disc_named.mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
