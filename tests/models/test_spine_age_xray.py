"""The radiograph network: MONAI's EfficientNet with a mean-variance head and PyTorch's batch-norm momentum."""

from __future__ import annotations

import pytest
import torch

from spineage.models.spine_age_xray import BATCH_NORM_MOMENTUM, SpineAgeXrayNet


def test_ages_are_the_expectation_over_the_bins_and_batch_norm_tracks_its_statistics() -> None:
    torch.manual_seed(0)
    net = SpineAgeXrayNet((64, 32), "efficientnet-b0", [30.0, 50.0, 70.0]).eval()
    images = torch.rand(3, 1, 64, 32)
    logits = net(images, raw=True)
    assert logits.shape == (3, 3)
    expected = (torch.softmax(logits, 1) * torch.tensor([30.0, 50.0, 70.0])).sum(1)
    assert torch.allclose(net(images), expected)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == BATCH_NORM_MOMENTUM for m in norms)


def test_bad_shapes_and_bins_are_refused() -> None:
    with pytest.raises(ValueError, match="two sides"):
        SpineAgeXrayNet((16, 32), "efficientnet-b0", [30.0, 50.0])
    with pytest.raises(ValueError, match="increasing"):
        SpineAgeXrayNet((64, 32), "efficientnet-b0", [50.0, 30.0])
