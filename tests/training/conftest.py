"""Fixtures of the training tests: the ci phantom cohort run through the stages up to preprocess, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from spineage.training.settings import TrainingSettings

TINY = TrainingSettings(
    seed=7, loss="mse", learning_rate=3e-3, batch_size=4, max_epochs=3, min_epochs=3, lr_patience=5,
    early_stopping_patience=10, crop_shape=None, input_shape=(8, 12, 48), channels=(4, 4, 8, 8, 8), head_channels=4,
    augment_shift_voxels=1, augment_intensity=0.05, threads=1,
)
"""A tiny network on a coarse grid: seconds per run on the ci cohort."""


@pytest.fixture(scope="session")
def ci_cohort(tmp_path_factory) -> Path:
    """The ci profile (40 subjects) through synth, findings, cohort and preprocess; returns the folder holding
    raw/, interim/, processed/ and reports/."""
    from spineage.cohort.settings import parse_cohort_settings
    from spineage.cohort.stage import build_cohort
    from spineage.config import parse_params
    from spineage.findings.stage import build_findings
    from spineage.imaging.preprocess import PreprocessSettings
    from spineage.imaging.stage import build_processed
    from spineage.synth.generate import generate_cohort

    root = tmp_path_factory.mktemp("ci-cohort")
    seed = 20251121
    generate_cohort(root / "raw", parse_params({}).synth, seed=seed, profile="ci", workers=1, progress=False)
    build_findings(root / "raw", root / "interim", root / "reports" / "findings", progress=False)
    build_cohort(root / "raw", root / "interim" / "region_vectors.parquet", root / "interim" / "cohort.csv",
                 root / "reports" / "cohort", parse_cohort_settings(None), seed=seed, progress=False)
    build_processed(root / "raw", root / "interim" / "cohort.csv", root / "processed", root / "reports" / "preprocess",
                    PreprocessSettings(masks="labels"), workers=1, progress=False)
    return root
