"""The train section of params.yaml: defaults, the repository's file, and one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from spineage.errors import UserError
from spineage.training.settings import (
    TrainingSettings,
    load_training_settings,
    parse_training_settings,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_repository_params_give_the_paper_network_and_the_seed() -> None:
    settings = load_training_settings(REPO / "params.yaml")
    assert settings.channels == (32, 64, 128, 256, 256) and settings.head_channels == 64
    assert settings.loss == "mse" and settings.lr_patience == 5
    assert settings.seed != 0


def test_an_absent_section_gives_the_defaults() -> None:
    assert parse_training_settings(None, seed=3) == TrainingSettings(seed=3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"loss": "l1"}, "train.loss among"),
        ({"batch_size": 0}, "train.batch_size between"),
        ({"learning_rate": "fast"}, "a number for train.learning_rate"),
        ({"input_shape": [16, 48]}, "3 integers for train.input_shape"),
        ({"age_bins": [90, 10, 1]}, "train.age_bins as [low, high, width]"),
        ({"augment_flip": "yes"}, "true or false for train.augment_flip"),
        ({"cpu_precision": "float16"}, "train.cpu_precision among"),
        ({"epochs": 3}, "keys of the train section"),
    ],
)
def test_bad_values_are_one_sentence_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_training_settings(section)


def test_overrides_ignore_none() -> None:
    settings = TrainingSettings().with_overrides(max_epochs=3, loss=None)
    assert settings.max_epochs == 3 and settings.loss == "mse"
