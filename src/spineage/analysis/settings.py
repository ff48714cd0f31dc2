"""The ``sag`` section of params.yaml turned into typed settings, with clear errors for bad values.

Example:
    >>> settings = parse_sag_settings({"high_gap_years": 4.0, "demanding_work": ["heavy"]})
    >>> settings.high_gap_years, settings.low_gap_years, settings.demanding_work
    (4.0, -5.0, ('heavy',))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spineage.cohort.splits import FULL_TEST_ABNORMAL, SPLITS, TEST
from spineage.errors import UserError
from spineage.settings_checks import field_names, number, section_mapping
from spineage.validation.raw import WORK_LEVELS

SECTION = "sag"
"""The name of the section in params.yaml."""

ADJUSTMENTS: tuple[str, ...] = ("age", "sex")
"""Covariates an adjusted model may add: chronological age (years) and sex (M against F)."""


@dataclass(frozen=True)
class SagSettings:
    """Settings of the SAG analysis (the ``sag`` section; the MRI paper's section 4.5).

    Args:
        high_gap_years: series with SAG above this are the high group of the odds ratios (Figure 6).
        low_gap_years: series with SAG below this are the low group; below ``high_gap_years``.
        demanding_work: work levels (of sedentary, moderate, heavy) counted as physically demanding in Figure 7.
        adjust_for: covariates of the adjusted associations (of age, sex); none repeats the unadjusted fit.
        min_group_size: a category with fewer series is reported with its n but no estimate.
        smoothing_frac: LOWESS span (share of the series) of the curves of Figure 7.
        bootstrap_samples: resamples of the 95 % band around each curve of Figure 7 (0: no band).
        splits: the splits analysed. The default is the full test set less ``full_test_other``
            (series outside the age brackets, which the paper does not assess).
    """

    high_gap_years: float = 5.0
    low_gap_years: float = -5.0
    demanding_work: tuple[str, ...] = ("moderate", "heavy")
    adjust_for: tuple[str, ...] = ADJUSTMENTS
    min_group_size: int = 5
    smoothing_frac: float = 0.5
    bootstrap_samples: int = 200
    splits: tuple[str, ...] = (TEST, FULL_TEST_ABNORMAL)

    def as_params(self) -> dict[str, Any]:
        """Flat, MLflow- and JSON-loggable settings (tuples as lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


_DEFAULTS = SagSettings()
_KEYS = field_names(SagSettings)


def _number(section: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, getattr(_DEFAULTS, key), SECTION, low, high, integer)


def _words(section: dict[str, Any], key: str, choices: Sequence[str], *, allow_empty: bool = False) -> tuple[str, ...]:
    """``section[key]`` (or the default), a list of distinct words of ``choices``."""
    value = section.get(key, list(getattr(_DEFAULTS, key)))
    expected = f"a list of distinct values among {list(choices)} for {SECTION}.{key}"
    if not isinstance(value, (list, tuple)) or not (value or allow_empty):
        raise UserError(f"Expected {'a possibly empty' if allow_empty else 'a non-empty'} list of values among "
                        f"{list(choices)} for {SECTION}.{key}, found {value!r}")
    unknown = [item for item in value if item not in choices]
    if unknown:
        raise UserError(f"Expected {expected}, found {unknown[0]!r}")
    if len(set(value)) != len(value):
        raise UserError(f"Expected {expected}, found {list(value)!r} with repeats")
    return tuple(value)


def parse_sag_settings(section: Any) -> SagSettings:
    """Turn the ``sag`` section of params.yaml into :class:`SagSettings`, checking every value.

    Raises:
        UserError: for an unknown key, a value of the wrong type or out of range, a low threshold
            not below the high one, or demanding work covering every work level.
    """
    section = section_mapping(section, SECTION, _KEYS)
    high = float(_number(section, "high_gap_years", -50.0, 50.0))
    low = float(_number(section, "low_gap_years", -50.0, 50.0))
    if not low < high:
        raise UserError(f"Expected {SECTION}.low_gap_years below {SECTION}.high_gap_years ({high:g}), found {low:g}")
    demanding = _words(section, "demanding_work", WORK_LEVELS)
    if set(demanding) == set(WORK_LEVELS):
        raise UserError(f"Expected {SECTION}.demanding_work to leave at least one of {list(WORK_LEVELS)} out "
                        f"(else Figure 7 compares nothing), found {list(demanding)}")
    return SagSettings(
        high_gap_years=high,
        low_gap_years=low,
        demanding_work=demanding,
        adjust_for=_words(section, "adjust_for", ADJUSTMENTS, allow_empty=True),
        min_group_size=int(_number(section, "min_group_size", 1, 100_000, integer=True)),
        smoothing_frac=float(_number(section, "smoothing_frac", 0.05, 1.0)),
        bootstrap_samples=int(_number(section, "bootstrap_samples", 0, 100_000, integer=True)),
        splits=_words(section, "splits", SPLITS),
    )


def load_sag_settings(params: str | Path, overrides: Sequence[str] = ()) -> SagSettings:
    """The ``sag`` section of a params file (``overrides``: ``section.key=value`` on top), checked.

    Raises:
        UserError: if the file is missing or a value is bad.
    """
    from spineage.config import read_params_mapping

    return parse_sag_settings(read_params_mapping(params, overrides).get(SECTION))
