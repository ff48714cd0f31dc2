"""A normative range for every scan: split-conformal prediction calibrated on the validation split.

The validation series are normal spines the network never trained on. Their
absolute residuals |age − corrected age| calibrate (crepes' standard
``ConformalRegressor``) a half-width ``q`` such that, for a new normal spine,
its chronological age lies in ``corrected age ± q`` with probability at least
the nominal coverage (exchangeability; finite-sample corrected). A scan whose age
lies outside is ``atypical_for_age``; its normative SAG range is ``[−q, q]``.

Example:
    >>> residuals = np.array([-2.0, 1.0, 3.0, -0.5, 0.2, 4.0, -1.5, 2.5, -3.5, 0.8])
    >>> normative = calibrate_normative_range(residuals, coverage=0.8)
    >>> round(normative.half_width, 2), normative.n_calibration
    (3.5, 10)
    >>> normative.age_range(np.array([50.0])).tolist()
    [[46.5, 53.5]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from spineage.errors import UserError

TAG_PREFIX = "normative_range_"
"""Prefix of the MLflow tags (of the run and the registered model version) holding the range."""


@dataclass(frozen=True)
class NormativeRange:
    """A calibrated split-conformal range: ``corrected age ± half_width`` covers a normal spine's age.

    Args:
        coverage: nominal coverage (0.9: 90 %).
        half_width: the conformal quantile of the calibration residuals (years).
        n_calibration: calibration series.
        split: the split calibrated on.
    """

    coverage: float
    half_width: float
    n_calibration: int
    split: str = "validation"

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON and MLflow tags."""
        return asdict(self)

    def as_tags(self) -> dict[str, str]:
        """MLflow tags (``normative_range_coverage``, ``..._half_width``, ...): full precision."""
        return {f"{TAG_PREFIX}{key}": repr(value) if isinstance(value, float) else str(value) for key, value in self.as_dict().items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> NormativeRange | None:
        """The range stored by :meth:`as_tags`, or None when the tags hold none (a version never evaluated)."""
        values = {key[len(TAG_PREFIX):]: value for key, value in tags.items() if key.startswith(TAG_PREFIX)}
        if not {"coverage", "half_width", "n_calibration"} <= set(values):
            return None
        return cls(
            coverage=float(values["coverage"]), half_width=float(values["half_width"]),
            n_calibration=int(float(values["n_calibration"])), split=values.get("split", "validation"),
        )

    def age_range(self, corrected: np.ndarray) -> np.ndarray:
        """(series, 2): the low and high chronological age a normal spine with this corrected age has."""
        corrected = np.asarray(corrected, float)
        return np.stack([corrected - self.half_width, corrected + self.half_width], axis=1)

    def sag_range(self, corrected: np.ndarray) -> np.ndarray:
        """(series, 2): the normative range of SAG (corrected − chronological age) of each scan."""
        low_high = self.age_range(corrected)
        return np.stack([np.asarray(corrected, float) - low_high[:, 1], np.asarray(corrected, float) - low_high[:, 0]], axis=1)

    def atypical(self, corrected: np.ndarray, age: np.ndarray) -> np.ndarray:
        """Whether each scan's chronological age falls outside its normative range."""
        bounds = self.age_range(corrected)
        age = np.asarray(age, float)
        return (age < bounds[:, 0]) | (age > bounds[:, 1])


def calibrate_normative_range(residuals: np.ndarray, coverage: float, split: str = "validation") -> NormativeRange:
    """Calibrate the split-conformal range on residuals (age − corrected age) of normal, unseen series.

    Args:
        residuals: age − corrected age of the calibration series (signs do not matter).
        coverage: nominal coverage in (0, 1).
        split: the calibration split's name (recorded).

    Raises:
        UserError: for too few residuals to reach the coverage (the conformal quantile would be infinite).
    """
    from crepes import ConformalRegressor

    residuals = np.asarray(residuals, float)
    residuals = residuals[np.isfinite(residuals)]
    needed = math.ceil(1.0 / (1.0 - coverage)) - 1
    if len(residuals) < max(needed, 2):
        raise UserError(
            f"Expected at least {max(needed, 2)} {split} series to calibrate a {coverage:.0%} normative range, found {len(residuals)}"
        )
    regressor = ConformalRegressor().fit(residuals=residuals)
    _, high = regressor.predict_int(y_hat=np.zeros(1), confidence=coverage)[0]
    return NormativeRange(coverage=float(coverage), half_width=float(high), n_calibration=len(residuals), split=split)


def empirical_coverage(normative: NormativeRange, corrected: np.ndarray, age: np.ndarray) -> float:
    """The share of series whose age lies inside its normative range; NaN for none."""
    age = np.asarray(age, float)
    return float(np.mean(~normative.atypical(corrected, age))) if len(age) else math.nan
