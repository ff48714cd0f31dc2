"""The ``train`` section of params.yaml turned into typed settings, with clear errors for bad values.

Example:
    >>> settings = parse_training_settings({"loss": "mean_variance", "batch_size": 4}, seed=1)
    >>> settings.loss, settings.batch_size, settings.lambda_mean
    ('mean_variance', 4, 0.2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import (
    choice,
    field_names,
    flag,
    number,
    numbers,
    section_mapping,
)

LOSSES: tuple[str, ...] = ("mse", "smooth_l1", "mean_variance")
"""The age losses (``spineage.models.losses``); the MRI paper's default is mse."""

CPU_PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
"""``auto`` picks bfloat16 autocast only on a CPU with native bf16 (AVX512-BF16 or AMX)."""

@dataclass(frozen=True)
class TrainingSettings:
    """Settings of the spine-age training (the ``train`` section).

    The field defaults are params.yaml's values (a test holds them equal) and the
    parser's fallbacks for keys left out of the section.

    Args:
        seed: the one seed (params.yaml's top-level ``seed``).
        loss: mse, smooth_l1 or mean_variance.
        learning_rate: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        batch_size: volumes per step (per process under DDP).
        max_epochs: passes over the training series at most.
        lr_patience: ReduceLROnPlateau patience (epochs without a better validation MAE).
        lr_factor: ReduceLROnPlateau factor.
        early_stopping_patience: stop after this many epochs without a better validation MAE.
        min_epochs: never stop before this many epochs.
        train_fraction: share of the train split's series trained on (1.0: all); a seeded
            sample of whole subjects (:func:`spineage.training.data.train_subsample`), the
            training-set-size ablation.
        crop_shape: voxels (X, Y, Z) kept around the centre of each preprocessed array
            before resizing (None: all); keeps the voxel size.
        input_shape: voxels (X, Y, Z) the network reads; None for the preprocessed arrays'
            own shape, else each array is resized (area-averaged) to it once, when loaded.
        channels: channels of the five convolution blocks (the paper: 32, 64, 128, 256, 256).
        head_channels: channels of the 1×1×1 convolution (the paper: 64).
        dropout: dropout before the linear layer.
        age_bins: (low, high, width) of the mean-variance head's age bins in years.
        lambda_mean: weight of the mean loss (the radiograph paper: 0.2).
        lambda_variance: weight of the variance loss (the radiograph paper: 0.05).
        smooth_l1_beta: smooth-L1's beta in standardised age units.
        augment_shift_voxels: random shift of each training volume, in voxels per axis, at most.
        augment_intensity: random intensity scale and offset, at most this fraction.
        augment_flip: random left-right flips.
        cpu_precision: auto, float32 or bfloat16 (autocast) on CPU.
        channels_last: channels_last_3d memory format on CPU (faster convolutions here).
        mixed_precision: float16 autocast with a gradient scaler on CUDA.
        threads: torch threads per process on CPU (0: the cores divided among processes).
        nproc: training processes (DDP) when the command is not already run by torchrun.
    """

    seed: int = 0
    loss: str = "mse"
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 75
    lr_patience: int = 5
    lr_factor: float = 0.5
    early_stopping_patience: int = 20
    min_epochs: int = 10
    train_fraction: float = 1.0
    crop_shape: tuple[int, int, int] | None = (8, 48, 192)
    input_shape: tuple[int, int, int] | None = (8, 24, 96)
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    head_channels: int = 64
    dropout: float = 0.0
    age_bins: tuple[float, float, float] = (10.0, 100.0, 1.0)
    lambda_mean: float = 0.2
    lambda_variance: float = 0.05
    smooth_l1_beta: float = 1.0
    augment_shift_voxels: int = 2
    augment_intensity: float = 0.0
    augment_flip: bool = True
    cpu_precision: str = "float32"
    channels_last: bool = True
    mixed_precision: bool = True
    threads: int = 0
    nproc: int = 1

    def with_overrides(self, **changes: Any) -> TrainingSettings:
        """A copy with the given settings changed (None values are ignored), checked like params.yaml.

        Raises:
            UserError: for a changed value the ``train`` section would refuse (e.g. ``max_epochs=0``).
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        changed = replace(self, **changes)
        try:
            return parse_training_settings(changed.as_section(), seed=changed.seed)
        except UserError as error:
            given = ", ".join(f"{k}={v!r}" for k, v in changes.items())
            raise UserError(f"{error} (overriding params.yaml with {given})") from None

    def as_section(self) -> dict[str, Any]:
        """The settings as a ``train`` section of params.yaml (without the seed, which is top-level)."""
        return {k: v for k, v in self.as_params().items() if k != "seed"}

    def as_params(self) -> dict[str, Any]:
        """Flat, MLflow-loggable settings."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


_DEFAULTS = TrainingSettings()
"""The fallback of every key left out of the ``train`` section."""

_KEYS = field_names(TrainingSettings, without=("seed",))


def _number(section: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, getattr(_DEFAULTS, key), "train", low, high, integer)


def _shape(section: dict[str, Any], key: str) -> tuple[int, int, int] | None:
    """Three voxel counts, or None where params.yaml says null."""
    value = section.get(key, getattr(_DEFAULTS, key))
    return None if value is None else numbers({key: value}, key, (), "train", 3, 1, 4096, integer=True)


def parse_training_settings(section: Any, seed: int = 0) -> TrainingSettings:
    """Turn the ``train`` section of params.yaml into :class:`TrainingSettings`, checking every value.

    Raises:
        UserError: for an unknown key or a value of the wrong type or out of range.
    """
    section = section_mapping(section, "train", _KEYS)
    low, high, width = numbers(section, "age_bins", _DEFAULTS.age_bins, "train", 3, 0.0, 200.0)
    if high <= low or width <= 0 or width > high - low:
        raise UserError(f"Expected train.age_bins as [low, high, width] with low < high and 0 < width <= high - low, found {[low, high, width]}")
    return TrainingSettings(
        seed=int(seed),
        loss=choice(section, "loss", _DEFAULTS.loss, "train", LOSSES),
        learning_rate=float(_number(section, "learning_rate", 1e-7, 1.0)),
        weight_decay=float(_number(section, "weight_decay", 0.0, 1.0)),
        batch_size=int(_number(section, "batch_size", 1, 4096, integer=True)),
        max_epochs=int(_number(section, "max_epochs", 1, 100000, integer=True)),
        lr_patience=int(_number(section, "lr_patience", 0, 1000, integer=True)),
        lr_factor=float(_number(section, "lr_factor", 0.01, 0.99)),
        early_stopping_patience=int(_number(section, "early_stopping_patience", 1, 100000, integer=True)),
        min_epochs=int(_number(section, "min_epochs", 1, 100000, integer=True)),
        train_fraction=float(_number(section, "train_fraction", 1e-4, 1.0)),
        crop_shape=_shape(section, "crop_shape"),
        input_shape=_shape(section, "input_shape"),
        channels=numbers(section, "channels", _DEFAULTS.channels, "train", None, 1, 4096, integer=True),
        head_channels=int(_number(section, "head_channels", 1, 4096, integer=True)),
        dropout=float(_number(section, "dropout", 0.0, 0.95)),
        age_bins=(low, high, width),
        lambda_mean=float(_number(section, "lambda_mean", 0.0, 100.0)),
        lambda_variance=float(_number(section, "lambda_variance", 0.0, 100.0)),
        smooth_l1_beta=float(_number(section, "smooth_l1_beta", 1e-6, 100.0)),
        augment_shift_voxels=int(_number(section, "augment_shift_voxels", 0, 64, integer=True)),
        augment_intensity=float(_number(section, "augment_intensity", 0.0, 0.5)),
        augment_flip=flag(section, "augment_flip", _DEFAULTS.augment_flip, "train"),
        cpu_precision=choice(section, "cpu_precision", _DEFAULTS.cpu_precision, "train", CPU_PRECISIONS),
        channels_last=flag(section, "channels_last", _DEFAULTS.channels_last, "train"),
        mixed_precision=flag(section, "mixed_precision", _DEFAULTS.mixed_precision, "train"),
        threads=int(_number(section, "threads", 0, 1024, integer=True)),
        nproc=int(_number(section, "nproc", 1, 256, integer=True)),
    )


def load_training_settings(params: str | Path) -> TrainingSettings:
    """The ``train`` section (and the seed) of a params file, checked.

    Raises:
        UserError: if the file is missing or a value is bad.
    """
    from spineage.config import read_params_mapping

    raw = read_params_mapping(params)
    return parse_training_settings(raw.get("train"), seed=int(raw.get("seed", 0)))
