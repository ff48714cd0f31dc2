"""Grad-CAM of the spine-age network (the MRI paper's Figure 5), with MONAI's implementation.

Grad-CAM weighs a convolution block's activations by the mean gradient of the
predicted age, keeps the positive part and upsamples it to the input grid: where
the network looked to call a spine older. The paper hooks the fifth block; at
today's input (8 × 24 × 96 voxels) its map has 1 × 1 × 3 cells, too coarse to
show anything, so by default the deepest block whose map still has
``gradcam_min_cells`` cells is taken (:func:`choose_gradcam_block`). The heatmap
is drawn over the mid-sagittal slice with the paper's log contrast
``max(ln(288·x), 1)`` (:func:`log_contrast`).

Example:
    >>> block_map_shapes((8, 24, 96), 5)
    [(4, 12, 48), (2, 6, 24), (1, 3, 12), (1, 2, 6), (1, 1, 3)]
    >>> choose_gradcam_block((8, 24, 96), 5, "auto", min_cells=32)
    3
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spineage.atomic import write_atomic
from spineage.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spineage.models.spine_age import SpineAgeNet
    from spineage.training.settings import TrainingSettings

LOG_CONTRAST_SCALE = 288.0
"""The paper's contrast: a normalised map value x is shown as max(ln(288·x), 1)."""


def block_map_shapes(input_shape: tuple[int, ...], n_blocks: int) -> list[tuple[int, ...]]:
    """The spatial shape of each convolution block's output (2×2×2 max-pooling in ceil mode)."""
    shapes, shape = [], tuple(int(s) for s in input_shape)
    for _ in range(n_blocks):
        shape = tuple((side + 1) // 2 for side in shape)
        shapes.append(shape)
    return shapes


def choose_gradcam_block(input_shape: tuple[int, ...], n_blocks: int, layer: str, min_cells: int) -> int:
    """The block (1-based) Grad-CAM hooks: ``layer`` when it names one, else the deepest with ``min_cells`` cells.

    Raises:
        UserError: for a block the network does not have.
    """
    if layer != "auto":
        block = int(layer)
        if not 1 <= block <= n_blocks:
            raise UserError(f"Expected evaluate.gradcam_layer between 1 and {n_blocks} (the network's blocks), found {block}")
        return block
    cells = [math.prod(shape) for shape in block_map_shapes(input_shape, n_blocks)]
    useful = [index + 1 for index, count in enumerate(cells) if count >= min_cells]
    return max(useful) if useful else 1


def age_score_module(net: SpineAgeNet) -> torch.nn.Module:
    """``net`` wrapped to give (batch, 1) ages: MONAI's CAM reads a score per class from dimension 1."""
    from torch import nn

    class AgeScore(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.net = inner

        def forward(self, image):
            return self.net(image)[:, None]

    return AgeScore(net)


def spine_age_gradcam(net: SpineAgeNet, volumes: np.ndarray, block: int) -> np.ndarray:
    """Grad-CAM maps of the predicted age for ``volumes`` (series, X, Y, Z), upsampled to the input grid.

    Args:
        net: the trained network (its weights are not changed; it is left in eval mode).
        volumes: the arrays as the network reads them.
        block: the convolution block (1-based) whose activations are weighed.

    Returns:
        (series, X, Y, Z) float32 maps, each scaled to [0, 1] (MONAI's default normaliser).
    """
    import torch
    from monai.visualize import GradCAM

    model = age_score_module(net).eval()
    cam = GradCAM(nn_module=model, target_layers=f"net.blocks.{block - 1}")
    maps = []
    for volume in volumes:
        image = torch.from_numpy(np.asarray(volume, np.float32))[None, None].requires_grad_(False)
        with torch.enable_grad():
            maps.append(cam(x=image, class_idx=0).detach().cpu().numpy()[0, 0])
    net.zero_grad(set_to_none=True)
    return np.stack(maps).astype(np.float32) if maps else np.zeros((0, *volumes.shape[1:]), np.float32)


def log_contrast(heatmap: np.ndarray) -> np.ndarray:
    """The paper's display contrast: max(ln(288·x), 1) of a map scaled to [0, 1] (1 where x is 0).

    Example:
        >>> log_contrast(np.array([0.0, 0.001, 1.0])).round(3).tolist()
        [1.0, 1.0, 5.663]
    """
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(LOG_CONTRAST_SCALE * np.clip(np.asarray(heatmap, float), 0.0, None)), 1.0)


@dataclass
class GradcamCase:
    """One scan of the montage.

    Args:
        series_id: the series.
        kind: young, old or large gap.
        age: chronological age (years).
        corrected_age: bias-corrected spine age (years).
        volume: (X, Y, Z) the array the network read.
        heatmap: (X, Y, Z) its Grad-CAM map in [0, 1].
    """

    series_id: str
    kind: str
    age: float
    corrected_age: float
    volume: np.ndarray
    heatmap: np.ndarray


def render_gradcam_montage(
    cases: list[GradcamCase], out: Path, block: int, map_shape: tuple[int, ...], spacing_mm: tuple[float, float, float],
) -> Path:
    """A PNG of each case's mid-sagittal slice with its Grad-CAM heatmap (log contrast), titled with the block used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not cases:
        raise UserError("Expected at least one scan for the Grad-CAM montage, found none")
    aspect = spacing_mm[2] / spacing_mm[1]
    fig, axes = plt.subplots(1, len(cases), figsize=(1.9 * len(cases), 7.5), squeeze=False)
    top = math.log(LOG_CONTRAST_SCALE)
    image = None
    for ax, case in zip(axes[0], cases):
        mid = case.volume.shape[0] // 2
        ax.imshow(np.flipud(case.volume[mid].astype(np.float32).T), cmap="gray", aspect=aspect)
        image = ax.imshow(np.flipud(log_contrast(case.heatmap[mid]).T), cmap="jet", alpha=0.45, vmin=1.0, vmax=top, aspect=aspect)
        ax.set_title(
            f"{case.kind}\n{case.series_id}\nage {case.age:.0f}, spine age {case.corrected_age:.0f}\n"
            f"SAG {case.corrected_age - case.age:+.1f} y", fontsize=7,
        )
        ax.axis("off")
    cells = " × ".join(str(s) for s in map_shape)
    fig.suptitle(f"Grad-CAM of convolution block {block} (map {cells} cells), mid-sagittal slice; colour max(ln(288·x), 1)", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.5, pad=0.01)
    try:
        return write_atomic(Path(out), lambda p: fig.savefig(p, dpi=90, format="png"))
    finally:
        plt.close(fig)


def trained_settings(model_dir: Path) -> TrainingSettings:
    """The training settings ``checkpoint.pt`` of the train stage's folder was written with.

    Raises:
        UserError: if the checkpoint is missing or unreadable, or its settings are not valid ones.
    """
    from spineage.training.checkpoint import CHECKPOINT, load_checkpoint
    from spineage.training.settings import parse_training_settings

    saved = load_checkpoint(Path(model_dir) / CHECKPOINT).get("settings") or {}
    return parse_training_settings({k: v for k, v in saved.items() if k != "seed"}, seed=int(saved.get("seed", 0)))


def load_trained_network(model_dir: Path, input_shape: tuple[int, int, int], settings: TrainingSettings | None = None) -> SpineAgeNet:
    """The trained network of the train stage's folder (``best.pt``'s weights, the architecture of ``settings``).

    Only what Grad-CAM needs is rebuilt: the architecture and weights (the regression head's
    age scale is an affine map, which the normalised map does not see).

    Args:
        model_dir: the train stage's model folder.
        input_shape: voxels (X, Y, Z) the network reads.
        settings: its training settings (default: :func:`trained_settings`).

    Raises:
        UserError: if a file is missing or does not fit the network its settings describe.
    """
    from spineage.models.losses import age_bin_centres
    from spineage.models.spine_age import SpineAgeNet
    from spineage.training.checkpoint import BEST, load_checkpoint

    settings = settings or trained_settings(model_dir)
    bins = age_bin_centres(*settings.age_bins).tolist() if settings.loss == "mean_variance" else None
    net = SpineAgeNet(input_shape=input_shape, channels=settings.channels, head_channels=settings.head_channels, age_bins=bins)
    try:
        net.load_state_dict(load_checkpoint(Path(model_dir) / BEST)["model"])
    except (KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"Expected the weights in {Path(model_dir) / BEST} to fit the trained network, found: {first}") from None
    return net.eval()
