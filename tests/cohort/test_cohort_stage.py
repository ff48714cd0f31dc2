"""Tests of the cohort stage: the normal cohort of a phantom, its splits, its outputs and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.cohort.settings import CohortSettings
from spineage.cohort.splits import FULL_TEST_SPLITS
from spineage.cohort.stage import COHORT_COLUMNS, build_cohort, truth_confusion
from spineage.errors import UserError
from spineage.findings.stage import FindingsSettings, build_findings
from tests.cohort.conftest import write_table_cohort

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
SEED = 20251121


def run_stage(raw: Path, out: Path, seed: int = SEED, settings: CohortSettings | None = None):
    summary = build_cohort(
        raw, raw.parent / "interim" / "region_vectors.parquet", out / "cohort.csv", out / "reports",
        settings or CohortSettings(), seed, progress=False,
    )
    return summary, pd.read_csv(out / "cohort.csv", dtype={"bracket": "Int64"})


@pytest.fixture(scope="module")
def phantom_run(table_cohort: Path, tmp_path_factory) -> tuple[Path, object, pd.DataFrame]:
    out = tmp_path_factory.mktemp("cohort-run")
    summary, cohort = run_stage(table_cohort, out)
    return out, summary, cohort


@pytest.mark.slow
def test_realistic_share_of_normal_spines_per_bracket(phantom_run):
    _, summary, cohort = phantom_run
    shares = summary.abnormal_share_by_bracket
    assert set(shares) == {30, 40, 50, 60, 70, 80}
    # Loose bounds: most spines are typical for their age, yet a real share is not.
    for bracket, share in shares.items():
        assert 0.02 <= share <= 0.85, (bracket, share)
    overall = 1 - cohort["normal"].mean()
    assert 0.15 <= overall <= 0.65
    assert summary.merged_brackets == ("70+80",)  # 600 subjects: about 16 series aged 75-84


@pytest.mark.slow
def test_abnormal_spines_carry_the_atypical_findings(phantom_run, table_cohort: Path):
    _, _, cohort = phantom_run
    regions = pd.read_parquet(table_cohort.parent / "interim" / "region_vectors.parquet")
    atypical = [c for c in regions.columns if c.startswith("thoracic__") or c.endswith(("__severe", "__near_complete"))
                or "__extrusion__" in c]
    count = (regions[atypical] > 0).sum(axis=1)
    assessed = cohort[cohort["bracket"].notna()].set_index("series_id")
    by_status = count.loc[assessed.index].groupby(assessed["normal"]).mean()
    assert by_status[False] > 1.5 * by_status[True]


@pytest.mark.slow
def test_outputs_and_their_contents(phantom_run):
    out, summary, cohort = phantom_run
    assert tuple(cohort.columns) == COHORT_COLUMNS
    assert cohort["series_id"].is_unique
    reports = out / "reports"
    for name in ["age_histogram.png", *(f"umap_{b}.png" for b in (30, 40, 50, 60, 70, 80))]:
        assert (reports / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    clusters = pd.read_csv(reports / "clusters.csv", dtype={"bracket": str})
    assert list(clusters.columns) == ["bracket", "cluster", "n", "percent", "normal", "consensus_normal_share", "label"]
    assert (clusters.loc[clusters["normal"], "percent"] > 15).all()
    assert (clusters.loc[~clusters["normal"] & (clusters["cluster"] >= 0), "percent"] <= 15).all()
    assert clusters.groupby("bracket")["n"].sum().sum() == cohort["bracket"].notna().sum()
    assert clusters["label"].str.len().gt(0).all()
    written = json.loads((reports / "summary.json").read_text())
    assert written["series"] == len(cohort) and written["normal"] == int(cohort["normal"].sum())
    assert written["splits"] == summary.series_by_split
    # The consensus: every series' agreement, each bracket's stability from them.
    assert written["consensus_runs"] == CohortSettings().consensus_runs == summary.consensus_runs > 1
    assert cohort["normal_agreement"].between(0.5, 1.0).all()
    for bracket, entry in written["brackets"].items():
        agreement = cohort.loc[cohort["bracket"] == int(bracket), "normal_agreement"]
        assert entry["stability"] == pytest.approx(agreement.mean(), abs=1e-4)
        assert entry["unanimous_share"] == pytest.approx((agreement == 1.0).mean(), abs=1e-4)
    assert 0.8 <= written["stability"] <= 1.0


@pytest.mark.slow
def test_splits_of_the_phantom(phantom_run):
    _, _, cohort = phantom_run
    assert cohort.loc[cohort["split"].isin(["train", "validation"]), "normal"].all()
    assert (cohort.loc[~cohort["normal"] & cohort["bracket"].notna(), "split"] == "full_test_abnormal").all()
    side = cohort["split"].where(~cohort["split"].isin(FULL_TEST_SPLITS), "full test")
    assert (side.groupby(cohort["subject_id"]).nunique() == 1).all()
    normal = cohort[cohort["normal"]]
    assert (normal["split"] == "train").mean() == pytest.approx(0.8, abs=0.04)
    for sex in ("F", "M"):
        part = normal[normal["sex"] == sex]
        assert (part["split"] == "train").mean() == pytest.approx(0.8, abs=0.06)


@pytest.mark.slow
def test_same_seed_same_cohort(phantom_run, table_cohort: Path, tmp_path: Path):
    out, _, _ = phantom_run
    run_stage(table_cohort, tmp_path)
    assert (tmp_path / "cohort.csv").read_bytes() == (out / "cohort.csv").read_bytes()
    assert (tmp_path / "reports" / "clusters.csv").read_bytes() == (out / "reports" / "clusters.csv").read_bytes()


@pytest.mark.slow
def test_shuffled_sessions_give_the_same_cohort(phantom_run, table_cohort: Path, tmp_path: Path):
    """The rows of sessions.csv and of the vectors in another order: the same verdicts, clusters and splits."""
    out, _, cohort = phantom_run
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("participants.csv", "findings.csv"):
        (raw / name).write_bytes((table_cohort / name).read_bytes())
    sessions = pd.read_csv(table_cohort / "sessions.csv", dtype=str)
    sessions.sample(frac=1.0, random_state=1).to_csv(raw / "sessions.csv", index=False)
    (tmp_path / "interim").mkdir()
    vectors = pd.read_parquet(table_cohort.parent / "interim" / "region_vectors.parquet")
    vectors.sample(frac=1.0, random_state=2).to_parquet(tmp_path / "interim" / "region_vectors.parquet")
    _, shuffled = run_stage(raw, tmp_path / "out")
    by_id = lambda table: table.set_index("series_id").sort_index()  # noqa: E731
    pd.testing.assert_frame_equal(by_id(shuffled), by_id(cohort))


@pytest.mark.slow
def test_the_phantoms_atypical_spines_are_the_abnormal_ones(phantom_run):
    out, summary, cohort = phantom_run
    truth = json.loads((out / "reports" / "summary.json").read_text())["truth"]
    assert truth == summary.truth
    overall = truth["overall"]
    assert overall["typical"]["series"] + overall["atypical"]["series"] == cohort["bracket"].notna().sum()
    # The phantom's atypical spines are what the method leaves out; its typical ones it keeps.
    assert overall["atypical"]["abnormal_share"] > overall["typical"]["abnormal_share"] + 0.4
    assert overall["typical"]["abnormal_share"] < 0.2
    assert overall["structural_pathology"]["abnormal_share"] > 0.5


def test_truth_confusion_counts_add_up():
    cohort = pd.DataFrame({
        "series_id": ["a", "b", "c", "d", "e", "f"],
        "bracket": pd.array([30, 30, 40, 40, 40, pd.NA], dtype="Int64"),
        "normal": [True, False, False, True, False, False],
    })
    marks = {"a": [], "b": ["fracture"], "c": ["focal: lumbar disc extrusion"], "d": ["spondylolisthesis"], "e": [],
             "f": ["fracture"]}
    truth = truth_confusion(cohort, marks)
    overall = truth["overall"]
    # f lies outside the brackets: never clustered, not scored.
    assert overall["typical"] == {"series": 2, "normal": 1, "abnormal": 1, "normal_share": 0.5, "abnormal_share": 0.5}
    assert overall["atypical"] == {"series": 3, "normal": 1, "abnormal": 2, "normal_share": 0.3333, "abnormal_share": 0.6667}
    assert overall["structural_pathology"] == {"series": 2, "normal": 1, "abnormal": 1, "normal_share": 0.5, "abnormal_share": 0.5}
    assert truth["brackets"]["30"]["atypical"]["abnormal"] == 1 and truth["brackets"]["40"]["typical"]["abnormal"] == 1
    assert truth["brackets"]["50"]["typical"] == {"series": 0, "normal": 0, "abnormal": 0, "normal_share": None, "abnormal_share": None}
    for key in ("typical", "atypical", "structural_pathology"):
        assert sum(truth["brackets"][b][key]["series"] for b in truth["brackets"]) == overall[key]["series"]
        assert sum(truth["brackets"][b][key]["abnormal"] for b in truth["brackets"]) == overall[key]["abnormal"]
    assert truth["by_reason"]["fracture"] == {"series": 1, "abnormal": 1, "abnormal_share": 1.0}
    assert truth["series_without_marks"] == 0
    assert truth_confusion(cohort, {"a": []})["series_without_marks"] == 4


def test_truth_block_on_a_small_cohort_with_an_answer_key_and_none_without(tmp_path: Path):
    raw = write_table_cohort(tmp_path / "raw", 120, seed=4)
    build_findings(raw, tmp_path / "interim", tmp_path / "rf", FindingsSettings(source="table"), progress=False)
    result = _invoke(raw, tmp_path)
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "reports" / "summary.json").read_text())
    cohort = pd.read_csv(tmp_path / "out" / "cohort.csv", dtype={"bracket": "Int64"})
    marks = json.loads((raw / "ground_truth.json").read_text())["series_atypical"]
    overall = written["truth"]["overall"]
    assessed = cohort[cohort["bracket"].notna()]
    atypical = assessed["series_id"].map(lambda s: bool(marks[s]))
    assert overall["atypical"]["series"] == atypical.sum() and overall["typical"]["series"] == (~atypical).sum()
    for key in ("typical", "atypical", "structural_pathology"):
        assert overall[key]["normal"] + overall[key]["abnormal"] == overall[key]["series"]
    assert overall["atypical"]["abnormal"] == (~assessed["normal"] & atypical).sum()
    assert "against ground_truth.json, abnormal: typical" in result.output
    # A real cohort has no answer key: no truth block, no truth line.
    (raw / "ground_truth.json").unlink()
    result = _invoke(raw, tmp_path)
    assert result.exit_code == 0, result.output
    assert "truth" not in json.loads((tmp_path / "out" / "reports" / "summary.json").read_text())
    assert "ground_truth" not in result.output


def test_a_bad_answer_key_is_a_one_line_error(tmp_path: Path):
    raw = _tiny_raw(tmp_path)
    (raw / "ground_truth.json").write_text(json.dumps({"series_atypical": ["mri-00001-1"]}))
    _assert_one_line_error(_invoke(raw, tmp_path), "series_atypical")
    (raw / "ground_truth.json").write_text("{not json")
    _assert_one_line_error(_invoke(raw, tmp_path), "readable JSON")
    assert not (tmp_path / "out" / "cohort.csv").exists()
    (raw / "ground_truth.json").write_text(json.dumps({"seed": 3}))  # an answer key without marks: nothing to score
    assert _invoke(raw, tmp_path).exit_code == 0


def _tiny_raw(tmp_path: Path) -> Path:
    raw = write_table_cohort(tmp_path / "raw", 40, seed=3)
    build_findings(raw, tmp_path / "interim", tmp_path / "reports" / "findings", FindingsSettings(source="table"), progress=False)
    return raw


def test_cli_on_a_tiny_cohort_keeps_everyone_as_normal(tmp_path: Path):
    raw = _tiny_raw(tmp_path)
    result = CliRunner().invoke(app, [
        "cohort", "--raw", str(raw), "--vectors", str(tmp_path / "interim" / "region_vectors.parquet"),
        "--out", str(tmp_path / "cohort.csv"), "--reports", str(tmp_path / "reports" / "cohort"), "--params", str(PARAMS),
    ])
    assert result.exit_code == 0, result.output
    assert "too few series to cluster" in result.output
    cohort = pd.read_csv(tmp_path / "cohort.csv")
    assert cohort["normal"].all() and set(cohort["split"]) <= {"train", "validation", "test"}
    assert (cohort["split"] == "train").sum() > len(cohort) / 2
    assert (tmp_path / "reports" / "cohort" / "umap_80.png").is_file()


def _invoke(raw: Path, tmp_path: Path, vectors: Path | None = None):
    return CliRunner().invoke(app, [
        "cohort", "--raw", str(raw), "--vectors", str(vectors or tmp_path / "interim" / "region_vectors.parquet"),
        "--out", str(tmp_path / "out" / "cohort.csv"), "--reports", str(tmp_path / "out" / "reports"),
        "--params", str(PARAMS),
    ])


def _assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Expected") and fragment in lines[0], lines
    assert "Traceback" not in result.output


def test_cli_missing_raw_folder(tmp_path: Path):
    _assert_one_line_error(_invoke(tmp_path / "nowhere", tmp_path), "raw-cohort folder")


def test_cli_missing_sessions(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    _assert_one_line_error(_invoke(tmp_path / "raw", tmp_path), "sessions.csv")


def test_cli_missing_vectors(tmp_path: Path):
    raw = write_table_cohort(tmp_path / "raw", 20, seed=1)
    _assert_one_line_error(_invoke(raw, tmp_path), "spineage findings")


def test_cli_bad_participants_and_ages(tmp_path: Path):
    raw = _tiny_raw(tmp_path)
    participants = pd.read_csv(raw / "participants.csv")
    participants.loc[0, "sex"] = "X"
    participants.to_csv(raw / "participants.csv", index=False)
    _assert_one_line_error(_invoke(raw, tmp_path), "sex F or M")
    (raw / "participants.csv").unlink()
    _assert_one_line_error(_invoke(raw, tmp_path), "participants.csv")
    assert not (tmp_path / "out" / "cohort.csv").exists()


def test_bad_ages_and_vectors_missing_a_series(tmp_path: Path):
    raw = _tiny_raw(tmp_path)
    sessions = pd.read_csv(raw / "sessions.csv")
    vectors = tmp_path / "interim" / "region_vectors.parquet"
    pd.read_parquet(vectors).iloc[1:].to_parquet(tmp_path / "short.parquet")
    with pytest.raises(UserError, match="region vector for every MRI series"):
        build_cohort(raw, tmp_path / "short.parquet", tmp_path / "c.csv", tmp_path / "r", CohortSettings(), 0, progress=False)
    sessions["age"] = sessions["age"].astype(object)
    sessions.loc[0, "age"] = "forty"
    sessions.to_csv(raw / "sessions.csv", index=False)
    with pytest.raises(UserError, match="ages in years"):
        build_cohort(raw, vectors, tmp_path / "c.csv", tmp_path / "r", CohortSettings(), 0, progress=False)
