"""Levels counted up from the sacrum on a segmentation without them."""

from __future__ import annotations

import numpy as np
import pytest

from spineage.imaging.levels import assign_levels, without_levels
from spineage.labels import (
    DISC_LABELS,
    FIRST_DISC_LABEL,
    SACRUM_LABEL,
    UNLEVELLED_DISC,
    UNLEVELLED_VERTEBRA,
    VERTEBRA_LABELS,
    disc_label,
    vertebra_label,
)
from tests.imaging.scans import phantom_mri


def column(discs_at: list[int], sacrum_to: int = 20, height: int = 80, disc_sizes: dict[int, int] | None = None) -> np.ndarray:
    """A straight column (z inferior to superior, 2 mm voxels): sacrum below ``sacrum_to``, a 2-voxel disc at each z, bone between."""
    labels = np.zeros((10, 10, height), np.int16)
    labels[:, :, :sacrum_to] = UNLEVELLED_VERTEBRA
    for i, z in enumerate(discs_at):
        top = discs_at[i + 1] if i + 1 < len(discs_at) else min(height, z + 10)
        labels[:, :, z + 2 : top] = UNLEVELLED_VERTEBRA
        width = (disc_sizes or {}).get(z, 10)
        labels[:width, :width, z : z + 2] = UNLEVELLED_DISC
    return labels


def test_the_phantoms_whole_spine_is_named_back_from_its_own_stripped_label_map() -> None:
    _, truth, affine = phantom_mri((4.0, 4.0, 4.0))
    levelled = assign_levels(without_levels(truth.astype(np.int16)), np.abs(np.diag(affine))[:3])
    assert levelled.reason == "" and levelled.discs[0] == "disc_C2" and levelled.discs[-1] == "disc_L5"
    bone = np.isin(truth, [*VERTEBRA_LABELS, SACRUM_LABEL])
    assert (levelled.labels[bone] == truth[bone]).mean() > 0.9
    discs = np.isin(truth, list(DISC_LABELS))
    assert (levelled.labels[discs] == truth[discs]).mean() > 0.9
    for code in (60, 61, 0):  # canal, cord and background untouched
        np.testing.assert_array_equal(levelled.labels == code, truth == code)


def test_without_a_sacrum_nothing_is_named_and_the_answer_says_why() -> None:
    labels = column([20, 30, 40], sacrum_to=0)
    labels[:, :, :20] = 0  # the field of view starts at the first disc
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == () and "no sacrum" in levelled.reason
    np.testing.assert_array_equal(levelled.labels, labels)


def test_counting_stops_at_a_missed_disc() -> None:
    labels = column([20, 30, 40, 60, 70], height=90)  # the disc near z = 50 is missing
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == ("disc_L3", "disc_L4", "disc_L5") and "gap" in levelled.reason
    assert set(np.unique(levelled.labels[:, :, 60:62])) <= {0, UNLEVELLED_DISC}
    assert (levelled.labels[:, :, 75] == UNLEVELLED_VERTEBRA).any()


def test_sacral_remnants_are_not_l5_s1_and_a_split_disc_counts_once() -> None:
    labels = column([20, 30, 40, 50], sacrum_to=20, height=70)
    labels[:4, :4, 8:10] = UNLEVELLED_DISC  # a small rudimentary disc inside the sacrum (0.26 ml; the discs hold 1.6)
    labels[:, 5, 30:32] = UNLEVELLED_VERTEBRA  # L4/L5 cut in two pieces
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == ("disc_L2", "disc_L3", "disc_L4", "disc_L5"), levelled
    assert int(levelled.labels[0, 0, 8]) == UNLEVELLED_DISC  # not taken for L5/S1
    halves = levelled.labels[:, :, 30:32]
    assert set(np.unique(halves[halves >= FIRST_DISC_LABEL])) == {disc_label("L4")}  # both pieces one disc
    assert int(levelled.labels[3, 3, 5]) == SACRUM_LABEL and int(levelled.labels[3, 3, 25]) == vertebra_label("L5")


def test_the_input_map_is_not_changed() -> None:
    labels = column([20, 30])
    before = labels.copy()
    assign_levels(labels, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("labels", [np.zeros((4, 4, 4), np.int16), np.full((4, 4, 4), UNLEVELLED_VERTEBRA, np.int16)])
def test_no_disc_means_no_levels(labels: np.ndarray) -> None:
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == () and "no disc" in levelled.reason


def test_one_vertebra_below_the_lowest_disc_is_not_taken_for_the_sacrum() -> None:
    labels = column([14, 27, 40], sacrum_to=14, height=60)
    labels[:, :, :3] = 0  # the view starts inside a body: 22 mm of bone below the lowest disc, discs 26 mm apart
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == () and "no sacrum" in levelled.reason


def test_a_disc_cut_by_the_bottom_of_the_view_is_not_a_sacral_remnant() -> None:
    labels = column([0, 13, 26, 39], sacrum_to=0, height=60)
    labels[:, :, 0:2] = 0
    labels[:3, :3, 0:2] = UNLEVELLED_DISC  # the lowest disc, cut: small, touching the edge
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == (), "a vertebra above a cut disc is not the sacrum"


def test_one_disc_names_only_one_level_of_bone_above_it() -> None:
    labels = column([30], sacrum_to=30, height=150)
    labels[:, :, 32:] = UNLEVELLED_VERTEBRA  # bone on and on above the one disc found
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == ("disc_L5",)
    assert int(levelled.labels[5, 5, 40]) == vertebra_label("L5") and int(levelled.labels[5, 5, 140]) == UNLEVELLED_VERTEBRA


def test_a_single_disc_in_two_pieces_is_joined() -> None:
    labels = column([30], sacrum_to=30, height=50)
    labels[:, 5, 30:32] = UNLEVELLED_VERTEBRA  # L5/S1 cut left from right
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == ("disc_L5",) and UNLEVELLED_DISC not in set(np.unique(levelled.labels))


def test_a_missed_disc_among_close_neck_discs_stops_the_count() -> None:
    # lumbar discs 19 voxels apart, then neck-like discs 8 apart with one missing (a 16-voxel gap)
    discs = [40, 59, 78, 97, 105, 113, 121, 137, 145, 153]
    levelled = assign_levels(column(discs, sacrum_to=40, height=165), (2.0, 2.0, 2.0))
    assert len(levelled.discs) == 7 and "gap" in levelled.reason


def sloping_process(step_down: int, thickness: int) -> np.ndarray:
    """Three discs (L3/L4 to L5/S1) and L4's lamina and spinous process behind the bodies, ``thickness`` voxels
    high and sloping down ``step_down`` voxels per voxel back (each row touches the last only at an edge
    when the two are equal)."""
    labels = np.zeros((10, 40, 80), np.int16)
    labels[:, :10] = column([20, 30, 40])  # bodies and discs in front (y < 10): L5 between z 22 and 30, L4 from 32 to 40
    labels[3:7, 10:20, 34:40] = UNLEVELLED_VERTEBRA  # the lamina behind L4's body, at its height
    for back in range(16 // step_down + 1):  # the process, from z 39 down to z 23: its tip behind L5
        top = 39 - step_down * back
        labels[3:7, 20 + back, top - thickness : top] = UNLEVELLED_VERTEBRA
    return labels


@pytest.mark.parametrize(("step_down", "thickness"), [(1, 6), (2, 2)])
def test_a_spinous_process_sloping_down_past_the_body_below_keeps_its_own_vertebras_level(step_down: int, thickness: int) -> None:
    labels = sloping_process(step_down, thickness)
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert levelled.discs == ("disc_L3", "disc_L4", "disc_L5")
    process = levelled.labels[:, 20:40]
    assert (labels[:, 20:40, :30] > 0).sum() > 20  # some of it lies below L4's body
    assert set(np.unique(process[process > 0])) == {vertebra_label("L4")}
    assert levelled.labels[5, 5, 25] == vertebra_label("L5") and levelled.labels[5, 5, 10] == SACRUM_LABEL


def test_a_separate_piece_of_bone_far_behind_is_not_joined_to_a_process_it_does_not_touch() -> None:
    labels = sloping_process(1, 6)
    assert labels[:, 37].max() == 0 and labels[:, 36].max() > 0  # the process ends at y 36
    labels[3:7, 38:40, 23:28] = UNLEVELLED_VERTEBRA  # a voxel's gap behind its tip, at L5's height
    levelled = assign_levels(labels, (2.0, 2.0, 2.0))
    assert set(np.unique(levelled.labels[3:7, 38:40, 23:28])) == {vertebra_label("L5")}
    tip = levelled.labels[:, 36]
    assert set(np.unique(tip[tip > 0])) == {vertebra_label("L4")}
