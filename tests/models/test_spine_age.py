"""SpineAgeNet: shapes of both heads, decoding, the Grad-CAM features, input checks, FLOP count, a tiny training run."""

from __future__ import annotations

import pytest
import torch

from spineage.models.losses import AgeLoss, expected_age
from spineage.models.spine_age import PAPER_CHANNELS, SpineAgeNet, forward_gflop

SMALL = {"input_shape": (8, 8, 16), "channels": (2, 2, 4, 4, 4), "head_channels": 4}
"""A tiny network: X and Y reach one voxel after the third pool, so the last two pools keep them (ceil mode)."""

BINS = [20.0, 35.0, 50.0, 65.0, 80.0]


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def volumes(batch: int, shape: tuple[int, int, int] = (8, 8, 16)) -> torch.Tensor:
    return torch.randn(batch, 1, *shape, generator=torch.Generator().manual_seed(batch))


def test_paper_channels() -> None:
    assert PAPER_CHANNELS == (32, 64, 128, 256, 256)


def test_regression_head_shapes() -> None:
    net = SpineAgeNet(**SMALL)
    x = volumes(3)
    assert not net.mean_variance
    assert net(x, raw=True).shape == (3, 1)
    ages = net(x)
    assert ages.shape == (3,) and ages.dtype == torch.float32


def test_mean_variance_head_shapes() -> None:
    net = SpineAgeNet(**SMALL, age_bins=BINS)
    x = volumes(3)
    assert net.mean_variance
    assert net(x, raw=True).shape == (3, len(BINS))
    ages = net(x)
    assert ages.shape == (3,)
    # An expectation over the bins stays inside them.
    assert ((ages >= BINS[0]) & (ages <= BINS[-1])).all()


def test_sides_of_one_survive_the_last_pools() -> None:
    net = SpineAgeNet(**SMALL).eval()
    sides = []
    hooks = [block.register_forward_hook(lambda m, i, o: sides.append(tuple(o.shape[2:]))) for block in net.blocks]
    net(volumes(2))
    for hook in hooks:
        hook.remove()
    # 8 -> 4 -> 2 -> 1 -> 1 -> 1 (ceil mode keeps a side of 1); 16 -> 8 -> 4 -> 2 -> 1 -> 1.
    assert sides == [(4, 4, 8), (2, 2, 4), (1, 1, 2), (1, 1, 1), (1, 1, 1)]


def test_odd_sides_round_up() -> None:
    net = SpineAgeNet(input_shape=(5, 7, 9), channels=(2, 2), head_channels=2).eval()
    assert net.features(torch.zeros(2, 1, 5, 7, 9)).shape == (2, 2, 2, 2, 3)


def test_regression_decode_unstandardises() -> None:
    net = SpineAgeNet(**SMALL, age_mean=47.0, age_sd=12.0)
    raw = torch.tensor([[0.0], [1.0], [-0.5]])
    assert net.decode(raw).tolist() == pytest.approx([47.0, 59.0, 41.0])


def test_mean_variance_decode_is_the_expectation_over_the_bins() -> None:
    net = SpineAgeNet(**SMALL, age_bins=BINS)
    logits = torch.randn(4, len(BINS))
    assert torch.allclose(net.decode(logits), expected_age(logits, net.age_bins))
    # Uniform logits decode to the bins' mean; bfloat16 logits decode in float32.
    assert torch.allclose(net.decode(torch.zeros(2, len(BINS))), torch.full((2,), 50.0))
    assert net.decode(logits.bfloat16()).dtype == torch.float32


def test_forward_is_decode_of_raw() -> None:
    net = SpineAgeNet(**SMALL, age_bins=BINS).eval()
    x = volumes(2)
    assert torch.allclose(net(x), net.decode(net(x, raw=True)))


def test_features_are_the_fifth_blocks_output() -> None:
    net = SpineAgeNet(**SMALL).eval()
    captured = {}
    hook = net.blocks[4].register_forward_hook(lambda module, inputs, output: captured.update(output=output))
    x = volumes(2)
    features = net.features(x)
    hook.remove()
    assert features.shape == (2, 4, 1, 1, 1)
    assert torch.equal(features, captured["output"])
    assert torch.allclose(net.head(features), net(x, raw=True))


@pytest.mark.parametrize("shape", [(16, 48), (16, 48, 192, 1), (0, 48, 192), (16, -1, 192)])
def test_bad_input_shape_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="Expected an input shape of three positive sides"):
        SpineAgeNet(input_shape=shape)


@pytest.mark.parametrize("bins", [[50.0], [60.0, 50.0], [20.0, 30.0, 30.0]])
def test_bad_age_bins_are_rejected(bins: list[float]) -> None:
    with pytest.raises(ValueError, match="Expected at least two increasing age bins"):
        SpineAgeNet(**SMALL, age_bins=bins)


def test_bad_channels_and_age_sd_are_rejected() -> None:
    with pytest.raises(ValueError, match="found channels=()"):
        SpineAgeNet(channels=())
    with pytest.raises(ValueError, match="Expected a positive age_sd, found 0"):
        SpineAgeNet(**SMALL, age_sd=0.0)


def test_forward_gflop_of_the_paper_network() -> None:
    # (voxels entering the block, input channels, output channels) of the five 3x3x3 blocks at 16 x 48 x 192.
    blocks = [
        (16 * 48 * 192, 1, 32),
        (8 * 24 * 96, 32, 64),
        (4 * 12 * 48, 64, 128),
        (2 * 6 * 24, 128, 256),
        (1 * 3 * 12, 256, 256),
    ]
    flop = sum(2 * voxels * 27 * c_in * c_out for voxels, c_in, c_out in blocks)
    flop += 2 * (1 * 2 * 6) * 256 * 64  # the 1x1x1 reduction on the 1 x 2 x 6 grid left
    flop += 2 * 64 * 1  # the linear layer
    assert flop == 3_949_854_848
    assert forward_gflop(SpineAgeNet()) == pytest.approx(flop / 1e9, rel=1e-12)


def test_forward_gflop_counts_the_bins_and_the_grid() -> None:
    base = forward_gflop(SpineAgeNet())
    assert forward_gflop(SpineAgeNet(age_bins=[20.0, 50.0, 80.0])) == pytest.approx(base + 2 * 64 * 2 / 1e9)
    # Twice the slices: every block sees twice the voxels, but the grid after the fifth pool
    # is still 1 x 2 x 6 (32 -> 1 as 16 -> 1, ceil mode), so the head costs the same.
    head = (2 * 12 * 256 * 64 + 2 * 64) / 1e9
    assert forward_gflop(SpineAgeNet(input_shape=(32, 48, 192))) == pytest.approx(2 * (base - head) + head, rel=1e-9)


@pytest.mark.parametrize(("loss_name", "bins"), [("mse", None), ("mean_variance", BINS)])
def test_the_network_trains(loss_name: str, bins: list[float] | None) -> None:
    net = SpineAgeNet(**SMALL, age_bins=bins)
    loss_fn = AgeLoss.for_model(loss_name, net)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    x, ages = volumes(4), torch.tensor([25.0, 40.0, 55.0, 70.0])
    losses = []
    for _ in range(12):
        optimiser.zero_grad()
        loss = loss_fn(net(x, raw=True), ages)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]
