"""The Grad-CAM overlay of one predicted scan (``spineage predict --gradcam``): where the network looked.

MRI: the 3D network's map (:func:`spineage.evaluation.gradcam.spine_age_gradcam`,
the block the evaluate stage would choose) over the mid-sagittal slice of the
array it read, in the paper's log contrast. Radiograph and VFA: MONAI's Grad-CAM of
the EfficientNet's last convolution over the image it read.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np

from spineage.evaluation.gradcam import LOG_CONTRAST_SCALE, log_contrast

MIN_MAP_CELLS = 32
"""The deepest MRI block whose map has at least this many cells is used (the evaluate stage's default)."""
XRAY_LAYER = "net.backbone._conv_head"
"""The EfficientNet layer whose activations are weighed."""


def _mri_voxel_mm(bundle: Any) -> tuple[float, float, float]:
    """The voxel size (mm) of the array the 3D network reads: the preprocessing grid, cropped, then resized."""
    preprocessing = bundle.preprocessing
    spacing = np.asarray(bundle.network.target_spacing, float)
    fitting = preprocessing.get("fit_to_network") or {}
    before = np.asarray(fitting.get("crop_shape") or preprocessing.get("shape") or bundle.network.input_shape, float)
    return tuple(float(v) for v in spacing * before / np.asarray(bundle.network.input_shape, float))


def gradcam_map(bundle: Any, network_input: np.ndarray) -> np.ndarray:
    """The Grad-CAM map of ``network_input`` (the array or image the network read), scaled to [0, 1], on its grid."""
    import torch

    from spineage.evaluation.gradcam import age_score_module, choose_gradcam_block, spine_age_gradcam

    # MONAI's CAM leaves its hooks on the module: a copy keeps the cached network of a batch clean.
    net = copy.deepcopy(bundle.network)
    if bundle.kind == "mri":
        block = choose_gradcam_block(tuple(net.input_shape), len(net.channels), "auto", MIN_MAP_CELLS)
        return spine_age_gradcam(net, np.asarray(network_input, np.float32)[None], block)[0]
    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=age_score_module(net).eval(), target_layers=XRAY_LAYER)
    image = torch.from_numpy(np.asarray(network_input, np.float32))[None, None]
    with torch.enable_grad():
        heatmap = cam(x=image, class_idx=0).detach().cpu().numpy()[0, 0]
    return heatmap.astype(np.float32)


def write_gradcam_overlay(bundle: Any, network_input: np.ndarray, out: str | Path, title: str) -> Path:
    """Write the scan's Grad-CAM heatmap over what the network read as a PNG (atomically); returns ``out``."""
    from spineage.plotting import headless_pyplot, save_figure

    heatmap = gradcam_map(bundle, network_input)
    plt = headless_pyplot()
    shown = log_contrast(heatmap)
    if bundle.kind == "mri":
        mid = network_input.shape[0] // 2
        voxel = _mri_voxel_mm(bundle)
        background, overlay = np.flipud(network_input[mid].T), np.flipud(shown[mid].T)
        aspect, size = voxel[2] / voxel[1], (3.2, 7.5)
    else:
        background, overlay, aspect, size = network_input, shown, 1.0, (3.6, 6.5)
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(background, cmap="gray", aspect=aspect)
    image = ax.imshow(overlay, cmap="jet", alpha=0.45, vmin=1.0, vmax=math.log(LOG_CONTRAST_SCALE), aspect=aspect)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
    fig.colorbar(image, ax=ax, shrink=0.5, pad=0.01, label="max(ln(288·x), 1)")
    return save_figure(fig, Path(out), dpi=90)
