"""``params.yaml`` turned into typed settings, with clear errors for bad values.

Example:
    >>> from spineage.config import load_params
    >>> params = load_params("params.yaml")  # doctest: +SKIP
    >>> params.synth.profile("ci").n_subjects  # doctest: +SKIP
    40
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import field_names, known_keys, number

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


BUILTIN_PROFILES: dict[str, SynthProfile] = {
    "ci": SynthProfile("ci", 40, (8.0, 4.0, 4.0), (256, 128)),
    "default": SynthProfile("default", 600, (4.0, 2.0, 2.0), (512, 256)),
    "full": SynthProfile("full", 17200, (3.0, 1.0, 1.0), (1024, 512)),
}
"""The profiles of params.yaml; a profile there replaces the one of the same name here."""

OUTCOME_EFFECT_KEYS: tuple[str, ...] = (
    "hr_fracture_per_sd", "hr_vertebral_fracture_per_sd", "hr_nonvertebral_fracture_per_sd", "hr_death_per_sd",
)
"""The planted hazard ratios per SD of the spine age gap that ``synth.outcome_effects`` may set.

Their defaults are those of :class:`spineage.synth.outcomes.OutcomeEffects` (the one place
they are written); config names the keys only, so that it need not import the phantom.
"""

_PROFILE_KEYS = frozenset(f.name for f in fields(SynthProfile)) - {"name"}


@dataclass(frozen=True)
class SynthSettings:
    """Settings of the phantom generator (the ``synth`` section).

    Args:
        profile_name: the profile to generate (``profile`` in params.yaml).
        workers: processes rendering scans in parallel.
        noise_sd: SD (years) of the individual biological-age noise.
        repeat_fraction: share of subjects with a second MRI session.
        lifestyle_effects: planted years of spine age per unit of each lifestyle factor.
        outcome_effects: planted hazard ratios (:data:`OUTCOME_EFFECT_KEYS`) that differ from,
            or restate, :class:`~spineage.synth.outcomes.OutcomeEffects`' defaults.
        profiles: cohort sizes by name.
    """

    profile_name: str = "default"
    workers: int = 2
    noise_sd: float = 3.0
    repeat_fraction: float = 0.05
    lifestyle_effects: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIFESTYLE_EFFECTS))
    outcome_effects: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, SynthProfile] = field(default_factory=lambda: dict(BUILTIN_PROFILES))

    def profile(self, name: str | None = None) -> SynthProfile:
        """Return the named profile (the configured one by default)."""
        name = name or self.profile_name
        if name not in self.profiles:
            raise UserError(f"Expected a synth profile among {sorted(self.profiles)}, found {name!r}")
        return self.profiles[name]


_SYNTH_KEYS = frozenset({"profile", "workers", "noise_sd", "repeat_fraction", "lifestyle_effects", "outcome_effects", "profiles"})
"""Keys of the ``synth`` section (``profile`` sets :attr:`SynthSettings.profile_name`)."""


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
    known_keys(raw, field_names(ValidationSettings), "the validation section")
    defaults = ValidationSettings()
    age_min = float(number(raw, "age_min", defaults.age_min, "validation", 0, 150))
    age_max = float(number(raw, "age_max", defaults.age_max, "validation", 0, 150))
    if age_min >= age_max:
        raise UserError(f"Expected validation.age_min below validation.age_max, found {age_min:g} and {age_max:g}")
    return ValidationSettings(age_min=age_min, age_max=age_max)


@dataclass(frozen=True)
class Params:
    """The settings of params.yaml that this module owns (the other sections have their own modules).

    Args:
        seed: the one seed of the pipeline.
        data_source: ``synthetic``, or the path of your own raw-cohort folder (``data.source``).
        synth: the ``synth`` section.
        path: the file the settings were read from (None when built in code).
        validation: the ``validation`` section.
    """

    seed: int = 20251121
    data_source: str = "synthetic"
    synth: SynthSettings = field(default_factory=SynthSettings)
    path: Path | None = None
    validation: ValidationSettings = field(default_factory=ValidationSettings)


PARAMS_KEYS: tuple[str, ...] = (
    "seed", "data", "synth", "validation", "findings", "cohort", "preprocess", "segmentation", "train", "evaluate",
    "sag", "truth", "radiograph", "predict",
)
"""The top-level keys of params.yaml, every one required in the file. ``seed``, ``data``, ``synth`` and
``validation`` are read here; ``findings``, ``cohort``, ``preprocess``, ``segmentation``, ``train``,
``evaluate``, ``sag``, ``truth``, ``radiograph`` and ``predict`` by the settings modules of their stages."""


def _profile(name: str, raw: Any) -> SynthProfile:
    where = f"synth.profiles.{name}"
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping for {where}, found {raw!r}")
    known_keys(raw, _PROFILE_KEYS, where)
    builtin = BUILTIN_PROFILES.get(name)  # a built-in profile's keys may be left out; a new one needs them all
    n_subjects = int(number(raw, "n_subjects", builtin.n_subjects if builtin else 0, where, 1, 10_000_000, integer=True))
    spacing = raw.get("mri_spacing_mm", list(builtin.mri_spacing_mm) if builtin else None)
    shape = raw.get("xray_shape", list(builtin.xray_shape) if builtin else None)
    if not (isinstance(spacing, (list, tuple)) and len(spacing) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spacing)):
        raise UserError(f"Expected three positive numbers for {where}.mri_spacing_mm, found {spacing!r}")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in shape)):
        raise UserError(f"Expected two integers >= 32 for {where}.xray_shape, found {shape!r}")
    return SynthProfile(name, n_subjects, tuple(float(v) for v in spacing), (shape[0], shape[1]))


def _subsection(section: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = section.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"Expected a mapping for {where}.{key}, found {value!r}")
    return value


def parse_synth(raw: Any) -> SynthSettings:
    """Turn the ``synth`` section of params.yaml into :class:`SynthSettings` (defaults for keys left out).

    Raises:
        UserError: for an unknown key (in the section, a profile or the effects) or a bad value.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping for the synth section of params.yaml, found {raw!r}")
    known_keys(raw, _SYNTH_KEYS, "the synth section")
    defaults = SynthSettings()
    profiles = dict(defaults.profiles)
    for name, value in _subsection(raw, "profiles", "synth").items():
        profiles[str(name)] = _profile(str(name), value)
    lifestyle = _subsection(raw, "lifestyle_effects", "synth")
    known_keys(lifestyle, DEFAULT_LIFESTYLE_EFFECTS, "synth.lifestyle_effects")
    effects = dict(defaults.lifestyle_effects)
    for key in lifestyle:
        effects[key] = number(lifestyle, key, 0.0, "synth.lifestyle_effects", -20, 20)
    outcomes = _subsection(raw, "outcome_effects", "synth")
    known_keys(outcomes, OUTCOME_EFFECT_KEYS, "synth.outcome_effects")
    outcome_effects = {key: number(outcomes, key, 1.0, "synth.outcome_effects", 0.01, 100) for key in outcomes}
    profile_name = raw.get("profile", defaults.profile_name)
    if not isinstance(profile_name, str):
        raise UserError(f"Expected a profile name for synth.profile, found {profile_name!r}")
    synth = SynthSettings(
        profile_name=profile_name,
        workers=int(number(raw, "workers", defaults.workers, "synth", 1, 256, integer=True)),
        noise_sd=float(number(raw, "noise_sd", defaults.noise_sd, "synth", 0.0, 30.0)),
        repeat_fraction=float(number(raw, "repeat_fraction", defaults.repeat_fraction, "synth", 0.0, 1.0)),
        lifestyle_effects=effects,
        outcome_effects=outcome_effects,
        profiles=profiles,
    )
    synth.profile()  # fail early on an unknown profile name
    return synth


def parse_data_source(raw: Any) -> str:
    """The ``data`` section's ``source``: ``synthetic`` or the path of a raw-cohort folder."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping for the data section of params.yaml, found {raw!r}")
    known_keys(raw, {"source"}, "the data section")
    source = raw.get("source", Params().data_source)
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"Expected `synthetic` or the path of a raw-cohort folder for data.source, found {source!r}")
    return source.strip()


def parse_params(raw: dict[str, Any], path: Path | None = None) -> Params:
    """Turn the mapping read from params.yaml into :class:`Params`, checking every value.

    Sections left out of ``raw`` take the code defaults (the dataclass fields); a params
    *file* must hold every section (:func:`read_params_mapping` checks that).

    Raises:
        UserError: for an unknown top-level key or a bad value.
    """
    if not isinstance(raw, dict):
        raise UserError(f"Expected params to be a mapping, found {type(raw).__name__}")
    known_keys(raw, PARAMS_KEYS, "params.yaml")
    defaults = Params()
    seed = raw.get("seed", defaults.seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"Expected a non-negative integer seed, found {seed!r}")
    validation = raw.get("validation")
    return Params(
        seed=seed,
        data_source=parse_data_source(raw.get("data")),
        synth=parse_synth(raw.get("synth")),
        path=path,
        validation=defaults.validation if validation is None else parse_validation(validation),
    )


def check_params_shape(raw: Any, path: str | Path = "params.yaml") -> dict[str, Any]:
    """The params file's content as a mapping holding every key of :data:`PARAMS_KEYS` and no other.

    A section that is absent (or empty: ``cohort:`` with nothing under it) would otherwise be
    silently replaced by code defaults, so a file must spell each one out (``cohort: {}`` for
    all defaults).

    Raises:
        UserError: for an empty file, a file that is not a mapping, an unknown key or a missing one.
    """
    if raw is None:
        raise UserError(f"Expected the sections {list(PARAMS_KEYS)} in {path}, found an empty file")
    if not isinstance(raw, dict):
        raise UserError(f"Expected a mapping of sections in {path}, found a {type(raw).__name__}")
    known_keys(raw, PARAMS_KEYS, str(path))
    missing = [key for key in PARAMS_KEYS if raw.get(key) is None]
    if missing:
        what = "value" if missing[0] == "seed" else "section"
        more = f" (nor {', '.join(f'`{key}`' for key in missing[1:])})" if len(missing) > 1 else ""
        raise UserError(f"Expected a `{missing[0]}` {what} in {path}, found none{more}")
    return raw


def apply_overrides(raw: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """A copy of the params mapping with ``section.key=value`` assignments applied (the CLI's ``--set``).

    Each value is read as YAML (``0.1``, ``null``, ``[8, 24, 96]``, ``smooth_l1``). Only a
    key the mapping already holds can be set, so that a misspelt one fails instead of
    being ignored; the section's own checks then judge the value.

    Example:
        >>> apply_overrides({"train": {"loss": "mse"}}, ["train.loss=smooth_l1"])
        {'train': {'loss': 'smooth_l1'}}

    Raises:
        UserError: for an assignment without ``=``, a key path the params do not hold, or a value that is not YAML.
    """
    import copy

    import yaml

    changed = copy.deepcopy(raw)
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key.strip():
            raise UserError(f"Expected --set SECTION.KEY=VALUE (e.g. train.loss=smooth_l1), found {assignment!r}")
        *parents, leaf = key.strip().split(".")
        mapping = changed
        for depth, part in enumerate(parents):
            mapping = mapping.get(part) if isinstance(mapping, dict) else None
            if not isinstance(mapping, dict):
                raise UserError(f"Expected --set to name a key of the params file, found {key!r} ({'.'.join(parents[:depth + 1])} is not a section)")
        if not isinstance(mapping, dict) or leaf not in mapping:
            raise UserError(f"Expected --set to name a key of the params file, found {key!r}, which it does not hold")
        try:
            mapping[leaf] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserError(f"Expected a YAML value in --set {assignment!r}, found an error: {str(error).splitlines()[0]}") from None
    return changed


def read_params_mapping(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The params file as a mapping, after :func:`check_params_shape` and the checks of :func:`parse_params`.

    Stages whose sections live in their own modules read them from here.

    Args:
        path: the params file.
        overrides: ``section.key=value`` assignments applied on top (:func:`apply_overrides`),
            e.g. an ablation cell's one changed setting.

    Raises:
        UserError: if the file is missing, is not YAML, lacks a section, has an unknown
            top-level key, holds a bad value, or an override names a key it does not hold.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected a params file at {path}, found nothing there")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"Expected valid YAML in {path}: {str(error).splitlines()[0]}") from None
    check_params_shape(raw, path)
    raw = apply_overrides(raw, overrides) if overrides else raw
    parse_params(raw, path)
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check ``params.yaml``.

    Raises:
        UserError: if the file is missing, is not YAML, or holds a bad value.
    """
    return parse_params(read_params_mapping(path), Path(path))
