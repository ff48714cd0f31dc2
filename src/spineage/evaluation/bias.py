"""Bias correction of predicted ages: fitted once, stored with the model version, applied the same way everywhere.

Brain- and spine-age models regress to the mean: the young are predicted older, the
old younger, so the raw gap (predicted − chronological) correlates with age. Two
linear corrections, each fitted on series the network never trained on:

==========  ===============================================  ===========================================
method      fit (least squares)                              corrected age
==========  ===============================================  ===========================================
cole        predicted = slope · age + intercept              (predicted − intercept) / slope
beheshti    predicted − age = slope · age + intercept        predicted − (slope · age + intercept)
==========  ===============================================  ===========================================

Cole's (the MRI paper) needs no chronological age to apply; Beheshti's (the
radiograph paper) does. Evaluation and inference both call :func:`apply_bias_correction`
with the :class:`BiasCorrection` that the evaluate stage stored as tags of the
registered model version (:meth:`BiasCorrection.as_tags`, :meth:`BiasCorrection.from_tags`).

Example:
    >>> import numpy as np
    >>> correction = fit_bias_correction("cole", np.array([42.0, 50.0, 58.0]), np.array([40.0, 50.0, 60.0]), "validation")
    >>> correction.slope, correction.intercept
    (0.8, 10.0)
    >>> apply_bias_correction(correction, np.array([50.0, 58.0])).tolist()
    [50.0, 60.0]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spineage.errors import UserError

METHODS: tuple[str, ...] = ("cole", "beheshti")
"""The corrections :func:`fit_bias_correction` knows."""

REFUSED_SPLITS: tuple[str, ...] = ("test", "full_test_abnormal", "full_test_other", "full_test")
"""Splits whose metrics are reported: a correction fitted on them would be measured on its own fit."""

TAG_PREFIX = "bias_correction_"
"""Prefix of the MLflow tags (run and model version) holding the correction."""


@dataclass(frozen=True)
class BiasCorrection:
    """A fitted linear bias correction.

    Args:
        method: cole or beheshti.
        slope: the fitted slope (cole: of predicted on age; beheshti: of the gap on age).
        intercept: the fitted intercept (years).
        split: the split it was fitted on (validation; never test).
        n: series it was fitted on.
    """

    method: str
    slope: float
    intercept: float
    split: str
    n: int

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BiasCorrection:
        """The correction written by :meth:`as_dict` (or read back from tags), checked.

        Raises:
            UserError: for a missing or bad value.
        """
        try:
            correction = cls(
                method=str(values["method"]), slope=float(values["slope"]), intercept=float(values["intercept"]),
                split=str(values["split"]), n=int(values["n"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"Expected a bias correction with method, slope, intercept, split and n, found {values!r} ({error})") from None
        _check(correction)
        return correction

    def as_tags(self) -> dict[str, str]:
        """MLflow tags (``bias_correction_method``, ``..._slope``, ...): full precision, so inference repeats it exactly."""
        return {f"{TAG_PREFIX}{key}": repr(value) if isinstance(value, float) else str(value) for key, value in self.as_dict().items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> BiasCorrection:
        """The correction stored by :meth:`as_tags` (e.g. a registered model version's tags).

        Raises:
            UserError: if the tags hold no complete correction.
        """
        return cls.from_dict({key[len(TAG_PREFIX):]: value for key, value in tags.items() if key.startswith(TAG_PREFIX)})

    def __str__(self) -> str:
        return f"{self.method} (slope {self.slope:.4f}, intercept {self.intercept:.3f} y; fitted on {self.n} {self.split} series)"


def _check(correction: BiasCorrection) -> None:
    if correction.method not in METHODS:
        raise UserError(f"Expected a bias correction method among {list(METHODS)}, found {correction.method!r}")
    if not (math.isfinite(correction.slope) and math.isfinite(correction.intercept)):
        raise UserError(f"Expected a finite bias-correction slope and intercept, found {correction.slope} and {correction.intercept}")
    if correction.method == "cole" and correction.slope <= 0:
        raise UserError(
            f"Expected a positive slope of predicted on chronological age for Cole's correction, found {correction.slope:.4f} "
            f"on {correction.n} {correction.split} series: the predictions do not follow age"
        )


def refuse_test_split(split: str) -> None:
    """Raise a UserError when ``split`` is one whose metrics are reported (test, the full test set)."""
    if split in REFUSED_SPLITS or split.startswith("full_test"):
        raise UserError(
            f"Expected the bias correction to be fitted on validation (or train_cv), found {split!r}: "
            "a correction fitted on the test split would be measured on the series it was fitted on"
        )


def fit_bias_correction(method: str, predicted: np.ndarray, age: np.ndarray, split: str) -> BiasCorrection:
    """Fit Cole's or Beheshti's correction by least squares on one split's predictions.

    Args:
        method: cole or beheshti.
        predicted: predicted ages (years) of the split's series.
        age: their chronological ages (years).
        split: the split's name; test and the full test set are refused.

    Returns:
        The fitted :class:`BiasCorrection`.

    Raises:
        UserError: for an unknown method, a test split, fewer than 3 series, ages without spread,
            or (Cole) predictions that do not rise with age.

    Example:
        >>> fit_bias_correction("beheshti", np.array([42.0, 50.0, 58.0]), np.array([40.0, 50.0, 60.0]), "validation").slope
        -0.2
    """
    if method not in METHODS:
        raise UserError(f"Expected a bias correction method among {list(METHODS)}, found {method!r}")
    refuse_test_split(split)
    predicted, age = np.asarray(predicted, float), np.asarray(age, float)
    if predicted.shape != age.shape:
        raise UserError(f"Expected one predicted age per chronological age, found {predicted.shape} and {age.shape}")
    finite = np.isfinite(predicted) & np.isfinite(age)
    predicted, age = predicted[finite], age[finite]
    if len(age) < 3 or np.ptp(age) == 0:
        raise UserError(f"Expected at least 3 {split} series of different ages to fit the bias correction, found {len(age)}")
    target = predicted if method == "cole" else predicted - age
    slope, intercept = np.polyfit(age, target, 1)
    correction = BiasCorrection(method, round(float(slope), 12), round(float(intercept), 12), split, len(age))
    _check(correction)
    return correction


def apply_bias_correction(correction: BiasCorrection, predicted: np.ndarray, age: np.ndarray | None = None) -> np.ndarray:
    """Corrected ages (years) of ``predicted`` by a fitted correction.

    Args:
        correction: from :func:`fit_bias_correction` or :meth:`BiasCorrection.from_tags`.
        predicted: predicted ages (years).
        age: chronological ages (years); needed by Beheshti's correction only.

    Raises:
        UserError: for Beheshti's correction without ages.
    """
    predicted = np.asarray(predicted, float)
    if correction.method == "cole":
        return (predicted - correction.intercept) / correction.slope
    if age is None:
        raise UserError("Expected chronological ages to apply Beheshti's bias correction, found none")
    age = np.asarray(age, float)
    return predicted - (correction.slope * age + correction.intercept)
