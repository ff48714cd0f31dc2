"""Grad-CAM of the spine-age network: the map's shape, that it is not constant, and the block chosen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spineage.errors import UserError
from spineage.evaluation.gradcam import (
    block_map_shapes,
    choose_gradcam_block,
    log_contrast,
    spine_age_gradcam,
)


def test_the_map_has_the_input_shape_and_shows_something() -> None:
    import torch

    from spineage.models.spine_age import SpineAgeNet

    torch.manual_seed(0)
    net = SpineAgeNet(input_shape=(8, 12, 48), channels=(4, 4, 8, 8, 8), head_channels=4).eval()
    volumes = np.random.default_rng(0).random((2, 8, 12, 48)).astype(np.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    maps = spine_age_gradcam(net, volumes, block=2)
    assert maps.shape == (2, 8, 12, 48)
    assert np.isfinite(maps).all()
    for heatmap in maps:
        assert heatmap.max() == pytest.approx(1.0) and heatmap.min() == pytest.approx(0.0)
        assert heatmap.std() > 0.05  # not constant
    assert not np.allclose(maps[0], maps[1])  # depends on the scan
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights untouched


def test_auto_takes_the_deepest_block_with_enough_cells() -> None:
    assert block_map_shapes((8, 24, 96), 5)[-1] == (1, 1, 3)
    assert choose_gradcam_block((8, 24, 96), 5, "auto", min_cells=32) == 3  # 1 x 3 x 12 = 36 cells
    assert choose_gradcam_block((8, 24, 96), 5, "auto", min_cells=12) == 4  # 1 x 2 x 6
    assert choose_gradcam_block((16, 48, 192), 5, "auto", min_cells=32) == 4  # the paper's grid: 1 x 3 x 12
    assert choose_gradcam_block((2, 2, 2), 5, "auto", min_cells=32) == 1  # nothing is big enough: the first
    assert choose_gradcam_block((8, 24, 96), 5, "5", min_cells=32) == 5
    with pytest.raises(UserError, match="between 1 and 3"):
        choose_gradcam_block((8, 24, 96), 3, "4", min_cells=32)


def test_log_contrast_is_the_papers() -> None:
    values = log_contrast(np.array([0.0, 0.5 / 288, math.e / 288, 1.0]))
    assert values.tolist() == pytest.approx([1.0, 1.0, 1.0, math.log(288)])
    assert log_contrast(np.array([0.5]))[0] == pytest.approx(math.log(144))
