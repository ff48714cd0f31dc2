"""``spineage predict`` on phantom, real and bad inputs, with tiny registered models (tests/inference/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.inference.predict import Models, ScanRequest, predict_scan, scan_requests
from spineage.inference.settings import PredictSettings
from tests.imaging.scans import NO_REALDATA, REAL_CERVICAL, REAL_LUMBAR, secrets_of, write_dicom_series
from tests.inference.conftest import MRI_CORRECTION, NORMATIVE, TRAINING_SUBJECTS, XRAY_CORRECTION, sessions

runner = CliRunner()


def _new_mri(phantom: Path) -> pd.Series:
    """A phantom MRI scan of a subject outside the training reference."""
    return sessions(phantom, "mri_t2_sag").iloc[TRAINING_SUBJECTS]


def _flags(result: dict) -> set[str]:
    return {flag["flag"] for flag in result["quality"]["flags"]}


def test_a_phantom_scan_like_the_training_ones_is_corrected_and_not_flagged(registry, phantom: Path) -> None:
    scan = _new_mri(phantom)
    result = predict_scan(ScanRequest(Path(scan.path), age=50.0, sex="f"), Models())  # an age the training scans span
    assert result["model"] == {"name": "spine-age-mri", "version": registry.mri_version, "uri": f"models:/spine-age-mri/{registry.mri_version}", "site": None}
    assert result["spine_age"] == pytest.approx((result["spine_age_raw"] - 10.0) / 0.8, abs=2e-3)
    assert result["sag"] == pytest.approx(result["spine_age"] - 50.0, abs=2e-3)
    low, high = result["normative_range"]["sag_low"], result["normative_range"]["sag_high"]
    assert high - low == pytest.approx(2 * NORMATIVE.half_width, abs=2e-3)
    assert result["atypical_for_age"] == (not low <= result["sag"] <= high)
    assert result["sex"] == "F"
    assert result["quality"]["flags"] == [] and result["quality"]["in_distribution"], result["quality"]["flags"]
    assert result["quality"]["regions_in_view"] == ["cervical", "thoracic", "lumbar"]
    assert 0.0 < result["quality"]["segmentation_confidence"] <= 1.0


def test_a_lumbar_only_scan_is_flagged_with_reasons(registry, phantom: Path, tmp_path: Path) -> None:
    scan = _new_mri(phantom)
    image = nib.load(scan.path)
    canonical = nib.as_closest_canonical(image)
    data = np.asarray(canonical.dataobj)
    spacing = canonical.header.get_zooms()[2]
    keep = int(round(200.0 / spacing))  # the lowest 200 mm: lumbar spine and sacrum
    lumbar = nib.Nifti1Image(data[:, :, :keep], canonical.affine)
    path = tmp_path / "lumbar-only.nii.gz"
    nib.save(lumbar, path)
    result = predict_scan(ScanRequest(path, age=scan.age), Models())
    flags = _flags(result)
    assert {"field_of_view", "mask_size"} <= flags, flags
    assert not result["quality"]["in_distribution"]
    assert result["spine_age"] is not None  # still a number, marked
    reasons = " ".join(f["reason"] for f in result["quality"]["flags"])
    assert "whole-spine" in reasons and "outside the training scans'" in reasons


def test_a_segmenter_other_than_the_training_one_is_flagged(registry, phantom: Path) -> None:
    import copy
    from dataclasses import replace

    from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY
    from spineage.inference.bundle import load_bundle

    bundle = load_bundle(f"models:/spine-age-mri/{registry.mri_version}")
    assert bundle.segmenter_mismatch is None  # the folder holds the model the network names
    network = copy.deepcopy(bundle.network)
    stored = network.preprocessing[SEGMENTER_IDENTITY_KEY]
    assert "#sha256=" in stored
    network.preprocessing[SEGMENTER_IDENTITY_KEY] = stored.rpartition("#sha256=")[0] + "#sha256=0123456789abcdef"
    other = replace(bundle, network=network)
    scan = _new_mri(phantom)
    result = predict_scan(ScanRequest(Path(scan.path), age=50.0), Models.pinned(other))
    assert _flags(result) == {"segmenter"}, result["quality"]["flags"]
    reason = result["quality"]["flags"][0]["reason"]
    assert "0123456789abcdef" in reason and stored.rpartition("#sha256=")[2] in reason
    # Same network, same scan: the flag changes nothing else.
    plain = predict_scan(ScanRequest(Path(scan.path), age=50.0), Models.pinned(bundle))
    assert plain["spine_age"] == result["spine_age"] and _flags(plain) == set()


def test_a_radiograph_picks_the_xray_model_and_needs_the_age_for_beheshti(registry, phantom: Path) -> None:
    scan = sessions(phantom, "xray_lat").iloc[TRAINING_SUBJECTS]
    without_age = predict_scan(ScanRequest(Path(scan.path)), Models())
    assert without_age["kind"] == "radiograph" and without_age["model"]["name"] == "spine-age-xray"
    assert without_age["spine_age"] is None and without_age["sag"] is None and "needs --age" in without_age["notes"][0]
    with_age = predict_scan(ScanRequest(Path(scan.path), age=50.0), Models())
    expected = with_age["spine_age_raw"] - (XRAY_CORRECTION.slope * 50.0 + XRAY_CORRECTION.intercept)
    assert with_age["spine_age"] == pytest.approx(expected, abs=2e-3)
    assert with_age["quality"]["flags"] == []


def test_the_vfa_image_is_preprocessed_as_vfa_without_the_margin_crop(registry, phantom: Path, monkeypatch) -> None:
    import spineage.radiograph.preprocess as preprocess

    seen = []
    original = preprocess.preprocess_image
    monkeypatch.setattr(preprocess, "preprocess_image", lambda image, modality, settings: seen.append(modality) or original(image, modality, settings))
    vfa = sessions(phantom, "dxa_vfa").iloc[0]
    result = predict_scan(ScanRequest(Path(vfa.path), age=70.0, modality="vfa"), Models())
    predict_scan(ScanRequest(Path(vfa.path), age=70.0), Models())
    assert seen == ["dxa_vfa", "xray_lat"] and result["quality"]["modality"] == "vfa"
    with pytest.raises(UserError, match="--modality radiograph or vfa"):
        predict_scan(ScanRequest(Path(vfa.path), modality="ct"), Models())


@pytest.mark.skipif(not REAL_LUMBAR.exists(), reason=NO_REALDATA)
def test_the_real_lumbar_and_cervical_scans_get_a_number_and_their_field_of_view_flag(registry, tmp_path: Path) -> None:
    for path, region in ((REAL_LUMBAR, "lumbar"), (REAL_CERVICAL, "cervical")):
        result = predict_scan(ScanRequest(path, age=40.0), Models())
        assert np.isfinite(result["spine_age"])
        assert "field_of_view" in _flags(result) and result["quality"]["regions_in_view"] == [region]


def test_a_dicom_series_folder_is_predicted_and_no_identifier_reaches_the_outputs(registry, phantom: Path, tmp_path: Path) -> None:
    from spineage.imaging.io import load_volume

    volume = load_volume(_new_mri(phantom).path)
    series = write_dicom_series(tmp_path / "dicom" / "series", volume.array, volume.affine)
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(series), "--age", "50", "--out", str(out), "--gradcam"])
    assert result.exit_code == 0, result.output
    written = {path.name: path.read_bytes() for path in out.iterdir()}
    assert set(written) == {"series.json", "series-gradcam.png", "predictions.csv"}
    text = b" ".join(content for name, content in written.items() if not name.endswith(".png")).decode() + result.output
    for secret in secrets_of(series):
        assert secret not in text, secret
    record = json.loads(written["series.json"])
    assert record["kind"] == "mri" and np.isfinite(record["spine_age"]) and written["series-gradcam.png"][:4] == b"\x89PNG"


def test_a_folder_and_a_csv_run_as_a_batch_with_a_summary(registry, phantom: Path, tmp_path: Path) -> None:
    mri = sessions(phantom, "mri_t2_sag").iloc[TRAINING_SUBJECTS:]
    table = pd.DataFrame({"path": list(mri.path), "age": list(mri.age), "sex": ["F", "M"][: len(mri)]})
    table.to_csv(tmp_path / "scans.csv", index=False)
    result = runner.invoke(app, ["predict", str(tmp_path / "scans.csv"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(summary.scan) == list(mri.path) and summary.error.isna().all()
    assert np.allclose(summary.sag, summary.spine_age - summary.age, atol=2e-3)
    images = scan_requests([phantom / "images"])
    assert len(images) == len(list((phantom / "images").iterdir()))
    (tmp_path / "folder").mkdir()
    for name in ("a.nii.gz", "a_seg.nii.gz", "b_label.nii", "notes.txt"):
        (tmp_path / "folder" / name).write_bytes(b"")
    assert [r.path.name for r in scan_requests([tmp_path / "folder"])] == ["a.nii.gz"]  # label maps are not scans


def test_one_bad_scan_of_a_batch_is_listed_and_the_others_are_kept(registry, phantom: Path, tmp_path: Path) -> None:
    good = _new_mri(phantom).path
    (tmp_path / "broken.nii.gz").write_bytes(b"not a scan")
    pd.DataFrame({"path": [good, str(tmp_path / "broken.nii.gz")]}).to_csv(tmp_path / "scans.csv", index=False)
    result = runner.invoke(app, ["predict", str(tmp_path / "scans.csv"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.stderr.splitlines()[-1].startswith("error: 1 of 2 scans failed")
    summary = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert summary.error.isna().tolist() == [True, False] and (tmp_path / "out" / f"{Path(good).name[:-7]}.json").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "no such file or folder"),
        (["{broken}"], "broken.nii.gz"),
        (["{png}", "--model", "models:/spine-age-mri@production"], "Expected a 3D MRI scan (NIfTI file or DICOM series folder) for spine-age-mri"),
        (["{mri}", "--age", "130"], "Expected an age between 18 and 100"),
        (["{mri}", "--sex", "X"], "Expected sex F or M"),
        (["{mri}", "--model", "runs:/abc/model"], "Expected --model to be a registered model URI"),
        (["{mri}", "--model", "models:/spine-age-mri@nowhere"], "alias 'nowhere'"),
        (["{mri}", "--modality", "vfa"], "Expected --modality only with a 2D image"),
        (["{mri}", "--model", "models:/spine-age-mri"], "Expected a registered model URI"),
        (["{table}"], "Expected a numeric age on line 2"),
    ],
)
def test_bad_inputs_are_one_line_errors(registry, phantom: Path, tmp_path: Path, arguments: list[str], message: str) -> None:
    (tmp_path / "broken.nii.gz").write_bytes(b"not a scan")
    names = {
        "missing": str(tmp_path / "absent.nii.gz"), "broken": str(tmp_path / "broken.nii.gz"),
        "png": sessions(phantom, "xray_lat").path.iloc[0], "mri": _new_mri(phantom).path, "table": str(tmp_path / "ages.csv"),
    }
    pd.DataFrame({"path": [names["mri"]], "age": ["unknown"]}).to_csv(tmp_path / "ages.csv", index=False)
    result = runner.invoke(app, ["predict", *[a.format(**names) for a in arguments], "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_without_a_production_version_the_error_names_the_promote_command(registry, phantom: Path, monkeypatch, tmp_path: Path) -> None:
    from tests.mlflow_store import fresh_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "empty"))
    result = runner.invoke(app, ["predict", _new_mri(phantom).path, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "spineage promote --model spine-age-mri" in result.stderr
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_settings_refuse_an_inverted_age_range() -> None:
    from spineage.inference.settings import parse_predict_settings

    with pytest.raises(UserError, match="predict.min_age below predict.max_age"):
        parse_predict_settings({"min_age": 90, "max_age": 20})
    assert parse_predict_settings(None) == PredictSettings()


def test_the_pyfunc_finds_its_version_and_answers_a_table_of_scans(registry, phantom: Path) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from spineage.registry.tracking import configure_mlflow

    configure_mlflow()  # MLflow keeps the last store it was pointed at; this test's is the registry's
    model = mlflow.pyfunc.load_model("models:/spine-age-mri@production")
    scan = _new_mri(phantom)
    answer = model.predict(pd.DataFrame({"path": [scan.path], "age": [50.0], "sex": ["F"]}))
    direct = predict_scan(ScanRequest(Path(scan.path), age=50.0), Models())
    row = answer.iloc[0]
    assert row["model"] == f"models:/spine-age-mri/{registry.mri_version}"
    assert row["spine_age"] == pytest.approx(direct["spine_age"]) and row["sag"] == pytest.approx(direct["sag"])
    assert bool(row["in_distribution"]) and row["flags"] == ""
    with pytest.raises(MlflowException, match="row 0: Expected a scan"):
        model.predict(pd.DataFrame({"path": ["/no/such/scan.nii.gz"]}))
