"""``spineage preprocess``: arrays and manifest, idempotence, failures and their threshold, segmentation fallback."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.imaging.preprocess import INTENSITY_FEATURES, PreprocessSettings
from spineage.imaging.stage import (
    FAILURE_COLUMNS,
    MANIFEST_COLUMNS,
    NO_SEGMENTATION_REASON,
    build_processed,
)
from tests.params_file import write_params

from .scans import phantom_mri, write_nifti

LABEL_MASKS = {"masks": "labels", "segmentation_model": None}
"""Today's label-map masking (the default, masks: segmentation, is tested in test_segment_stage.py)."""
SETTINGS = PreprocessSettings(workers=1, **LABEL_MASKS)
ORIENTATIONS = ("RAS", "LPS", "PSR", "RAS")


def write_raw(folder: Path, n: int = 4) -> tuple[Path, Path]:
    """A raw cohort of ``n`` phantom MRI series (stored in several orientations) and one radiograph, plus cohort.csv."""
    image, labels, affine = phantom_mri((8.0, 4.0, 4.0))
    rows, cohort = [], []
    for i in range(n):
        series = f"mri-{i}"
        scaled = (image.astype(np.float32) * (1.0 + 0.1 * i)).astype(np.int16)
        write_nifti(folder / "images" / f"{series}.nii.gz", scaled, affine, ORIENTATIONS[i % len(ORIENTATIONS)])
        write_nifti(folder / "labels" / f"{series}.nii.gz", labels, affine, ORIENTATIONS[i % len(ORIENTATIONS)])
        rows.append({"series_id": series, "subject_id": f"sub-{i}", "age": 40.0 + i, "modality": "mri_t2_sag",
                     "image": f"images/{series}.nii.gz", "label": f"labels/{series}.nii.gz"})
        cohort.append({"series_id": series, "subject_id": f"sub-{i}", "age": 40.0 + i, "sex": "F", "bracket": 40,
                       "cluster": 0, "cluster_label": "", "normal": True, "split": ["train", "validation", "test", "train"][i % 4]})
    rows.append({"series_id": "xr-0", "subject_id": "sub-0", "age": 40.0, "modality": "xray_lat", "image": "images/xr-0.png",
                 "label": ""})
    pd.DataFrame(rows).to_csv(folder / "sessions.csv", index=False)
    cohort_path = folder.parent / "cohort.csv"
    pd.DataFrame(cohort).to_csv(cohort_path, index=False)
    return folder, cohort_path


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, Path]:
    return write_raw(tmp_path / "raw")


def run(raw: Path, cohort_csv: Path, tmp_path: Path, settings: PreprocessSettings = SETTINGS):
    return build_processed(raw, cohort_csv, tmp_path / "processed", tmp_path / "reports", settings, progress=False)


def mtimes(*folders: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_cohort_series_gets_an_array_and_a_manifest_row(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    summary = run(raw, cohort_csv, tmp_path)
    assert summary.by_status == {"ok": 4, "flagged": 0, "excluded": 0, "failed": 0} and summary.processed == 4
    out = tmp_path / "processed"
    assert sorted(p.name for p in out.glob("*.npy")) == [f"mri-{i}.npy" for i in range(4)]
    arrays = [np.load(out / f"mri-{i}.npy") for i in range(4)]
    assert all(a.shape == (16, 48, 192) and a.dtype == np.float16 for a in arrays)
    # Same anatomy, other intensity scale and storage order: the same array.
    np.testing.assert_allclose(arrays[0].astype(np.float32), arrays[1].astype(np.float32), atol=2e-3)
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["series_id"].tolist() == [f"mri-{i}" for i in range(4)]  # cohort order, no radiograph
    first = manifest.iloc[1]
    assert (first["split"], first["age"], first["status"], first["file"]) == ("validation", "41.0", "ok", "mri-1.npy")
    assert (first["shape"], first["spacing"], first["original_spacing"]) == ("16x48x192", "4x3x4", "8x4x4")
    assert first["orientation"] == "LPS" and first["regions_present"] == "cervical;thoracic;lumbar"
    assert first["label_source"] == "label" and len(first["input_hash"]) == 16 and len(first["settings_hash"]) == 16
    failures = pd.read_csv(tmp_path / "reports" / "failures.csv")
    assert tuple(failures.columns) == FAILURE_COLUMNS and failures.empty
    report = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert report["status"]["ok"] == 4 and report["usable_by_split"] == {"test": 1, "train": 2, "validation": 1}


def test_a_second_run_with_nothing_changed_writes_nothing(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    run(raw, cohort_csv, tmp_path)
    before = mtimes(tmp_path / "processed", tmp_path / "reports")
    summary = run(raw, cohort_csv, tmp_path)
    assert summary.processed == 0 and summary.reused == 4
    assert mtimes(tmp_path / "processed", tmp_path / "reports") == before


def test_only_changed_inputs_or_settings_are_redone(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    run(raw, cohort_csv, tmp_path)
    out = tmp_path / "processed"
    before = mtimes(out)
    image, _, affine = phantom_mri((8.0, 4.0, 4.0))
    write_nifti(raw / "images" / "mri-2.nii.gz", (image * 0.5).astype(np.int16), affine, "PSR")
    assert run(raw, cohort_csv, tmp_path).processed == 1
    after = mtimes(out)
    changed = sorted(Path(p).name for p in after if after[p] != before.get(p))
    assert changed == ["manifest.csv", "mri-2.npy"]
    assert run(raw, cohort_csv, tmp_path, PreprocessSettings(workers=1, **LABEL_MASKS, dilation_mm=3.0)).processed == 4
    # A missing array is redone even when the manifest says it was made.
    (out / "mri-0.npy").unlink()
    assert run(raw, cohort_csv, tmp_path, PreprocessSettings(workers=1, **LABEL_MASKS, dilation_mm=3.0)).processed == 1


def test_a_corrupt_file_is_recorded_and_the_threshold_decides(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    (raw / "images" / "mri-3.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError) as error:
        run(raw, cohort_csv, tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "at most 5% of the 4 MRI series" in message and "found 1 (25.0%: 1 failed, 0 excluded)" in message
    # Written all the same, so that the reason can be read.
    failures = pd.read_csv(tmp_path / "reports" / "failures.csv")
    assert failures["series_id"].tolist() == ["mri-3"] and failures["status"].tolist() == ["failed"]
    reason = failures["reason"].iloc[0]
    assert reason.startswith("images/mri-3.nii.gz: expected a readable NIfTI file"), reason  # relative to the raw folder
    manifest = pd.read_csv(tmp_path / "processed" / "manifest.csv", dtype=str, keep_default_na=False)
    assert manifest.set_index("series_id").loc["mri-3", "file"] == ""
    assert not (tmp_path / "processed" / "mri-3.npy").exists()
    summary = run(raw, cohort_csv, tmp_path, PreprocessSettings(workers=1, **LABEL_MASKS, max_failure_fraction=0.25))
    assert summary.by_status["failed"] == 1 and summary.processed == 0  # the failure is not retried on the same input


def test_a_scan_without_labels_fails_without_a_segmentation_model_and_uses_it_when_set(cohort, tmp_path: Path, monkeypatch) -> None:
    raw, cohort_csv = cohort
    sessions = pd.read_csv(raw / "sessions.csv", dtype=str, keep_default_na=False)
    sessions.loc[sessions["series_id"] == "mri-0", "label"] = ""
    sessions.to_csv(raw / "sessions.csv", index=False)
    loose = PreprocessSettings(workers=1, **LABEL_MASKS, max_failure_fraction=0.5)
    run(raw, cohort_csv, tmp_path, loose)
    manifest = pd.read_csv(tmp_path / "processed" / "manifest.csv", dtype=str, keep_default_na=False).set_index("series_id")
    assert (manifest.at["mri-0", "status"], manifest.at["mri-0", "reason"]) == ("failed", NO_SEGMENTATION_REASON)

    calls = []

    def segment_volume(volume, model_uri):
        """As the real one answers: vertebrae 100 and discs 130 (no levels), canal 60, cord 61."""
        calls.append(model_uri)
        labels = np.asarray(phantom_mri((8.0, 4.0, 4.0))[1]).copy()
        labels[(labels >= 1) & (labels <= 27)] = 100
        labels[(labels >= 31) & (labels <= 56)] = 130
        return labels

    monkeypatch.setitem(sys.modules, "spineage.imaging.segmentation", types.SimpleNamespace(segment_volume=segment_volume))
    uri = "models:/spine-seg-mri/1"  # a pinned version: no registry to ask (aliases: test_preprocess_cache.py)
    summary = run(raw, cohort_csv, tmp_path, PreprocessSettings(workers=1, masks="labels", segmentation_model=uri))
    assert calls == [uri] and summary.by_status["ok"] == 4
    manifest = pd.read_csv(tmp_path / "processed" / "manifest.csv", dtype=str, keep_default_na=False).set_index("series_id")
    assert manifest.at["mri-0", "label_source"] == "segmentation" and manifest.at["mri-0", "status"] == "ok"
    assert manifest.at["mri-0", "regions_present"] == "unidentified"


def test_arrays_of_series_that_left_the_cohort_are_removed(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    run(raw, cohort_csv, tmp_path)
    table = pd.read_csv(cohort_csv)
    table[table["series_id"] != "mri-1"].to_csv(cohort_csv, index=False)
    summary = run(raw, cohort_csv, tmp_path)
    assert summary.series == 3 and summary.processed == 0
    assert not (tmp_path / "processed" / "mri-1.npy").exists()


def test_workers_give_the_same_arrays(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    run(raw, cohort_csv, tmp_path / "one")
    build_processed(raw, cohort_csv, tmp_path / "two" / "processed", tmp_path / "two" / "reports", SETTINGS, workers=2, progress=False)
    for i in range(4):
        np.testing.assert_array_equal(np.load(tmp_path / "one" / "processed" / f"mri-{i}.npy"),
                                      np.load(tmp_path / "two" / "processed" / f"mri-{i}.npy"))


def test_bad_inputs_are_one_line_errors(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    with pytest.raises(UserError, match="run `spineage cohort` first"):
        run(raw, tmp_path / "absent.csv", tmp_path)
    table = pd.read_csv(cohort_csv)
    table.loc[0, "series_id"] = "mri-99"
    table.to_csv(cohort_csv, index=False)
    with pytest.raises(UserError, match="found 1 missing \\(e.g. 'mri-99'\\)"):
        run(raw, cohort_csv, tmp_path)


def test_the_cli_prints_one_line_and_exits_2_past_the_threshold(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    params = tmp_path / "params.yaml"
    write_params(params, {"seed": 1, "preprocess": {"workers": 1, **LABEL_MASKS}})
    arguments = ["preprocess", "--raw", str(raw), "--cohort", str(cohort_csv), "--out", str(tmp_path / "processed"),
                 "--reports", str(tmp_path / "reports"), "--params", str(params)]
    runner = CliRunner()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {tmp_path / 'processed'}: 4 MRI series: 4 ok")
    (raw / "labels" / "mri-1.nii.gz").write_bytes(b"")
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("preprocessing:")]
    assert len(lines) == 1 and lines[0].startswith("error: Expected at most 5%"), result.stderr  # besides the progress bar
    assert "Traceback" not in result.output


def test_the_manifest_holds_the_structure_intensities_of_usable_series_only(cohort, tmp_path: Path) -> None:
    raw, cohort_csv = cohort
    (raw / "images" / "mri-3.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    run(raw, cohort_csv, tmp_path, PreprocessSettings(**{**SETTINGS.__dict__, "max_failure_fraction": 0.25}))
    manifest = pd.read_csv(tmp_path / "processed" / "manifest.csv").set_index("series_id")
    features = manifest[list(INTENSITY_FEATURES)]
    assert features.loc["mri-3"].isna().all()  # failed: no array, no features
    usable = features.drop(index="mri-3")
    assert usable.notna().all().all() and ((usable > 0) & (usable <= 1)).all().all()
    assert (usable["median_vertebra"] - usable["median_disc"]).min() > 0.05
    # The same anatomy at another intensity scale and storage order: the same normalised intensities.
    np.testing.assert_allclose(usable.loc["mri-0"], usable.loc["mri-1"], atol=2e-3)
