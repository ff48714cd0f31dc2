"""Gated promotion to production, rollback and the table of versions, on fresh MLflow stores."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spineage.errors import UserError
from spineage.registry.promotion import (
    HISTORY_TAG,
    PROMOTION_TAGS,
    format_model_table,
    list_model_versions,
    promote,
    rollback,
)
from tests.mlflow_store import fresh_store

MRI, XRAY = "spine-age-mri", "spine-age-xray"
DATA_A = {"data_dvc_md5": "aaaa1111.dir", "data_manifest_sha256": "a1a1a1a1a1a1a1a1"}
DATA_B = {"data_dvc_md5": "bbbb2222.dir", "data_manifest_sha256": "b2b2b2b2b2b2b2b2"}


@pytest.fixture()
def client(tmp_path: Path, monkeypatch):
    """A client of a fresh store that the promotion functions use too (MLFLOW_TRACKING_URI)."""
    import mlflow

    store = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return mlflow.MlflowClient(tracking_uri=store, registry_uri=store)


def _version(client, name: str, metrics: dict[str, float], tags: dict[str, str] | None = DATA_A, candidate: bool = True) -> str:
    """A finished run logging ``metrics`` and a version of ``name`` from it with ``tags``; ``candidate`` moves the alias to it."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags=tags)
    if candidate:
        client.set_registered_model_alias(name, "candidate", version.version)
    return str(version.version)


def _mri(client, wmae: float | None, tags: dict[str, str] | None = DATA_A, candidate: bool = True) -> str:
    metrics = {"test_mae": 3.0, "eval_test_raw_mae": 3.0, "eval_test_corrected_mae": 2.9, "eval_normative_range_coverage_test": 0.85}
    if wmae is not None:
        metrics["eval_test_corrected_wmae"] = wmae
    else:
        metrics = {"test_mae": 3.0}  # trained, never evaluated
    return _version(client, MRI, metrics, tags, candidate)


def _production(client, name: str = MRI) -> str:
    return str(client.get_model_version_by_alias(name, "production").version)


def _history(client, name: str = MRI) -> str:
    return client.get_registered_model(name).tags.get(HISTORY_TAG, "")


def _promotion_tags(client, version: str, name: str = MRI) -> dict[str, str]:
    tags = client.get_model_version(name, version).tags
    return {key: tags[key] for key in PROMOTION_TAGS if key in tags}


def test_the_first_promotion_needs_no_production_to_compare_with(client) -> None:
    first = _mri(client, 2.7)
    result = promote(MRI, user="ana")
    assert (result.version, result.previous_version, result.forced) == (first, None, False)
    assert result.metric == "eval_test_corrected_wmae" and result.candidate_value == pytest.approx(2.7)
    assert result.production_value is None
    assert "first production" in result.message
    assert _production(client) == first
    assert str(client.get_model_version_by_alias(MRI, "candidate").version) == first  # promotion leaves candidate alone
    tags = _promotion_tags(client, first)
    assert tags["promoted_by"] == "ana" and tags["promotion_reason"] == "gate passed"
    assert tags["promotion_production_value"] == "none" and tags["promotion_previous_version"] == "none"
    assert _history(client) == first


def test_a_better_candidate_is_promoted_and_the_promotion_recorded(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI, user="ana")
    second = _mri(client, 2.5)
    result = promote(MRI, user="ben")
    assert (result.version, result.previous_version) == (second, first)
    assert result.candidate_value == pytest.approx(2.5) and result.production_value == pytest.approx(2.7)
    assert _production(client) == second
    tags = _promotion_tags(client, second)
    assert tags == {
        "promoted_by": "ben", "promoted_at": tags["promoted_at"], "promotion_reason": "gate passed",
        "promotion_metric": "eval_test_corrected_wmae", "promotion_candidate_value": "2.5000",
        "promotion_production_value": "2.7000", "promotion_previous_version": first, "promotion_forced": "false",
    }
    promoted_at = datetime.fromisoformat(tags["promoted_at"])
    assert promoted_at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - promoted_at).total_seconds()) < 120
    assert _history(client) == f"{first},{second}"
    # No worse is enough: an equal figure passes the gate.
    third = _mri(client, 2.5)
    assert promote(MRI, user="ben").version == third and _production(client) == third


def test_a_worse_candidate_is_refused_in_one_line_and_production_stays(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI, user="ana")
    worse = _mri(client, 2.9)
    with pytest.raises(UserError) as refused:
        promote(MRI, user="ben")
    message = str(refused.value)
    assert "\n" not in message
    assert "2.900" in message and "2.700" in message and "--force --reason" in message
    assert f"version {worse}" in message and f"version {first}" in message
    assert _production(client) == first
    assert _promotion_tags(client, worse) == {}
    assert _history(client) == first


def test_a_candidate_tested_on_other_data_is_refused(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI, user="ana")
    other = _mri(client, 2.0, tags=DATA_B)  # better, but on another test split
    with pytest.raises(UserError, match="same test split") as refused:
        promote(MRI, version=other)
    assert "\n" not in str(refused.value) and "--force --reason" in str(refused.value)
    assert "bbbb2222.dir" in str(refused.value) and "aaaa1111.dir" in str(refused.value)
    # Only one of the two hashes differing is another split as well; no data version at all is unverifiable.
    half = _mri(client, 2.0, tags={**DATA_A, "data_manifest_sha256": "c3c3c3c3c3c3c3c3"})
    untagged = _mri(client, 2.0, tags=None)
    for version in (half, untagged):
        with pytest.raises(UserError, match="same test split"):
            promote(MRI, version=version)
    assert _production(client) == first


def test_two_versions_without_any_data_version_are_not_comparable(client) -> None:
    first = _version(client, XRAY, {"test_corrected_mae": 7.0}, tags=None)
    promote(XRAY)
    second = _version(client, XRAY, {"test_corrected_mae": 6.0}, tags=None)
    with pytest.raises(UserError, match="same test split.*data_manifest_sha256 missing"):
        promote(XRAY, version=second)
    assert _production(client, XRAY) == first


def test_the_data_version_falls_back_to_the_run_params(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI)
    second = _mri(client, 2.6, tags=None)
    run_id = client.get_model_version(MRI, second).run_id
    for key, value in DATA_A.items():
        client.log_param(run_id, key, value)
    assert promote(MRI, version=second).previous_version == first
    assert _production(client) == second


def test_a_never_evaluated_version_is_refused_unless_forced(client) -> None:
    _mri(client, None)
    with pytest.raises(UserError, match="run `spineage evaluate` first"):
        promote(MRI)
    assert "production" not in client.get_registered_model(MRI).aliases
    result = promote(MRI, force=True, reason="smoke deployment", user="ana")
    assert result.forced and result.candidate_value is None
    assert _promotion_tags(client, result.version)["promotion_candidate_value"] == "none"


def test_force_needs_a_reason(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI)
    _mri(client, 3.5)
    for reason in (None, "", "   "):
        with pytest.raises(UserError, match="--reason"):
            promote(MRI, force=True, reason=reason)
    assert _production(client) == first


def test_force_with_a_reason_promotes_and_records_it(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI)
    worse = _mri(client, 3.5, tags=DATA_B)
    result = promote(MRI, force=True, reason="new scanner protocol", user="cy")
    assert (result.version, result.previous_version, result.forced, result.reason) == (worse, first, True, "new scanner protocol")
    assert "forced" in result.message and "new scanner protocol" in result.message
    assert _production(client) == worse
    tags = _promotion_tags(client, worse)
    assert tags["promotion_forced"] == "true" and tags["promotion_reason"] == "new scanner protocol"
    assert tags["promotion_candidate_value"] == "3.5000" and tags["promotion_production_value"] == "2.7000"
    assert tags["promotion_previous_version"] == first and tags["promoted_by"] == "cy"
    assert _history(client) == f"{first},{worse}"


def test_rollback_returns_to_the_previous_version_once(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI)
    second = _mri(client, 2.5)
    promote(MRI)
    result = rollback(MRI, user="dee")
    assert (result.version, result.previous_version, result.reason) == (first, second, "rollback")
    assert result.candidate_value == pytest.approx(2.7) and result.production_value == pytest.approx(2.5)
    assert _production(client) == first
    assert _history(client) == first
    tags = _promotion_tags(client, first)
    assert tags["promotion_reason"] == "rollback" and tags["promoted_by"] == "dee"
    assert tags["promotion_previous_version"] == second and tags["promotion_forced"] == "false"
    with pytest.raises(UserError, match="earlier production version"):
        rollback(MRI)
    assert _production(client) == first


def test_rollback_without_production_is_refused(client) -> None:
    _mri(client, 2.7)
    with pytest.raises(UserError, match="in production to roll back"):
        rollback(MRI)


def test_promoting_the_production_version_again_changes_nothing(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI, user="ana")
    before = _promotion_tags(client, first)
    result = promote(MRI, version=first, user="ben")
    assert "already in production" in result.message and result.reason is None
    assert _production(client) == first
    assert _promotion_tags(client, first) == before
    assert _history(client) == first


def test_unknown_models_and_versions_name_what_exists(client) -> None:
    _mri(client, 2.7)
    with pytest.raises(UserError, match="spine-age-mri") as unknown:
        promote("spine-age-ct")
    assert "'spine-age-ct'" in str(unknown.value)
    with pytest.raises(UserError, match="only versions 1"):
        promote(MRI, version=9)
    with pytest.raises(UserError, match="only versions 1"):
        promote(MRI, version="x")
    with pytest.raises(UserError, match="found only: spine-age-mri"):
        rollback("spine-age-ct")
    _version(client, XRAY, {"test_corrected_mae": 6.0}, candidate=False)
    with pytest.raises(UserError, match="alias 'candidate'"):
        promote(XRAY)


def test_the_radiograph_model_is_gated_on_its_corrected_mae(client) -> None:
    first = _version(client, XRAY, {"mae_test": 7.5, "test_raw_mae": 7.5, "test_corrected_mae": 7.0})
    assert promote(XRAY).metric == "test_corrected_mae"
    # A lower corrected WMAE logged by mistake does not count: the radiograph model is judged on its MAE.
    worse = _version(client, XRAY, {"test_corrected_mae": 7.2, "eval_test_corrected_wmae": 1.0})
    with pytest.raises(UserError, match="corrected test MAE 7.200 y is worse"):
        promote(XRAY, version=worse)
    better = _version(client, XRAY, {"test_corrected_mae": 6.5})
    result = promote(XRAY)
    assert (result.version, result.previous_version) == (better, first)
    assert result.candidate_value == pytest.approx(6.5) and result.production_value == pytest.approx(7.0)
    # Trained but not evaluated: the train stage's raw MAE is no corrected MAE.
    raw_only = _version(client, XRAY, {"mae_test": 5.0})
    with pytest.raises(UserError, match="run `spineage radiograph evaluate` first"):
        promote(XRAY, version=raw_only)
    assert _production(client, XRAY) == better


def test_list_model_versions_shows_aliases_figures_and_data_version(client) -> None:
    first = _mri(client, 2.7)
    promote(MRI, user="ana")
    second = _mri(client, None, tags={"data_manifest_sha256": "d4d4d4d4d4d4d4d4"})
    xray = _version(client, XRAY, {"mae_test": 7.5, "test_raw_mae": 7.4, "test_corrected_mae": 7.0}, tags=None)
    table = list_model_versions((MRI, XRAY, "spine-age-ct"))
    assert table[["model", "version"]].values.tolist() == [[MRI, int(first)], [MRI, int(second)], [XRAY, int(xray)]]
    rows = table.set_index(["model", "version"])
    evaluated, trained, radiograph = rows.loc[(MRI, int(first))], rows.loc[(MRI, int(second))], rows.loc[(XRAY, int(xray))]
    assert evaluated["aliases"] == "production" and trained["aliases"] == "candidate"
    assert evaluated["test_corrected_wmae"] == pytest.approx(2.7) and evaluated["test_corrected_mae"] == pytest.approx(2.9)
    assert evaluated["test_raw_mae"] == pytest.approx(3.0) and evaluated["test_normative_coverage"] == pytest.approx(0.85)
    assert evaluated["data_dvc_md5"] == "aaaa1111.dir" and evaluated["data_manifest_sha256"] == "a1a1a1a1a1a1a1a1"
    assert evaluated["promoted_by"] == "ana" and evaluated["promotion_reason"] == "gate passed"
    assert evaluated["run_id"] == client.get_model_version(MRI, first).run_id
    assert evaluated["created"].tzinfo is not None
    # Never evaluated: its raw figure is the train stage's, the rest stays empty.
    assert trained["test_raw_mae"] == pytest.approx(3.0)
    assert math.isnan(trained["test_corrected_wmae"]) and math.isnan(trained["test_normative_coverage"])
    assert trained["data_dvc_md5"] == "" and trained["promoted_by"] == ""
    assert radiograph["test_corrected_mae"] == pytest.approx(7.0) and radiograph["test_raw_mae"] == pytest.approx(7.4)
    assert math.isnan(radiograph["test_corrected_wmae"]) and radiograph["aliases"] == "candidate"

    text = format_model_table(table)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("model")
    assert "production" in lines[1] and "2.70" in lines[1] and "aaaa1111/a1a1a1a1" in lines[1] and "by ana" in lines[1]
    assert "7.00" in lines[3] and "nan" not in text.lower()


def test_a_version_without_a_run_is_listed_with_empty_figures(client) -> None:
    client.create_registered_model(MRI)
    version = client.create_model_version(MRI, source="file:///elsewhere/model", tags=DATA_A).version  # an int in MLflow 3
    table = list_model_versions()
    assert table[["model", "version", "run_id"]].values.tolist() == [[MRI, int(version), ""]]
    assert table[["test_corrected_wmae", "test_corrected_mae", "test_raw_mae", "test_normative_coverage"]].isna().all(axis=None)
    assert table.loc[0, "data_manifest_sha256"] == "a1a1a1a1a1a1a1a1"
    with pytest.raises(UserError, match="run `spineage evaluate` first"):
        promote(MRI, version=version)
    assert list_model_versions(("spine-age-ct",)).empty
    assert format_model_table(list_model_versions(("spine-age-ct",))) == "no registered model versions"


def test_a_production_alias_set_by_hand_enters_the_history(client) -> None:
    by_hand = _mri(client, 2.7)
    client.set_registered_model_alias(MRI, "production", by_hand)
    second = _mri(client, 2.6)
    assert promote(MRI).previous_version == by_hand
    assert _history(client) == f"{by_hand},{second}"
    assert rollback(MRI).version == by_hand and _production(client) == by_hand


def test_the_commands_promote_list_and_refuse_in_one_line(client) -> None:
    from typer.testing import CliRunner

    from spineage.cli import app

    runner = CliRunner()
    first = _mri(client, 3.0)
    assert runner.invoke(app, ["promote"]).exit_code == 0
    assert _production(client) == first
    worse = _mri(client, 3.5)
    refused = runner.invoke(app, ["promote", "--version", worse])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1 and "3.5" in refused.output
    both = runner.invoke(app, ["promote", "--rollback", "--version", first])
    assert both.exit_code == 2 and "--rollback alone" in both.output
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "production" in listed.output and "spine-age-mri" in listed.output
