"""The ``radiograph`` section of params.yaml (the VERTE-X branch) turned into typed settings.

Example:
    >>> settings = parse_radiograph_settings({"image_shape": [128, 64], "model": "efficientnet-b4"}, seed=1)
    >>> settings.image_shape, settings.model, settings.margin_fraction
    ((128, 64), 'efficientnet-b4', 0.05)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import choice, field_names, flag, number, numbers, section_mapping

MODELS: tuple[str, ...] = tuple(f"efficientnet-b{i}" for i in range(8))
"""MONAI's EfficientNet variants (the paper: b4; a smaller one on CPU)."""

BIAS_CORRECTIONS: tuple[str, ...] = ("beheshti", "cole")


@dataclass(frozen=True)
class RadiographSettings:
    """Settings of the radiograph and DXA VFA branch (the ``radiograph`` section).

    The field defaults are params.yaml's values (a test holds them equal).

    Args:
        seed: the one seed (params.yaml's top-level ``seed``).
        image_shape: rows x columns of every preprocessed image (the paper: 1024 x 512).
        margin_fraction: share of each side cropped from a radiograph before resizing (the paper: about 5 %;
            none for VFA, whose field is already tight).
        equalise: histogram equalisation before min-max scaling (the paper's preprocessing).
        derivation_min_age: the derivation cohort's youngest age (the paper: 40).
        split: train, validation and test shares of the derivation subjects (the paper: 60/20/20).
        model: the EfficientNet variant.
        age_bins: (low, high, width) of the mean-variance head's age bins (years).
        lambda_mean: weight of the mean loss (the paper: 0.2).
        lambda_variance: weight of the variance loss (the paper: 0.05).
        learning_rate: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        batch_size: images per step.
        max_epochs: passes over the training images at most.
        early_stopping_patience: stop after this many epochs without a better validation MAE.
        min_epochs: never stop before this many epochs.
        augment_shift_pixels: random shifts (pixels) in training.
        augment_intensity: random intensity scale and offset (0: off).
        bias_correction: beheshti (the paper) or cole, fitted on the derivation validation split.
        accelerated_quantile: the age difference above this quantile of the derivation test set is
            "accelerated" (the paper's top tertile: 2/3).
        threads: torch threads (0: every core).
    """

    seed: int = 0
    image_shape: tuple[int, int] = (128, 64)
    margin_fraction: float = 0.05
    equalise: bool = True
    derivation_min_age: float = 40.0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    model: str = "efficientnet-b0"
    age_bins: tuple[float, float, float] = (20.0, 100.0, 1.0)
    lambda_mean: float = 0.2
    lambda_variance: float = 0.05
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    batch_size: int = 16
    max_epochs: int = 40
    early_stopping_patience: int = 10
    min_epochs: int = 5
    augment_shift_pixels: int = 4
    augment_intensity: float = 0.05
    bias_correction: str = "beheshti"
    accelerated_quantile: float = 0.6667
    threads: int = 0

    def as_params(self) -> dict[str, Any]:
        """Flat, MLflow-loggable settings (lists for tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


_DEFAULTS = RadiographSettings()
_KEYS = field_names(RadiographSettings, without=("seed",))


def _number(section: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, getattr(_DEFAULTS, key), "radiograph", low, high, integer)


def parse_radiograph_settings(section: Any, seed: int = 0) -> RadiographSettings:
    """Turn the ``radiograph`` section of params.yaml into :class:`RadiographSettings`, checking every value.

    Raises:
        UserError: for an unknown key or a value of the wrong type or out of range.
    """
    section = section_mapping(section, "radiograph", _KEYS)
    rows, columns = numbers(section, "image_shape", _DEFAULTS.image_shape, "radiograph", 2, 32, 4096, integer=True)
    if rows % 32 or columns % 32:
        raise UserError(f"Expected radiograph.image_shape sides divisible by 32 (EfficientNet halves them 5 times), found {[rows, columns]}")
    split = numbers(section, "split", _DEFAULTS.split, "radiograph", 3, 0.0, 1.0)
    if abs(sum(split) - 1.0) > 1e-6 or min(split) <= 0:
        raise UserError(f"Expected radiograph.split as three positive shares (train, validation, test) summing to 1, found {list(split)}")
    low, high, width = numbers(section, "age_bins", _DEFAULTS.age_bins, "radiograph", 3, 0.0, 200.0)
    if high <= low or width <= 0 or width > high - low:
        raise UserError(f"Expected radiograph.age_bins as [low, high, width] with low < high and 0 < width <= high - low, found {[low, high, width]}")
    return RadiographSettings(
        seed=int(seed),
        image_shape=(int(rows), int(columns)),
        margin_fraction=float(_number(section, "margin_fraction", 0.0, 0.25)),
        equalise=flag(section, "equalise", _DEFAULTS.equalise, "radiograph"),
        derivation_min_age=float(_number(section, "derivation_min_age", 0.0, 100.0)),
        split=tuple(float(s) for s in split),
        model=choice(section, "model", _DEFAULTS.model, "radiograph", MODELS),
        age_bins=(float(low), float(high), float(width)),
        lambda_mean=float(_number(section, "lambda_mean", 0.0, 100.0)),
        lambda_variance=float(_number(section, "lambda_variance", 0.0, 100.0)),
        learning_rate=float(_number(section, "learning_rate", 1e-7, 1.0)),
        weight_decay=float(_number(section, "weight_decay", 0.0, 1.0)),
        batch_size=int(_number(section, "batch_size", 2, 4096, integer=True)),
        max_epochs=int(_number(section, "max_epochs", 1, 100000, integer=True)),
        early_stopping_patience=int(_number(section, "early_stopping_patience", 1, 100000, integer=True)),
        min_epochs=int(_number(section, "min_epochs", 1, 100000, integer=True)),
        augment_shift_pixels=int(_number(section, "augment_shift_pixels", 0, 256, integer=True)),
        augment_intensity=float(_number(section, "augment_intensity", 0.0, 0.5)),
        bias_correction=choice(section, "bias_correction", _DEFAULTS.bias_correction, "radiograph", BIAS_CORRECTIONS),
        accelerated_quantile=float(_number(section, "accelerated_quantile", 0.5, 0.99)),
        threads=int(_number(section, "threads", 0, 1024, integer=True)),
    )


def load_radiograph_settings(params: str | Path, overrides: Sequence[str] = ()) -> RadiographSettings:
    """The ``radiograph`` section of a params file (``overrides``: ``section.key=value``), with its seed."""
    from spineage.config import read_params_mapping

    raw = read_params_mapping(params, overrides)
    return parse_radiograph_settings(raw.get("radiograph"), seed=int(raw["seed"]))
