"""Spine segmentation: the masks of the default run, and of every scan that comes without a label map.

A MONAI 3D U-Net (:class:`~spineage.models.spine_seg.SpineSegNet`) learns four
spine classes from labelled scans: vertebra (the phantom's codes 1-26 and the
sacrum, 27), disc (31-56), canal CSF (60) and cord (61). It works on a coarse
grid (``working_spacing_mm`` of params.yaml, 4 x 2.5 x 2.5 mm by default: at 4 mm
isotropic, resampling alone caps disc Dice on the native grid near 0.83), on
intensities scaled by robust percentiles, and predicts whole scans with a
sliding window, as they are and mirrored left-right (averaged), keeping the
spine's large connected pieces. With
``synthesis: true`` (the default) it never learns one scanner's contrast: every
training crop is a new image synthesised from the label map, SynthSeg-style
(:mod:`spineage.imaging.synthesis`), so that it transfers to real scans.
Training logs one MLflow run and registers a new version of ``spine-seg-mri``
with the alias ``candidate``.

:func:`segment_volume_with_confidence` adds how sure the network is (the mean
top-class probability inside the segmented spine), which ``spineage predict``
flags scans by.

The ``segment`` stage (``spineage segment train --cohort ... --out models/spine-seg
--reports reports/segment``, :func:`train_segmentation`) trains on the labelled
series of the cohort's train split only, scores Dice per structure against the
label maps of the other splits (``metrics.json``, ``series.csv``) and copies the
model into a folder that ``preprocess.segmentation_model`` names, so that the
preprocess stage masks every series with it (``preprocess.masks: segmentation``)
without depending on where a registry alias points.

:func:`segment_volume` answers in the phantom's codes where they mean the
same: 60 canal CSF, 61 cord. The network does not tell levels apart, so a
vertebra (or the sacrum) is :data:`VERTEBRA_CODE` (100) and a disc
:data:`DISC_CODE` (130), codes the phantom never uses;
:func:`spineage.imaging.levels.assign_levels` names them afterwards where the
sacrum is in view (``spineage segment predict --levels``). :func:`merge_spine_labels`
and :func:`spine_mask_from_segmentation` accept both the phantom's level codes
and these generic ones.

Where the ``totalspineseg`` package and its weights are installed,
:func:`segment_with_totalspineseg` gives level-labelled segmentations instead
(mapped to the phantom's codes); spineage never downloads weights.

Example:
    >>> from spineage.imaging.io import load_volume  # doctest: +SKIP
    >>> labels = segment_volume(load_volume("scan.nii.gz"), "models:/spine-seg-mri@candidate")  # doctest: +SKIP
    >>> sorted(set(labels.ravel()))  # doctest: +SKIP
    [0, 60, 61, 100, 130]
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from spineage.errors import UserError
from spineage.settings_checks import field_names, flag, number, numbers, section_mapping
from spineage.labels import (
    CANAL_LABEL,
    CORD_LABEL,
    DISC_LABELS,
    SACRUM_LABEL,
    UNLEVELLED_DISC,
    UNLEVELLED_VERTEBRA,
    VERTEBRA_LABELS,
    disc_label,
    vertebra_label,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spineage.imaging.io import Volume
    from spineage.imaging.synthesis import SynthesisSettings
    from spineage.models.spine_seg import SpineSegNet

MODEL_NAME = "spine-seg-mri"
"""The registered model every training run adds a version to."""

TRAINING_ALIASES: tuple[str, ...] = ("candidate", "pretrained")
"""The aliases a training run may give its version: a candidate for promotion, or a pre-training to start from."""

EXPERIMENT = "spine-seg-mri"
"""The MLflow experiment of the segmentation runs."""

CLASS_NAMES: tuple[str, ...] = ("background", "vertebra", "disc", "canal_csf", "cord")
"""The network's classes, in channel order (the same as ``SpineSegNet``'s default)."""

VERTEBRA_CODE = UNLEVELLED_VERTEBRA
"""Output code of a vertebra or the sacrum whose level is not identified."""

DISC_CODE = UNLEVELLED_DISC
"""Output code of an intervertebral disc whose level is not identified."""

CLASS_CODES: tuple[int, ...] = (0, VERTEBRA_CODE, DISC_CODE, CANAL_LABEL, CORD_LABEL)
"""Label-map code of each class of :data:`CLASS_NAMES` in :func:`segment_volume`'s output."""

_VERTEBRA_CODES = (VERTEBRA_LABELS[0], SACRUM_LABEL)  # inclusive: the vertebrae, then the sacrum right after them
_DISC_CODES = (DISC_LABELS[0], DISC_LABELS[-1])


# --------------------------------------------------------------------------- labels


def merge_spine_labels(labels: np.ndarray) -> np.ndarray:
    """Class index (0-4 of :data:`CLASS_NAMES`) of every voxel of a phantom or segmentation label map.

    Vertebrae C2-L7 (1-26), the sacrum (27) and :data:`VERTEBRA_CODE` become
    1 (vertebra); discs (31-56) and :data:`DISC_CODE` 2 (disc); 60 3 (canal CSF);
    61 4 (cord); any other code 0 (background).

    Example:
        >>> merge_spine_labels(np.array([0, 1, 27, 31, 56, 60, 61, 100, 130, 99])).tolist()
        [0, 1, 1, 2, 2, 3, 4, 1, 2, 0]
    """
    labels = np.asarray(labels)
    merged = np.zeros(labels.shape, dtype=np.uint8)
    merged[((labels >= _VERTEBRA_CODES[0]) & (labels <= _VERTEBRA_CODES[1])) | (labels == VERTEBRA_CODE)] = 1
    merged[((labels >= _DISC_CODES[0]) & (labels <= _DISC_CODES[1])) | (labels == DISC_CODE)] = 2
    merged[labels == CANAL_LABEL] = 3
    merged[labels == CORD_LABEL] = 4
    return merged


def spine_mask_from_segmentation(
    labels: np.ndarray, classes: Sequence[str] = ("vertebra", "disc", "canal_csf", "cord")
) -> np.ndarray:
    """Boolean mask of the voxels of a label map (phantom or segmentation codes) in ``classes``.

    Args:
        labels: label map, phantom codes or :func:`segment_volume`'s codes.
        classes: names from :data:`CLASS_NAMES` to keep (all spine classes by default).

    Example:
        >>> spine_mask_from_segmentation(np.array([0, 5, 40, 60, 61]), classes=("vertebra", "disc")).tolist()
        [False, True, True, False, False]
    """
    unknown = sorted(set(classes) - set(CLASS_NAMES[1:]))
    if unknown:
        raise UserError(f"Expected spine classes among {list(CLASS_NAMES[1:])}, found {unknown}")
    wanted = np.array([name in classes for name in CLASS_NAMES])
    return wanted[merge_spine_labels(labels)]


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> dict[str, float]:
    """Dice of each foreground class between two class-index maps (NaN where both lack the class).

    Example:
        >>> dice_per_class(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
        {'vertebra': 0.6666666666666666, 'disc': 0.6666666666666666}
    """
    scores = {}
    for index in range(1, n_classes):
        predicted, actual = prediction == index, truth == index
        total = int(predicted.sum()) + int(actual.sum())
        overlap = int(np.logical_and(predicted, actual).sum())
        scores[CLASS_NAMES[index]] = 2.0 * overlap / total if total else float("nan")
    return scores


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class SegmentationSettings:
    """Settings of the segmentation network and its training (the ``segmentation`` section).

    Args:
        working_spacing_mm: voxel size (mm, X Y Z) scans are resampled to for the network.
        patch_size: training crop and sliding-window size (voxels at the working spacing);
            each side a multiple of ``2 ** (len(channels) - 1)``.
        channels: U-Net feature channels per level.
        epochs: passes over the training scans (one random crop of each per pass).
        batch_size: crops per optimiser step.
        learning_rate: Adam's initial learning rate (cosine decay to 0 over the run).
        validation_fraction: share of subjects held out to measure Dice (without a cohort
            table; with one, its splits decide).
        max_scans: most labelled scans to train on (the first subjects of a seeded shuffle).
        evaluation_scans_per_split: most held-out scans scored per split (a seeded sample of
            each of validation, test, full_test_abnormal; all when a split has fewer).
        mixed_precision: float16 automatic mixed precision on CUDA.
        cpu_bfloat16: bfloat16 autocast on CPU. Off by default: for this small U-Net it
            was 1.4-1.7 times slower per step than float32 with channels-last memory
            on an AVX-512-bf16 CPU (conversions outweigh the cheaper convolutions).
        synthesis: train on images synthesised from the label maps (SynthSeg-style,
            :mod:`spineage.imaging.synthesis`) instead of the phantom's one contrast.
        synthesis_*: the ranges of the synthesis's random draws (the fields of
            :class:`~spineage.imaging.synthesis.SynthesisSettings` of the same names).
        initial_model: a model folder (an earlier ``--out``) or MLflow model URI whose weights
            training starts from (a longer pre-training's checkpoint); "" starts from scratch.
            Its channels, working spacing and patch size must be these.
        seed: drives the split, the crops and the initial weights (params.yaml's ``seed``).
    """

    working_spacing_mm: tuple[float, float, float] = (4.0, 2.5, 2.5)
    patch_size: tuple[int, int, int] = (16, 64, 128)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    epochs: int = 30
    batch_size: int = 4
    learning_rate: float = 2e-3
    validation_fraction: float = 0.15
    max_scans: int = 120
    evaluation_scans_per_split: int = 50
    mixed_precision: bool = True
    cpu_bfloat16: bool = False
    synthesis: bool = True
    synthesis_background_tissues: int = 8
    synthesis_spine_tissues: tuple[int, int, int, int] = (2, 2, 1, 1)
    synthesis_real_image_fraction: float = 0.35
    synthesis_rotation_deg: float = 15.0
    synthesis_scaling: float = 0.15
    synthesis_elastic: float = 0.15
    synthesis_bias: float = 0.1
    synthesis_max_blur_voxels: float = 1.2
    synthesis_noise: float = 0.06
    synthesis_texture: float = 0.15
    synthesis_cord_growth_probability: float = 0.0
    synthesis_field_of_view_probability: float = 0.5
    initial_model: str = ""
    seed: int = 0

    def synthesis_settings(self) -> "SynthesisSettings":
        """The synthesis's ranges as :class:`~spineage.imaging.synthesis.SynthesisSettings`."""
        from spineage.imaging.synthesis import SynthesisSettings

        prefix = "synthesis_"
        return SynthesisSettings(**{k[len(prefix):]: v for k, v in asdict(self).items() if k.startswith(prefix)})

    def with_overrides(self, **changes: Any) -> "SegmentationSettings":
        """A copy with the given fields changed (None values are ignored), checked again."""
        changed = replace(self, **{k: v for k, v in changes.items() if v is not None})
        as_section = {k: v for k, v in asdict(changed).items() if k != "seed"}
        return replace(parse_segmentation_settings(as_section), seed=changed.seed)


_KEYS = field_names(SegmentationSettings, without=("seed",))


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, default, "segmentation", low, high, integer)


def _numbers(section: dict[str, Any], key: str, default: Sequence, count: int | None, low: float, high: float, integer: bool) -> tuple:
    return numbers(section, key, default, "segmentation", count, low, high, integer)


def _initial_model(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"Expected a model folder, an MLflow model URI or nothing for segmentation.initial_model, found {value!r}")
    return value.strip()


def parse_segmentation_settings(section: Any) -> SegmentationSettings:
    """Turn the ``segmentation`` section of params.yaml into :class:`SegmentationSettings`, checking every value.

    Raises:
        UserError: for an unknown key, a value of the wrong type or out of range, or a
            patch size that the U-Net cannot halve ``len(channels) - 1`` times.

    Example:
        >>> parse_segmentation_settings({"epochs": 5}).epochs
        5
    """
    section = section_mapping(section, "segmentation", _KEYS)
    defaults = SegmentationSettings()
    channels = _numbers(section, "channels", defaults.channels, None, 1, 1024, integer=True)
    if len(channels) < 2:
        raise UserError(f"Expected at least two U-Net levels in segmentation.channels, found {list(channels)}")
    patch = _numbers(section, "patch_size", defaults.patch_size, 3, 4, 1024, integer=True)
    multiple = 2 ** (len(channels) - 1)
    if any(side % multiple for side in patch):
        raise UserError(
            f"Expected every segmentation.patch_size side to be a multiple of {multiple} "
            f"({len(channels)} U-Net levels), found {list(patch)}"
        )
    switches = {key: flag(section, key, getattr(defaults, key), "segmentation") for key in ("mixed_precision", "cpu_bfloat16", "synthesis")}
    synthesis_ranges = {
        key: float(_number(section, key, getattr(defaults, key), low, high))
        for key, low, high in (
            ("synthesis_real_image_fraction", 0.0, 1.0),
            ("synthesis_rotation_deg", 0.0, 90.0),
            ("synthesis_scaling", 0.0, 0.5),
            ("synthesis_elastic", 0.0, 0.5),
            ("synthesis_bias", 0.0, 2.0),
            ("synthesis_max_blur_voxels", 0.0, 5.0),
            ("synthesis_noise", 0.0, 0.5),
            ("synthesis_texture", 0.0, 1.0),
            ("synthesis_cord_growth_probability", 0.0, 1.0),
            ("synthesis_field_of_view_probability", 0.0, 1.0),
        )
    }
    return SegmentationSettings(
        working_spacing_mm=_numbers(section, "working_spacing_mm", defaults.working_spacing_mm, 3, 0.1, 50.0, integer=False),
        patch_size=patch,
        channels=channels,
        epochs=int(_number(section, "epochs", defaults.epochs, 1, 100_000, integer=True)),
        batch_size=int(_number(section, "batch_size", defaults.batch_size, 1, 1024, integer=True)),
        learning_rate=float(_number(section, "learning_rate", defaults.learning_rate, 1e-7, 1.0)),
        validation_fraction=float(_number(section, "validation_fraction", defaults.validation_fraction, 0.01, 0.9)),
        max_scans=int(_number(section, "max_scans", defaults.max_scans, 2, 10_000_000, integer=True)),
        evaluation_scans_per_split=int(
            _number(section, "evaluation_scans_per_split", defaults.evaluation_scans_per_split, 1, 10_000_000, integer=True)
        ),
        synthesis_background_tissues=int(
            _number(section, "synthesis_background_tissues", defaults.synthesis_background_tissues, 1, 64, integer=True)
        ),
        synthesis_spine_tissues=_numbers(section, "synthesis_spine_tissues", defaults.synthesis_spine_tissues, 4, 1, 16, integer=True),
        initial_model=_initial_model(section.get("initial_model", defaults.initial_model)),
        **synthesis_ranges,
        **switches,
    )


def load_segmentation_settings(params: str | Path) -> SegmentationSettings:
    """The segmentation settings of a params file, with its seed, after the checks of the whole file."""
    from spineage.config import read_params_mapping

    raw = read_params_mapping(params)  # the seed is checked there: a non-negative integer
    return replace(parse_segmentation_settings(raw.get("segmentation")), seed=int(raw.get("seed", 0)))


# --------------------------------------------------------------------------- grids and intensities


def working_shape(shape: Sequence[int], spacing: Sequence[float], working_spacing: Sequence[float]) -> tuple[int, int, int]:
    """The grid shape that covers the same field of view at ``working_spacing``.

    Example:
        >>> working_shape((12, 120, 420), (4.0, 2.0, 2.0), (4.0, 4.0, 4.0))
        (12, 60, 210)
    """
    return tuple(max(1, int(round(n * s / w))) for n, s, w in zip(shape, spacing, working_spacing))  # type: ignore[return-value]


def normalise_intensity(image: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray:
    """Map the low and high intensity percentiles to 0 and 1 (clipped to [-0.5, 1.5]), as float32.

    Percentiles rather than min/max so that a few hot voxels or a different
    scanner gain do not change what the network sees.
    """
    image = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(image, [percentiles[0], percentiles[1]])
    scale = float(high - low) if high > low else 1.0
    return np.clip((image - np.float32(low)) / np.float32(scale), -0.5, 1.5).astype(np.float32)


def _resize(tensor: "torch.Tensor", shape: Sequence[int]) -> "torch.Tensor":
    """Trilinear resize of (N, C, X, Y, Z) to ``shape``, keeping the field of view (voxel edges aligned)."""
    import torch.nn.functional as F

    if tuple(tensor.shape[2:]) == tuple(shape):
        return tensor
    return F.interpolate(tensor, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)


def image_to_working_grid(
    image: np.ndarray, spacing: Sequence[float], working_spacing: Sequence[float], percentiles: Sequence[float] = (0.5, 99.5)
) -> np.ndarray:
    """Normalised intensities resampled (trilinear) to the working spacing, float32 (X, Y, Z).

    Along an axis whose voxels grow by more than half (a 1 mm scan onto a 4 mm grid), the
    image is first smoothed with a Gaussian of (factor - 1) / 2 voxels, so that the coarse
    grid averages what it covers instead of picking single noisy slices (aliasing).
    """
    import torch
    from scipy.ndimage import gaussian_filter

    normalised = normalise_intensity(image, percentiles)
    factors = [float(w) / float(s) for s, w in zip(spacing, working_spacing)]
    if any(f > 1.5 for f in factors):
        normalised = gaussian_filter(normalised, sigma=[(f - 1.0) / 2.0 if f > 1.5 else 0.0 for f in factors], mode="nearest")
    shape = working_shape(image.shape, spacing, working_spacing)
    return _resize(torch.from_numpy(np.ascontiguousarray(normalised, dtype=np.float32))[None, None], shape)[0, 0].numpy().astype(np.float32)


def classes_to_working_grid(classes: np.ndarray, spacing: Sequence[float], working_spacing: Sequence[float]) -> np.ndarray:
    """Class-index map resampled to the working spacing by the majority of each voxel (one-hot, linear, argmax)."""
    import torch
    import torch.nn.functional as F

    shape = working_shape(classes.shape, spacing, working_spacing)
    tensor = torch.from_numpy(classes.astype(np.int64))
    if tuple(shape) == tuple(classes.shape):
        return classes.astype(np.uint8)
    one_hot = F.one_hot(tensor, len(CLASS_NAMES)).permute(3, 0, 1, 2)[None].float()
    return _resize(one_hot, shape)[0].argmax(0).numpy().astype(np.uint8)


# --------------------------------------------------------------------------- prediction


def _autocast(device: "torch.device", mixed_precision: bool, cpu_bfloat16: bool):
    """float16 autocast on CUDA when ``mixed_precision``, bfloat16 on CPU when ``cpu_bfloat16``, else a no-op."""
    import contextlib

    import torch

    if device.type == "cuda" and mixed_precision:
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_bfloat16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _default_device() -> "torch.device":
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def predict_probabilities(
    net: "SpineSegNet",
    image: np.ndarray,
    *,
    device: "torch.device | None" = None,
    mixed_precision: bool = True,
    cpu_bfloat16: bool = False,
    batch_size: int = 2,
    mirror: bool = True,
) -> "torch.Tensor":
    """Class probabilities (C, X, Y, Z), float32 on the CPU, of a working-grid image by sliding window.

    Args:
        net: the network (its ``patch_size`` is the window).
        image: normalised intensities at the network's working spacing (X, Y, Z).
        device: where to run (the network's device by default).
        mixed_precision: float16 autocast on CUDA.
        cpu_bfloat16: bfloat16 autocast on CPU.
        batch_size: windows per forward pass.
        mirror: average with the prediction of the left-right mirrored scan, mirrored back
            (nnU-Net's test-time mirroring, along the one axis training mirrors): twice the time.
            On the real lumbar scan it removes the specks in front of the sacrum; on the real
            cervical crop the cord is found along the whole canal instead of its upper half.
    """
    import torch
    from monai.inferers import sliding_window_inference

    device = device or next(net.parameters()).device
    was_training = net.training
    net.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last_3d)  # 1.6x faster convolutions on CPU, same results
    try:
        with torch.no_grad(), _autocast(device, mixed_precision, cpu_bfloat16):
            views = [inputs, inputs.flip(2)] if mirror else [inputs]
            probabilities = [
                torch.softmax(sliding_window_inference(
                    view, roi_size=net.patch_size, sw_batch_size=batch_size, predictor=net, overlap=0.25, mode="gaussian"
                ).float(), dim=1)
                for view in views
            ]
    finally:
        net.train(was_training)
    if mirror:
        probabilities[1] = probabilities[1].flip(2)
    return (sum(probabilities) / len(probabilities))[0].cpu()


def _classes_on_grid(probabilities: "torch.Tensor", shape: Sequence[int]) -> np.ndarray:
    """Class index per voxel of ``shape``: probabilities resampled linearly, then the most probable class."""
    return _resize(probabilities[None], shape)[0].argmax(0).numpy().astype(np.uint8)


MIN_COMPONENT_SHARE: float = 0.25
"""A connected spine piece is kept when it holds at least this share of the largest piece's voxels.

The spine is usually one connected structure, but not always on the network's
grid: on a small field of view (a cervical crop) the canal and the vertebral
column can come out as two pieces, each a large share of the mask, while a
stray blob elsewhere in the body is a small share.
"""


def keep_spine_components(classes: np.ndarray, min_share: float = MIN_COMPONENT_SHARE) -> np.ndarray:
    """The class map with every 26-connected foreground piece under ``min_share`` of the largest set to background.

    A stray blob elsewhere in the body would otherwise widen the mask's
    bounding box and move the preprocess crop off the spine; a second large
    piece (the canal beside the column on a small field of view) is spine.

    Example:
        >>> keep_spine_components(np.array([[[1, 1, 1, 1, 2, 0, 0, 3]]])).tolist()
        [[[1, 1, 1, 1, 2, 0, 0, 0]]]
        >>> keep_spine_components(np.array([[[1, 1, 1, 1, 2, 0, 0, 3]]]), min_share=0.2).tolist()
        [[[1, 1, 1, 1, 2, 0, 0, 3]]]
    """
    from scipy import ndimage

    components, count = ndimage.label(classes > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return classes
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    kept = sizes >= min_share * sizes.max()
    kept[0] = False
    return np.where(kept[components], classes, 0).astype(classes.dtype)


def segment_classes(net: "SpineSegNet", image: np.ndarray, spacing: Sequence[float], *, mixed_precision: bool = True) -> np.ndarray:
    """Class index (0-4 of :data:`CLASS_NAMES`) of every voxel of ``image``, on its own grid.

    The scan is resampled to the network's working spacing, predicted by
    sliding window as it is and mirrored left-right (the two averaged,
    :func:`predict_probabilities`), and its class probabilities resampled back linearly before
    taking the most probable class (smoother borders than resampling labels);
    only the spine's large connected pieces are kept (:func:`keep_spine_components`).
    """
    return segment_classes_with_confidence(net, image, spacing, mixed_precision=mixed_precision)[0]


def segment_classes_with_confidence(
    net: "SpineSegNet", image: np.ndarray, spacing: Sequence[float], *, mixed_precision: bool = True
) -> tuple[np.ndarray, float]:
    """:func:`segment_classes` and the network's confidence (:func:`spine_confidence` on the working grid)."""
    work = image_to_working_grid(image, spacing, net.working_spacing, net.intensity_percentiles)
    probabilities = predict_probabilities(net, work, mixed_precision=mixed_precision)
    return keep_spine_components(_classes_on_grid(probabilities, image.shape)), spine_confidence(probabilities)


@functools.lru_cache(maxsize=4)
def _load_pinned_model(tracking: str, uri: str) -> "SpineSegNet":
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    from spineage.models.spine_seg import SpineSegNet

    try:
        model = mlflow.pytorch.load_model(uri, map_location="cpu")
    except MlflowException as error:
        raise UserError(f"Expected a segmentation model at {uri} in {tracking}, found an error: {error.message}") from None
    except OSError as error:
        raise UserError(f"Expected a segmentation model at {uri} in {tracking}, found an unreadable one ({error})") from None
    if not isinstance(model, SpineSegNet):
        raise UserError(f"Expected a spine segmentation model (SpineSegNet) at {uri}, found a {type(model).__name__}")
    return model.to(_default_device()).eval()


def load_segmentation_model(model_uri: str | None = None) -> "SpineSegNet":
    """Load a registered spine segmentation model (cached per tracking store and version).

    Args:
        model_uri: any MLflow model URI, e.g. ``models:/spine-seg-mri@candidate``; by
            default the ``production`` version of ``spine-seg-mri``, else its ``candidate``.

    Raises:
        UserError: if there is no such model or it is not a spine segmentation model.
    """
    from spineage.registry.tracking import configure_mlflow, pinned_model_uri, resolve_model_uri

    tracking = configure_mlflow()
    uri = resolve_model_uri(MODEL_NAME) if model_uri is None else pinned_model_uri(model_uri)
    return _load_pinned_model(tracking, uri)


def _checked_array(volume: "Volume") -> np.ndarray:
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise UserError(f"Expected a 3D volume to segment, found an array of shape {array.shape}")
    if min(array.shape) < 2:
        raise UserError(f"Expected a volume at least 2 voxels along each axis, found shape {array.shape}")
    return array


def segment_volume_with_confidence(
    volume: "Volume", model_uri: "str | SpineSegNet | None" = None, *, mixed_precision: bool = True
) -> tuple[np.ndarray, float]:
    """Segment a scan and say how sure the network is: (label map, confidence).

    The label map is :func:`segment_volume`'s. The confidence is the mean top-class
    probability over the voxels of the kept spine pieces (:func:`keep_spine_components`) on the
    working grid: 1.0 is a network certain of every spine voxel; a scan unlike
    anything it was trained on (another body part, a contrast it never saw) scores
    lower, which is what ``spineage predict``'s out-of-distribution flag reads.
    0.0 when nothing is segmented.

    Args:
        volume: a canonical scan (anything with ``array`` (X, Y, Z) and ``spacing`` in mm).
        model_uri: the model to use (see :func:`load_segmentation_model`) or a loaded network.
        mixed_precision: float16 autocast on CUDA (the CPU runs float32).

    Returns:
        (uint8 label map shaped like ``volume.array`` in the codes of :data:`CLASS_CODES`, confidence in [0, 1]).
    """
    from spineage.models.spine_seg import SpineSegNet

    net = model_uri if isinstance(model_uri, SpineSegNet) else load_segmentation_model(model_uri)
    classes, confidence = segment_classes_with_confidence(net, _checked_array(volume), volume.spacing, mixed_precision=mixed_precision)
    return np.asarray(CLASS_CODES, dtype=np.uint8)[classes], confidence


def spine_confidence(probabilities: "torch.Tensor | np.ndarray") -> float:
    """Mean top-class probability inside the kept spine pieces (:func:`keep_spine_components`) of (C, X, Y, Z) probabilities.

    0.0 when no voxel's most probable class is a spine class.

    Example:
        >>> p = np.zeros((5, 1, 1, 4), dtype=np.float32)
        >>> p[0, 0, 0, :2] = 1.0; p[1, 0, 0, 2:] = [0.9, 0.6]; p[0, 0, 0, 2:] = [0.1, 0.4]
        >>> round(spine_confidence(p), 3)
        0.75
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    spine = keep_spine_components(probabilities.argmax(0).astype(np.uint8)) > 0
    return float(probabilities.max(0)[spine].mean()) if spine.any() else 0.0


def segment_volume(volume: "Volume", model_uri: "str | SpineSegNet | None" = None, *, mixed_precision: bool = True) -> np.ndarray:
    """Segment a scan: a label map on the volume's own grid, in the codes of :data:`CLASS_CODES`.

    Args:
        volume: a canonical scan (:class:`~spineage.imaging.io.Volume`; anything with
            ``array`` (X, Y, Z) and ``spacing`` in mm).
        model_uri: the model to use (see :func:`load_segmentation_model`) or a loaded network.
        mixed_precision: float16 autocast on CUDA (the CPU runs float32).

    Returns:
        uint8 array shaped like ``volume.array``: 0 background, 100 vertebra or sacrum,
        130 disc, 60 canal CSF, 61 cord. :func:`segment_volume_with_confidence` gives the
        network's confidence as well.
    """
    return segment_volume_with_confidence(volume, model_uri, mixed_precision=mixed_precision)[0]


def segment_scan(
    scan: str | Path, out: str | Path, model_uri: str | None = None, *, engine: str = "unet", levels: bool = False
) -> tuple[Path, str]:
    """Segment a scan file (NIfTI or DICOM series) and write the label map as NIfTI (through a temporary file).

    Args:
        scan: the scan.
        out: the label map to write (``.nii.gz``), on the scan's canonical RAS grid.
        model_uri: the project's model (``engine="unet"``), see :func:`load_segmentation_model`.
        engine: ``"unet"`` (the registered model) or ``"totalspineseg"`` (level labels, if installed).
        levels: name the U-Net's vertebrae and discs by counting up from the sacrum where it is
            in view (:func:`spineage.imaging.levels.assign_levels`).

    Returns:
        The path written, and what was said about levels ("" without ``levels``).
    """
    import gzip

    import nibabel as nib

    from spineage.atomic import write_atomic
    from spineage.imaging.io import load_volume

    out = Path(out)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise UserError(f"Expected an output path ending in .nii.gz or .nii, found {out}")
    if engine not in ("unet", "totalspineseg"):
        raise UserError(f"Expected engine unet or totalspineseg, found {engine!r}")
    volume = load_volume(scan)
    if engine == "totalspineseg":
        labels = segment_with_totalspineseg(scan)
        dtype = np.int16
    else:
        labels = segment_volume(volume, model_uri)
        dtype = np.uint8
    said = ""
    if levels and engine == "unet":
        from spineage.imaging.levels import assign_levels

        levelled = assign_levels(labels, volume.spacing)
        labels = levelled.labels
        said = (
            f"levels {levelled.discs[0].removeprefix('disc_')} to {levelled.discs[-1].removeprefix('disc_')} (discs below them)"
            if levelled.discs else "no levels"
        ) + (f"; {levelled.reason}" if levelled.reason else "")
    elif levels:
        said = "levels from TotalSpineSeg"
    image = nib.Nifti1Image(labels.astype(dtype), volume.affine)
    image.header.set_data_dtype(dtype)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    data = image.to_bytes()
    write_atomic(out, lambda temporary: temporary.write_bytes(gzip.compress(data, mtime=0) if out.name.endswith(".gz") else data))
    return out, said


# --------------------------------------------------------------------------- training data


@dataclass
class _Scan:
    """One labelled scan at the working spacing, ready for random crops."""

    series_id: str
    subject_id: str
    image: np.ndarray  # normalised, working grid, padded to at least the patch size
    classes: np.ndarray  # class indices, same grid
    shape: tuple[int, int, int]  # working-grid shape before padding
    foreground: list[np.ndarray] = field(default_factory=list)  # flat indices of each foreground class
    tissues: np.ndarray | None = None  # synthesis tissue codes (0 in the padding), same grid; None without synthesis


TRAIN_SPLIT = "train"
"""The cohort split the segmenter trains on; every other split is only scored."""

HELD_OUT = "held_out"
"""The split name of the held-out subjects when no cohort table is given."""

SCAN_COLUMNS: tuple[str, ...] = ("series_id", "subject_id", "split", "age", "image", "label")
"""Columns of :class:`SegmentationScans`' tables."""


def labelled_scans(raw_dir: str | Path) -> "Any":
    """The MRI series of a raw cohort that have a label map: a DataFrame of series_id, subject_id, image, label.

    Raises:
        UserError: if sessions.csv is missing or lacks columns, or no MRI series has a label.
    """
    from spineage.raw_cohort import read_mri_series

    sessions = read_mri_series(raw_dir, columns=("subject_id", "image", "label"))
    mri = sessions[sessions["label"] != ""]
    if mri.empty:
        raise UserError(f"Expected MRI series (mri_t2_sag) with a label map in {Path(raw_dir) / 'sessions.csv'}, found none")
    return mri[["series_id", "subject_id", "image", "label"]].sort_values("series_id").reset_index(drop=True)


def choose_subjects(subjects: Sequence[str], counts: dict[str, int], max_scans: int, seed: int) -> list[str]:
    """Subjects in a seeded shuffle, taken until they hold ``max_scans`` scans (the last one may pass it).

    Example:
        >>> choose_subjects(["a", "b", "c"], {"a": 2, "b": 2, "c": 2}, 3, seed=0)
        ['c', 'a']
    """
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    chosen: list[str] = []
    total = 0
    for index in order:
        if total >= max_scans:
            break
        chosen.append(unique[index])
        total += counts[unique[index]]
    return chosen


def split_subjects(subjects: Sequence[str], counts: dict[str, int], settings: SegmentationSettings) -> tuple[list[str], list[str]]:
    """Choose subjects (seeded shuffle) up to ``max_scans`` scans and hold out ``validation_fraction`` of them.

    Returns:
        (training subjects, validation subjects), each non-empty.

    Raises:
        UserError: if fewer than two subjects are available.
    """
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise UserError(f"Expected labelled scans of at least 2 subjects (to hold some out), found {len(unique)}")
    chosen = choose_subjects(unique, counts, settings.max_scans, settings.seed)
    if len(chosen) < 2:
        order = np.random.default_rng(settings.seed).permutation(len(unique))
        chosen = [unique[i] for i in order[:2]]
    n_validation = min(len(chosen) - 1, max(1, int(round(settings.validation_fraction * len(chosen)))))
    return chosen[n_validation:], chosen[:n_validation]


def read_cohort_splits(cohort: str | Path) -> "Any":
    """``series_id``, ``split`` and ``age`` of a cohort table (``spineage cohort``'s cohort.csv), as text.

    Raises:
        UserError: for a missing or unreadable table, or one without those columns.
    """
    from spineage.raw_cohort import read_cohort_table

    table = read_cohort_table(cohort, ("series_id", "split"))
    if "age" not in table.columns:
        table["age"] = ""
    return table[["series_id", "split", "age"]].drop_duplicates("series_id")


@dataclass(frozen=True)
class SegmentationScans:
    """The labelled series one training run learns from and scores (tables of :data:`SCAN_COLUMNS`).

    Args:
        train: the series trained on.
        held_out: the series scored for Dice; no subject of ``train`` (nor, with a cohort,
            of its whole train split) is among them.
        unlabelled: cohort series without a label map (neither trained on nor scored).
    """

    train: Any
    held_out: Any
    unlabelled: int = 0


def choose_scans(raw_dir: str | Path, settings: SegmentationSettings, cohort: str | Path | None = None) -> SegmentationScans:
    """The series to train on and to score, by the cohort's splits or, without one, by a seeded subject hold-out.

    With ``cohort``: the labelled series of its ``train`` split (whole subjects in a seeded
    order, up to ``max_scans``) are trained on; the labelled series of every other split
    (validation, test, full_test_abnormal) whose subject has no train-split series are
    scored, at most ``evaluation_scans_per_split`` per split (a seeded sample). Without:
    ``validation_fraction`` of the chosen subjects are held out (split ``held_out``).

    Raises:
        UserError: for a missing or unlabelled raw cohort, a bad cohort table, no labelled
            train-split series, or nothing left to score.
    """
    import pandas as pd

    table = labelled_scans(raw_dir)
    if cohort is None:
        counts = table.subject_id.value_counts().to_dict()
        train_subjects, held_out_subjects = split_subjects(table.subject_id.tolist(), counts, settings)
        table = table.assign(age="")
        train = table[table.subject_id.isin(train_subjects)].assign(split=TRAIN_SPLIT)
        held_out = table[table.subject_id.isin(held_out_subjects)].assign(split=HELD_OUT)
        return SegmentationScans(train[list(SCAN_COLUMNS)].reset_index(drop=True), held_out[list(SCAN_COLUMNS)].reset_index(drop=True))

    splits = read_cohort_splits(cohort)
    labelled = table.merge(splits, on="series_id", how="inner")
    unlabelled = len(splits) - len(labelled)
    pool = labelled[labelled.split == TRAIN_SPLIT]
    if pool.empty:
        raise UserError(
            f"Expected labelled MRI series in the {TRAIN_SPLIT} split of {cohort} to train the segmenter on, found none "
            f"({len(labelled)} labelled cohort series, {unlabelled} without a label map)"
        )
    counts = pool.subject_id.value_counts().to_dict()
    chosen = choose_subjects(sorted(counts), counts, settings.max_scans, settings.seed)
    train = pool[pool.subject_id.isin(chosen)]
    # A subject-level leak would inflate Dice: no subject of the train split is scored, trained on or not.
    others = labelled[(labelled.split != TRAIN_SPLIT) & ~labelled.subject_id.isin(set(pool.subject_id))]
    rng = np.random.default_rng(settings.seed)
    sampled = []
    for _, group in others.groupby("split", sort=True):
        if len(group) > settings.evaluation_scans_per_split:
            group = group.iloc[np.sort(rng.choice(len(group), settings.evaluation_scans_per_split, replace=False))]
        sampled.append(group)
    if not sampled:
        raise UserError(
            f"Expected labelled MRI series outside the {TRAIN_SPLIT} split of {cohort} (of other subjects) to measure Dice on, found none"
        )
    held_out = pd.concat(sampled).sort_values(["split", "series_id"])
    return SegmentationScans(
        train[list(SCAN_COLUMNS)].reset_index(drop=True), held_out[list(SCAN_COLUMNS)].reset_index(drop=True), unlabelled
    )


def _prepare_scan(raw_dir: Path, row: Any, settings: SegmentationSettings) -> _Scan:
    from spineage.imaging.io import load_label_like, load_volume

    volume = load_volume(raw_dir / row.image)
    native = merge_spine_labels(load_label_like(raw_dir / row.label, volume))
    image = image_to_working_grid(volume.array, volume.spacing, settings.working_spacing_mm)
    classes = classes_to_working_grid(native, volume.spacing, settings.working_spacing_mm)
    shape = image.shape
    pad = [(0, max(0, p - s)) for p, s in zip(settings.patch_size, shape)]
    tissues = None
    if settings.synthesis:
        from spineage.imaging.synthesis import tissue_map

        tissues = np.pad(
            tissue_map(image, classes, settings.synthesis_background_tissues, settings.synthesis_spine_tissues, seed=settings.seed),
            pad,
        )
    image = np.pad(image, pad, constant_values=float(np.percentile(image, 1)))
    classes = np.pad(classes, pad)
    foreground = [np.flatnonzero(classes == index) for index in range(1, len(CLASS_NAMES))]
    return _Scan(row.series_id, row.subject_id, image, classes, shape, foreground, tissues)


def _crop_start(scan: _Scan, patch: Sequence[int], rng: np.random.Generator) -> list[int]:
    """Where a crop starts: two times in three centred on a voxel of a random foreground class (the
    small classes, discs and cord, would otherwise be rare), else anywhere."""
    shape = scan.image.shape
    present = [voxels for voxels in scan.foreground if voxels.size]
    if present and rng.random() < 2 / 3:
        voxels = present[rng.integers(len(present))]
        centre = np.unravel_index(voxels[rng.integers(voxels.size)], shape)
        return [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, shape)]
    return [int(rng.integers(0, s - p + 1)) for p, s in zip(patch, shape)]


def _random_crop(scan: _Scan, patch: Sequence[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A patch of the scan (see :func:`_crop_start`), flipped left-right half the time."""
    start = _crop_start(scan, patch, rng)
    window = tuple(slice(b, b + p) for b, p in zip(start, patch))
    image, classes = scan.image[window], scan.classes[window]
    if rng.random() < 0.5:  # left-right mirror: the only flip that keeps the anatomy plausible
        image, classes = image[::-1], classes[::-1]
    # Scanner gain and offset differ between sites: vary them a little.
    image = image * np.float32(rng.uniform(0.85, 1.15)) + np.float32(rng.uniform(-0.1, 0.1))
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(classes)


SYNTHESIS_MARGIN = 0.25
"""Share of the patch added on each side of a synthesis crop: room for rotation and scaling to draw from."""


def _synthesis_crop(scan: _Scan, patch: Sequence[int], rng: np.random.Generator, transform: Any) -> tuple[np.ndarray, np.ndarray]:
    """A synthesised training pair from a crop of the scan's tissues (and its image) a margin larger than the patch."""
    import torch

    start = _crop_start(scan, patch, rng)
    margin = [int(math.ceil(p * SYNTHESIS_MARGIN)) for p in patch]
    low = [b - m for b, m in zip(start, margin)]
    high = [b + p + m for b, p, m in zip(start, patch, margin)]
    shape = scan.image.shape
    window = tuple(slice(max(0, lo), min(s, hi)) for lo, hi, s in zip(low, high, shape))
    pad = [(max(0, -lo), max(0, hi - s)) for lo, hi, s in zip(low, high, shape)]
    tissues = np.pad(scan.tissues[window], pad)  # 0: outside the field of view
    image = np.pad(scan.image[window], pad)
    pair = transform({"tissue": torch.from_numpy(tissues[None].astype(np.int64)), "image": torch.from_numpy(image[None].copy())})
    return (
        np.ascontiguousarray(np.asarray(pair["image"][0], dtype=np.float32)),
        np.ascontiguousarray(np.asarray(pair["label"][0], dtype=np.uint8)),
    )


def _training_batches(
    scans: list[_Scan], settings: SegmentationSettings, rng: np.random.Generator, synthesise: Any, steps_per_epoch: int
) -> Any:
    """Every training batch of the run in order: per epoch a seeded shuffle of the scans, one crop of each."""
    for _ in range(settings.epochs):
        order = rng.permutation(len(scans))
        for step in range(steps_per_epoch):
            picked = [order[(step * settings.batch_size + i) % len(order)] for i in range(settings.batch_size)]
            if synthesise is not None:
                yield [_synthesis_crop(scans[i], settings.patch_size, rng, synthesise) for i in picked]
            else:
                yield [_random_crop(scans[i], settings.patch_size, rng) for i in picked]


class _prefetched:
    """Run a generator in a background thread, ``depth`` items ahead (the same items in the same order).

    numpy and torch release the GIL in their heavy loops, so cutting and synthesising the
    next batch overlaps with the network's step on another core.
    """

    _DONE = object()

    def __init__(self, generator: Any, depth: int = 2) -> None:
        import queue
        import threading

        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._generator = generator
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        import queue

        try:
            for item in self._generator:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:  # the consumer is still busy
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._DONE)
        except BaseException as error:  # handed to the consumer, raised there
            self._queue.put(error)

    def __iter__(self) -> "_prefetched":
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (the batches not taken are dropped)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "_prefetched":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class SegmentationResult:
    """What a training run produced.

    Args:
        run_id: the MLflow run.
        model_uri: ``models:/spine-seg-mri/<version>`` of the registered version.
        version: the registered version.
        dice: mean Dice per class over the held-out scans, on their own grids.
        train_scans: scans trained on.
        held_out_scans: scans scored.
        epochs: epochs run.
        final_loss: mean training loss of the last epoch.
        seconds: wall time of the training loop.
        loss_history: mean training loss of each epoch.
        dice_by_split: mean Dice per class over the held-out scans of each split.
        series: one row per series used: ``series_id``, ``subject_id``, ``split``, ``age``,
            ``role`` (train or held_out) and, for a held-out one, ``dice_<class>``, ``dice_mean``
            and ``seconds`` (segmenting it, as ``segment_volume`` does).
        model_folder: where the model was written (``--out``), if anywhere.
        synthesis: trained on synthesised images (``settings.synthesis``).
        alias: the registry alias the version took (``candidate``, or ``pretrained``).
    """

    run_id: str
    model_uri: str
    version: str
    dice: dict[str, float]
    train_scans: int
    held_out_scans: int
    epochs: int
    final_loss: float
    seconds: float
    loss_history: tuple[float, ...] = ()
    dice_by_split: dict[str, dict[str, float]] = field(default_factory=dict)
    series: tuple[dict[str, Any], ...] = ()
    model_folder: Path | None = None
    synthesis: bool = False
    alias: str = "candidate"

    @property
    def train_series(self) -> list[str]:
        """The series trained on."""
        return [row["series_id"] for row in self.series if row["role"] == TRAIN_SPLIT]

    @property
    def inference_seconds(self) -> float:
        """Mean seconds to segment one held-out scan (NaN when none was scored)."""
        seconds = [row["seconds"] for row in self.series if row["role"] == HELD_OUT]
        return float(np.mean(seconds)) if seconds else float("nan")

    def __str__(self) -> str:
        scores = ", ".join(f"{name} {value:.3f}" for name, value in self.dice.items())
        written = f"; model in {self.model_folder}" if self.model_folder is not None else ""
        return (
            f"{self.model_uri} (alias {self.alias}, run {self.run_id}): {self.epochs} epochs on {self.train_scans} scans "
            f"in {self.seconds:.0f} s, loss {self.final_loss:.3f}; held-out Dice on {self.held_out_scans} scans "
            f"({', '.join(self.dice_by_split)}): {scores}; {self.inference_seconds:.2f} s per scan{written}"
        )


EPOCH_VALIDATION_SCANS = 4
"""Held-out scans whose working-grid Dice is logged every epoch (all are scored at the end)."""


def _working_grid_dice(net: "SpineSegNet", scan: _Scan, settings: SegmentationSettings) -> dict[str, float]:
    """Dice per class of one prepared scan on the working grid (padding left out)."""
    probabilities = predict_probabilities(net, scan.image, mixed_precision=settings.mixed_precision, cpu_bfloat16=settings.cpu_bfloat16, mirror=False)
    inside = tuple(slice(0, n) for n in scan.shape)
    return dice_per_class(probabilities.argmax(0).numpy()[inside], scan.classes[inside])


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    names = CLASS_NAMES[1:]
    means = {}
    for name in names:
        values = [s[name] for s in scores if not math.isnan(s[name])]
        means[name] = float(np.mean(values)) if values else float("nan")
    return means


def _with_mean(scores: dict[str, float]) -> dict[str, float]:
    """Per-class scores plus ``mean``, the mean of the classes that have a score."""
    finite = [v for v in scores.values() if not math.isnan(v)]
    return {**scores, "mean": float(np.mean(finite)) if finite else float("nan")}


def score_held_out(net: "SpineSegNet", raw_dir: Path, rows: Any, settings: SegmentationSettings, *, progress: bool = True) -> list[dict[str, Any]]:
    """Segment each held-out scan the way :func:`segment_volume` does and score it against its label map.

    Returns:
        One row per scan: ``series_id``, ``subject_id``, ``split``, ``age``, ``role`` (held_out),
        ``dice_<class>`` for each spine class and ``dice_mean`` on the scan's own grid,
        ``confidence`` (:func:`spine_confidence`) and ``seconds`` (segmenting it, loading aside).
    """
    from tqdm import tqdm

    from spineage.imaging.io import load_label_like, load_volume

    scored = []
    for row in tqdm(list(rows.itertuples(index=False)), desc="scoring held-out scans", unit="scan", disable=not progress, file=sys.stderr):
        volume = load_volume(raw_dir / row.image)
        truth = merge_spine_labels(load_label_like(raw_dir / row.label, volume))
        started = time.perf_counter()
        predicted, confidence = segment_classes_with_confidence(
            net, np.asarray(volume.array), volume.spacing, mixed_precision=settings.mixed_precision
        )
        seconds = time.perf_counter() - started
        scores = _with_mean(dice_per_class(predicted, truth))
        scored.append({
            "series_id": row.series_id, "subject_id": row.subject_id, "split": row.split, "age": row.age, "role": HELD_OUT,
            **{f"dice_{name}": value for name, value in scores.items()}, "confidence": confidence, "seconds": seconds,
        })
    return scored


def _check_model_folder(out: Path) -> Path:
    """Refuse an ``--out`` that is a file, or a folder holding anything but an earlier model (nothing is overwritten)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected --out {out} to be a folder for the model, found a file")
    if out.is_dir() and any(out.iterdir()) and not (out / "MLmodel").is_file():
        raise UserError(f"Expected --out {out} to be a new folder or an earlier model folder (with an MLmodel file), found other files in it")
    return out


def export_model(model_uri: str, out: str | Path) -> Path:
    """Copy a logged model's files (MLmodel, the pickled network, its requirements) into the folder ``out``.

    The folder loads with ``mlflow.pytorch.load_model(out)`` (and
    ``preprocess.segmentation_model: <out>``) without the registry, so that a
    moving alias cannot change what a pipeline run used. An earlier export is
    replaced whole, only once the new one is complete.

    Args:
        model_uri: the logged model (``ModelInfo.model_uri``) or any MLflow model URI.
        out: the folder to write.
    """
    import mlflow.artifacts

    out = _check_model_folder(Path(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old = out.parent / f".{out.name}.old"
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging))
        if not (staging / "MLmodel").is_file():
            raise UserError(f"Expected an MLflow model (an MLmodel file) at {model_uri}, found {sorted(p.name for p in staging.iterdir())}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it owner-only; outputs get the usual permissions
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def initial_weights(settings: SegmentationSettings) -> "SpineSegNet":
    """The network ``settings.initial_model`` names, checked to have the settings' architecture and grid.

    Raises:
        UserError: if it cannot be loaded, is not a spine segmentation model, or differs in
            channels, working spacing or patch size.
    """
    from spineage.models.spine_seg import SpineSegNet

    source = settings.initial_model
    if "://" not in source and not source.startswith("models:/"):
        folder = Path(source)
        if not (folder / "MLmodel").is_file():
            raise UserError(f"Expected segmentation.initial_model {source} to be a model folder (with an MLmodel file), found none")
        source = str(folder.resolve())
    import mlflow.pytorch

    try:
        net = mlflow.pytorch.load_model(source, map_location="cpu")
    except Exception as error:  # MLflow raises several kinds for a missing or unreadable model
        raise UserError(f"Expected a segmentation model at segmentation.initial_model {settings.initial_model}, found an error: {error}") from None
    if not isinstance(net, SpineSegNet):
        raise UserError(f"Expected a spine segmentation model (SpineSegNet) at {settings.initial_model}, found a {type(net).__name__}")
    wanted = (tuple(settings.channels), tuple(settings.working_spacing_mm), tuple(settings.patch_size))
    found = (net.channels, net.working_spacing, net.patch_size)
    if found != wanted:
        raise UserError(
            f"Expected segmentation.initial_model {settings.initial_model} with channels, working spacing and patch size "
            f"{wanted}, found {found}"
        )
    return net


def train_segmentation(
    raw_dir: str | Path,
    settings: SegmentationSettings,
    *,
    cohort: str | Path | None = None,
    out: str | Path | None = None,
    reports: str | Path | None = None,
    progress: bool = True,
    alias: str = "candidate",
) -> SegmentationResult:
    """Train the spine segmentation network on a raw cohort's labelled MRI, score it, log it and register it.

    The series are chosen by :func:`choose_scans`: with a cohort table, the
    labelled series of its train split are trained on and those of the other
    splits scored; without, a seeded share of subjects is held out. Scans are
    resampled to the working spacing and trained on random crops with Dice +
    cross-entropy and Adam (cosine learning-rate decay). A few held-out scans
    are scored on the working grid every epoch; at the end every held-out scan
    is segmented as :func:`segment_volume` does and scored on its own grid. One
    MLflow run holds the settings, the per-epoch loss and Dice, the final Dice
    (overall and per split), the series used and the model; the model becomes
    a new version of ``spine-seg-mri`` with alias ``alias`` (``candidate``; a
    pre-training that a later run starts from takes ``pretrained``).

    Args:
        raw_dir: a raw-cohort folder (sessions.csv with ``label`` paths).
        settings: the segmentation settings.
        cohort: ``spineage cohort``'s cohort.csv (series_id, split, age), or None.
        out: a folder to copy the model into (see :func:`export_model`), or None.
        reports: a folder for ``metrics.json`` and ``series.csv`` (see
            :func:`write_segmentation_reports`), or None.
        progress: show progress bars.
        alias: the registry alias the new version takes.

    Returns:
        The :class:`SegmentationResult`.

    Raises:
        UserError: for a missing or unlabelled cohort, too few subjects, or an ``out``
            that holds something other than an earlier model.
    """
    from spineage.registry.tracking import configure_mlflow, quiet_mlflow, register_model_version

    quiet_mlflow()  # before importing mlflow (telemetry off)
    import mlflow
    import torch
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism
    from tqdm import tqdm

    from spineage.models.spine_seg import SpineSegNet

    if alias not in TRAINING_ALIASES:
        raise UserError(f"Expected the new version's alias to be one of {', '.join(TRAINING_ALIASES)} (production comes only "
                        f"through `spineage promote`), found {alias!r}")
    raw_dir = Path(raw_dir)
    if out is not None:
        out = _check_model_folder(Path(out))  # before minutes of training
    chosen = choose_scans(raw_dir, settings, cohort)
    initial = initial_weights(settings) if settings.initial_model else None  # checked before minutes of loading
    configure_mlflow(EXPERIMENT)  # fail early on an unusable tracking store, before minutes of loading
    # Scored every epoch on the working grid: a few held-out scans, the validation split's first.
    monitor = chosen.held_out.assign(_order=(chosen.held_out.split != "validation")).sort_values(["_order", "series_id"])
    rows = {"train": chosen.train, "monitor": monitor.head(EPOCH_VALIDATION_SCANS)}
    scans: dict[str, list[_Scan]] = {"train": [], "monitor": []}
    with tqdm(total=sum(len(r) for r in rows.values()), desc="loading scans", unit="scan", disable=not progress, file=sys.stderr) as bar:
        for part, frame in rows.items():
            for row in frame.itertuples(index=False):
                scans[part].append(_prepare_scan(raw_dir, row, settings))
                bar.update()

    set_determinism(seed=settings.seed)
    rng = np.random.default_rng(settings.seed)
    synthesise = None
    if settings.synthesis:
        from spineage.imaging.synthesis import synthesis_transform, tissue_classes

        lookup = tissue_classes(settings.synthesis_background_tissues, settings.synthesis_spine_tissues)
        synthesise = synthesis_transform(settings.patch_size, len(lookup), lookup, settings.synthesis_settings())
        synthesise.set_random_state(seed=settings.seed)
    device = _default_device()
    net = SpineSegNet(channels=settings.channels, working_spacing=settings.working_spacing_mm, patch_size=settings.patch_size)
    if initial is not None:
        net.load_state_dict(initial.state_dict())
    net = net.to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last_3d)
    steps_per_epoch = max(1, math.ceil(len(scans["train"]) / settings.batch_size))
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs * steps_per_epoch)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and settings.mixed_precision)

    started = time.perf_counter()
    history: list[float] = []
    with mlflow.start_run(run_name=f"spine-seg-{len(scans['train'])}scans-{settings.epochs}ep") as run:
        mlflow.log_params({
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
            "raw_dir": str(raw_dir.resolve()),
            "cohort": str(Path(cohort).resolve()) if cohort is not None else "",
            "train_scans": len(chosen.train),
            "held_out_scans": len(chosen.held_out),
            "train_subjects": chosen.train.subject_id.nunique(),
            "held_out_subjects": chosen.held_out.subject_id.nunique(),
            "unlabelled_cohort_series": chosen.unlabelled,
            "steps_per_epoch": steps_per_epoch,
            "device": device.type,
            "classes": ",".join(CLASS_NAMES),
        })
        mlflow.set_tags({"model_name": MODEL_NAME, "task": "segmentation"})
        epochs = tqdm(range(settings.epochs), desc="training", unit="epoch", disable=not progress, file=sys.stderr)
        # Crops are cut (and synthesised) in a thread one batch ahead, on a core the network leaves free.
        with _prefetched(_training_batches(scans["train"], settings, rng, synthesise, steps_per_epoch)) as batches:
            for epoch in epochs:
                net.train()
                losses = []
                for step in range(steps_per_epoch):
                    crops = next(batches)
                    images = torch.from_numpy(np.stack([c[0] for c in crops]))[:, None].to(device)
                    targets = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64))[:, None].to(device)
                    if device.type == "cpu":
                        images = images.contiguous(memory_format=torch.channels_last_3d)
                    optimiser.zero_grad(set_to_none=True)
                    with _autocast(device, settings.mixed_precision, settings.cpu_bfloat16):
                        logits = net(images)
                    loss = loss_function(logits.float(), targets)
                    scaler.scale(loss).backward()
                    scaler.step(optimiser)
                    scaler.update()
                    schedule.step()
                    losses.append(float(loss.detach()))
                epoch_loss = float(np.mean(losses))
                history.append(epoch_loss)
                validation = _mean_scores([_working_grid_dice(net, s, settings) for s in scans["monitor"]])
                mlflow.log_metrics(
                    {"train_loss": epoch_loss, "lr": schedule.get_last_lr()[0], **{f"val_dice_{k}": v for k, v in validation.items() if not math.isnan(v)}},
                    step=epoch,
                )
                epochs.set_postfix(loss=f"{epoch_loss:.3f}", vertebra=f"{validation['vertebra']:.3f}", disc=f"{validation['disc']:.3f}")
        seconds = time.perf_counter() - started
        if not history or not math.isfinite(history[-1]):
            # Registering would move @candidate to a network that did not learn.
            raise UserError(
                f"Expected a trained segmentation network (at least one epoch ending with a finite loss), "
                f"found {len(history)} epochs{f' ending with loss {history[-1]}' if history else ''}"
            )
        del scans  # the training crops' scans: memory for scoring

        # The figures to trust: held-out scans, on their own grids, through the same path as segment_volume.
        net.eval()
        scored = score_held_out(net, raw_dir, chosen.held_out, settings, progress=progress)
        names = CLASS_NAMES[1:]
        dice = _mean_scores([{name: row[f"dice_{name}"] for name in names} for row in scored])
        by_split = {
            split: _mean_scores([{name: row[f"dice_{name}"] for name in names} for row in scored if row["split"] == split])
            for split in sorted({row["split"] for row in scored})
        }
        mlflow.log_metrics({
            **{f"dice_{k}": v for k, v in _with_mean(dice).items() if not math.isnan(v)},
            **{f"dice_{split}_{k}": v for split, scores in by_split.items() for k, v in _with_mean(scores).items() if not math.isnan(v)},
            "train_seconds": seconds,
            "inference_seconds_per_scan": float(np.mean([row["seconds"] for row in scored])),
        })
        trained_on = [
            {"series_id": row.series_id, "subject_id": row.subject_id, "split": row.split, "age": row.age, "role": TRAIN_SPLIT}
            for row in chosen.train.itertuples(index=False)
        ]
        mlflow.log_dict(
            {
                "train_series": [row["series_id"] for row in trained_on],
                "held_out_series": [row["series_id"] for row in scored],
                "dice_per_scan": {row["series_id"]: {name: row[f"dice_{name}"] for name in names} for row in scored},
                "class_codes": dict(zip(CLASS_NAMES, CLASS_CODES)),
            },
            "evaluation.json",
        )
        model_info = log_segmentation_model(net)
        version = register_model_version(
            model_info,
            MODEL_NAME,
            alias=alias,
            tags={f"dice_{k}": f"{v:.4f}" for k, v in dice.items()},
            description=f"Spine segmentation U-Net ({', '.join(CLASS_NAMES[1:])}) at {list(settings.working_spacing_mm)} mm",
        )
        if out is not None:
            export_model(model_info.model_uri, out)
    result = SegmentationResult(
        run_id=run.info.run_id,
        model_uri=f"models:/{MODEL_NAME}/{version.version}",
        version=str(version.version),
        dice=dice,
        train_scans=len(chosen.train),
        held_out_scans=len(scored),
        epochs=settings.epochs,
        final_loss=history[-1],
        seconds=seconds,
        loss_history=tuple(history),
        dice_by_split=by_split,
        series=tuple(trained_on + scored),
        model_folder=out,
        synthesis=settings.synthesis,
        alias=alias,
    )
    if reports is not None:
        write_segmentation_reports(result, reports)
    return result


def log_segmentation_model(net: "SpineSegNet") -> Any:
    """Log the network to the active MLflow run with the pytorch flavour (pickled, so that it
    loads back as a :class:`SpineSegNet`), a tensor signature, an input example and pinned requirements.

    Returns:
        MLflow's ``ModelInfo``.
    """
    from spineage.registry.tracking import log_torch_module

    side = 2 * net.grid_multiple
    return log_torch_module(
        net, input_shape=(-1, 1, -1, -1, -1), output_shape=(-1, len(net.class_names), -1, -1, -1),
        example_shape=(1, 1, side, side, side), packages=("torch", "monai", "numpy", "cloudpickle"),
        metadata={"classes": list(net.class_names), "class_codes": list(CLASS_CODES), "needs": "the spineage package"},
    )


# --------------------------------------------------------------------------- TotalSpineSeg

TOTALSPINESEG_INSTALL = (
    'TotalSpineSeg is not installed: pip install "totalspineseg[nnunetv2]" (best in its own virtual environment, '
    "with its `totalspineseg` command on PATH) and run `totalspineseg` once on any scan to fetch its weights "
    "(or set TOTALSPINESEG_DATA to a folder holding them); meanwhile use --engine unet"
)
"""The one-line message when TotalSpineSeg or its weights are missing."""

_TSS_DATASETS = ("Dataset101_TotalSpineSeg_step1", "Dataset102_TotalSpineSeg_step2")


def _totalspineseg_command() -> str | None:
    """The ``totalspineseg`` executable: beside this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "totalspineseg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("totalspineseg")


def _totalspineseg_weights() -> Path | None:
    """The folder holding both TotalSpineSeg models (``nnUNet/results[/<release>]``), or None."""
    import importlib.util

    roots = []
    if os.environ.get("TOTALSPINESEG_DATA"):
        roots.append(Path(os.environ["TOTALSPINESEG_DATA"]))
    spec = importlib.util.find_spec("totalspineseg")
    if spec is not None and spec.submodule_search_locations:
        roots.extend(Path(location) / "models" for location in spec.submodule_search_locations)
    for root in roots:
        results = root / "nnUNet" / "results"
        for folder in (results, *(sorted(results.iterdir()) if results.is_dir() else [])):
            if all(any((folder / name).glob("*/fold_*")) for name in _TSS_DATASETS):
                return folder
    return None


def totalspineseg_available() -> bool:
    """True when the ``totalspineseg`` command and both of its models' weights are installed."""
    return _totalspineseg_command() is not None and _totalspineseg_weights() is not None


def totalspineseg_to_phantom(labels: np.ndarray) -> np.ndarray:
    """TotalSpineSeg's final label codes turned into the phantom's (int16).

    Cord 1 → 61, canal 2 → 60, vertebrae C2-L6 → their level codes, sacrum 50 → 27,
    discs → the code of the disc below their upper vertebra (L5-S → below L6 when an L6
    is labelled, else below L5). C1 (11) has no phantom level and becomes :data:`VERTEBRA_CODE`.

    Example:
        >>> totalspineseg_to_phantom(np.array([1, 2, 12, 41, 50, 63, 100, 11])).tolist()
        [61, 60, 1, 20, 27, 31, 54, 100]
    """
    labels = np.asarray(labels)
    mapping: dict[int, int] = {1: CORD_LABEL, 2: CANAL_LABEL, 11: VERTEBRA_CODE, 50: SACRUM_LABEL}
    for i in range(2, 8):
        mapping[10 + i] = vertebra_label(f"C{i}")
        mapping[61 + i] = disc_label(f"C{i}")  # 63 C2-C3 ... 67 C6-C7
    mapping[71] = disc_label("C7")
    for i in range(1, 13):
        mapping[20 + i] = vertebra_label(f"T{i}")
        if i < 12:
            mapping[71 + i] = disc_label(f"T{i}")  # 72 T1-T2 ... 82 T11-T12
    mapping[91] = disc_label("T12")
    for i in range(1, 7):
        mapping[40 + i] = vertebra_label(f"L{i}")
        mapping[91 + i] = disc_label(f"L{i}")  # 92 L1-L2 ... 96 L5-L6
    mapping[100] = disc_label("L6") if np.any(labels == 46) else disc_label("L5")
    out = np.zeros(labels.shape, dtype=np.int16)
    for source, target in mapping.items():
        out[labels == source] = target
    return out


def segment_with_totalspineseg(path: str | Path, *, device: str | None = None) -> np.ndarray:
    """Segment a NIfTI scan with TotalSpineSeg: level-labelled, in the phantom's codes, on the scan's canonical grid.

    Args:
        path: the scan (``.nii`` or ``.nii.gz``).
        device: ``cpu`` or ``cuda`` (CUDA when present by default).

    Raises:
        UserError: if TotalSpineSeg or its weights are not installed (saying how to install
            them), or if it fails on the scan.
    """
    from spineage.imaging.io import load_label_like, load_volume

    command = _totalspineseg_command()
    if command is None:
        raise UserError(TOTALSPINESEG_INSTALL)
    if _totalspineseg_weights() is None:
        raise UserError(
            "Expected TotalSpineSeg weights (nnUNet/results/Dataset101_* and Dataset102_*) in TOTALSPINESEG_DATA or the "
            "package's models folder, found none: run `totalspineseg` once on any scan to fetch them (spineage never downloads weights)"
        )
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise UserError(f"Expected a NIfTI scan (.nii or .nii.gz) for TotalSpineSeg, found {path}")
    volume = load_volume(path)
    device = device or _default_device().type
    with tempfile.TemporaryDirectory(prefix="totalspineseg-") as tmp:
        output = Path(tmp) / "out"
        done = subprocess.run([command, str(path), str(output), "--device", device, "--quiet"], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
            raise UserError(f"Expected TotalSpineSeg to segment {path}, found it failed (exit {done.returncode}): {last[0]}")
        results = sorted((output / "step2_output").glob("*.nii*"))
        if not results:
            raise UserError(f"Expected TotalSpineSeg's step2_output for {path}, found none in {output}")
        labels = load_label_like(results[0], volume)
    return totalspineseg_to_phantom(labels)


SERIES_COLUMNS: tuple[str, ...] = (
    "series_id", "subject_id", "split", "age", "role", *(f"dice_{name}" for name in CLASS_NAMES[1:]), "dice_mean", "confidence",
    "seconds",
)
"""Columns of ``series.csv``: every series a training run used, the held-out ones with their Dice."""


def _rounded(scores: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(v, 4)) for k, v in _with_mean(scores).items()}


def write_metrics(result: SegmentationResult, path: str | Path) -> Path:
    """Write a training result's Dice (by structure, overall and per split), counts and times as JSON (a DVC metric)."""
    from spineage.atomic import write_json_atomic

    held_out = [row for row in result.series if row["role"] == HELD_OUT]
    payload = {
        "model_uri": result.model_uri,
        "run_id": result.run_id,
        "dice": _rounded(result.dice),
        "dice_by_split": {split: _rounded(scores) for split, scores in result.dice_by_split.items()},
        "train_scans": result.train_scans,
        "train_subjects": len({row["subject_id"] for row in result.series if row["role"] == TRAIN_SPLIT}),
        "held_out_scans": result.held_out_scans,
        "held_out_scans_by_split": {split: sum(row["split"] == split for row in held_out) for split in result.dice_by_split},
        "epochs": result.epochs,
        "final_loss": round(result.final_loss, 4),
        "train_seconds": round(result.seconds, 1),
        "inference_seconds_per_scan": None if math.isnan(result.inference_seconds) else round(result.inference_seconds, 3),
        # What a phantom scan scores: the yardstick for spineage predict's segmentation-confidence flag on new scans.
        "confidence_median": round(float(np.median([row["confidence"] for row in held_out])), 4) if held_out else None,
        "synthesis": result.synthesis,
    }
    return write_json_atomic(Path(path), payload)


def write_segmentation_reports(result: SegmentationResult, reports: str | Path) -> Path:
    """Write ``metrics.json`` (:func:`write_metrics`) and ``series.csv`` (:data:`SERIES_COLUMNS`) into ``reports``.

    Returns:
        The folder.
    """
    import pandas as pd

    from spineage.atomic import write_atomic

    reports = Path(reports)
    write_metrics(result, reports / "metrics.json")
    table = pd.DataFrame(list(result.series), columns=list(SERIES_COLUMNS))
    write_atomic(reports / "series.csv", lambda p: table.to_csv(p, index=False, float_format="%.4f"))
    return reports
