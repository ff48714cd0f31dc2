"""What may leave a DICOM header: an allow-list of non-identifying acquisition facts.

DICOM headers carry names, ids, dates, places and UIDs. Nothing read from a
header reaches :attr:`~spineage.imaging.io.Volume.meta`, a manifest, a log or
a message unless its keyword is in :data:`SAFE_DICOM_KEYWORDS`, and even an
allowed free-text value (a series description typed at the console) is dropped
when it contains one of the header's own identifying values.

Example:
    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> from spineage.imaging.deid import safe_dicom_meta
    >>> meta = safe_dicom_meta(pydicom.dcmread(get_testdata_file("MR_small.dcm")))
    >>> meta["modality"], "PatientName" in str(meta)
    ('MR', False)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

SAFE_DICOM_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {
        "Modality": "modality",
        "Manufacturer": "manufacturer",
        "ManufacturerModelName": "model",
        "MagneticFieldStrength": "field_strength",
        "SeriesDescription": "series_description",
        "BodyPartExamined": "body_part",
        "MRAcquisitionType": "acquisition_type",
        "ScanningSequence": "scanning_sequence",
        "RepetitionTime": "repetition_time_ms",
        "EchoTime": "echo_time_ms",
        "SliceThickness": "slice_thickness_mm",
        "PhotometricInterpretation": "photometric",
        "BitsStored": "bits_stored",
        "ViewPosition": "view_position",
    }
)
"""DICOM keyword -> meta key: the only header fields ever copied (acquisition facts, nothing about the person)."""

FREE_TEXT_KEYWORDS: frozenset[str] = frozenset({"SeriesDescription", "BodyPartExamined"})
"""Allowed fields that a person types: checked against the header's identifying values before use."""

IDENTIFYING_DICOM_KEYWORDS: frozenset[str] = frozenset(
    {
        "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate",
        "PatientBirthName", "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
        "IssuerOfPatientID", "MedicalRecordLocator", "AccessionNumber", "StudyID", "InstitutionName",
        "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
        "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
        "RequestingPhysician", "StationName", "DeviceSerialNumber", "StudyInstanceUID",
        "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyDate", "SeriesDate",
        "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
        "AcquisitionDateTime", "PatientAge", "PatientSex", "PatientSize", "PatientWeight",
    }
)
"""Fields that must never leave the header (used to scrub free text, and by the tests)."""


def _text(value: Any) -> str:
    """A header value as one short line of text (multi-valued fields joined with '\\')."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return " ".join(text.split())[:128]


def identifying_values(dataset: Any) -> set[str]:
    """The identifying strings of a header (and a person name's parts), lower-cased, 3+ characters.

    Args:
        dataset: a ``pydicom.Dataset``.
    """
    found: set[str] = set()
    for keyword in IDENTIFYING_DICOM_KEYWORDS:
        value = getattr(dataset, keyword, None) if keyword in dataset else None
        if value in (None, ""):
            continue
        text = _text(value).lower()
        found.add(text)
        found.update(part for part in re.split(r"[\^\s,=\\/]+", text) if part)
    return {value for value in found if len(value) >= 3}


def safe_dicom_meta(dataset: Any) -> dict[str, str]:
    """The allow-listed, non-identifying acquisition facts of a DICOM header.

    Args:
        dataset: a ``pydicom.Dataset`` (pixel data not needed).

    Returns:
        ``{meta key: value}`` for each keyword of :data:`SAFE_DICOM_KEYWORDS` that is present
        and non-empty; free-text values mentioning an identifying value of the same header are left out.
    """
    secrets = None
    meta: dict[str, str] = {}
    for keyword, key in SAFE_DICOM_KEYWORDS.items():
        if keyword not in dataset:
            continue
        value = dataset.get(keyword)
        if value is None or _text(value) == "":
            continue
        text = _text(value)
        if keyword in FREE_TEXT_KEYWORDS:
            if secrets is None:
                secrets = identifying_values(dataset)
            lowered = text.lower()
            if any(secret in lowered for secret in secrets):
                continue
        meta[key] = text
    return meta
