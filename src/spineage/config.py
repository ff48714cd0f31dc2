"""``params.yaml`` turned into typed settings, with clear errors for bad values.

Example:
    >>> from spineage.config import load_params
    >>> params = load_params("params.yaml")  # doctest: +SKIP
    >>> params.synth.profile("ci").n_subjects  # doctest: +SKIP
    40
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import number

DEFAULT_LIFESTYLE_EFFECTS: dict[str, float] = {
    "packs_per_day": 0.93,
    "alcohol_days_per_week": 0.08,
    "sedentary_hours_per_day": 0.0,
    "work_moderate": 0.29,
    "work_heavy": 0.67,
    "exercise_moderate": -0.40,
    "exercise_vigorous": -0.79,
}
"""Years of biological spine age per unit: the MRI paper's reported associations."""


@dataclass(frozen=True)
class SynthProfile:
    """The size of a phantom cohort.

    Args:
        name: the profile's name in params.yaml.
        n_subjects: subjects to generate (repeat sessions come on top).
        mri_spacing_mm: native voxel size (slice, anterior-posterior, superior-inferior)
            of the reference site; other sites scale it a little.
        xray_shape: (rows, columns) of the lateral radiograph; DXA VFA is narrower.
    """

    name: str
    n_subjects: int
    mri_spacing_mm: tuple[float, float, float]
    xray_shape: tuple[int, int]


@dataclass(frozen=True)
class SynthSettings:
    """Settings of the phantom generator (the ``synth`` section)."""

    profile_name: str = "default"
    workers: int = 2
    noise_sd: float = 3.0
    repeat_fraction: float = 0.05
    lifestyle_effects: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIFESTYLE_EFFECTS))
    outcome_effects: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, SynthProfile] = field(default_factory=dict)

    def profile(self, name: str | None = None) -> SynthProfile:
        """Return the named profile (the configured one by default)."""
        name = name or self.profile_name
        if name not in self.profiles:
            raise UserError(f"Expected a synth profile among {sorted(self.profiles)}, found {name!r}")
        return self.profiles[name]


@dataclass(frozen=True)
class ValidationSettings:
    """Settings of the table gates (the ``validation`` section).

    Args:
        age_min: youngest plausible age at scan, in years.
        age_max: oldest plausible age at scan, in years.
    """

    age_min: float = 18.0
    age_max: float = 100.0


def parse_validation(raw: Any) -> ValidationSettings:
    """Turn the ``validation`` section of params.yaml into :class:`ValidationSettings`."""
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping for validation, found {raw!r}")
    unknown = sorted(set(raw) - {"age_min", "age_max"})
    if unknown:
        raise UserError(f"Expected validation settings among ['age_max', 'age_min'], found {unknown}")
    age_min = float(number(raw, "age_min", 18.0, "validation", 0, 150))
    age_max = float(number(raw, "age_max", 100.0, "validation", 0, 150))
    if age_min >= age_max:
        raise UserError(f"Expected validation.age_min below validation.age_max, found {age_min:g} and {age_max:g}")
    return ValidationSettings(age_min=age_min, age_max=age_max)


@dataclass(frozen=True)
class Params:
    """All settings of the pipeline."""

    seed: int
    data_source: str
    synth: SynthSettings
    path: Path | None = None
    validation: ValidationSettings = field(default_factory=ValidationSettings)


BUILTIN_PROFILES: dict[str, SynthProfile] = {
    "ci": SynthProfile("ci", 40, (8.0, 4.0, 4.0), (256, 128)),
    "default": SynthProfile("default", 600, (4.0, 2.0, 2.0), (512, 256)),
    "full": SynthProfile("full", 17200, (3.0, 1.0, 1.0), (1024, 512)),
}


def _profile(name: str, raw: Any) -> SynthProfile:
    where = f"synth.profiles.{name}"
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping for {where}, found {raw!r}")
    n_subjects = int(number(raw, "n_subjects", 0, where, 1, 10_000_000))
    spacing = raw.get("mri_spacing_mm")
    shape = raw.get("xray_shape")
    if not (isinstance(spacing, list) and len(spacing) == 3 and all(isinstance(v, (int, float)) and v > 0 for v in spacing)):
        raise UserError(f"Expected three positive numbers for {where}.mri_spacing_mm, found {spacing!r}")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v >= 32 for v in shape)):
        raise UserError(f"Expected two integers >= 32 for {where}.xray_shape, found {shape!r}")
    return SynthProfile(name, n_subjects, tuple(float(v) for v in spacing), (shape[0], shape[1]))


def parse_params(raw: dict[str, Any], path: Path | None = None) -> Params:
    """Turn the mapping read from params.yaml into :class:`Params`, checking every value."""
    if not isinstance(raw, dict):
        raise UserError(f"Expected params to be a mapping, found {type(raw).__name__}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"Expected a non-negative integer seed, found {seed!r}")
    data = raw.get("data") or {}
    source = str(data.get("source", "synthetic"))
    synth_raw = raw.get("synth") or {}
    profiles = dict(BUILTIN_PROFILES)
    for name, value in (synth_raw.get("profiles") or {}).items():
        profiles[name] = _profile(name, value)
    effects = dict(DEFAULT_LIFESTYLE_EFFECTS)
    for key, value in (synth_raw.get("lifestyle_effects") or {}).items():
        if key not in effects:
            raise UserError(f"Expected a lifestyle effect among {sorted(effects)}, found {key!r}")
        effects[key] = number({key: value}, key, 0.0, "synth.lifestyle_effects", -20, 20)
    outcome_effects = {}
    for key, value in (synth_raw.get("outcome_effects") or {}).items():
        outcome_effects[key] = number({key: value}, key, 1.0, "synth.outcome_effects", 0.01, 100)
    synth = SynthSettings(
        profile_name=str(synth_raw.get("profile", "default")),
        workers=int(number(synth_raw, "workers", 2, "synth", 1, 256)),
        noise_sd=number(synth_raw, "noise_sd", 3.0, "synth", 0.0, 30.0),
        repeat_fraction=number(synth_raw, "repeat_fraction", 0.05, "synth", 0.0, 1.0),
        lifestyle_effects=effects,
        outcome_effects=outcome_effects,
        profiles=profiles,
    )
    synth.profile()  # fail early on an unknown profile name
    validation = parse_validation(raw.get("validation") or {})
    return Params(seed=seed, data_source=source, synth=synth, path=path, validation=validation)


def read_params_mapping(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The params file as a mapping, after the shared checks of :func:`parse_params`.

    Stages whose sections live in their own modules read them from here.

    Raises:
        UserError: if the file is missing, is not YAML, or holds a bad value.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected a params file at {path}, found nothing there")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"Expected valid YAML in {path}: {str(error).splitlines()[0]}") from None
    parse_params(raw, path)
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml``.

    Raises:
        UserError: if the file is missing, is not YAML, or holds a bad value.
    """
    return parse_params(read_params_mapping(path), Path(path))
