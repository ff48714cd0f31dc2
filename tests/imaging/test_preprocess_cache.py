"""The preprocess cache key follows the segmentation model a ``models:/name@alias`` points at, not its name."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.errors import UserError
from spineage.imaging.preprocess import PreprocessSettings
from spineage.imaging.stage import build_processed, pin_segmentation_model
from tests.mlflow_store import fresh_store

from .scans import phantom_mri
from .test_preprocess_stage import write_raw

MODEL = "spine-seg-mri"
ALIAS_URI = f"models:/{MODEL}@candidate"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> "object":
    """A registry holding two versions of the segmentation model (no model files: only the alias is read), alias on 1."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_store(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    from spineage.registry.tracking import configure_mlflow

    configure_mlflow()
    import mlflow

    client = mlflow.MlflowClient()
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, source=(tmp_path / "model").as_uri())
    client.set_registered_model_alias(MODEL, "candidate", "1")
    return client


def test_moving_the_alias_changes_the_key_and_pins_the_version(registry) -> None:
    settings = PreprocessSettings(segmentation_model=ALIAS_URI)
    pinned, first = pin_segmentation_model(settings)
    assert pinned.segmentation_model == f"models:/{MODEL}/1"
    assert pin_segmentation_model(settings)[1] == first  # same alias target, same key

    registry.set_registered_model_alias(MODEL, "candidate", "2")
    pinned, second = pin_segmentation_model(settings)
    assert pinned.segmentation_model == f"models:/{MODEL}/2"
    assert second != first
    # The key is the version's, whichever way the version is named.
    assert second == pin_segmentation_model(PreprocessSettings(segmentation_model=f"models:/{MODEL}/2"))[1]


def test_an_unknown_alias_is_a_one_line_user_error(registry) -> None:
    with pytest.raises(UserError, match="alias 'production'") as caught:
        pin_segmentation_model(PreprocessSettings(segmentation_model=f"models:/{MODEL}@production"))
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="'no-such-model'"):
        pin_segmentation_model(PreprocessSettings(segmentation_model="models:/no-such-model@candidate"))


def test_pinned_uris_and_no_model_need_no_registry(tmp_path: Path, monkeypatch) -> None:
    # A tracking store that cannot be opened: nothing below may ask it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent/mlflow.db")
    plain = PreprocessSettings(masks="labels", segmentation_model=None)
    assert pin_segmentation_model(plain) == (plain, plain.settings_hash())  # the key without a model is unchanged
    version = PreprocessSettings(segmentation_model=f"models:/{MODEL}/3")
    assert pin_segmentation_model(version) == (version, version.settings_hash())
    assert pin_segmentation_model(version)[1] != plain.settings_hash()


def test_a_local_model_folder_is_keyed_by_its_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pth").write_bytes(b"weights-1")
    settings = PreprocessSettings(segmentation_model=str(folder))
    pinned, first = pin_segmentation_model(settings)
    assert pinned == settings  # loaded from where it is
    assert pin_segmentation_model(PreprocessSettings(segmentation_model=folder.as_uri()))[1] != settings.settings_hash()
    (folder / "model.pth").write_bytes(b"weights-2")
    assert pin_segmentation_model(settings)[1] != first


def test_the_stage_redoes_segmented_series_when_the_alias_moves(registry, tmp_path: Path, monkeypatch) -> None:
    raw, cohort_csv = write_raw(tmp_path / "raw", n=1)
    sessions = pd.read_csv(raw / "sessions.csv", dtype=str, keep_default_na=False)
    sessions.loc[sessions["series_id"] == "mri-0", "label"] = ""
    sessions.to_csv(raw / "sessions.csv", index=False)
    calls = []

    def segment_volume(volume, model_uri):
        calls.append(model_uri)
        return np.asarray(phantom_mri((8.0, 4.0, 4.0))[1]).copy()

    monkeypatch.setitem(sys.modules, "spineage.imaging.segmentation", types.SimpleNamespace(segment_volume=segment_volume))
    settings = PreprocessSettings(workers=1, segmentation_model=ALIAS_URI)

    def run():
        return build_processed(raw, cohort_csv, tmp_path / "processed", tmp_path / "reports", settings, progress=False)

    assert run().processed == 1 and calls == [f"models:/{MODEL}/1"]
    assert run().processed == 0  # nothing moved: the series is reused
    registry.set_registered_model_alias(MODEL, "candidate", "2")
    assert run().processed == 1 and calls[-1] == f"models:/{MODEL}/2"
