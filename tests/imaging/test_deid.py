"""Nothing identifying leaves a DICOM header: not into Volume.meta, inspect's output, error messages or files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from typer.testing import CliRunner

from spineage.cli import app
from spineage.imaging.deid import IDENTIFYING_DICOM_KEYWORDS, SAFE_DICOM_KEYWORDS, safe_dicom_meta
from spineage.imaging.io import ImageLoadError, load_image2d, load_volume
from tests.params_file import write_params
from tests.imaging.scans import IDENTITY, phantom_mri, secrets_of, write_dicom_series, write_nifti


@pytest.fixture
def identified_series(tmp_path: Path) -> Path:
    image, _, affine = phantom_mri()
    return write_dicom_series(tmp_path / "Series-3", image, affine)


def leaked(text: str, secrets: list[str]) -> list[str]:
    lowered = text.lower()
    return [secret for secret in secrets if secret.lower() in lowered]


def test_the_allow_list_holds_real_keywords_and_nothing_identifying() -> None:
    for keyword in list(SAFE_DICOM_KEYWORDS) + list(IDENTIFYING_DICOM_KEYWORDS):
        assert tag_for_keyword(keyword) is not None, keyword
    assert not set(SAFE_DICOM_KEYWORDS) & IDENTIFYING_DICOM_KEYWORDS
    assert {"Modality", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "SeriesDescription"} <= set(SAFE_DICOM_KEYWORDS)


def test_safe_meta_copies_acquisition_facts_only() -> None:
    dataset = pydicom.Dataset()
    for keyword, value in IDENTITY.items():
        setattr(dataset, keyword, value)
    dataset.Modality = "MR"
    dataset.Manufacturer = "GE MEDICAL SYSTEMS"
    dataset.ManufacturerModelName = "Signa HDxt"
    dataset.MagneticFieldStrength = "3"
    dataset.SeriesDescription = "Sag T2 FSE"
    meta = safe_dicom_meta(dataset)
    assert meta == {
        "modality": "MR",
        "manufacturer": "GE MEDICAL SYSTEMS",
        "model": "Signa HDxt",
        "field_strength": "3",
        "series_description": "Sag T2 FSE",
    }


@pytest.mark.parametrize("description", ["T2 SAG Jane", "doe^jane t2", "SAG T2 SECRET123", "Saint Hidden Hospital spine"])
def test_free_text_naming_the_patient_or_place_is_dropped(description: str) -> None:
    dataset = pydicom.Dataset()
    for keyword, value in IDENTITY.items():
        setattr(dataset, keyword, value)
    dataset.Modality = "MR"
    dataset.SeriesDescription = description
    meta = safe_dicom_meta(dataset)
    assert "series_description" not in meta and meta["modality"] == "MR"


def test_a_loaded_series_carries_no_identity(identified_series: Path) -> None:
    secrets = secrets_of(identified_series)
    volume = load_volume(identified_series)
    assert volume.meta["modality"] == "MR" and volume.meta["series_description"] == "T2 SAG"
    assert leaked(repr(volume.meta), secrets) == []
    assert set(volume.meta) <= {"format", "dtype", "slices", *SAFE_DICOM_KEYWORDS.values()}


def test_inspect_prints_no_identity(identified_series: Path) -> None:
    secrets = secrets_of(identified_series)
    runner = CliRunner()
    for extra in ([], ["--json"]):
        result = runner.invoke(app, ["inspect", str(identified_series), *extra])
        assert result.exit_code == 0, result.output
        assert "Siemens" in result.stdout and "MR" in result.stdout
        assert leaked(result.stdout + result.stderr, secrets) == []


def test_files_written_by_inspect_hold_no_identity(identified_series: Path, tmp_path: Path) -> None:
    _, labels, affine = phantom_mri()
    label = write_nifti(tmp_path / "labels.nii.gz", labels, affine, "LPS")
    out = tmp_path / "out"
    params = write_params(tmp_path / "params.yaml", {"preprocess": {"masks": "labels"}})  # masked by the given label map
    arguments = ["inspect", str(identified_series), "--label", str(label), "--preprocess", str(out / "model.npy"), "--params", str(params)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    written = [path for path in out.rglob("*") if path.is_file()]
    assert [path.name for path in written] == ["model.npy"]
    secrets = secrets_of(identified_series)
    for path in written:
        data = path.read_bytes().decode("latin-1")
        assert leaked(data, secrets) == []
    assert leaked(result.stdout + result.stderr, secrets) == []
    assert np.load(out / "model.npy").ndim == 3


def test_error_messages_about_a_series_hold_no_identity(tmp_path: Path) -> None:
    image, _, affine = phantom_mri()
    folder = tmp_path / "mixed"
    write_dicom_series(folder, image, affine, description="T2 SAG")
    write_dicom_series(folder, image, affine, description="Jane's T1", seed=1)
    gap = write_dicom_series(tmp_path / "gap", image, affine, skip_slices=(3,))
    secrets = secrets_of(folder) + secrets_of(gap)
    for path in (folder, gap):
        with pytest.raises(ImageLoadError) as caught:
            load_volume(path)
        assert leaked(str(caught.value).replace(str(path), ""), secrets) == []
        result = CliRunner().invoke(app, ["inspect", str(path)])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert leaked(result.stderr.replace(str(path), ""), secrets) == []


def test_a_real_radiograph_header_keeps_its_identity_to_itself() -> None:
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "77654033" / "CR1" / "6154"
    if not path.is_file():
        pytest.skip("pydicom's cervical CR file is not installed")
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    secrets = [str(dataset.get(k)) for k in IDENTIFYING_DICOM_KEYWORDS if k in dataset and len(str(dataset.get(k))) >= 4]
    assert secrets  # the file does carry a name, an id, dates and UIDs
    image = load_image2d(path)
    assert leaked(repr(image.meta), secrets) == []
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0 and "CSPINE" in result.stdout
    # The folder names of pydicom's test tree are the patient id: only the path the user gave may show it.
    assert leaked(result.stdout.replace(str(path), ""), secrets) == []
