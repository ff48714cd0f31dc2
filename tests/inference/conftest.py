"""Fixtures of the inference tests: a small phantom, a tiny segmenter, and tiny registered spine-age models.

``registry`` is a fresh MLflow store (``MLFLOW_TRACKING_URI`` for the package's tests)
holding ``spine-age-mri`` and ``spine-age-xray``, each one version logged as the
pipeline logs them (pytorch flavour, the serving pyfunc, the training reference of
the phantom's first six subjects) with a known correction and normative range as tags,
aliased ``candidate`` and ``production``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spineage.evaluation.bias import BiasCorrection
from spineage.evaluation.conformal import NormativeRange
from tests.imaging.scans import save_vertebra_segmenter
from tests.mlflow_store import fresh_store

MRI_CORRECTION = BiasCorrection("cole", 0.8, 10.0, "validation", 40)
XRAY_CORRECTION = BiasCorrection("beheshti", -0.2, 9.0, "validation", 40)
NORMATIVE = NormativeRange(coverage=0.9, half_width=5.0, n_calibration=50)
TRAINING_SUBJECTS = 6
"""Subjects whose scans make the training reference; the phantom's others are new scans."""
MRI_INPUT = (4, 16, 64)
MRI_GRID = {"target_spacing_mm": (8.0, 4.0, 4.0), "shape": (16, 64, 256)}
"""A grid holding the whole phantom field of view (the test segmenter masks all of it)."""


@pytest.fixture(scope="package")
def phantom(tmp_path_factory) -> Path:
    """A ci-profile phantom of 8 subjects (MRI, radiographs, one VFA image)."""
    from spineage.config import parse_params
    from spineage.synth.generate import generate_cohort

    raw = tmp_path_factory.mktemp("inference") / "raw"
    generate_cohort(raw, parse_params({}).synth, seed=11, profile="ci", n_subjects=8, workers=1, progress=False)
    return raw


@pytest.fixture(scope="package")
def segmenter(tmp_path_factory) -> Path:
    """A segmentation model folder that calls every voxel vertebra."""
    return save_vertebra_segmenter(tmp_path_factory.mktemp("segmenter") / "spine-seg")


def sessions(raw: Path, modality: str) -> pd.DataFrame:
    """The phantom's sessions of one modality, with absolute image paths."""
    table = pd.read_csv(raw / "sessions.csv", dtype=str)
    table = table[table.modality == modality].reset_index(drop=True)
    table["path"] = [str(raw / image) for image in table.image]
    table["age"] = table.age.astype(float)
    return table


def mri_preprocessing(segmenter: Path) -> dict:
    """The preprocess section a tiny MRI network is trained with (params.yaml's defaults, this segmenter)."""
    from spineage.imaging.preprocess import PreprocessSettings
    from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY, segmentation_model_identity

    settings = PreprocessSettings(segmentation_model=str(segmenter), **MRI_GRID)
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()}
    values["fit_to_network"] = {"crop_shape": [8, 64, 256], "input_shape": list(MRI_INPUT)}
    values[SEGMENTER_IDENTITY_KEY] = segmentation_model_identity(str(segmenter))  # as the train stage stores it
    return values


def mri_reference_of(paths: list[str], ages: list[float], segmenter: Path):
    """The training reference of these MRI scans, measured as ``spineage predict`` measures a new one."""
    from spineage.imaging.io import load_volume
    from spineage.imaging.preprocess import parse_preprocess_settings, preprocess_volume
    from spineage.imaging.segmentation import load_segmentation_model, segment_volume_with_confidence
    from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY
    from spineage.inference.predict import _mri_measurements
    from spineage.inference.reference import TrainingReference

    preprocessing = mri_preprocessing(segmenter)
    preprocessing.pop("fit_to_network")
    preprocessing.pop(SEGMENTER_IDENTITY_KEY)
    settings = parse_preprocess_settings(preprocessing)
    net = load_segmentation_model(str(segmenter))
    rows = []
    for path in paths:
        volume = load_volume(path)
        labels, _ = segment_volume_with_confidence(volume, net)
        _, record = preprocess_volume(volume, labels, settings)
        rows.append(_mri_measurements(volume, record))
    measurements = pd.DataFrame(rows)
    return TrainingReference.from_rows("mri", pd.DataFrame({"age": ages}), {c: measurements[c] for c in measurements})


def xray_reference_of(paths: list[str], ages: list[float]):
    """The training reference of these radiographs."""
    from spineage.inference.reference import REFERENCE_KEY, radiograph_reference
    from spineage.radiograph.preprocess import load_radiograph

    images = [load_radiograph(p) for p in paths]
    manifest = pd.DataFrame({
        "age": ages, "original_shape": [f"{i.shape[0]}x{i.shape[1]}" for i in images], "bit_depth": [i.bit_depth for i in images],
    })
    return radiograph_reference(manifest)


@dataclass(frozen=True)
class Registry:
    """The store of ``registry`` and what is in it."""

    uri: str
    mri_version: str
    xray_version: str


def register(name: str, net, reference, tags: dict[str, str], experiment: str) -> str:
    """Log ``net`` as the pipeline does (both flavours, the reference), register it with ``tags``; production and candidate."""
    import mlflow

    from spineage.inference.flavour import log_spine_age_service
    from spineage.inference.reference import REFERENCE_KEY
    from spineage.registry.tracking import configure_mlflow, register_model_version, set_model_alias

    configure_mlflow(experiment)
    with mlflow.start_run():
        info = log_spine_age_service(net, packages=("torch",), metadata={REFERENCE_KEY: reference.as_dict()})
        version = register_model_version(info, name, alias="candidate", tags=tags)
    set_model_alias(name, version.version, "production")
    return str(version.version)


@pytest.fixture(scope="package")
def registry(tmp_path_factory, phantom: Path, segmenter: Path):
    """A fresh store with a tiny spine-age-mri and spine-age-xray (module docstring); MLFLOW_TRACKING_URI points at it."""
    import torch

    from spineage.models.spine_age import SpineAgeNet
    from spineage.models.spine_age_xray import SpineAgeXrayNet

    store = fresh_store(tmp_path_factory.mktemp("store"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        mri = sessions(phantom, "mri_t2_sag").iloc[:TRAINING_SUBJECTS]
        xray = sessions(phantom, "xray_lat").iloc[:TRAINING_SUBJECTS]
        torch.manual_seed(0)
        mri_net = SpineAgeNet(input_shape=MRI_INPUT, channels=(4, 4, 8, 8, 8), head_channels=4, preprocessing=mri_preprocessing(segmenter)).eval()
        xray_net = SpineAgeXrayNet((64, 32), "efficientnet-b0", np.arange(20.0, 101.0).tolist(),
                                   {"image_shape": [64, 32], "margin_fraction": 0.05, "equalise": True}).eval()
        mri_version = register(
            "spine-age-mri", mri_net, mri_reference_of(list(mri.path), list(mri.age), segmenter),
            {**MRI_CORRECTION.as_tags(), **NORMATIVE.as_tags()}, "spine-age-mri",
        )
        xray_version = register(
            "spine-age-xray", xray_net, xray_reference_of(list(xray.path), list(xray.age)), XRAY_CORRECTION.as_tags(), "spine-age-xray",
        )
        yield Registry(store, mri_version, xray_version)
