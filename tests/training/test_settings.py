"""The train section of params.yaml: defaults, the repository's file, one-line errors for bad values and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.training.settings import (
    TrainingSettings,
    load_training_settings,
    parse_training_settings,
)
from tests.params_file import params_with

REPO = Path(__file__).resolve().parents[2]


def test_the_repository_params_give_the_paper_network_and_the_seed() -> None:
    settings = load_training_settings(REPO / "params.yaml")
    assert settings.channels == (32, 64, 128, 256, 256) and settings.head_channels == 64
    assert settings.loss == "mse" and settings.lr_patience == 5
    assert settings.seed != 0


def test_an_absent_section_gives_the_defaults() -> None:
    assert parse_training_settings(None, seed=3) == TrainingSettings(seed=3)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"loss": "l1"}, "train.loss among"),
        ({"batch_size": 0}, "train.batch_size between"),
        ({"learning_rate": "fast"}, "a number for train.learning_rate"),
        ({"input_shape": [16, 48]}, "3 integers for train.input_shape"),
        ({"age_bins": [90, 10, 1]}, "train.age_bins as [low, high, width]"),
        ({"augment_flip": "yes"}, "true or false for train.augment_flip"),
        ({"cpu_precision": "float16"}, "train.cpu_precision among"),
        ({"epochs": 3}, "keys of the train section"),
    ],
)
def test_bad_values_are_one_sentence_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_training_settings(section)


def test_overrides_ignore_none() -> None:
    settings = TrainingSettings().with_overrides(max_epochs=3, loss=None)
    assert settings.max_epochs == 3 and settings.loss == "mse"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_epochs": 0}, "Expected train.max_epochs between 1 and 100000, found 0 (overriding params.yaml with max_epochs=0)"),
        ({"loss": "l3"}, "Expected train.loss among ['mse', 'smooth_l1', 'mean_variance'], found 'l3'"),
        ({"nproc": 0}, "Expected train.nproc between 1 and 256, found 0"),
        ({"batch_size": 2.5}, "Expected an integer for train.batch_size, found 2.5"),
    ],
)
def test_overrides_pass_the_checks_of_params_yaml(changes: dict, message: str) -> None:
    with pytest.raises(UserError) as error:
        TrainingSettings(seed=4).with_overrides(**changes)
    assert str(error.value).startswith(message)


def test_null_shapes_mean_the_arrays_as_they_are_and_survive_overrides() -> None:
    settings = parse_training_settings({"crop_shape": None, "input_shape": None}, seed=2)
    assert settings.crop_shape is None and settings.input_shape is None
    assert settings.with_overrides(max_epochs=2) == TrainingSettings(seed=2, crop_shape=None, input_shape=None, max_epochs=2)


@pytest.fixture
def trained_outputs(tmp_path: Path) -> dict[Path, bytes]:
    """Stand-ins for the files a finished run left: the checkpoints and the reports."""
    files = {
        tmp_path / "model" / "checkpoint.pt": b"checkpoint of a trained run",
        tmp_path / "model" / "best.pt": b"best weights",
        tmp_path / "reports" / "metrics.json": b'{"test_mae": 2.56}',
        tmp_path / "reports" / "predictions.csv": b"series_id,split,age,predicted_age\n",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-epochs", "0"], "error: Expected train.max_epochs between 1 and 100000, found 0"),
        (["--max-epochs", "-3"], "error: Expected train.max_epochs between 1 and 100000, found -3"),
        (["--loss", "l3"], "error: Expected train.loss among"),
        (["--nproc", "0"], "error: Expected train.nproc between 1 and 256, found 0"),
    ],
)
def test_a_bad_override_is_one_line_exit_2_and_leaves_the_last_run_untouched(
    tmp_path: Path, trained_outputs: dict[Path, bytes], options: list[str], message: str,
) -> None:
    result = CliRunner().invoke(app, [
        "train", "--processed", str(tmp_path / "processed"), "--out", str(tmp_path / "model"),
        "--reports", str(tmp_path / "reports"), "--params", str(REPO / "params.yaml"), *options,
    ])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1, result.output
    assert {path: path.read_bytes() for path in trained_outputs} == trained_outputs
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(trained_outputs)


def test_a_params_file_without_the_train_section_is_refused(tmp_path: Path, trained_outputs: dict[Path, bytes]) -> None:
    without_train = params_with()
    del without_train["train"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(without_train))
    result = CliRunner().invoke(app, [
        "train", "--processed", str(tmp_path / "processed"), "--out", str(tmp_path / "model"),
        "--reports", str(tmp_path / "reports"), "--params", str(params),
    ])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: Expected a `train` section in {params}, found none"
    assert {path: path.read_bytes() for path in trained_outputs} == trained_outputs


def test_train_fraction_is_a_share_of_the_train_split() -> None:
    assert parse_training_settings({"train_fraction": 0.01}).train_fraction == 0.01
    for bad in (0, 1.5, "all"):
        with pytest.raises(UserError, match="train.train_fraction"):
            parse_training_settings({"train_fraction": bad})
