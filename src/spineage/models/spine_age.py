"""The MRI paper's spine-age DCNN (Bazargani et al. 2025, Table 2), carrying its own input facts.

Five blocks of 3×3×3 convolution, batch norm, ReLU and 2×2×2 max-pooling
(32, 64, 128, 256, 256 channels), a 1×1×1 convolution to 64 channels, global
average pooling and a linear layer. The head gives one number (a standardised
age, for the MSE and smooth-L1 losses) or one logit per age bin (the
mean-variance loss, whose age is the expectation over the bins). The blocks
stay separate modules (``net.blocks[4]`` is the fifth) so that Grad-CAM can
hook the last one.

The registered model ``spine-age-mri`` is this module pickled by MLflow's
pytorch flavour: ``mlflow.pytorch.load_model("models:/spine-age-mri@candidate")``
gives back a :class:`SpineAgeNet` whose ``forward`` returns ages in years,
plus the input shape, spacing and preprocessing it was trained on.

Example:
    >>> import torch
    >>> net = SpineAgeNet(input_shape=(16, 16, 32), channels=(4, 4, 8, 8, 8), head_channels=4)
    >>> net(torch.zeros(2, 1, 16, 16, 32)).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from spineage.models.losses import expected_age

PAPER_CHANNELS: tuple[int, ...] = (32, 64, 128, 256, 256)
"""Feature channels of the five convolution blocks in the MRI paper's Table 2."""


class ConvBlock(nn.Sequential):
    """3×3×3 convolution, batch norm, ReLU, 2×2×2 max-pooling (ceil mode, so a side of 1 stays 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=2, stride=2, ceil_mode=True),
        )


class SpineAgeNet(nn.Module):
    """Spine age from a preprocessed MRI volume.

    Args:
        input_shape: voxels (X, Y, Z) of the preprocessed arrays it reads.
        channels: channels of the convolution blocks (the paper's five by default).
        head_channels: channels of the 1×1×1 convolution after the blocks.
        dropout: dropout before the linear layer (0 for none).
        age_bins: centres of the age bins (years) for a mean-variance head; None for a
            single-output regression head.
        age_mean: the regression head's output is ``(age - age_mean) / age_sd``.
        age_sd: see ``age_mean``.
        target_spacing: voxel size (mm, X Y Z) of the preprocessed arrays.
        preprocessing: the preprocess settings the arrays were made with (a plain dict,
            kept so that a loaded model says what it expects).

    Input is (batch, 1, X, Y, Z); ``forward`` returns ages (batch,) in years, or the
    head's raw output (batch, outputs) with ``raw=True`` (what the losses take).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (16, 48, 192),
        channels: Sequence[int] = PAPER_CHANNELS,
        head_channels: int = 64,
        dropout: float = 0.0,
        age_bins: Sequence[float] | None = None,
        age_mean: float = 50.0,
        age_sd: float = 15.0,
        target_spacing: Sequence[float] = (4.0, 3.0, 4.0),
        preprocessing: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"Expected an input shape of three positive sides, found {tuple(input_shape)}")
        if not channels:
            raise ValueError("Expected at least one convolution block, found channels=()")
        if age_sd <= 0:
            raise ValueError(f"Expected a positive age_sd, found {age_sd}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.channels = tuple(int(c) for c in channels)
        self.target_spacing = tuple(float(s) for s in target_spacing)
        self.preprocessing = dict(preprocessing or {})
        self.age_mean = float(age_mean)
        self.age_sd = float(age_sd)
        blocks, previous = [], 1
        for width in self.channels:
            blocks.append(ConvBlock(previous, width))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.reduce = nn.Sequential(
            nn.Conv3d(previous, head_channels, kernel_size=1, bias=False),
            nn.BatchNorm3d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        bins = torch.as_tensor([] if age_bins is None else list(age_bins), dtype=torch.float32)
        if age_bins is not None and (bins.numel() < 2 or not bool((bins[1:] > bins[:-1]).all())):
            raise ValueError(f"Expected at least two increasing age bins, found {bins.tolist()}")
        self.register_buffer("age_bins", bins)
        self.linear = nn.Linear(head_channels, max(1, bins.numel()))

    @property
    def mean_variance(self) -> bool:
        """Whether the head gives age-bin logits (mean-variance loss) rather than one number."""
        return self.age_bins.numel() > 0

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Output of the fifth (last) convolution block: what Grad-CAM weighs."""
        x = image
        for block in self.blocks:
            x = block(x)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The raw head output (batch, outputs) of the last block's features."""
        return self.linear(self.dropout(self.pool(self.reduce(features)).flatten(1)))

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Ages (batch,) in years, float32, from the raw head output.

        A regression head's number is un-standardised; a mean-variance head's logits
        give the expectation over the age bins (:func:`~spineage.models.losses.expected_age`).
        """
        if self.mean_variance:
            return expected_age(raw, self.age_bins)
        return raw[:, 0].float() * self.age_sd + self.age_mean

    def forward(self, image: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Ages (batch,) in years, or the raw head output with ``raw=True``."""
        output = self.head(self.features(image))
        return output if raw else self.decode(output)

    def extra_repr(self) -> str:
        kind = f"mean-variance over {self.age_bins.numel()} age bins" if self.mean_variance else "regression"
        return f"input_shape={self.input_shape}, target_spacing={self.target_spacing}, head={kind}"


def forward_gflop(net: SpineAgeNet) -> float:
    """Multiply-adds ×2 of one forward pass, in GFLOP (convolutions and the linear layer).

    Example:
        >>> round(forward_gflop(SpineAgeNet()), 2)
        3.95
    """
    shape = list(net.input_shape)
    flop, previous = 0.0, 1
    for width in net.channels:
        voxels = shape[0] * shape[1] * shape[2]
        flop += 2.0 * voxels * 27 * previous * width
        shape = [(side + 1) // 2 for side in shape]
        previous = width
    voxels = shape[0] * shape[1] * shape[2]
    head_channels = net.reduce[0].out_channels
    flop += 2.0 * voxels * previous * head_channels
    flop += 2.0 * head_channels * net.linear.out_features
    return flop / 1e9
