"""The generated phantom cohort: schema, determinism, planted truth, bad arguments."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from spineage.cli import app
from spineage.config import parse_params
from spineage.findings.vocabulary import ALL_CONDITIONS, LEVELS, MODALITIES, PATHOLOGIES, check_finding
from spineage.synth.generate import generate_cohort
from spineage.labels import CANAL_LABEL, CORD_LABEL, LABEL_NAMES, SACRUM_LABEL, disc_label, vertebra_label
from spineage.synth.scanner import SITES, site_by_name
from tests.params_file import write_params

SETTINGS = parse_params({}).synth
N_SUBJECTS = 20


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "raw"
    generate_cohort(out, SETTINGS, seed=7, profile="ci", n_subjects=N_SUBJECTS, workers=2, progress=False)
    return out


@pytest.mark.slow
def test_tables_follow_the_raw_cohort_contract(cohort: Path) -> None:
    participants = pd.read_csv(cohort / "participants.csv")
    sessions = pd.read_csv(cohort / "sessions.csv", keep_default_na=False)
    findings = pd.read_csv(cohort / "findings.csv", keep_default_na=False)
    lifestyle = pd.read_csv(cohort / "lifestyle.csv")
    outcomes = pd.read_csv(cohort / "outcomes.csv", keep_default_na=False)
    assert list(participants.columns) == ["subject_id", "sex", "birth_year"]
    assert len(participants) == N_SUBJECTS and participants.subject_id.is_unique
    assert set(participants.sex) <= {"F", "M"}
    assert {"series_id", "subject_id", "age", "modality", "image", "label", "site", "scanner"} <= set(sessions.columns)
    assert sessions.series_id.is_unique
    assert set(sessions.modality) <= set(MODALITIES)
    assert set(sessions.subject_id) <= set(participants.subject_id)
    assert sessions.age.between(25, 88).all()
    assert len(set(sessions.site)) >= 2
    for row in sessions.itertuples():
        assert (cohort / row.image).is_file(), row.image
        if row.modality == "mri_t2_sag":
            assert (cohort / row.label).is_file()
            assert (cohort / "reports" / f"{row.series_id}.txt").read_text().strip()
        if row.modality == "dxa_vfa":
            assert row.age >= 65
    assert list(findings.columns) == ["series_id", "level", "condition", "severity"]
    assert set(findings.series_id) <= set(sessions.series_id[sessions.modality == "mri_t2_sag"])
    assert set(findings.condition) <= set(ALL_CONDITIONS)
    for row in findings.itertuples():
        check_finding(row.condition, row.severity, row.level or None)
    assert list(lifestyle.columns) == ["subject_id", "packs_per_day", "alcohol_days_per_week", "sedentary_hours_per_day", "work", "exercise"]
    assert set(lifestyle.work) <= {"sedentary", "moderate", "heavy"}
    assert set(lifestyle.exercise) <= {"none", "moderate", "vigorous"}
    assert (lifestyle.packs_per_day >= 0).all() and lifestyle.alcohol_days_per_week.between(0, 7).all()
    assert len(outcomes) == N_SUBJECTS
    assert {"bmd_t_lumbar", "prevalent_vertebral_fracture", "followup_years", "incident_fracture", "death"} <= set(outcomes.columns)


@pytest.mark.slow
def test_ground_truth_explains_every_subject(cohort: Path) -> None:
    truth = json.loads((cohort / "ground_truth.json").read_text())
    assert truth["lifestyle_effects"]["packs_per_day"] == pytest.approx(0.93)
    assert truth["outcome_effects"]["hr_death_per_sd"] == pytest.approx(1.31)
    assert truth["noise_sd"] == 3.0 and truth["generator_version"].startswith("spineage-phantom/")
    sessions = pd.read_csv(cohort / "sessions.csv")
    assert set(truth["series_bio_age"]) == set(sessions.series_id)
    for subject_id, entry in truth["subjects"].items():
        baseline = sessions[(sessions.subject_id == subject_id) & (sessions.session == 1)].age.iloc[0]
        assert entry["bio_age"] == pytest.approx(baseline + entry["lifestyle_effect"] + entry["individual_noise"], abs=0.02)
    # Each MRI series marked typical ([]) or atypical, and why: every structural pathology named.
    mri = sessions[sessions.modality == "mri_t2_sag"]
    assert set(truth["series_atypical"]) == set(mri.series_id)
    findings = pd.read_csv(cohort / "findings.csv", keep_default_na=False)
    for series_id, reasons in truth["series_atypical"].items():
        pathologies = set(findings.condition[(findings.series_id == series_id) & findings.condition.isin(PATHOLOGIES)])
        assert pathologies <= set(reasons), series_id
        assert all(reason in PATHOLOGIES or reason.startswith("focal: ") for reason in reasons)


@pytest.mark.slow
def test_mri_volumes_have_the_site_spacing_orientation_and_labels(cohort: Path) -> None:
    sessions = pd.read_csv(cohort / "sessions.csv")
    mri = sessions[sessions.modality == "mri_t2_sag"]
    findings = pd.read_csv(cohort / "findings.csv", keep_default_na=False)
    seen_codes = set()
    for row in mri.itertuples():
        image = nib.load(cohort / row.image)
        labels = nib.load(cohort / row.label)
        site = site_by_name(row.site)
        seen_codes.add("".join(nib.aff2axcodes(image.affine)))
        assert "".join(nib.aff2axcodes(image.affine)) == site.axis_codes
        assert np.allclose(image.affine, labels.affine)
        canonical = nib.as_closest_canonical(image)
        expected = np.array([8.0, 4.0, 4.0]) * np.array(site.spacing_scale)
        assert np.allclose(canonical.header.get_zooms()[:3], expected, atol=1e-4)
        data = np.asanyarray(image.dataobj)
        assert data.dtype == np.int16 and data.min() >= 0 and data.max() > 100
        label_data = np.asanyarray(labels.dataobj)
        present = set(np.unique(label_data).tolist()) - {0}
        assert present <= set(LABEL_NAMES)
        assert {CANAL_LABEL, CORD_LABEL, SACRUM_LABEL, vertebra_label("C3"), vertebra_label("L3"), disc_label("L4")} <= present
        # Every level the findings name is drawn in the label map.
        for level in set(findings.level[findings.series_id == row.series_id]) - {""}:
            assert vertebra_label(level) in present, (row.series_id, level)
    assert len(seen_codes) >= 2  # sites store different orientations; the affine says which


@pytest.mark.slow
def test_disc_signal_is_lower_where_desiccation_is_reported(cohort: Path) -> None:
    sessions = pd.read_csv(cohort / "sessions.csv")
    findings = pd.read_csv(cohort / "findings.csv", keep_default_na=False)
    grades_seen, signals = [], []
    ordinal = {"mild": 1, "moderate": 2, "severe": 3, "near_complete": 4}
    for row in sessions[sessions.modality == "mri_t2_sag"].itertuples():
        image = np.asanyarray(nib.load(cohort / row.image).dataobj).astype(float)
        labels = np.asanyarray(nib.load(cohort / row.label).dataobj)
        csf = np.median(image[labels == CANAL_LABEL])
        graded = findings[(findings.series_id == row.series_id) & (findings.condition == "desiccation")]
        grades = dict(zip(graded.level, graded.severity))
        for level in ("C4", "C5", "C6", "L1", "L2", "L3", "L4", "L5"):
            disc = image[labels == disc_label(level)]
            if disc.size < 5:
                continue
            grades_seen.append(ordinal.get(grades.get(level), 0))
            signals.append(np.percentile(disc, 90) / csf)
    grades_seen, signals = np.array(grades_seen), np.array(signals)
    assert (grades_seen > 0).sum() >= 5 and (grades_seen == 0).sum() >= 5
    assert signals[grades_seen > 0].mean() < signals[grades_seen == 0].mean() - 0.05
    from scipy.stats import spearmanr

    assert spearmanr(grades_seen, signals).statistic < -0.3


@pytest.mark.slow
def test_radiographs_are_portrait_and_vfa_narrower(cohort: Path) -> None:
    sessions = pd.read_csv(cohort / "sessions.csv")
    xray = np.array(Image.open(cohort / sessions[sessions.modality == "xray_lat"].image.iloc[0]))
    assert xray.shape == (256, 128) and xray.dtype == np.uint16 and xray.max() <= 4095
    vfa_rows = sessions[sessions.modality == "dxa_vfa"]
    if len(vfa_rows):
        vfa = np.array(Image.open(cohort / vfa_rows.image.iloc[0]))
        assert vfa.shape[1] < xray.shape[1] and vfa.shape[0] > vfa.shape[1]


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files_whatever_the_workers(cohort: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_cohort(again, SETTINGS, seed=7, profile="ci", n_subjects=N_SUBJECTS, workers=1, progress=False)
    assert _digest(again) == _digest(cohort)
    other = tmp_path / "other"
    generate_cohort(other, SETTINGS, seed=8, profile="ci", n_subjects=4, workers=1, progress=False)
    assert (other / "participants.csv").read_bytes() != (cohort / "participants.csv").read_bytes()


def test_failed_generation_keeps_the_old_cohort_and_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    out = _earlier_phantom(tmp_path / "raw", "previous cohort")
    import spineage.synth.generate as generate

    def broken(task: dict) -> str:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(generate, "_render", broken)
    with pytest.raises(RuntimeError):
        generate_cohort(out, SETTINGS, seed=1, profile="ci", n_subjects=2, workers=1, progress=False)
    assert (out / "participants.csv").read_text() == "previous cohort"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--n-subjects", "0"], "Expected at least 1 subject"),
        (["--n-subjects", "-3"], "Expected at least 1 subject"),
        (["--workers", "0"], "Expected at least 1 worker"),
        (["--profile", "huge"], "Expected a synth profile"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path, arguments: list[str], message: str) -> None:
    out = tmp_path / "raw"
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "synth": {"profile": "ci"}})
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_missing_params_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "raw"), "--params", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "Expected a params file" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_output_folder_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    params = write_params(tmp_path / "params.yaml", {"seed": 1})
    result = CliRunner().invoke(app, ["synth", "--out", str(blocker / "raw"), "--params", str(params), "--n-subjects", "2"])
    assert result.exit_code == 2
    assert "Expected a writable folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert blocker.read_text() == "not a folder"


def test_external_cohort_is_linked_not_generated(tmp_path: Path) -> None:
    source = tmp_path / "mine"
    (source / "images").mkdir(parents=True)
    (source / "participants.csv").write_text("subject_id,sex,birth_year\ns1,F,1970\n")
    (source / "sessions.csv").write_text("series_id,subject_id,age,modality,image,label,site,scanner\na,s1,50,mri_t2_sag,images/a.nii.gz,,x,y\n")
    (source / "images" / "a.nii.gz").write_bytes(b"not really")
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "data": {"source": str(source)}})
    out = tmp_path / "raw"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert (out / "images" / "a.nii.gz").read_bytes() == b"not really"
    assert not (out / "ground_truth.json").exists()
    (source / "sessions.csv").unlink()
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params)])
    assert result.exit_code == 2 and "Expected sessions.csv" in result.output


@pytest.mark.slow
def test_show_renders_a_montage(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "montage.png"
    result = CliRunner().invoke(app, ["show", str(cohort), "--out", str(out), "--n", "3"])
    assert result.exit_code == 0, result.output
    picture = np.array(Image.open(out))
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    assert picture.std() > 10  # not a blank canvas


def test_show_on_a_folder_without_sessions_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["show", str(tmp_path), "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 2 and "sessions.csv" in result.output
    assert not (tmp_path / "m.png").exists()


def test_sites_differ_in_the_ways_that_matter() -> None:
    assert len(SITES) >= 3
    assert len({s.intensity for s in SITES}) == len(SITES)
    assert len({s.noise for s in SITES}) >= 3 and len({s.bias for s in SITES}) >= 3
    assert len({s.spacing_scale for s in SITES}) >= 3
    assert all(set(s.axis_codes) <= set("RASLPI") for s in SITES)
    assert LEVELS[0] == "C2"


# --------------------------------------------------------------------------- the output folder: nothing lost


def _earlier_phantom(out: Path, marker: str) -> Path:
    """A stand-in for an earlier phantom output: its signature (ground_truth.json) and one table holding ``marker``."""
    out.mkdir(parents=True)
    (out / "ground_truth.json").write_text(json.dumps({"generator_version": "spineage-phantom/0.0.1", "seed": 0}))
    (out / "participants.csv").write_text(marker)
    return out


def _user_cohort(folder: Path) -> Path:
    """A user's raw cohort (not valid imaging: only the layout matters here)."""
    (folder / "images").mkdir(parents=True)
    (folder / "participants.csv").write_text("subject_id,sex,birth_year\ns1,F,1970\n")
    (folder / "sessions.csv").write_text("series_id,subject_id,age,modality,image,label,site,scanner\na,s1,50,mri_t2_sag,images/a.nii.gz,,x,y\n")
    (folder / "images" / "a.nii.gz").write_bytes(b"not really")
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<folder>" for p in sorted(folder.rglob("*"))}


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _synth(out: Path, params: Path, *arguments: str):
    return CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params), "--n-subjects", "1", "--workers", "1", *arguments])


def test_synth_refuses_a_folder_holding_other_files_and_deletes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    (out / "thesis").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt"):
        (out / name).write_text(name)
    before = _tree(out)
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "synth": {"profile": "ci"}})
    result = _synth(out, params)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: Expected --out {out} to be empty, missing or an earlier output of spineage synth, found 7 other entries")
    assert "(a.txt, b.txt, c.txt, d.txt, e.txt and 2 more)" in line
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "params.yaml"], "a partial folder was left behind"


def test_synth_replaces_its_own_output_but_not_what_a_user_added_to_it(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "synth": {"profile": "ci"}})
    assert _synth(out, params).exit_code == 0
    first = _tree(out)
    assert _synth(out, params, "--seed", "2").exit_code == 0, "an earlier phantom output is replaced"
    assert _tree(out) != first and sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "raw"]
    (out / "my_notes.txt").write_text("keep me")
    result = _synth(out, params)
    assert result.exit_code == 2 and "found 1 other entry in it (my_notes.txt)" in result.output
    assert (out / "my_notes.txt").read_text() == "keep me" and (out / "ground_truth.json").is_file()


def test_a_linked_cohort_is_replaced_on_rerun_and_follows_symbolic_links(tmp_path: Path) -> None:
    from spineage.synth.generate import LINK_MARKER

    source = _user_cohort(tmp_path / "mine")
    elsewhere = tmp_path / "bigdisk" / "labels"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.nii.gz").write_bytes(b"a label")
    (source / "labels").symlink_to(elsewhere, target_is_directory=True)
    (source / "loop").symlink_to(source, target_is_directory=True)  # must not be walked for ever
    (source / "images" / "b.nii.gz").symlink_to("a.nii.gz")  # relative: would point nowhere if copied as a link
    before = _tree(tmp_path / "bigdisk") | {"mine": sorted(p.name for p in source.iterdir())}
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "data": {"source": str(source)}})
    out = tmp_path / "raw"
    for _ in range(2):
        result = CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params)])
        assert result.exit_code == 0, result.output
    label = out / "labels" / "a.nii.gz"
    assert (out / "images" / "b.nii.gz").read_bytes() == b"not really" and not (out / "images" / "b.nii.gz").is_symlink()
    assert label.read_bytes() == b"a label" and not label.is_symlink() and not (out / "labels").is_symlink()
    assert json.loads((out / LINK_MARKER).read_text())["entries"] == ["images", "labels", "participants.csv", "sessions.csv"]
    assert before == _tree(tmp_path / "bigdisk") | {"mine": sorted(p.name for p in source.iterdir())}
    (out / "extra.csv").write_text("mine now")
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--params", str(params)])
    assert result.exit_code == 2 and "(extra.csv)" in result.output and (out / "extra.csv").is_file()


def test_a_broken_link_in_the_source_is_a_one_line_error(tmp_path: Path) -> None:
    source = _user_cohort(tmp_path / "mine")
    (source / "images" / "b.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "data": {"source": str(source)}})
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "raw"), "--params", str(params)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "found a broken link at" in result.output and "b.nii.gz" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "params.yaml"]


@pytest.mark.parametrize(
    "out_of, message",
    [
        (lambda source: source / "data" / "raw", "outside data.source"),
        (lambda source: source, "another folder than data.source"),
        (lambda source: source.parent, "outside --out"),
        (lambda source: source.parent / "via-link" / "raw", "outside data.source"),
    ],
    ids=["out inside the source", "out is the source", "source inside out", "out inside the source through a link"],
)
def test_a_source_and_out_inside_one_another_are_refused_before_anything_is_touched(tmp_path: Path, out_of, message: str) -> None:
    root = tmp_path / "study"
    source = _user_cohort(root / "mine")
    (root / "via-link").symlink_to(source, target_is_directory=True)
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "data": {"source": str(source)}})
    before = _tree(root)
    for _ in range(2):
        result = CliRunner().invoke(app, ["synth", "--out", str(out_of(source)), "--params", str(params)])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert _tree(root) == before


def test_leftovers_of_killed_runs_are_removed_and_only_those(tmp_path: Path) -> None:
    out = _earlier_phantom(tmp_path / "raw", "the current cohort")
    dead = _dead_pid()
    for name in (f".raw.partial-{dead}-k3j2", ".raw.partial-x8f_q1ab", f".raw.old-{dead}", ".raw.partial-1-alive"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sessions.csv").write_text("half")
    (tmp_path / ".rawer.partial-5").mkdir()  # another output's name: not ours to remove
    (tmp_path / ".raw.partial-notes.txt").write_text("a file, not a folder of ours")
    params = write_params(tmp_path / "params.yaml", {"seed": 1, "synth": {"profile": "ci"}})
    assert _synth(out, params).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".raw.partial-1-alive", ".raw.partial-notes.txt", ".rawer.partial-5", "params.yaml", "raw"]
    assert (out / "participants.csv").read_text() != "the current cohort"


def test_a_cohort_set_aside_by_a_killed_run_is_put_back(tmp_path: Path, monkeypatch) -> None:
    # Killed between moving the old cohort aside and moving the new one in: no raw/, the old one beside it.
    _earlier_phantom(tmp_path / f".raw.old-{_dead_pid()}", "the previous cohort")
    (tmp_path / f".raw.partial-{_dead_pid()}-x1").mkdir()
    import spineage.synth.generate as generate

    def broken(task: dict) -> str:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(generate, "_render", broken)
    with pytest.raises(RuntimeError):
        generate_cohort(tmp_path / "raw", SETTINGS, seed=1, profile="ci", n_subjects=1, workers=1, progress=False)
    assert (tmp_path / "raw" / "participants.csv").read_text() == "the previous cohort"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
