"""The spine segmentation network: a MONAI 3D U-Net that carries its own preprocessing facts.

The registered model ``spine-seg-mri`` is this module pickled by MLflow's
pytorch flavour, so ``mlflow.pytorch.load_model("models:/spine-seg-mri@candidate")``
gives back a :class:`SpineSegNet`: the U-Net plus the working spacing, patch
size, intensity percentiles and class names that
:func:`spineage.imaging.segmentation.segment_volume` needs to use it. Loading
it needs this package (``spineage``) and MONAI installed.

Example:
    >>> import torch
    >>> net = SpineSegNet(channels=(4, 8, 16))
    >>> net(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 5, 16, 16, 16])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

SEGMENTATION_CLASSES: tuple[str, ...] = ("background", "vertebra", "disc", "canal_csf", "cord")
"""The classes the network predicts, in channel order."""


class SpineSegNet(nn.Module):
    """A 3D U-Net for the spine classes of :data:`SEGMENTATION_CLASSES`, with its preprocessing facts.

    Args:
        channels: feature channels per U-Net level; each level after the first halves
            the grid, so patch sizes must divide by ``2 ** (len(channels) - 1)``.
        num_res_units: residual units per level (MONAI ``UNet``).
        working_spacing: voxel size (mm, X Y Z) the network works at.
        patch_size: sliding-window size (voxels at the working spacing).
        intensity_percentiles: the low and high intensity percentiles mapped to 0 and 1.
        class_names: names of the output channels.

    Input is (batch, 1, X, Y, Z) normalised intensities; output is (batch, classes, X, Y, Z) logits.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 128),
        num_res_units: int = 1,
        working_spacing: Sequence[float] = (4.0, 4.0, 4.0),
        patch_size: Sequence[int] = (16, 64, 128),
        intensity_percentiles: Sequence[float] = (0.5, 99.5),
        class_names: Sequence[str] = SEGMENTATION_CLASSES,
    ) -> None:
        from monai.networks.nets import UNet

        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"Expected at least two U-Net levels, found channels={tuple(channels)}")
        self.channels = tuple(int(c) for c in channels)
        self.num_res_units = int(num_res_units)
        self.working_spacing = tuple(float(s) for s in working_spacing)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.intensity_percentiles = (float(intensity_percentiles[0]), float(intensity_percentiles[1]))
        self.class_names = tuple(class_names)
        self.unet = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=len(self.class_names),
            channels=self.channels,
            strides=(2,) * (len(self.channels) - 1),
            num_res_units=self.num_res_units,
            norm="instance",
        )

    @property
    def grid_multiple(self) -> int:
        """Every input side must be a multiple of this (the U-Net's total downsampling)."""
        return 2 ** (len(self.channels) - 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, classes, X, Y, Z) of normalised intensities (batch, 1, X, Y, Z)."""
        return self.unet(image)

    def extra_repr(self) -> str:
        return (
            f"classes={self.class_names}, working_spacing={self.working_spacing}, "
            f"patch_size={self.patch_size}, intensity_percentiles={self.intensity_percentiles}"
        )
