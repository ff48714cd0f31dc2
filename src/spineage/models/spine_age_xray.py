"""The radiograph paper's spine-age network: a 2D EfficientNet with a mean-variance age head.

VERTE-X (Cho, Hong et al. 2025) reads a lateral spine radiograph (or a DXA VFA image)
with an EfficientNet-B4 whose output is a distribution over age bins; the predicted
age is the expectation over the bins, trained with the mean-variance loss
(:func:`spineage.models.losses.mean_variance_loss`). Here the backbone is MONAI's
:class:`~monai.networks.nets.EfficientNetBN`, one input channel, trained from scratch
(nothing is downloaded); the variant is a setting (B4 as the paper, B0 on a CPU).

Example:
    >>> import torch
    >>> net = SpineAgeXrayNet(image_shape=(64, 32), model_name="efficientnet-b0", age_bins=list(range(20, 101)))
    >>> net(torch.zeros(2, 1, 64, 32)).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spineage.models.losses import expected_age

BATCH_NORM_MOMENTUM = 0.1
"""PyTorch's default, in place of MONAI's EfficientNet's 0.01 (see :class:`SpineAgeXrayNet`)."""


class SpineAgeXrayNet(nn.Module):
    """EfficientNet (MONAI) over one grey channel, one logit per age bin, the age as their expectation.

    Args:
        image_shape: rows x columns the network reads (the preprocessed images' shape).
        model_name: MONAI's EfficientNet variant, ``efficientnet-b0`` ... ``efficientnet-b7``.
        age_bins: increasing age-bin centres (years).
        preprocessing: the preprocessing settings the images were made with (a plain dict,
            kept so that a loaded model says what it expects).
    """

    def __init__(
        self, image_shape: Sequence[int], model_name: str, age_bins: Sequence[float], preprocessing: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from monai.networks.nets import EfficientNetBN

        if len(image_shape) != 2 or min(image_shape) < 32:
            raise ValueError(f"Expected an image shape of two sides of at least 32 pixels, found {tuple(image_shape)}")
        bins = torch.as_tensor(list(age_bins), dtype=torch.float32)
        if bins.numel() < 2 or not bool((bins[1:] > bins[:-1]).all()):
            raise ValueError(f"Expected at least two increasing age bins, found {bins.tolist()}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.model_name = str(model_name)
        self.preprocessing = dict(preprocessing or {})
        self.register_buffer("age_bins", bins)
        self.backbone = EfficientNetBN(self.model_name, pretrained=False, spatial_dims=2, in_channels=1, num_classes=bins.numel())
        # MONAI keeps TensorFlow's batch-norm decay 0.99 (PyTorch momentum 0.01): the running statistics then lag
        # the weights for hundreds of steps, and a network trained from scratch on a few hundred images predicts
        # one constant age in eval mode. PyTorch's default momentum tracks them.
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = BATCH_NORM_MOMENTUM

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Ages (years) from the head's logits: the expectation over the bins."""
        return expected_age(logits, self.age_bins)

    def forward(self, image: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Ages (batch,) in years of images (batch, 1, rows, columns); the logits (batch, bins) with ``raw=True``."""
        logits = self.backbone(image)
        return logits if raw else self.decode(logits)

    def extra_repr(self) -> str:
        return f"{self.model_name}, image_shape={self.image_shape}, bins={self.age_bins.numel()}"
