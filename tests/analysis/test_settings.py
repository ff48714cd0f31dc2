"""The sag section: defaults, strict keys and values."""

from __future__ import annotations

import pytest

from spineage.analysis.settings import SagSettings, parse_sag_settings
from spineage.errors import UserError


def test_an_empty_section_is_the_defaults() -> None:
    settings = parse_sag_settings(None)
    assert settings == parse_sag_settings({}) == SagSettings()
    assert (settings.high_gap_years, settings.low_gap_years) == (5.0, -5.0)
    assert settings.demanding_work == ("moderate", "heavy") and settings.adjust_for == ("age", "sex")
    assert settings.splits == ("test", "full_test_abnormal")
    assert (settings.min_group_size, settings.smoothing_frac, settings.bootstrap_samples) == (5, 0.5, 200)


def test_values_are_read_and_params_are_json_friendly() -> None:
    settings = parse_sag_settings({"high_gap_years": 3, "low_gap_years": -2.5, "demanding_work": ["heavy"],
                                   "adjust_for": [], "splits": ["test"], "bootstrap_samples": 0})
    assert settings.high_gap_years == 3.0 and isinstance(settings.high_gap_years, float)
    assert settings.demanding_work == ("heavy",) and settings.adjust_for == () and settings.splits == ("test",)
    params = settings.as_params()
    assert params["demanding_work"] == ["heavy"] and params["bootstrap_samples"] == 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"high_gap": 5}, "Expected keys of the sag section"),
        ({"low_gap_years": 5.0}, "sag.low_gap_years below sag.high_gap_years"),
        ({"low_gap_years": 6.0, "high_gap_years": 2.0}, "sag.low_gap_years below"),
        ({"demanding_work": ["manual"]}, "'manual'"),
        ({"demanding_work": []}, "non-empty list"),
        ({"demanding_work": ["sedentary", "moderate", "heavy"]}, "leave at least one"),
        ({"demanding_work": ["heavy", "heavy"]}, "repeats"),
        ({"adjust_for": ["bmi"]}, "'bmi'"),
        ({"splits": ["holdout"]}, "'holdout'"),
        ({"min_group_size": 0}, "sag.min_group_size between"),
        ({"min_group_size": 2.5}, "an integer for sag.min_group_size"),
        ({"smoothing_frac": 1.5}, "sag.smoothing_frac between"),
        ({"bootstrap_samples": -1}, "sag.bootstrap_samples between"),
        ({"high_gap_years": "five"}, "a number for sag.high_gap_years"),
    ],
)
def test_bad_settings_are_one_line_user_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        parse_sag_settings(section)
    assert "\n" not in str(error.value)
