"""The segmenter's pre-training: a longer SynthSeg-style run on a phantom of its own, that the ``segment`` stage starts from.

Synthetic contrast needs more epochs than one scanner's contrast, more than the
default run's 15 minutes allow. ``spineage segment pretrain`` (the frozen DVC
stage ``pretrain_segment``) draws a phantom with a seed of its own, so that none
of its subjects is in the default cohort (whose held-out splits score the
segmenter), trains on its label maps with ``segmentation.synthesis`` for many
epochs, registers the result as ``spine-seg-mri@pretrained`` and copies it into
a folder kept in git (``models/spine-seg-pretrained``). The ``segment`` stage
continues from that folder (``--initial-model``) on the default cohort's train
split. Nothing is downloaded; the checkpoint is the pipeline's own.

Rebuild it with ``make pretrain`` (the stage is frozen, so ``dvc repro`` never runs it; about 30 minutes on 2 cores).

Example:
    >>> from spineage.imaging.pretrain import pretrain_segmentation  # doctest: +SKIP
    >>> pretrain_segmentation(load_params("params.yaml"), settings, seed=20251130, n_subjects=150,
    ...                       out="models/spine-seg-pretrained")  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from spineage.imaging.segmentation import SegmentationResult, SegmentationSettings, train_segmentation

if TYPE_CHECKING:
    from spineage.config import Params

PRETRAINED_ALIAS = "pretrained"
"""The registry alias of a pre-training (never a candidate for production)."""


def pretrain_segmentation(
    params: "Params",
    settings: SegmentationSettings,
    *,
    seed: int,
    n_subjects: int,
    out: str | Path,
    reports: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SegmentationResult:
    """Draw a phantom of ``n_subjects`` with ``seed`` in a temporary folder and train the segmenter on it from scratch.

    A share of its subjects (``settings.validation_fraction``) is held out and
    scored, as for any training without a cohort table.

    Args:
        params: the parsed params (:func:`spineage.config.load_params`): the phantom's ``synth`` section.
        settings: the segmentation settings (``epochs``, ``max_scans`` as the pre-training wants them);
            ``initial_model`` is ignored: a pre-training starts from scratch.
        seed: the phantom's seed (not the default cohort's).
        n_subjects: subjects drawn.
        out: the model folder to write (kept in git).
        reports: a folder for ``metrics.json`` and ``series.csv``, or None.
        workers: processes drawing the phantom (default: params').
        progress: show progress bars.
    """
    from spineage.synth.generate import generate_cohort

    with tempfile.TemporaryDirectory(prefix="spineage-pretrain-") as folder:
        raw = Path(folder) / "raw"
        generate_cohort(raw, params.synth, n_subjects=n_subjects, seed=seed, workers=workers, progress=progress)
        return train_segmentation(raw, replace(settings, initial_model=""), out=out, reports=reports,
                                  progress=progress, alias=PRETRAINED_ALIAS)
