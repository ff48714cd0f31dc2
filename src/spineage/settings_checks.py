"""Checks shared by every section of params.yaml: one sentence naming the setting, what was expected and found.

Example:
    >>> number({"epochs": 5}, "epochs", 10, "segmentation", 1, 1000, integer=True)
    5
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from spineage.errors import UserError


def known_keys(mapping: dict[str, Any], keys: Iterable[str], where: str) -> None:
    """Refuse any key of ``mapping`` outside ``keys``, naming the known ones (``where``: e.g. "the train section").

    Example:
        >>> known_keys({"noise_sdd": 25}, ["noise_sd", "workers"], "the synth section")
        Traceback (most recent call last):
        ...
        spineage.errors.UserError: Expected keys of the synth section among ['noise_sd', 'workers'], found ['noise_sdd']
    """
    unknown = sorted(set(mapping) - set(keys), key=str)
    if unknown:
        raise UserError(f"Expected keys of {where} among {sorted(keys)}, found {unknown}")


def section_mapping(section: Any, name: str, keys: Iterable[str]) -> dict[str, Any]:
    """The ``name`` section as a mapping ({} when absent), refusing anything but known keys.

    A params *file* without the section is refused earlier, by
    :func:`spineage.config.read_params_mapping`; {} here serves callers that build
    settings in code.
    """
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UserError(f"Expected a mapping for the {name} section of params.yaml, found {section!r}")
    known_keys(section, keys, f"the {name} section")
    return section


def field_names(settings_class: type, *, without: Iterable[str] = ()) -> frozenset[str]:
    """The keys of a params section: the fields of its settings dataclass, less ``without`` (e.g. the seed)."""
    return frozenset(f.name for f in fields(settings_class)) - set(without)


def _is_number(value: Any, integer: bool) -> bool:
    return not isinstance(value, bool) and isinstance(value, int if integer else (int, float))


def number(section: dict[str, Any], key: str, default: float, where: str, low: float, high: float, integer: bool = False) -> float:
    """``section[key]`` (or ``default``), a number (an integer if asked) within [low, high]."""
    value = section.get(key, default)
    if not _is_number(value, integer):
        raise UserError(f"Expected {'an integer' if integer else 'a number'} for {where}.{key}, found {value!r}")
    if not low <= value <= high:
        raise UserError(f"Expected {where}.{key} between {low:g} and {high:g}, found {value}")
    return value


def numbers(section: dict[str, Any], key: str, default: Sequence, where: str, count: int | None, low: float, high: float, integer: bool = False) -> tuple:
    """``section[key]`` (or ``default``), a non-empty list of ``count`` numbers within [low, high]."""
    value = section.get(key, list(default))
    kind = "integers" if integer else "numbers"
    what = f"{count} {kind}" if count else f"a list of {kind}"
    if not isinstance(value, (list, tuple)) or not value or (count is not None and len(value) != count):
        raise UserError(f"Expected {what} for {where}.{key}, found {value!r}")
    if not all(_is_number(item, integer) for item in value):
        raise UserError(f"Expected {what} for {where}.{key}, found {value!r}")
    if not all(low <= item <= high for item in value):
        raise UserError(f"Expected {where}.{key} values between {low:g} and {high:g}, found {value!r}")
    return tuple(int(v) if integer else float(v) for v in value)


def choice(section: dict[str, Any], key: str, default: Any, where: str, choices: Sequence) -> Any:
    """``section[key]`` (or ``default``), one of ``choices``."""
    value = section.get(key, default)
    if value not in choices:
        raise UserError(f"Expected {where}.{key} among {list(choices)}, found {value!r}")
    return value


def flag(section: dict[str, Any], key: str, default: bool, where: str) -> bool:
    """``section[key]`` (or ``default``), true or false."""
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise UserError(f"Expected true or false for {where}.{key}, found {value!r}")
    return value
