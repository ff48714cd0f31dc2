"""``spineage score``: a whole raw cohort through preprocessing, the registered network and its stored correction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.evaluation.bias import BiasCorrection
from spineage.evaluation.external import check_preprocessing, external_cohort_table, score_cohort
from spineage.imaging.preprocess import PreprocessSettings

CORRECTION = BiasCorrection("cole", 0.8, 10.0, "validation", 40)


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory) -> Path:
    from spineage.config import parse_params
    from spineage.synth.generate import generate_cohort

    raw = tmp_path_factory.mktemp("external") / "raw"
    generate_cohort(raw, parse_params({}).synth, seed=11, profile="ci", n_subjects=8, workers=1, progress=False)
    return raw


def _tiny_network(preprocessing: dict):
    import torch

    from spineage.models.spine_age import SpineAgeNet

    torch.manual_seed(0)
    return SpineAgeNet(input_shape=(8, 12, 48), channels=(4, 4, 8, 8, 8), head_channels=4, preprocessing=preprocessing).eval()


def test_every_series_is_scored_and_corrected_with_the_stored_coefficients(small_phantom: Path, tmp_path: Path, monkeypatch) -> None:
    import spineage.evaluation.external as external
    import spineage.evaluation.stage as stage

    settings = PreprocessSettings(masks="labels", segmentation_model=None, workers=1)
    net = _tiny_network({"shape": list(settings.shape), "target_spacing_mm": list(settings.target_spacing_mm)})
    monkeypatch.setattr(external, "load_registered_network", lambda uri: (net, "models:/spine-age-mri/3", None))
    monkeypatch.setattr(stage, "stored_bias_correction", lambda uri: CORRECTION)

    result = score_cohort(small_phantom, tmp_path / "scored", "models:/spine-age-mri@candidate", settings, workers=1)
    predictions = pd.read_csv(tmp_path / "scored" / "predictions.csv")
    sessions = pd.read_csv(small_phantom / "sessions.csv")
    assert sorted(predictions.series_id) == sorted(sessions.loc[sessions.modality == "mri_t2_sag", "series_id"])
    assert set(predictions.split) == {"external"} and predictions.sex.isin(["F", "M"]).all()
    scored = predictions.dropna(subset=["predicted_age"])
    assert len(scored) == result.metrics["scored"] >= len(predictions) - 1
    assert np.allclose(scored.corrected_age, (scored.predicted_age - 10.0) / 0.8, atol=2e-3)
    assert np.allclose(scored.sag, scored.corrected_age - scored.age, atol=2e-3)
    assert result.metrics["model_uri"] == "models:/spine-age-mri/3"
    assert result.metrics["bias_correction"]["slope"] == 0.8


def test_arrays_unlike_the_training_ones_are_refused(small_phantom: Path, tmp_path: Path, monkeypatch) -> None:
    settings = PreprocessSettings(masks="labels", segmentation_model=None)
    with pytest.raises(UserError, match="preprocess.target_spacing_mm"):
        check_preprocessing({"target_spacing_mm": [2.0, 2.0, 2.0]}, settings)
    check_preprocessing({"target_spacing_mm": list(settings.target_spacing_mm), "unrelated": 1}, settings)


def test_a_subject_without_sex_is_a_user_error(small_phantom: Path, tmp_path: Path) -> None:
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(small_phantom, raw, symlinks=True)
    participants = pd.read_csv(raw / "participants.csv")
    participants.iloc[1:].to_csv(raw / "participants.csv", index=False)
    with pytest.raises(UserError, match="participants.csv"):
        external_cohort_table(raw)
