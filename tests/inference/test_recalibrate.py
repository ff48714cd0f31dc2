"""``spineage recalibrate``: a shifted site's gap is refitted away, on arrays and end to end (tests/inference/conftest.py)."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.evaluation.bias import BiasCorrection
from spineage.evaluation.conformal import NormativeRange
from spineage.inference.recalibrate import fit_site_calibration, held_out_count, site_slug, units_needed
from tests.inference.conftest import MRI_CORRECTION, NORMATIVE, TRAINING_SUBJECTS, XRAY_CORRECTION, sessions

runner = CliRunner()

SITE_SHIFT = 6.0
"""Years the site's scanners add to every raw spine age (the corrected gap becomes 6 / 0.8 = 7.5 years)."""


def _site_scans(n: int, shift: float, seed: int = 3, noise: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """(raw spine age, age) of a simulated site: the stored Cole fit (0.8·age + 10) plus the site's shift and noise."""
    rng = np.random.default_rng(seed)
    ages = rng.uniform(25.0, 85.0, n)
    return MRI_CORRECTION.slope * ages + MRI_CORRECTION.intercept + shift + rng.normal(0.0, noise, n), ages


def _fit(predicted, ages, subjects=None, *, seed: int = 5, correction: BiasCorrection = MRI_CORRECTION, holdout: float = 0.3):
    return fit_site_calibration(
        predicted, ages, subjects, method=correction.method, coverage=NORMATIVE.coverage, holdout_fraction=holdout,
        seed=seed, stored_correction=correction, stored_normative=NORMATIVE, split="site:test-site",
    )


# --------------------------------------------------------------------------- the fit, from arrays


@pytest.mark.parametrize("shift", [SITE_SHIFT, 0.0])
def test_a_shifted_site_gap_is_refitted_away_and_a_site_like_training_keeps_its_correction(shift: float) -> None:
    predicted, ages = _site_scans(300, shift)
    site = _fit(predicted, ages)
    assert site.after.n == held_out_count(300, 0.3) == 90 and site.n_fit == 210
    assert site.before.mean_gap == pytest.approx(shift / MRI_CORRECTION.slope, abs=0.8)
    assert abs(site.after.mean_gap) < 0.8
    assert site.correction.method == "cole" and site.correction.split == "site:test-site" and site.correction.n == 210
    assert site.correction.slope == pytest.approx(MRI_CORRECTION.slope, abs=0.03)
    assert site.correction.intercept == pytest.approx(MRI_CORRECTION.intercept + shift, abs=1.5)
    assert site.normative.coverage == NORMATIVE.coverage and site.normative.n_calibration == 210
    assert site.after.coverage == pytest.approx(NORMATIVE.coverage, abs=0.07)
    if shift:
        assert site.after.mae < site.before.mae - 3.0
        assert site.before.coverage < 0.5
    else:  # nothing to correct: nothing found, nothing lost
        assert site.after.mae == pytest.approx(site.before.mae, abs=0.5)
        assert site.before.coverage == pytest.approx(NORMATIVE.coverage, abs=0.1)


def test_beheshti_is_refitted_as_beheshti() -> None:
    rng = np.random.default_rng(8)
    ages = rng.uniform(25.0, 85.0, 200)
    gap = XRAY_CORRECTION.slope * ages + XRAY_CORRECTION.intercept + SITE_SHIFT
    site = _fit(ages + gap + rng.normal(0.0, 2.0, 200), ages, correction=XRAY_CORRECTION)
    assert site.correction.method == "beheshti"
    assert site.before.mean_gap == pytest.approx(SITE_SHIFT, abs=0.8) and abs(site.after.mean_gap) < 0.8
    assert site.correction.intercept == pytest.approx(XRAY_CORRECTION.intercept + SITE_SHIFT, abs=1.5)


def test_the_deal_is_seeded_and_does_not_depend_on_the_rows_order() -> None:
    predicted, ages = _site_scans(60, SITE_SHIFT)
    subjects = [f"s{i // 2:02d}" for i in range(60)]  # two scans per subject
    shuffle = np.random.default_rng(1).permutation(60)
    for group in (None, subjects):
        site = _fit(predicted, ages, group)
        again = _fit(predicted[shuffle], ages[shuffle], None if group is None else [group[i] for i in shuffle])
        assert (again.correction, again.normative, again.before, again.after) == (site.correction, site.normative, site.before, site.after)
        assert np.array_equal(again.held_out, site.held_out[shuffle])
        assert not np.array_equal(_fit(predicted, ages, group, seed=6).held_out, site.held_out)
    held_subjects = {subjects[i] for i in np.flatnonzero(site.held_out)}
    fit_subjects = {subjects[i] for i in np.flatnonzero(~site.held_out)}
    assert not held_subjects & fit_subjects and len(held_subjects) == held_out_count(30, 0.3)


def test_too_few_scans_and_a_bad_holdout_are_refused_with_the_count_needed() -> None:
    needed = units_needed(NORMATIVE.coverage, 0.3)
    predicted, ages = _site_scans(needed, SITE_SHIFT)
    assert _fit(predicted, ages).n_fit == needed - held_out_count(needed, 0.3)
    with pytest.raises(UserError, match=f"Expected at least {needed} normal scans .* found {needed - 1}$"):
        _fit(predicted[1:], ages[1:])
    with pytest.raises(UserError, match=f"Expected at least {needed} subjects .* found {needed - 1}$"):
        _fit(predicted, ages, [f"s{min(i, needed - 2)}" for i in range(needed)])
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        _fit(predicted, ages, holdout=1.0)
    with pytest.raises(UserError, match="finite"):
        _fit(np.r_[predicted[:-1], np.nan], ages)


def test_site_names_become_aliases() -> None:
    assert site_slug(" North General (Leeds) ") == "north-general-leeds"
    with pytest.raises(UserError, match="Expected a site name"):
        site_slug(" -- ")


def test_the_site_table_keeps_only_normal_rows_with_their_subjects(tmp_path: Path) -> None:
    from spineage.inference.recalibrate import read_site_table
    from spineage.inference.settings import PredictSettings

    rows = pd.DataFrame({
        "path": ["a.nii.gz", "b.nii.gz", "/abs/c.nii.gz", "d.nii.gz"], "age": [40, 50, 60, 70], "subject_id": ["s1", "s1", "s2", "s3"],
        "normal": ["true", "Yes", "false", "1"], "findings": ["", "", "", "disc herniation L4-5"],
    })
    rows.to_csv(tmp_path / "site.csv", index=False)
    site = read_site_table(tmp_path / "site.csv", PredictSettings())
    assert [r.path for r in site.requests] == [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]
    assert [r.age for r in site.requests] == [40.0, 50.0] and site.subjects == ["s1", "s1"] and site.n_left_out == 2
    rows.assign(normal=["true", "maybe", "false", "1"]).to_csv(tmp_path / "site.csv", index=False)
    with pytest.raises(UserError, match="Expected normal to be true or false .* found 'maybe' on line 3"):
        read_site_table(tmp_path / "site.csv", PredictSettings())


# --------------------------------------------------------------------------- end to end, with the registry


def _planted_raw(age: float) -> float:
    """The shifted site's raw spine age of a scan at ``age``: the stored fit, the shift, and a small deterministic wobble."""
    return MRI_CORRECTION.slope * age + MRI_CORRECTION.intercept + SITE_SHIFT + 1.5 * math.sin(3.0 * age)


@pytest.fixture
def shifted_site(monkeypatch) -> None:
    """The MRI network reads the site's scans :data:`SITE_SHIFT` years older (:func:`_planted_raw`).

    Each scan still goes through the real loading, segmentation and preprocessing (once per file,
    so that the rows reusing a phantom scan are fast); the correction is applied by ``predict_scan``.
    """
    import spineage.inference.predict as predict

    real, seen = predict._predict_mri, {}

    def shifted(bundle, request, settings):
        if request.path not in seen:
            seen[request.path] = real(bundle, request, settings)
        _, quality, network_input = seen[request.path]
        return _planted_raw(request.age), copy.deepcopy(quality), network_input

    monkeypatch.setattr(predict, "_predict_mri", shifted)


def _site_table(folder: Path, phantom: Path, ages: np.ndarray, findings: int = 0) -> Path:
    """A site table in ``folder`` of the phantom's new MRI scans (paths relative to it), the last ``findings`` rows not normal."""
    scans = list(sessions(phantom, "mri_t2_sag").path.iloc[TRAINING_SUBJECTS:TRAINING_SUBJECTS + 2])
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({
        "path": [os.path.relpath(scans[i % len(scans)], folder) for i in range(len(ages))],
        "age": ages, "sex": ["F", "M"] * (len(ages) // 2) + ["F"] * (len(ages) % 2),
        "findings": [""] * (len(ages) - findings) + ["L1 fracture"] * findings,
    })
    table.to_csv(folder / "site.csv", index=False)
    return folder / "site.csv"


def _client():
    """A registry client on the package's store (a test before may have pointed MLflow elsewhere)."""
    import mlflow

    from spineage.registry.tracking import configure_mlflow

    configure_mlflow()
    return mlflow.MlflowClient()


def _versions() -> list[str]:
    return sorted(str(v.version) for v in _client().search_model_versions("name='spine-age-mri'"))


def test_a_shifted_site_is_recalibrated_registered_under_its_alias_and_its_gap_goes(registry, phantom: Path, shifted_site, tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import Model

    from spineage.inference.bundle import load_bundle
    from spineage.inference.predict import Models, ScanRequest, predict_scan
    from spineage.registry.tracking import version_by_alias

    table = _site_table(tmp_path / "site", phantom, np.linspace(30.0, 78.0, 18), findings=2)
    out = tmp_path / "out"
    client = _client()
    client.set_model_version_tag("spine-age-mri", registry.mri_version, "data_manifest_sha256", "abc123")
    try:
        result = runner.invoke(app, ["recalibrate", str(table), "--site", "North General", "--seed", "4", "--out", str(out)])
    finally:
        client.delete_model_version_tag("spine-age-mri", registry.mri_version, "data_manifest_sha256")
    assert result.exit_code == 0, result.output
    assert "alias site-north-general" in result.stdout and "(2 left out for findings)" in result.stdout

    new = client.get_model_version_by_alias("spine-age-mri", "site-north-general")
    assert str(new.version) != registry.mri_version
    assert new.tags["site"] == "North General" and new.tags["recalibrated_from"] == registry.mri_version
    assert new.tags["data_manifest_sha256"] == "abc123"  # the same network, trained on the same data
    correction = BiasCorrection.from_tags(new.tags)
    assert correction.method == "cole" and correction.split == "site:North General" and correction.n == 11
    assert correction.slope == pytest.approx(0.8, abs=0.08) and correction.intercept == pytest.approx(10.0 + SITE_SHIFT, abs=3.0)
    assert NormativeRange.from_tags(new.tags).coverage == NORMATIVE.coverage
    for alias in ("production", "candidate"):
        assert str(version_by_alias("spine-age-mri", alias).version) == registry.mri_version
    bundle = load_bundle("models:/spine-age-mri@site-north-general")
    assert bundle.site == "North General" and bundle.correction == correction and bundle.reference is not None
    # A new logged model, so that a served copy of it is told from the source by its model id.
    served = Model.load(Path(mlflow.artifacts.download_artifacts(bundle.uri, dst_path=str(tmp_path / "served"))) / "MLmodel")
    source = client.get_model_version("spine-age-mri", registry.mri_version)
    assert new.source == f"models:/{served.model_id}" != source.source
    assert served.metadata == Model.load(Path(mlflow.artifacts.download_artifacts(source.source, dst_path=str(tmp_path / "source"))) / "MLmodel").metadata
    run = client.get_run(new.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "recalibration"
    assert run.data.metrics["before_mean_gap"] > 5.0 and abs(run.data.metrics["after_mean_gap"]) < 1.5

    ages = [36.0, 47.0, 58.0, 69.0]
    scan = sessions(phantom, "mri_t2_sag").path.iloc[TRAINING_SUBJECTS]
    site_gaps = [predict_scan(ScanRequest(Path(scan), age), Models("models:/spine-age-mri@site-north-general"))["sag"] for age in ages]
    production_gaps = [predict_scan(ScanRequest(Path(scan), age), Models())["sag"] for age in ages]
    assert abs(np.mean(site_gaps)) < 1.0
    assert np.mean(production_gaps) == pytest.approx(SITE_SHIFT / 0.8, abs=1.0)

    report = json.loads((out / "recalibration.json").read_text())
    assert report["source"]["version"] == registry.mri_version and report["new"]["version"] == str(new.version)
    counts = dict(report["counts"])
    assert 0 <= counts.pop("flagged") <= 16  # scans out of the training reference are counted, not refused
    assert counts == {"rows": 18, "normal": 16, "left_out": 2, "fit": 11, "held_out": 5}
    before, after = report["held_out"]["before"], report["held_out"]["after"]
    assert before["mean_gap"] == pytest.approx(SITE_SHIFT / 0.8, abs=1.5) and abs(after["mean_gap"]) < 1.5
    assert after["mae"] < before["mae"]
    assert report["correction"] == {k: pytest.approx(v) for k, v in correction.as_dict().items()}

    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.split.value_counts().sort_index().items()) == [("fit", 11), ("held_out", 5), ("left_out", 2)]
    used = predictions[predictions.split != "left_out"]
    assert np.allclose(used.spine_age_raw, [_planted_raw(a) for a in used.age], atol=2e-3)
    assert np.allclose(used.spine_age_before, (used.spine_age_raw - 10.0) / 0.8, atol=5e-3)
    assert predictions[predictions.split == "left_out"].spine_age_raw.isna().all()


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("no_age", [], "Expected columns path and age"),
        ("findings", [], "Expected at least 14 normal scans to recalibrate (10 to fit the correction and a 90% normative range, 4 held out at holdout 0.3), found 11 (3 more left out for findings)"),
        ("good", ["--model", "models:/spine-age-mri@nowhere"], "alias 'nowhere'"),
        ("good", ["--site", "  "], "Expected a site name (--site) with at least one letter or digit"),
        ("good", ["--holdout", "1.5"], "strictly between 0 and 1"),
        ("broken", [], "to be predicted, found {broken}: expected a readable NIfTI file"),
        ("old", [], "Expected an age between 18 and 100"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_nothing_is_registered_or_written(
    registry, phantom: Path, tmp_path: Path, case: str, extra: list[str], message: str,
) -> None:
    table = _site_table(tmp_path / "site", phantom, np.linspace(30.0, 78.0, 14), findings=3 if case == "findings" else 0)
    rows = pd.read_csv(table)
    if case == "no_age":
        rows = rows.drop(columns=["age"])
    elif case == "broken":
        (tmp_path / "site" / "broken.nii.gz").write_bytes(b"not a scan")
        rows.loc[0, "path"] = "broken.nii.gz"
    elif case == "old":
        rows.loc[3, "age"] = 130.0
    rows.to_csv(table, index=False)
    before = _versions()
    arguments = ["recalibrate", str(table), "--site", "North General", "--out", str(tmp_path / "out"), *extra]
    if "--site" in extra:
        del arguments[2:4]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    error = result.stderr.splitlines()[-1]  # after the progress bar, if the scans were reached
    assert error.startswith("error: ") and message.format(broken=tmp_path / "site" / "broken.nii.gz") in error, result.stderr
    assert _versions() == before and not (tmp_path / "out").exists()
