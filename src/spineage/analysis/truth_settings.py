"""The ``truth`` section of params.yaml: how truth recovery judges, and the external truth cohort's seed and size.

Example:
    >>> settings = parse_truth_settings({"n_subjects": 500})
    >>> settings.n_subjects, settings.min_effect_years, settings.splits
    (500, 0.5, ('test', 'full_test_abnormal'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import field_names, number, section_mapping


@dataclass(frozen=True)
class TruthSettings:
    """Settings of truth recovery and of the external truth cohort (the ``truth`` section).

    Args:
        splits: the prediction table's splits judged (the full test set: never the train split).
        min_effect_years: planted effects at least this large must be found (sign right, p < alpha).
        alpha: the tests' level (95 % CIs for 0.05).
        target_power: the power each such effect's test should have; sizes the truth cohort.
        seed: the seed of the external truth cohort (``make truth``), not the default run's.
        n_subjects: its size, from the power calculation on the default run.
    """

    splits: tuple[str, ...] = ("test", "full_test_abnormal")
    min_effect_years: float = 0.5
    alpha: float = 0.05
    target_power: float = 0.9
    seed: int = 20251122
    n_subjects: int = 4000

    def as_params(self) -> dict[str, Any]:
        """Flat settings (lists for tuples)."""
        values = asdict(self)
        values["splits"] = list(self.splits)
        return values


_DEFAULTS = TruthSettings()


def parse_truth_settings(section: Any) -> TruthSettings:
    """Turn the ``truth`` section of params.yaml into :class:`TruthSettings`.

    Raises:
        UserError: for an unknown key or a bad value.
    """
    section = section_mapping(section, "truth", field_names(TruthSettings))
    splits = section.get("splits", list(_DEFAULTS.splits))
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) and s for s in splits):
        raise UserError(f"Expected truth.splits to be a list of split names, found {splits!r}")
    if "train" in splits:
        raise UserError("Expected truth.splits without train, found train: the network was fitted on those series")
    return TruthSettings(
        splits=tuple(splits),
        min_effect_years=float(number(section, "min_effect_years", _DEFAULTS.min_effect_years, "truth", 0.0, 100.0)),
        alpha=float(number(section, "alpha", _DEFAULTS.alpha, "truth", 1e-6, 0.5)),
        target_power=float(number(section, "target_power", _DEFAULTS.target_power, "truth", 0.5, 0.999)),
        seed=int(number(section, "seed", _DEFAULTS.seed, "truth", 0, 2**32 - 1, integer=True)),
        n_subjects=int(number(section, "n_subjects", _DEFAULTS.n_subjects, "truth", 10, 1_000_000, integer=True)),
    )


def load_truth_settings(params: str | Path, overrides: Sequence[str] = ()) -> TruthSettings:
    """The ``truth`` section of a params file (``overrides``: ``section.key=value``), checked."""
    from spineage.config import read_params_mapping

    return parse_truth_settings(read_params_mapping(params, overrides).get("truth"))
