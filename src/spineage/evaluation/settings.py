"""The ``evaluate`` section of params.yaml turned into typed settings, with clear errors for bad values.

Example:
    >>> settings = parse_evaluation_settings({"bias_correction": "beheshti"})
    >>> settings.bias_correction, settings.fit_on, settings.coverage
    ('beheshti', 'validation', 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import choice, field_names, number, section_mapping

BIAS_CORRECTIONS: tuple[str, ...] = ("cole", "beheshti")
"""Cole's (the MRI paper: predicted regressed on age) and Beheshti's (the radiograph paper: gap regressed on age)."""

TRAIN_CV = "train_cv"
"""``fit_on`` (and the correction's split) for the fit on out-of-fold predictions of the train split."""

FIT_ON: tuple[str, ...] = ("validation", TRAIN_CV)
"""Where the bias correction is fitted: never on a split its metrics are reported on (test, the full test set)."""

GRADCAM_LAYERS: tuple[str, ...] = ("auto", "1", "2", "3", "4", "5")
"""``auto``: the deepest convolution block whose map keeps ``gradcam_min_cells`` cells; else a block number."""


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings of the evaluate stage (the ``evaluate`` section).

    The field defaults are params.yaml's values (a test holds them equal) and the
    parser's fallbacks for keys left out of the section.

    Args:
        bias_correction: cole or beheshti.
        fit_on: validation (the split the network never trained on) or train_cv
            (the radiograph paper's cross-validated fit on train: ``cv_folds`` extra trainings).
        cv_folds: folds of ``fit_on: train_cv``.
        coverage: nominal coverage of the split-conformal normative range (0.9: 90 %).
        large_gap_years: scans with |SAG| above this are listed with their findings.
        gradcam_layer: ``auto`` or the convolution block (1-5) whose activations Grad-CAM weighs.
        gradcam_min_cells: ``auto`` takes the deepest block whose map has at least this many cells.
        gradcam_cases: scans per kind (youngest, oldest, largest |SAG|) in the Grad-CAM montage.
    """

    bias_correction: str = "cole"
    fit_on: str = "validation"
    cv_folds: int = 10
    coverage: float = 0.9
    large_gap_years: float = 15.0
    gradcam_layer: str = "auto"
    gradcam_min_cells: int = 32
    gradcam_cases: int = 2

    def as_params(self) -> dict[str, Any]:
        """Flat, MLflow-loggable settings."""
        return asdict(self)


_DEFAULTS = EvaluationSettings()
_KEYS = field_names(EvaluationSettings)


def _number(section: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, getattr(_DEFAULTS, key), "evaluate", low, high, integer)


def parse_evaluation_settings(section: Any) -> EvaluationSettings:
    """Turn the ``evaluate`` section of params.yaml into :class:`EvaluationSettings`, checking every value.

    Raises:
        UserError: for an unknown key, a value of the wrong type or out of range, or a fit on the test split.
    """
    section = section_mapping(section, "evaluate", _KEYS)
    fit_on = section.get("fit_on", _DEFAULTS.fit_on)
    if isinstance(fit_on, str) and (fit_on == "test" or fit_on.startswith("full_test")):
        raise UserError(
            f"Expected evaluate.fit_on among {list(FIT_ON)}, found {fit_on!r}: a correction fitted on the test "
            "split would be measured on the series it was fitted on"
        )
    layer = section.get("gradcam_layer", _DEFAULTS.gradcam_layer)
    if isinstance(layer, int) and not isinstance(layer, bool):
        layer = str(layer)
    return EvaluationSettings(
        bias_correction=choice(section, "bias_correction", _DEFAULTS.bias_correction, "evaluate", BIAS_CORRECTIONS),
        fit_on=choice(section, "fit_on", _DEFAULTS.fit_on, "evaluate", FIT_ON),
        cv_folds=int(_number(section, "cv_folds", 2, 100, integer=True)),
        coverage=float(_number(section, "coverage", 0.5, 0.995)),
        large_gap_years=float(_number(section, "large_gap_years", 0.0, 100.0)),
        gradcam_layer=choice({"gradcam_layer": layer}, "gradcam_layer", _DEFAULTS.gradcam_layer, "evaluate", GRADCAM_LAYERS),
        gradcam_min_cells=int(_number(section, "gradcam_min_cells", 1, 1_000_000, integer=True)),
        gradcam_cases=int(_number(section, "gradcam_cases", 0, 20, integer=True)),
    )


def load_evaluation_settings(params: str | Path, overrides: Sequence[str] = ()) -> EvaluationSettings:
    """The ``evaluate`` section of a params file (``overrides``: ``section.key=value`` on top), checked.

    Raises:
        UserError: if the file is missing or a value is bad.
    """
    from spineage.config import read_params_mapping

    return parse_evaluation_settings(read_params_mapping(params, overrides).get("evaluate"))
