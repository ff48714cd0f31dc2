"""The spine mask: region restriction against synthetic labels, dilation in mm on anisotropic voxels."""

from __future__ import annotations

import numpy as np
import pytest

from spineage.findings.vocabulary import LEVELS
from spineage.imaging.masking import (
    SpineMask,
    SpineMaskd,
    _dilate_by_distance,
    _dilate_by_offsets,
    apply_mask,
    ball_offsets,
    dilate_mm,
    region_labels,
    regions_present,
    spine_mask,
)
from spineage.labels import CANAL_LABEL, CORD_LABEL, SACRUM_LABEL, UNLEVELLED_DISC, UNLEVELLED_VERTEBRA

from .scans import phantom_mri

CERVICAL = set(range(1, 7)) | set(range(31, 37))
THORACIC = set(range(7, 20)) | set(range(37, 50))
LUMBAR = set(range(20, 27)) | set(range(50, 57)) | {SACRUM_LABEL}


def column_spine(levels: tuple[str, ...] = LEVELS, brainstem: int = 4) -> np.ndarray:
    """A (3, 4, Z) label map: from the bottom, the sacrum, then each level (2 slices of body, 1 of disc)
    up to C2, with canal CSF at y=2 all along and cord at y=3 reaching ``brainstem`` slices above C2."""
    bottom_up = list(reversed(levels))
    depth = 2 + 3 * len(bottom_up) + brainstem
    labels = np.zeros((3, 4, depth), np.uint8)
    labels[1, 1, 0:2] = SACRUM_LABEL
    z = 2
    for level in bottom_up:
        labels[1, 1, z] = LEVELS.index(level) + 31  # the disc below the vertebra
        labels[1, 1, z + 1 : z + 3] = LEVELS.index(level) + 1
        z += 3
    labels[1, 2, :] = CANAL_LABEL
    labels[1, 3, 2:] = CORD_LABEL
    return labels


def test_region_codes_follow_the_label_convention() -> None:
    assert region_labels("cervical") == CERVICAL
    assert region_labels("thoracic") == THORACIC
    assert region_labels("lumbar") == LUMBAR
    assert region_labels("whole") == CERVICAL | THORACIC | LUMBAR | {UNLEVELLED_VERTEBRA, UNLEVELLED_DISC}
    with pytest.raises(ValueError, match="among"):
        region_labels("sacral")


def test_cervical_mask_holds_cervical_levels_and_the_canal_beside_them_only() -> None:
    labels = column_spine()
    mask = spine_mask(labels, "cervical")
    inside = set(np.unique(labels[mask]).tolist())
    assert CERVICAL <= inside
    assert not inside & (THORACIC | LUMBAR)
    assert {CANAL_LABEL, CORD_LABEL} <= inside
    # The canal is kept exactly over the slices of C2..C7 and their discs, nowhere else.
    cervical_slices = np.flatnonzero(np.isin(labels, list(CERVICAL)).any(axis=(0, 1)))
    canal_slices = np.flatnonzero(mask[1, 2])
    assert canal_slices.tolist() == list(range(cervical_slices.min(), cervical_slices.max() + 1))


def test_lumbar_mask_includes_the_sacrum_and_no_cervical_or_thoracic_level() -> None:
    labels = column_spine()
    inside = set(np.unique(labels[spine_mask(labels, "lumbar")]).tolist())
    assert LUMBAR <= inside and SACRUM_LABEL in inside
    assert not inside & (CERVICAL | THORACIC)


def test_the_whole_spine_mask_leaves_out_the_cord_above_c2() -> None:
    labels = column_spine(brainstem=4)
    mask = spine_mask(labels, "whole")
    top_of_c2 = np.flatnonzero((labels == 1).any(axis=(0, 1))).max()
    assert mask[..., : top_of_c2 + 1].sum() == np.isin(labels[..., : top_of_c2 + 1], list(region_labels("whole")) + [60, 61]).sum()
    assert not mask[..., top_of_c2 + 1 :].any()


def test_a_region_out_of_view_gives_an_empty_mask() -> None:
    labels = column_spine(levels=tuple(level for level in LEVELS if level.startswith("L")))
    assert regions_present(labels) == ("lumbar",)
    assert not spine_mask(labels, "cervical").any()


def test_region_masks_on_the_phantom() -> None:
    _, labels, _ = phantom_mri((8.0, 4.0, 4.0))
    assert regions_present(labels) == ("cervical", "thoracic", "lumbar")
    for region, codes, others in (("cervical", CERVICAL, THORACIC | LUMBAR), ("lumbar", LUMBAR, CERVICAL | THORACIC)):
        inside = set(np.unique(labels[spine_mask(labels, region)]).tolist())
        assert inside & codes and not inside & others, region
    whole = spine_mask(labels, "whole")
    assert whole.sum() > spine_mask(labels, "cervical").sum() + spine_mask(labels, "lumbar").sum()


def brute_force_dilation(mask: np.ndarray, spacing: tuple[float, ...], distance: float) -> np.ndarray:
    """Every voxel whose centre lies within ``distance`` mm of a mask voxel's centre."""
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(mask.shape, spacing)], indexing="ij"), axis=-1)
    seeds = grid[mask]
    nearest = np.sqrt(((grid[..., None, :] - seeds) ** 2).sum(axis=-1)).min(axis=-1)
    return nearest <= distance + 1e-9


def test_dilation_is_in_millimetres_on_anisotropic_voxels() -> None:
    mask = np.zeros((11, 9, 7), bool)
    mask[5, 4, 3] = True
    grown = dilate_mm(mask, (1.0, 2.0, 4.0), 4.0)
    # 4 mm is 4 voxels along x, 2 along y, 1 along z: not the same count of voxels each way.
    assert np.flatnonzero(grown[:, 4, 3]).tolist() == list(range(1, 10))
    assert np.flatnonzero(grown[5, :, 3]).tolist() == [2, 3, 4, 5, 6]
    assert np.flatnonzero(grown[5, 4, :]).tolist() == [2, 3, 4]
    assert not grown[5, 5, 4]  # (2 mm, 4 mm) away: 4.47 mm
    np.testing.assert_array_equal(grown, brute_force_dilation(mask, (1.0, 2.0, 4.0), 4.0))


@pytest.mark.parametrize("spacing, distance", [((8.0, 4.0, 4.0), 5.0), ((1.0, 1.0, 3.0), 2.5), ((4.0, 3.0, 4.0), 0.0),
                                               ((1.0, 1.5, 2.0), 6.0)])
def test_dilation_matches_brute_force_on_a_random_mask_and_touches_the_edges(spacing, distance) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((6, 7, 8)) > 0.93
    mask[0, 0, 0] = True
    grown = dilate_mm(mask, spacing, distance)
    np.testing.assert_array_equal(grown, brute_force_dilation(mask, spacing, distance))
    # Both ways of growing (shifts by the mm ball for small balls, the distance transform for large) agree.
    np.testing.assert_array_equal(grown, _dilate_by_distance(mask, spacing, distance) if distance else mask)
    if distance:
        np.testing.assert_array_equal(grown, _dilate_by_offsets(mask, ball_offsets(spacing, distance)))


def test_dilation_picks_the_distance_transform_for_large_balls() -> None:
    assert len(ball_offsets((4.0, 3.0, 4.0), 5.0)) == 15
    assert len(ball_offsets((1.0, 1.5, 2.0), 6.0)) > 125


def test_dilation_rejects_bad_arguments() -> None:
    mask = np.ones((2, 2, 2), bool)
    assert not dilate_mm(np.zeros((3, 3, 3), bool), (1, 1, 1), 5.0).any()
    with pytest.raises(ValueError, match="non-negative"):
        dilate_mm(mask, (1, 1, 1), -1.0)
    with pytest.raises(ValueError, match="3 positive voxel sizes"):
        dilate_mm(mask, (1, 1), 1.0)


def test_apply_mask_zeroes_everything_outside() -> None:
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 1
    mask = image > 12
    masked = apply_mask(image, mask)
    assert masked.dtype == image.dtype
    np.testing.assert_array_equal(masked[mask], image[mask])
    assert (masked[~mask] == 0).all()


def test_array_and_dictionary_flavours_agree() -> None:
    labels = column_spine()
    image = np.random.default_rng(0).random(labels.shape).astype(np.float32) + 1
    array_mask = SpineMask(region="thoracic", dilation_mm=3.0, spacing=(2.0, 2.0, 2.0))(labels)
    data = {"image": image, "label": labels, "spacing": (2.0, 2.0, 2.0)}
    out = SpineMaskd(keys="image", region="thoracic", dilation_mm=3.0)(data)
    np.testing.assert_array_equal(out["mask"], array_mask)
    np.testing.assert_array_equal(out["image"], np.where(array_mask, image, 0))
    assert data["image"] is image and (image > 0).all()  # the input is not modified
    with pytest.raises(ValueError, match="spacing"):
        SpineMask(dilation_mm=2.0)(labels)


def unlevelled(labels: np.ndarray) -> np.ndarray:
    """``labels`` as a segmentation without levels writes them: every vertebra 100, every disc 130."""
    out = labels.copy()
    out[(labels >= 1) & (labels <= SACRUM_LABEL)] = UNLEVELLED_VERTEBRA
    out[(labels >= 31) & (labels <= 56)] = UNLEVELLED_DISC
    return out


def test_labels_without_levels_give_a_whole_spine_mask_and_no_region() -> None:
    from spineage.imaging import segmentation

    assert (UNLEVELLED_VERTEBRA, UNLEVELLED_DISC) == (segmentation.VERTEBRA_CODE, segmentation.DISC_CODE)
    labels = column_spine(brainstem=4)
    generic = unlevelled(labels)
    np.testing.assert_array_equal(spine_mask(generic, "whole"), spine_mask(labels, "whole"))
    assert regions_present(generic) == ()
    for region in ("cervical", "thoracic", "lumbar"):
        assert not spine_mask(generic, region).any()
