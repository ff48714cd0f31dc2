"""The tracking URI, the artifact location beside an SQLite store, and the registry moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from spineage.errors import UserError
from spineage.registry.tracking import (
    artifact_root,
    configure_mlflow,
    model_uri,
    pinned_model_uri,
    pinned_requirements,
    register_model_version,
    repo_root,
    resolve_model_uri,
    set_model_alias,
    tracking_uri,
    version_by_alias,
)
from tests.mlflow_store import fresh_store


def test_tracking_uri_honours_the_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri() == "http://tracking.example:5000"
    assert artifact_root() is None  # a server chooses its own artifact store


def test_without_the_variable_the_store_is_mlflow_db_in_the_repo_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "repo" / "src" / "deep").mkdir(parents=True)
    (tmp_path / "repo" / "params.yaml").write_text("seed: 1\n")
    monkeypatch.chdir(tmp_path / "repo" / "src" / "deep")
    assert repo_root() == (tmp_path / "repo").resolve()
    assert tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    assert artifact_root() == ((tmp_path / "repo").resolve() / "mlartifacts").as_uri()
    # dvc.yaml marks a root as well; with no marker anywhere, the working directory is the root.
    (tmp_path / "repo" / "src" / "dvc.yaml").write_text("stages: {}\n")
    assert repo_root() == (tmp_path / "repo" / "src").resolve()
    (tmp_path / "bare").mkdir()
    assert repo_root(tmp_path / "bare") == (tmp_path / "bare").resolve()


def test_a_sub_pipeline_shares_the_dvc_projects_store(tmp_path: Path, monkeypatch) -> None:
    """pipelines/ablations/dvc.yaml runs its commands in its own folder; the runs still go to the project's mlflow.db."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / "params.yaml").write_text("seed: 1\n")
    (project / "pipelines" / "ablations").mkdir(parents=True)
    (project / "pipelines" / "ablations" / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(project / "pipelines" / "ablations")
    assert repo_root() == project.resolve()
    assert tracking_uri() == f"sqlite:///{project.resolve()}/mlflow.db"


def test_the_repository_itself_is_found_from_a_sub_folder(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root / "tests" / "registry")
    assert tracking_uri() == f"sqlite:///{root}/mlflow.db"


def test_model_uris() -> None:
    assert model_uri("spine-seg-mri", alias="candidate") == "models:/spine-seg-mri@candidate"
    assert model_uri("spine-age-mri", version=3) == "models:/spine-age-mri/3"
    with pytest.raises(ValueError):
        model_uri("m")
    assert pinned_model_uri("runs:/abc/model") == "runs:/abc/model"
    pins = pinned_requirements("numpy", "mlflow")
    assert pins[0].startswith("numpy==") and "+" not in pins[1]
    with pytest.raises(ValueError, match="installed"):
        pinned_requirements("no-such-distribution-here")



@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _log_tiny_model():
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    with mlflow.start_run() as run:
        mlflow.log_param("kind", "echo")
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    return run, info


@pytest.mark.slow  # the first MLflow store of a process is migrated from scratch (seconds)
def test_configure_and_register_keep_artifacts_beside_the_store(store: Path, capsys) -> None:
    import mlflow

    uri = configure_mlflow("unit-test")
    assert uri.startswith("sqlite:///") and uri.endswith("store/mlflow.db")
    experiment = mlflow.get_experiment_by_name("unit-test")
    assert experiment.artifact_location == (store / "store" / "mlartifacts").resolve().as_uri() + "/unit-test"
    assert configure_mlflow("unit-test") == uri  # a second call finds the experiment

    run, info = _log_tiny_model()
    version = register_model_version(info, "tiny-model", tags={"note": "first"})
    assert version.version in (1, "1") and version.aliases == ["candidate"]
    assert version.run_id == run.info.run_id and version.tags["note"] == "first"
    assert "Successfully registered" not in capsys.readouterr().err  # MLflow's prints are kept quiet
    assert not (store / "mlruns").exists()
    assert (store / "store" / "mlartifacts" / "unit-test").is_dir()

    second = register_model_version(info.model_uri, "tiny-model")
    assert str(version_by_alias("tiny-model", "candidate").version) == str(second.version) == "2"
    assert pinned_model_uri("models:/tiny-model@candidate") == "models:/tiny-model/2"
    # No production yet: the candidate answers; once promoted, production does.
    assert resolve_model_uri("tiny-model") == "models:/tiny-model/2"
    set_model_alias("tiny-model", 1, "production")
    assert resolve_model_uri("tiny-model") == "models:/tiny-model/1"
    loaded = mlflow.pyfunc.load_model("models:/tiny-model@candidate")
    assert loaded.metadata.run_id == run.info.run_id


@pytest.mark.slow
def test_missing_models_and_aliases_are_one_line_errors(store: Path) -> None:
    configure_mlflow("unit-test")
    assert version_by_alias("nothing-here", "candidate") is None
    with pytest.raises(UserError, match="found none"):
        resolve_model_uri("nothing-here")
    with pytest.raises(UserError, match="alias 'production'"):
        pinned_model_uri("models:/nothing-here@production")


def test_a_missing_database_folder_is_a_user_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent/mlflow.db")
    with pytest.raises(UserError, match="to exist"):
        configure_mlflow("x")
