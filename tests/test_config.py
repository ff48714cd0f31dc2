"""params.yaml parsing: defaults, the repository's own file, the file's shape, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spineage.config import (
    BUILTIN_PROFILES,
    PARAMS_KEYS,
    SynthProfile,
    load_params,
    parse_params,
    read_params_mapping,
)
from spineage.errors import UserError
from tests.params_file import params_with, write_params

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_params_file_loads() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.data_source == "synthetic"
    assert params.synth.profile("ci").n_subjects < params.synth.profile("default").n_subjects < params.synth.profile("full").n_subjects
    assert params.synth.lifestyle_effects["packs_per_day"] == pytest.approx(0.93)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"seed": -1}, "non-negative integer seed"),
        ({"seed": "abc"}, "non-negative integer seed"),
        ({"synth": {"profile": "nope"}}, "synth profile"),
        ({"synth": {"noise_sd": -2}}, "synth.noise_sd between"),
        ({"synth": {"repeat_fraction": 1.5}}, "synth.repeat_fraction between"),
        ({"synth": {"lifestyle_effects": {"cigars": 1.0}}}, "keys of synth.lifestyle_effects among"),
        ({"synth": {"profiles": {"ci": {"n_subjects": 0, "mri_spacing_mm": [1, 1, 1], "xray_shape": [64, 32]}}}}, "n_subjects between"),
        ({"synth": {"profiles": {"ci": {"n_subjects": 5, "mri_spacing_mm": [1, 1], "xray_shape": [64, 32]}}}}, "mri_spacing_mm"),
        ({"sed": 1}, r"keys of params.yaml among \['cohort', 'data', .*\], found \['sed'\]"),
        ({"synth": {"noise_sdd": 25}}, r"keys of the synth section among .*, found \['noise_sdd'\]"),
        ({"synth": {"profiles": {"ci": {"n_subject": 5}}}}, r"keys of synth.profiles.ci among .*, found \['n_subject'\]"),
        ({"synth": {"profiles": {"tiny": {"n_subjects": 5}}}}, "three positive numbers for synth.profiles.tiny.mri_spacing_mm"),
        ({"synth": {"outcome_effects": {"hr_fracture": 1.5}}}, r"keys of synth.outcome_effects among .*, found \['hr_fracture'\]"),
        ({"synth": {"outcome_effects": {"hr_death_per_sd": 0}}}, "synth.outcome_effects.hr_death_per_sd between"),
        ({"synth": {"workers": 2.5}}, "an integer for synth.workers"),
        ({"data": {"sorce": "mine"}}, r"keys of the data section among \['source'\], found \['sorce'\]"),
        ({"data": {"source": 5}}, "`synthetic` or the path of a raw-cohort folder for data.source, found 5"),
        ({"data": ["synthetic"]}, "mapping for the data section"),
    ],
)
def test_bad_values_are_named(raw: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_params(raw)


def test_invalid_yaml_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(UserError, match="valid YAML"):
        load_params(path)


def test_a_built_in_profile_may_change_one_key_and_keeps_the_others() -> None:
    ci = parse_params({"synth": {"profiles": {"ci": {"n_subjects": 10}}}}).synth.profile("ci")
    assert ci == SynthProfile("ci", 10, BUILTIN_PROFILES["ci"].mri_spacing_mm, BUILTIN_PROFILES["ci"].xray_shape)


def test_a_complete_file_with_changed_values_loads(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path / "params.yaml", {"seed": 5, "synth": {"noise_sd": 2.0}}))
    assert params.seed == 5 and params.synth.noise_sd == 2.0 and params.synth.repeat_fraction == 0.05


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "Expected the sections .* in .*params.yaml, found an empty file"),
        ("# every line commented out\n", "found an empty file"),
        ("- seed\n", "Expected a mapping of sections in .*params.yaml, found a list"),
    ],
)
def test_an_empty_or_shapeless_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_params(path)


@pytest.mark.parametrize("key", PARAMS_KEYS)
def test_a_missing_section_is_refused_not_replaced_by_defaults(tmp_path: Path, key: str) -> None:
    raw = params_with()
    del raw[key]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    what = "value" if key == "seed" else "section"
    with pytest.raises(UserError, match=f"^Expected a `{key}` {what} in {path}, found none$"):
        read_params_mapping(path)


def test_an_empty_section_counts_as_missing_and_an_explicit_empty_mapping_as_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with({"findings": None, "cohort": None})))
    with pytest.raises(UserError, match=r"Expected a `findings` section in .*, found none \(nor `cohort`\)"):
        read_params_mapping(path)
    raw = params_with()
    raw["findings"] = {}
    path.write_text(yaml.safe_dump(raw))
    assert read_params_mapping(path)["findings"] == {}


def test_a_misspelt_top_level_key_in_the_file_names_the_known_ones(tmp_path: Path) -> None:
    path = write_params(tmp_path / "params.yaml", {"trian": {"batch_size": 4}})
    with pytest.raises(UserError, match=r"Expected keys of .*params.yaml among \[.*'train'.*\], found \['trian'\]"):
        load_params(path)


def test_set_changes_one_setting_and_reads_the_value_as_yaml(tmp_path: Path) -> None:
    from spineage.config import read_params_mapping

    path = write_params(tmp_path / "params.yaml")
    raw = read_params_mapping(path, ["train.loss=smooth_l1", "train.train_fraction=0.1", "preprocess.segmentation_model=null"])
    assert raw["train"]["loss"] == "smooth_l1" and raw["train"]["train_fraction"] == 0.1
    assert raw["preprocess"]["segmentation_model"] is None
    unchanged = read_params_mapping(path)
    assert unchanged["train"]["loss"] == "mse" and unchanged["preprocess"]["segmentation_model"] == "models/spine-seg"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.loss", "Expected --set SECTION.KEY=VALUE"),
        ("train.los=mse", "Expected --set to name a key of the params file, found 'train.los'"),
        ("trian.loss=mse", "found 'trian.loss' (trian is not a section)"),
        ("seed.x=1", "(seed is not a section)"),
        ("train.loss=[1", "Expected a YAML value in --set"),
        ("seed=-3", "non-negative integer seed"),  # the value passes the file's own checks
    ],
)
def test_a_bad_set_is_a_one_line_user_error(tmp_path: Path, assignment: str, message: str) -> None:
    from spineage.config import read_params_mapping

    with pytest.raises(UserError) as error:
        read_params_mapping(write_params(tmp_path / "params.yaml"), [assignment])
    assert message in str(error.value) and "\n" not in str(error.value)
