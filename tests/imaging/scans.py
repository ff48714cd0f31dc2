"""Scans for the imaging tests: a small phantom, NIfTI files in any orientation, DICOM series with identities."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
REAL_LUMBAR = REALDATA / "mri" / "sct_t2_lumbar.nii.gz"
REAL_CERVICAL = REALDATA / "mri" / "sct_t2_cervical.nii.gz"
NO_REALDATA = f"the shared real files are absent ({REALDATA} not found)"

IDENTITY: dict[str, str] = {
    "PatientName": "Doe^Jane",
    "PatientID": "SECRET123",
    "PatientBirthDate": "19600101",
    "AccessionNumber": "ACC999",
    "InstitutionName": "Saint Hidden Hospital",
    "InstitutionAddress": "1 Privacy Lane, Secretville",
    "ReferringPhysicianName": "Whom^Referrer",
    "OperatorsName": "Tech^Operator",
    "StationName": "STATIONX77",
    "DeviceSerialNumber": "SN778899",
    "StudyDate": "20240229",
    "SeriesDate": "20240229",
    "StudyTime": "134501",
    "StudyID": "STUDY4242",
    "PatientAge": "063Y",
}
"""Identifying header values planted in every synthetic DICOM file: none may leave the loader."""


def secrets_of(folder: Path) -> list[str]:
    """The planted identities plus every UID written into the files of ``folder``."""
    import pydicom

    found = set(IDENTITY.values()) | {"Jane", "Hidden Hospital", "Privacy Lane"}
    for path in folder.iterdir():
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            found.add(str(dataset.get(keyword)))
    return sorted(found)


@functools.lru_cache(maxsize=None)
def phantom_mri(spacing: tuple[float, float, float] = (8.0, 8.0, 8.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole-spine phantom MRI at a coarse spacing: (image int16, labels uint8, RAS affine)."""
    from spineage.synth.anatomy import build_anatomy, default_levels
    from spineage.synth.scanner import SITES, acquire_mri

    anatomy = build_anatomy(170.0, 50.0, "F", [], default_levels(), np.random.default_rng(0))
    image, labels, affine = acquire_mri(anatomy, SITES[0], spacing, np.random.default_rng(1))
    image.flags.writeable = False
    labels.flags.writeable = False
    return image, labels, affine


def small_volume(shape: tuple[int, int, int] = (5, 6, 7), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny asymmetric int16 volume (every voxel distinct) and an anisotropic, shifted RAS affine."""
    rng = np.random.default_rng(seed)
    array = rng.permutation(np.prod(shape)).reshape(shape).astype(np.int16) + 10
    affine = np.diag([2.0, 1.5, 3.0, 1.0])
    affine[:3, 3] = [-4.0, 7.5, -30.0]
    return array, affine


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, axis_codes: str = "RAS") -> Path:
    """Write ``array`` (RAS voxel order) stored in ``axis_codes`` order, as the phantom generator does."""
    from spineage.synth.generate import nifti_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nifti_bytes(np.asarray(array), affine, axis_codes))
    return path


def reoriented(array: np.ndarray, affine: np.ndarray, axis_codes: str) -> tuple[np.ndarray, np.ndarray]:
    """``array`` in RAS order stored as ``axis_codes`` instead: (data, affine), as nibabel reorients."""
    import nibabel as nib
    from nibabel import orientations

    image = nib.Nifti1Image(np.asarray(array), affine)
    transform = orientations.ornt_transform(orientations.axcodes2ornt(("R", "A", "S")), orientations.axcodes2ornt(tuple(axis_codes)))
    image = image.as_reoriented(transform)
    return np.asarray(image.dataobj), image.affine


def write_dicom_series(
    folder: Path,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    axis_codes: str = "PIR",
    slope: float = 1.0,
    intercept: float = 0.0,
    description: str = "T2 SAG",
    series_uid: str | None = None,
    identity: dict[str, str] | None = None,
    skip_slices: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """Write ``array`` (RAS order, RAS ``affine``) as a sagittal-style DICOM series, one file a slice.

    The voxels are stored as ``axis_codes`` (``PIR``: columns run posterior, rows run down, slices
    run right, the usual sagittal layout); pixel values are ``(value - intercept) / slope``; files
    get shuffled, meaningless names so that only ImagePositionPatient can order them.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import MRImageStorage, ExplicitVRLittleEndian, generate_uid

    identity = IDENTITY if identity is None else identity
    data, stored_affine = reoriented(array, affine, axis_codes)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ stored_affine
    column_step, row_step = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    orientation = np.concatenate([lps[:3, 0] / column_step, lps[:3, 1] / row_step])
    stored = np.rint((data.astype(np.float64) - intercept) / slope).astype(np.int16)
    rng = np.random.default_rng(seed)
    study_uid, frame_uid = generate_uid(), generate_uid()
    series_uid = series_uid or generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(data.shape[2])
    for k in order:
        if k in skip_slices:
            continue
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        for keyword, value in identity.items():
            setattr(ds, keyword, value)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.Manufacturer = "Siemens"
        ds.ManufacturerModelName = "Avanto"
        ds.MagneticFieldStrength = "1.5"
        ds.SeriesDescription = description
        ds.SeriesNumber = 3
        ds.InstanceNumber = int(k) + 1
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        position = lps @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position[:3]]
        ds.PixelSpacing = [f"{row_step:.6f}", f"{column_step:.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):.4f}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        pixels = np.ascontiguousarray(stored[:, :, k].T)  # rows follow voxel axis 1, columns axis 0
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = pixels.tobytes()
        name = f"IM{rng.integers(10**6):06d}{k:03d}"[::-1]
        ds.save_as(folder / name, enforce_file_format=True)
    return folder


def save_vertebra_segmenter(folder: Path) -> Path:
    """Save a tiny untrained SpineSegNet as a model folder (as ``segment train --out`` writes one); returns ``folder``.

    Its weights are zero and its output bias favours ``vertebra`` (probability 0.9998), so it
    calls every voxel vertebra, confidently: a mask unlike the phantom's label map, the same on
    every machine.
    """
    import logging

    import mlflow.pytorch
    import torch

    from spineage.models.spine_seg import SpineSegNet
    from spineage.registry.tracking import mlflow_log_level

    net = SpineSegNet(channels=(4, 8), num_res_units=0, working_spacing=(8.0, 8.0, 8.0), patch_size=(16, 16, 16))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        for layer in net.modules():
            if isinstance(layer, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and layer.out_channels == len(net.class_names):
                layer.bias[net.class_names.index("vertebra")] = 10.0
    with mlflow_log_level(logging.ERROR):  # the pickle-format notice: the pickle is what loads back as the class
        mlflow.pytorch.save_model(net, str(folder), serialization_format="pickle", pip_requirements=[])
    return folder
