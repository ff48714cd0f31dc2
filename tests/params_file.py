"""Params files for tests: the repository's params.yaml with a few values changed.

A params file must hold every section (a missing one is an error, not a silent
default), so a test that needs its own settings starts from the shipped file
rather than writing a partial one.

Example:
    >>> params_with({"train": {"batch_size": 4}})["train"]["batch_size"]
    4
    >>> params_with({"seed": 1})["train"]["max_epochs"] == params_with()["train"]["max_epochs"]
    True
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
"""The params file the pipeline ships with."""


@functools.lru_cache(maxsize=1)
def _repository_params() -> dict[str, Any]:
    return yaml.safe_load(REPO_PARAMS.read_text())


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def params_with(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The repository's params as a mapping, ``changes`` merged in key by key (nested mappings merge too)."""
    return _merged(copy.deepcopy(_repository_params()), changes or {})


def write_params(path: str | Path, changes: dict[str, Any] | None = None) -> Path:
    """Write the repository's params with ``changes`` (see :func:`params_with`) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(yaml.safe_dump(params_with(changes), sort_keys=False))
    return path
