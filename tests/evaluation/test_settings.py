"""The evaluate section: defaults, strict keys and values, and no fit on test."""

from __future__ import annotations

import pytest

from spineage.errors import UserError
from spineage.evaluation.settings import EvaluationSettings, parse_evaluation_settings


def test_an_empty_section_is_the_defaults() -> None:
    assert parse_evaluation_settings({}) == EvaluationSettings()
    assert parse_evaluation_settings(None).bias_correction == "cole"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"bias_corection": "cole"}, "Expected keys of the evaluate section"),
        ({"bias_correction": "lowess"}, "evaluate.bias_correction among"),
        ({"fit_on": "test"}, "fitted on the test split"),
        ({"fit_on": "full_test_abnormal"}, "fitted on the test split"),
        ({"fit_on": "train"}, "evaluate.fit_on among"),
        ({"coverage": 1.0}, "evaluate.coverage between"),
        ({"coverage": "90%"}, "a number for evaluate.coverage"),
        ({"gradcam_layer": 6}, "evaluate.gradcam_layer among"),
        ({"gradcam_cases": 1.5}, "an integer for evaluate.gradcam_cases"),
    ],
)
def test_bad_settings_are_one_line_user_errors(section: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        parse_evaluation_settings(section)
    assert "\n" not in str(error.value)


def test_a_block_number_is_accepted_as_a_number() -> None:
    assert parse_evaluation_settings({"gradcam_layer": 4}).gradcam_layer == "4"
    assert parse_evaluation_settings({"fit_on": "train_cv", "bias_correction": "beheshti"}).fit_on == "train_cv"
