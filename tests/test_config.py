"""params.yaml parsing: defaults, the repository's own file, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from spineage.config import load_params, parse_params
from spineage.errors import UserError

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
        ({"synth": {"lifestyle_effects": {"cigars": 1.0}}}, "lifestyle effect among"),
        ({"synth": {"profiles": {"ci": {"n_subjects": 0, "mri_spacing_mm": [1, 1, 1], "xray_shape": [64, 32]}}}}, "n_subjects between"),
        ({"synth": {"profiles": {"ci": {"n_subjects": 5, "mri_spacing_mm": [1, 1], "xray_shape": [64, 32]}}}}, "mri_spacing_mm"),
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
