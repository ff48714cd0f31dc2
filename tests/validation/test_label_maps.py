"""The raw gate reads label maps as label maps, and keeps every path inside the cohort folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from spineage.config import ValidationSettings
from spineage.labels import KNOWN_LABEL_CODES
from spineage.validation.gate import GateResult
from spineage.validation.label_maps import LABEL_FLAGS, known_codes_text, unknown_codes
from spineage.validation.raw import read_raw_tables, validate_raw_cohort

from .conftest import TINY_SHAPE, tiny_image, tiny_label_map, tiny_tables, write_cohort, write_nifti

SETTINGS = ValidationSettings()
REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "mri"
REAL_SCANS = ("sct_t2_cervical.nii.gz", "sct_t2_lumbar.nii.gz")
needs_realdata = pytest.mark.skipif(not all((REALDATA / name).is_file() for name in REAL_SCANS),
                                    reason=f"the shared real MRI volumes are absent ({REALDATA} not found)")

LABEL = "labels/mri-1-1.nii.gz"
IMAGE = "images/mri-1-1.nii.gz"


def _failures(result: GateResult) -> dict[str, str]:
    """Failed column -> its line."""
    return {outcome.check.column: outcome.line() for outcome in result.failures}


def _label_as(write: Callable[[Path], None]) -> Callable[[Path], None]:
    """Replace the first label map (mri-1-1's) by what ``write`` writes."""

    def change(raw: Path) -> None:
        (raw / LABEL).unlink()
        write(raw / LABEL)

    return change


def _set_label_path(path: str) -> Callable[[Path], None]:
    def change(raw: Path) -> None:
        sessions = (raw / "sessions.csv").read_text().replace(LABEL, path)
        (raw / "sessions.csv").write_text(sessions)

    return change


def _permuted(path: Path) -> None:
    """The same label map stored in another axis order (S, R, A), with the affine saying so."""
    affine = np.zeros((4, 4))
    affine[0, 1] = affine[1, 2] = affine[2, 0] = affine[3, 3] = 1.0
    write_nifti(path, np.transpose(tiny_label_map(), (2, 0, 1)).copy(), affine)


def _with_codes(replacements: dict[int, int]) -> np.ndarray:
    """The tiny label map (int16) with some codes replaced."""
    labels = tiny_label_map().astype(np.int16)
    return np.select([labels == old for old in replacements], list(replacements.values()), labels).astype(np.int16)


# (what, the change, the failing flags, text in the first failing flag's line)
LABEL_FAULTS = [
    ("the image's path", _set_label_path(IMAGE), {"label_is_not_the_image", "label_codes_known"}, "'the same file as the image mri-1-1.nii.gz' (mri-1-1)"),
    ("a hard link to the image", _label_as(lambda p: os.link(p.parent.parent / IMAGE, p)), {"label_is_not_the_image", "label_codes_known"}, "the same file as the image"),
    ("a byte copy of the image", _label_as(lambda p: shutil.copyfile(p.parent.parent / IMAGE, p)), {"label_is_not_the_image", "label_codes_known"}, "'a byte copy of the image mri-1-1.nii.gz' (mri-1-1)"),
    ("fractional values", _label_as(lambda p: write_nifti(p, tiny_label_map().astype(np.float32) * 0.5)), {"label_codes_known"}, "'fractional values such as 0.5' (mri-1-1)"),
    ("codes 999 and -3", _label_as(lambda p: write_nifti(p, _with_codes({60: 999, 61: -3}))), {"label_codes_known"}, "'codes -3, 999' (mri-1-1)"),
    ("another shape", _label_as(lambda p: write_nifti(p, np.zeros((4, 5, 7), np.uint8))), {"label_shape_matches"}, "'4x5x7 voxels, the image 4x5x6' (mri-1-1)"),
    ("not NIfTI", _label_as(lambda p: p.write_text("a segmentation, honestly")), {"label_readable"}, "no readable NIfTI header"),
    ("a 4D image", _label_as(lambda p: write_nifti(p, np.zeros((*TINY_SHAPE, 2), np.uint8))), {"label_readable"}, "a 4D image of 4x5x6x2 voxels"),
]


@pytest.mark.parametrize("change, flags, text", [fault[1:] for fault in LABEL_FAULTS], ids=[fault[0] for fault in LABEL_FAULTS])
def test_a_label_map_that_is_no_label_map_fails_naming_its_series(tmp_path: Path, change, flags: set[str], text: str) -> None:
    raw = write_cohort(tmp_path / "raw", tiny_tables())
    change(raw)
    result = validate_raw_cohort(raw, SETTINGS)
    failures = _failures(result)
    assert set(failures) == flags, result.failure_lines()
    first = next(flag for flag in LABEL_FLAGS if flag in flags)
    assert " on 1 of 5 rows, e.g. " in failures[first] and text in failures[first], failures[first]


@pytest.mark.parametrize(
    "write",
    [
        _permuted,
        lambda p: write_nifti(p, tiny_label_map().astype(np.float32)),  # whole numbers stored as floats
        lambda p: write_nifti(p, np.full(TINY_SHAPE, 130, np.int16)),  # what segmentation without levels writes
        lambda p: write_nifti(p, np.zeros((*TINY_SHAPE, 1), np.uint8)),  # an empty map, with a trailing axis of one
    ],
    ids=["stored in another axis order", "integral floats", "unlevelled codes", "empty, 4D of one volume"],
)
def test_a_sound_label_map_passes(tmp_path: Path, write) -> None:
    raw = write_cohort(tmp_path / "raw", tiny_tables())
    _label_as(write)(raw)
    result = validate_raw_cohort(raw, SETTINGS)
    assert result.success, result.failure_lines()
    sessions = next(table.frame for table in read_raw_tables(raw)[0] if table.name == "sessions.csv")
    assert sessions["label_codes_known"].tolist() == [True, None, True, None, None]
    assert sessions["label_shape_matches"].tolist() == [True, None, True, None, None]


def test_the_known_codes_are_the_label_modules() -> None:
    assert known_codes_text() == "0-27, 31-56, 60, 61, 100, 130"
    assert unknown_codes(np.array(sorted(KNOWN_LABEL_CODES))) is None
    assert unknown_codes(np.array([28, 57, 62, 255])) == "codes 28, 57, 62, 255"
    assert unknown_codes(np.array([0.0, np.nan])) == "1 NaN or Inf voxels"


@pytest.mark.parametrize(
    "column, path, expected",
    [
        ("image", "/etc/passwd", "'/etc/passwd' (mri-1-2)"),
        ("image", "../outside.nii.gz", "'../outside.nii.gz' (mri-1-2)"),
        ("image", "images/../../outside.nii.gz", "'images/../../outside.nii.gz' (mri-1-2)"),
        ("label", "../outside.nii.gz", "'../outside.nii.gz' (mri-1-2)"),
        ("label", "/etc/hostname", "'/etc/hostname' (mri-1-2)"),
    ],
)
def test_a_path_outside_the_cohort_folder_fails_and_is_not_opened(tmp_path: Path, column: str, path: str, expected: str) -> None:
    tables = tiny_tables()
    tables["sessions.csv"].loc[1, column] = path
    raw = write_cohort(tmp_path / "raw", tables)
    # Files that exist there, and would pass as image and label map, so that only the path is at fault.
    write_nifti(tmp_path / "outside.nii.gz", tiny_image(1) if column == "image" else tiny_label_map())
    result = validate_raw_cohort(raw, SETTINGS)
    failures = _failures(result)
    assert list(failures) == [f"{column}_inside"], result.failure_lines()
    assert "lies inside the cohort folder" in failures[f"{column}_inside"] and expected in failures[f"{column}_inside"]


def test_paths_inside_the_folder_pass_even_through_a_symbolic_link(tmp_path: Path) -> None:
    """A cohort may keep its scans behind a link (synth copies what links point to into data/raw)."""
    tables = tiny_tables()
    raw = write_cohort(tmp_path / "raw", tables)
    sessions = tables["sessions.csv"]
    sessions.loc[0, "image"] = "elsewhere/../images/mri-1-1.nii.gz"
    sessions.loc[1, "image"] = "linked/mri-1-2.nii.gz"
    sessions.to_csv(raw / "sessions.csv", index=False)
    (raw / "elsewhere").mkdir()
    write_nifti(tmp_path / "disk" / "mri-1-2.nii.gz", tiny_image(2))
    (raw / "linked").symlink_to(tmp_path / "disk", target_is_directory=True)
    result = validate_raw_cohort(raw, SETTINGS)
    assert result.success, result.failure_lines()


@needs_realdata
def test_real_mri_volumes_without_label_maps_pass_and_as_label_maps_fail(tmp_path: Path) -> None:
    tables = tiny_tables()
    sessions = tables["sessions.csv"]
    sessions.loc[0, ["image", "label"]] = ["images/cervical.nii.gz", ""]
    sessions.loc[1, ["image", "label"]] = ["images/lumbar.nii.gz", ""]
    raw = write_cohort(tmp_path / "raw", tables)
    for name, scan in zip(("cervical", "lumbar"), REAL_SCANS):
        shutil.copyfile(REALDATA / scan, raw / "images" / f"{name}.nii.gz")
    result = validate_raw_cohort(raw, SETTINGS)
    assert result.success, result.failure_lines()

    sessions.loc[0, "label"] = "images/cervical.nii.gz"  # the image named as its own label map
    sessions.loc[1, "label"] = "images/cervical.nii.gz"  # another scan: intensities, on another grid
    sessions.to_csv(raw / "sessions.csv", index=False)
    failures = _failures(validate_raw_cohort(raw, SETTINGS))
    assert set(failures) == {"label_is_not_the_image", "label_codes_known", "label_shape_matches"}
    assert "on 1 of 5 rows" in failures["label_is_not_the_image"] and "(mri-1-1)" in failures["label_is_not_the_image"]
    assert "on 2 of 5 rows" in failures["label_codes_known"]
    assert "on 1 of 5 rows" in failures["label_shape_matches"] and "(mri-1-2)" in failures["label_shape_matches"]
