"""The SynthSeg-style synthesis: tissues from a class map, the label-to-image step, deformation, the whole chain."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from spineage.imaging.synthesis import (
    LabelToImage,
    LabelToImaged,
    RandFieldOfViewd,
    SynthesisSettings,
    deformation_transform,
    synthesis_transform,
    tissue_classes,
    tissue_map,
)

PATCH = (8, 16, 32)


def blocky_scan(seed: int = 0, shape: tuple[int, int, int] = (12, 24, 48)) -> tuple[np.ndarray, np.ndarray]:
    """(image, classes): a column of vertebrae and discs with a canal and cord behind, two background tissues."""
    rng = np.random.default_rng(seed)
    classes = np.zeros(shape, dtype=np.uint8)
    for z in range(2, shape[2] - 6, 8):
        classes[3:9, 10:18, z : z + 6] = 1
        classes[3:9, 10:18, z + 6 : z + 8] = 2
    classes[4:8, 5:9, :] = 3
    classes[5:7, 6:8, :] = 4
    image = np.where(classes == 0, 0.1, 0.0) + 0.5 * (classes == 1) + 0.9 * (classes == 2) + 1.0 * (classes == 3) + 0.4 * (classes == 4)
    image[:, :4] = 0.7  # a bright "fat" layer in the background
    image[classes == 1] -= 0.3 * (np.indices(shape)[1][classes == 1] == 10)  # a dark cortex row in each body
    return (image + rng.normal(0, 0.01, shape)).astype(np.float32), classes


# --------------------------------------------------------------------------- tissues


def test_tissues_refine_the_classes_and_order_the_background_by_intensity() -> None:
    image, classes = blocky_scan()
    tissues = tissue_map(image, classes, background_tissues=2, spine_tissues=(2, 1, 1, 1))
    lookup = tissue_classes(2, (2, 1, 1, 1))
    assert lookup.tolist() == [0, 0, 0, 1, 1, 2, 3, 4]
    assert (lookup[tissues] == classes).all()  # no voxel changes class
    assert tissues.min() >= 1  # 0 is kept for outside the field of view
    # The bright fat layer is the second (brighter) background tissue, the rest of the background the first.
    assert (tissues[:, :4][classes[:, :4] == 0] == 2).all()
    assert (tissues[:, 20:][classes[:, 20:] == 0] == 1).all()
    # The vertebra's dark cortex row and its marrow are different tissues.
    assert len(np.unique(tissues[classes == 1])) == 2


def test_a_class_map_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        tissue_map(np.zeros((4, 4, 4)), np.zeros((4, 4, 5), dtype=np.uint8))


# --------------------------------------------------------------------------- label to image


def test_every_draw_gives_each_tissue_a_new_intensity_and_one_tissue_one_intensity() -> None:
    tissues = np.repeat(np.arange(6), 20).reshape(6, 4, 5)
    draw = LabelToImage(n_tissues=6, max_sd=0.0).set_random_state(0)
    first, second = draw(tissues), draw(tissues)
    for code in range(1, 6):
        assert np.ptp(first[tissues == code]) == 0.0  # no spread asked: one value per tissue
    means_first = np.array([first[tissues == code][0] for code in range(1, 6)])
    means_second = np.array([second[tissues == code][0] for code in range(1, 6)])
    assert np.all(np.abs(means_first - means_second) > 1e-4)  # every tissue changed between draws
    assert (first[tissues == 0] == 0).all() and (second[tissues == 0] == 0).all()  # outside the field of view stays dark
    # Contrast itself is random: the order of the tissues' intensities differs between draws.
    orders = {tuple(np.argsort([draw(tissues)[tissues == code][0] for code in range(1, 6)])) for _ in range(5)}
    assert len(orders) > 1


def test_the_intensity_step_leaves_the_labels_as_they_were() -> None:
    image, classes = blocky_scan()
    tissues = torch.from_numpy(tissue_map(image, classes, 3, (2, 2, 1, 1))[None].astype(np.int64))
    labels = torch.from_numpy(classes[None].astype(np.int64))
    step = LabelToImaged("tissue", "image", n_tissues=10, max_sd=0.05)
    step.set_random_state(1)
    out = step({"tissue": tissues.clone(), "label": labels.clone()})
    assert torch.equal(out["tissue"], tissues) and torch.equal(out["label"], labels)
    assert out["image"].shape == tissues.shape and out["image"].dtype == torch.float32


def test_tissue_codes_beyond_the_table_are_refused() -> None:
    with pytest.raises(ValueError, match="tissue codes in 0..2"):
        LabelToImage(n_tissues=3)(np.array([[[0, 3]]]))


def test_keep_fraction_one_keeps_the_phantoms_image() -> None:
    image = torch.rand(1, 4, 4, 4)
    step = LabelToImaged("tissue", "image", n_tissues=2, keep_fraction=1.0)
    out = step({"tissue": torch.ones(1, 4, 4, 4, dtype=torch.int64), "image": image})
    assert torch.equal(out["image"], image)


# --------------------------------------------------------------------------- deformation and the chain


def test_the_deformation_moves_image_and_labels_alike() -> None:
    _, classes = blocky_scan()
    image = classes.astype(np.float32)  # an image that spells out its labels: they must still agree after moving
    margin = [(s - p) // 2 for s, p in zip(classes.shape, PATCH)]
    centre = tuple(slice(m, m + p) for m, p in zip(margin, PATCH))
    deform = deformation_transform(PATCH, SynthesisSettings(rotation_deg=20.0, scaling=0.2, elastic=0.2))
    deform.set_random_state(4)
    moved_somewhere = False
    for _ in range(4):
        out = deform({"tissue": torch.from_numpy(classes[None].astype(np.int64)), "image": torch.from_numpy(image[None])})
        label, moved = out["tissue"][0].numpy(), out["image"][0].numpy()
        assert label.shape == PATCH == moved.shape
        # Away from edges (where bilinear interpolation mixes neighbours) the image still reads as its label.
        clean = np.abs(moved - np.round(moved)) < 0.05
        assert clean.mean() > 0.3
        assert np.mean(np.round(moved[clean]) == label[clean]) > 0.97
        assert (label > 0).sum() > 100
        moved_somewhere |= not np.array_equal(label, classes[centre])
    assert moved_somewhere


def _seeded_chain(seed: int, **settings):
    """The synthesis chain on the blocky scan's tissues (3 background tissues), seeded: (chain, its input)."""
    image, classes = blocky_scan()
    lookup = tissue_classes(3, (2, 2, 1, 1))
    tissues = tissue_map(image, classes, 3, (2, 2, 1, 1))
    chain = synthesis_transform(PATCH, len(lookup), lookup, SynthesisSettings(background_tissues=3, real_image_fraction=0.0, **settings))
    chain.set_random_state(seed)
    return chain, {"tissue": torch.from_numpy(tissues[None].astype(np.int64))}


def test_the_chain_gives_a_patch_whose_label_matches_its_tissues_and_whose_contrast_varies() -> None:
    chain, sample = _seeded_chain(7, field_of_view_probability=0.0)
    pairs = [chain(dict(sample)) for _ in range(5)]
    for pair in pairs:
        assert tuple(pair["image"].shape) == (1, *PATCH) and tuple(pair["label"].shape) == (1, *PATCH)
        assert set(np.unique(pair["label"].numpy())) <= {0, 1, 2, 3, 4}
        assert torch.isfinite(pair["image"]).all()
        assert -0.5 <= float(pair["image"].min()) and float(pair["image"].max()) <= 1.5
    # The mean intensity of the vertebra relative to the canal differs between draws: a new contrast each time.
    contrasts = []
    for pair in pairs:
        image_, label = pair["image"][0].numpy(), pair["label"][0].numpy()
        if (label == 1).sum() > 10 and (label == 3).sum() > 10:
            contrasts.append(image_[label == 1].mean() - image_[label == 3].mean())
    assert len(contrasts) >= 2
    assert np.ptp(contrasts) > 0.05


def test_a_smaller_field_of_view_blanks_image_and_label_together() -> None:
    chain, sample = _seeded_chain(2, field_of_view_probability=1.0)
    pair = chain(sample)
    outside = pair["image"][0].numpy() == 0
    assert outside.any()
    assert (pair["label"][0].numpy()[outside] == 0).mean() > 0.99


def _box_of(kept: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the True voxels."""
    where = np.argwhere(kept)
    return tuple(slice(int(low), int(high) + 1) for low, high in zip(where.min(0), where.max(0)))


def test_the_field_of_view_is_a_box_on_the_canal_with_nothing_seen_or_labelled_outside() -> None:
    label = np.zeros((1, 16, 64, 128), dtype=np.int64)
    label[0, 6:10, 40:46, :] = 3  # the canal, far from the crop's centre front to back
    label[0, 6:10, 50:64, :] = 1
    image = torch.rand(1, *label.shape[1:]) + 0.5  # nothing is 0 inside
    cut = RandFieldOfViewd(["image", "label"], "label", smallest=(6, 10, 19), prob=1.0)
    cut.set_random_state(3)
    sizes = []
    for _ in range(40):
        out = cut({"image": image.clone(), "label": torch.from_numpy(label.copy())})
        kept = out["image"][0].numpy() != 0
        box = _box_of(kept)
        assert kept[box].all(), "the kept part is one box"
        size = [b.stop - b.start for b in box]
        assert all(low <= n <= high for n, low, high in zip(size, (6, 10, 19), (16, 64, 128)))
        assert (out["label"][0].numpy()[~kept] == 0).all() and (out["label"][0].numpy()[kept] == label[0][kept]).all()
        assert (out["label"][0].numpy()[box] == 3).any(), "every box holds canal"
        sizes.append(size[1])
    assert min(sizes) < 30 < max(sizes)  # small and large fields of view both drawn


def test_the_field_of_view_lies_anywhere_without_canal_and_not_at_all_at_probability_zero() -> None:
    label = torch.zeros((1, 8, 32, 32), dtype=torch.int64)
    image = torch.ones((1, 8, 32, 32))
    cut = RandFieldOfViewd(["image", "label"], "label", smallest=(4, 4, 4), prob=1.0)
    cut.set_random_state(0)
    starts = {_box_of(cut({"image": image.clone(), "label": label})["image"][0].numpy() != 0)[1].start for _ in range(20)}
    assert len(starts) > 3
    never = RandFieldOfViewd(["image", "label"], "label", smallest=(4, 4, 4), prob=0.0)
    assert torch.equal(never({"image": image, "label": label})["image"], image)


def test_settings_reach_the_synthesis() -> None:
    from spineage.imaging.segmentation import SegmentationSettings, parse_segmentation_settings

    settings = parse_segmentation_settings({"synthesis_noise": 0.1, "synthesis_spine_tissues": [3, 2, 1, 1]})
    assert settings.synthesis_settings() == replace(SynthesisSettings(), noise=0.1, spine_tissues=(3, 2, 1, 1))
    assert SegmentationSettings().synthesis_settings() == SynthesisSettings()


def test_growing_the_cord_takes_canal_only_across_the_slice_and_drops_the_stale_image() -> None:
    from spineage.imaging.synthesis import RandGrowTissued

    tissues = np.full((1, 7, 7, 5), 1, dtype=np.int64)  # background
    tissues[0, 1:6, 1:6, 1:4] = 6  # canal
    tissues[0, 3, 3, 1:4] = 7  # cord
    grow = RandGrowTissued("tissue", grow=[7], into=[6], prob=1.0)
    out = grow({"tissue": torch.from_numpy(tissues), "image": torch.zeros(1, 7, 7, 5)})
    grown = out["tissue"][0].numpy()
    assert (grown == 7).sum() == 9 * 3  # a 3 x 3 cross-section on each of the 3 cord slices
    assert (grown[..., 0] != 7).all() and (grown[..., 4] != 7).all()  # never along the spine
    assert ((grown == 1) == (tissues[0] == 1)).all()  # background untouched
    assert "image" not in out
    kept = RandGrowTissued("tissue", grow=[7], into=[6], prob=0.0)({"tissue": torch.from_numpy(tissues), "image": torch.zeros(1)})
    assert torch.equal(kept["tissue"], torch.from_numpy(tissues)) and "image" in kept
