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
from spineage.settings_checks import choice, flag, number, numbers, section_mapping

LOSSES: tuple[str, ...] = ("mse", "smooth_l1", "mean_variance")
"""The age losses (``spineage.models.losses``); the MRI paper's default is mse."""

CPU_PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
"""``auto`` picks bfloat16 autocast only on a CPU with native bf16 (AVX512-BF16 or AMX)."""

_KEYS = {
    "loss", "learning_rate", "weight_decay", "batch_size", "max_epochs", "lr_patience", "lr_factor",
    "early_stopping_patience", "min_epochs", "crop_shape", "input_shape", "channels", "head_channels", "dropout",
    "age_bins", "lambda_mean", "lambda_variance", "smooth_l1_beta", "augment_shift_voxels",
    "augment_intensity", "augment_flip", "cpu_precision", "channels_last", "mixed_precision", "threads", "nproc",
}


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of the spine-age training (the ``train`` section).

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
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 8
    max_epochs: int = 40
    lr_patience: int = 5
    lr_factor: float = 0.5
    early_stopping_patience: int = 10
    min_epochs: int = 5
    crop_shape: tuple[int, int, int] | None = None
    input_shape: tuple[int, int, int] | None = None
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    head_channels: int = 64
    dropout: float = 0.0
    age_bins: tuple[float, float, float] = (10.0, 100.0, 1.0)
    lambda_mean: float = 0.2
    lambda_variance: float = 0.05
    smooth_l1_beta: float = 1.0
    augment_shift_voxels: int = 2
    augment_intensity: float = 0.05
    augment_flip: bool = True
    cpu_precision: str = "auto"
    channels_last: bool = True
    mixed_precision: bool = True
    threads: int = 0
    nproc: int = 1

    def with_overrides(self, **changes: Any) -> TrainingSettings:
        """A copy with the given settings changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_params(self) -> dict[str, Any]:
        """Flat, MLflow-loggable settings."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, default, "train", low, high, integer)


def parse_training_settings(section: Any, seed: int = 0) -> TrainingSettings:
    """Turn the ``train`` section of params.yaml into :class:`TrainingSettings`, checking every value.

    Raises:
        UserError: for an unknown key or a value of the wrong type or out of range.
    """
    section = section_mapping(section, "train", _KEYS)
    input_shape = section.get("input_shape")
    if input_shape is not None:
        input_shape = numbers(section, "input_shape", (), "train", 3, 1, 4096, integer=True)
    crop_shape = section.get("crop_shape")
    if crop_shape is not None:
        crop_shape = numbers(section, "crop_shape", (), "train", 3, 1, 4096, integer=True)
    low, high, width = numbers(section, "age_bins", (10.0, 100.0, 1.0), "train", 3, 0.0, 200.0)
    if high <= low or width <= 0 or width > high - low:
        raise UserError(f"Expected train.age_bins as [low, high, width] with low < high and 0 < width <= high - low, found {[low, high, width]}")
    return TrainingSettings(
        seed=int(seed),
        loss=choice(section, "loss", "mse", "train", LOSSES),
        learning_rate=float(_number(section, "learning_rate", 1e-3, 1e-7, 1.0)),
        weight_decay=float(_number(section, "weight_decay", 0.0, 0.0, 1.0)),
        batch_size=int(_number(section, "batch_size", 8, 1, 4096, integer=True)),
        max_epochs=int(_number(section, "max_epochs", 40, 1, 100000, integer=True)),
        lr_patience=int(_number(section, "lr_patience", 5, 0, 1000, integer=True)),
        lr_factor=float(_number(section, "lr_factor", 0.5, 0.01, 0.99)),
        early_stopping_patience=int(_number(section, "early_stopping_patience", 10, 1, 100000, integer=True)),
        min_epochs=int(_number(section, "min_epochs", 5, 1, 100000, integer=True)),
        crop_shape=crop_shape,
        input_shape=input_shape,
        channels=numbers(section, "channels", (32, 64, 128, 256, 256), "train", None, 1, 4096, integer=True),
        head_channels=int(_number(section, "head_channels", 64, 1, 4096, integer=True)),
        dropout=float(_number(section, "dropout", 0.0, 0.0, 0.95)),
        age_bins=(low, high, width),
        lambda_mean=float(_number(section, "lambda_mean", 0.2, 0.0, 100.0)),
        lambda_variance=float(_number(section, "lambda_variance", 0.05, 0.0, 100.0)),
        smooth_l1_beta=float(_number(section, "smooth_l1_beta", 1.0, 1e-6, 100.0)),
        augment_shift_voxels=int(_number(section, "augment_shift_voxels", 2, 0, 64, integer=True)),
        augment_intensity=float(_number(section, "augment_intensity", 0.05, 0.0, 0.5)),
        augment_flip=flag(section, "augment_flip", True, "train"),
        cpu_precision=choice(section, "cpu_precision", "auto", "train", CPU_PRECISIONS),
        channels_last=flag(section, "channels_last", True, "train"),
        mixed_precision=flag(section, "mixed_precision", True, "train"),
        threads=int(_number(section, "threads", 0, 0, 1024, integer=True)),
        nproc=int(_number(section, "nproc", 1, 1, 256, integer=True)),
    )


def load_training_settings(params: str | Path) -> TrainingSettings:
    """The ``train`` section (and the seed) of a params file, checked.

    Raises:
        UserError: if the file is missing or a value is bad.
    """
    from spineage.config import read_params_mapping

    raw = read_params_mapping(params)
    return parse_training_settings(raw.get("train"), seed=int(raw.get("seed", 0)))
