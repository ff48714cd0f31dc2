"""The code's settings defaults are params.yaml's values, section by section, so that the two cannot drift.

Each settings dataclass owns its defaults, and its parser falls back on them for a key
left out; the shipped params.yaml must parse to exactly those defaults.
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from spineage.cohort.settings import CohortSettings, parse_cohort_settings
from spineage.config import (
    Params,
    SynthSettings,
    ValidationSettings,
    parse_params,
    parse_validation,
    read_params_mapping,
)
from spineage.analysis.settings import SagSettings, parse_sag_settings
from spineage.analysis.truth_settings import TruthSettings, parse_truth_settings
from spineage.inference.settings import PredictSettings, parse_predict_settings
from spineage.radiograph.settings import RadiographSettings, parse_radiograph_settings
from spineage.evaluation.settings import EvaluationSettings, parse_evaluation_settings
from spineage.findings.stage import FindingsSettings, parse_findings_settings
from spineage.imaging.preprocess import PreprocessSettings, parse_preprocess_settings
from spineage.imaging.segmentation import (
    SegmentationSettings,
    parse_segmentation_settings,
)
from spineage.synth.outcomes import OutcomeEffects
from spineage.training.settings import TrainingSettings, parse_training_settings
from tests.params_file import REPO_PARAMS

RAW = read_params_mapping(REPO_PARAMS)

SECTIONS = {
    "findings": (parse_findings_settings, FindingsSettings),
    "cohort": (parse_cohort_settings, CohortSettings),
    "preprocess": (parse_preprocess_settings, PreprocessSettings),
    "segmentation": (parse_segmentation_settings, SegmentationSettings),
    "train": (parse_training_settings, TrainingSettings),
    "evaluate": (parse_evaluation_settings, EvaluationSettings),
    "validation": (parse_validation, ValidationSettings),
    "truth": (parse_truth_settings, TruthSettings),
    "sag": (parse_sag_settings, SagSettings),
    "radiograph": (parse_radiograph_settings, RadiographSettings),
    "predict": (parse_predict_settings, PredictSettings),
}
"""Sections parsed by a function of their own, with their settings class."""


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_params_yaml_section_is_the_code_defaults(name: str) -> None:
    parse, settings_class = SECTIONS[name]
    assert parse(RAW[name]) == settings_class()


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_a_key_left_out_falls_back_on_the_dataclass_default(name: str) -> None:
    parse, settings_class = SECTIONS[name]
    assert parse({}) == settings_class()


def test_seed_data_and_synth_are_the_code_defaults() -> None:
    params = parse_params(RAW)
    # outcome_effects restates OutcomeEffects' defaults, the one place the planted hazard ratios are written.
    assert OutcomeEffects(**params.synth.outcome_effects) == OutcomeEffects()
    assert replace(params.synth, outcome_effects={}) == SynthSettings()
    assert replace(params, synth=SynthSettings()) == Params()
    assert parse_params({}) == Params()


@pytest.mark.parametrize("name", ["findings", "preprocess", "segmentation", "train", "validation", "evaluate", "truth", "sag", "radiograph"])
def test_params_yaml_spells_out_every_setting(name: str) -> None:
    """Every tunable value is visible in params.yaml, not only in the code."""
    _, settings_class = SECTIONS[name]
    # train's seed is the top-level one; truth's is its own (the truth cohort's), spelt out in its section
    own_seed = {"seed"} if name == "truth" else set()
    assert {f.name for f in fields(settings_class)} - {"seed"} | own_seed == set(RAW[name])


def test_params_yaml_spells_out_every_synth_setting() -> None:
    assert set(RAW["synth"]) == {"profile", "workers", "noise_sd", "repeat_fraction", "lifestyle_effects", "outcome_effects", "profiles"}
    assert set(RAW["synth"]["lifestyle_effects"]) == set(SynthSettings().lifestyle_effects)
    assert set(RAW["synth"]["profiles"]) == set(SynthSettings().profiles)


def test_a_changed_default_would_be_caught() -> None:
    """The comparison is strict: one value off is a difference."""
    changed = dict(RAW["train"], max_epochs=RAW["train"]["max_epochs"] + 1)
    assert parse_training_settings(changed) != TrainingSettings()
