"""A tiny raw cohort and its feature vectors, written by hand: each test breaks one thing in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.findings.features import level_vectors, region_vectors
from spineage.validation.raw import inside_cohort


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Three subjects, five series (one repeat MRI, one radiograph, one VFA), a handful of findings."""
    participants = pd.DataFrame({"subject_id": ["sub-1", "sub-2", "sub-3"], "sex": ["F", "M", "F"], "birth_year": [1970, 1955, ""]})
    sessions = pd.DataFrame(
        {
            "series_id": ["mri-1-1", "mri-1-2", "mri-2-1", "xr-2", "vfa-3"],
            "subject_id": ["sub-1", "sub-1", "sub-2", "sub-2", "sub-3"],
            "age": [54.5, 56.0, 69.25, 69.25, 77.0],
            "modality": ["mri_t2_sag", "mri_t2_sag", "mri_t2_sag", "xray_lat", "dxa_vfa"],
            "image": ["images/mri-1-1.nii.gz", "images/mri-1-2.nii.gz", "images/mri-2-1.nii.gz", "images/xr-2.png", "images/vfa-3.png"],
            "label": ["labels/mri-1-1.nii.gz", "", "labels/mri-2-1.nii.gz", "", ""],
            "site": ["site-a", "site-a", "site-b", "site-b", "site-b"],
            "scanner": ["Avanto 1.5T", "Avanto 1.5T", "Ingenia 3T", "Ingenia 3T", "Horizon"],
        }
    )
    findings = pd.DataFrame(
        {
            "series_id": ["mri-1-1", "mri-1-1", "mri-1-2", "mri-2-1", "mri-2-1", "mri-2-1", "mri-2-1"],
            "level": ["L4", "L5", "L4", "C5", "T8", "", "L5"],
            "condition": ["disc_bulge", "desiccation", "disc_bulge", "extrusion", "endplate_change", "scoliosis", "spondylolisthesis"],
            "severity": ["mild", "near_complete", "moderate", "moderate", "present", "present", "mild"],
        }
    )
    lifestyle = pd.DataFrame(
        {
            "subject_id": ["sub-1", "sub-2", "sub-3"],
            "packs_per_day": [0.0, 1.5, 0.0],
            "alcohol_days_per_week": [2, 7, 0],
            "sedentary_hours_per_day": [8.5, 4.0, 24.0],
            "work": ["sedentary", "heavy", "moderate"],
            "exercise": ["moderate", "none", "vigorous"],
        }
    )
    outcomes = pd.DataFrame(
        {
            "subject_id": ["sub-1", "sub-2", "sub-3"],
            "bmd_t_lumbar": [-0.5, -2.7, 1.0],
            "prevalent_vertebral_fracture": [0, 1, 0],
            "height_cm": [165.0, 178.2, 158.0],
            "followup_years": [8.2, 3.1, 10.0],
            "death": [0, 1, 0],
            "incident_fracture": [0, 1, 0],
            "incident_fracture_type": ["", "vertebral", ""],
        }
    )
    return {
        "participants.csv": participants,
        "sessions.csv": sessions,
        "findings.csv": findings,
        "lifestyle.csv": lifestyle,
        "outcomes.csv": outcomes,
    }


TINY_SHAPE = (4, 5, 6)
"""The voxels of the tiny cohort's MRI images and label maps."""


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as a NIfTI file (1 mm voxels unless ``affine`` says otherwise)."""
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def tiny_image(seed: int = 0) -> np.ndarray:
    """An MRI-like volume: int16 intensities."""
    return np.random.default_rng(seed).integers(0, 1000, TINY_SHAPE).astype(np.int16)


def tiny_label_map() -> np.ndarray:
    """A label map of known codes: background, C2 (1), its disc (31), canal CSF (60) and cord (61)."""
    labels = np.zeros(TINY_SHAPE, np.uint8)
    labels[1, 1:3, 0:2], labels[1, 1:3, 2], labels[2, 2, :], labels[3, 2, :] = 1, 31, 60, 61
    return labels


def write_cohort(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write ``tables`` as a raw cohort, with a file for every image and label named.

    NIfTI images are tiny int16 volumes, NIfTI labels tiny label maps on the same
    grid; anything else (radiographs) is an empty file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / name, index=False)
    sessions = tables["sessions.csv"]
    for column in ("image", "label"):
        for number, path in enumerate(sessions.get(column, pd.Series(dtype=object))):
            if not isinstance(path, str) or not path or not inside_cohort(path):
                continue
            target = folder / path
            if path.endswith(".nii.gz"):
                write_nifti(target, tiny_image(number) if column == "image" else tiny_label_map())
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    return folder


def write_vectors(interim: Path, raw: Path) -> Path:
    """Level and region vectors of the raw cohort's MRI series, as the findings stage writes them."""
    interim.mkdir(parents=True, exist_ok=True)
    sessions = pd.read_csv(raw / "sessions.csv")
    findings = pd.read_csv(raw / "findings.csv", keep_default_na=False)
    series = sessions.loc[sessions["modality"] == "mri_t2_sag", "series_id"].tolist()
    level_vectors(findings, series).to_parquet(interim / "level_vectors.parquet")
    region_vectors(findings, series).to_parquet(interim / "region_vectors.parquet")
    return interim


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    """The tiny cohort's tables, to break before writing them."""
    return tiny_tables()


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """The tiny cohort, written and valid."""
    return write_cohort(tmp_path / "raw", tiny_tables())


@pytest.fixture
def interim(tmp_path: Path, raw: Path) -> Path:
    """Valid level and region vectors of the tiny cohort."""
    return write_vectors(tmp_path / "interim", raw)


@pytest.fixture(scope="session", autouse=True)
def great_expectations_imported() -> None:
    """Import great_expectations once per test process (about 5 s), so that it shows as setup, not as a test."""
    from spineage.validation.gate import import_great_expectations

    import_great_expectations()
