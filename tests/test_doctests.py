"""Every example in the package's docstrings runs and prints what it says (examples marked +SKIP aside)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import spineage

def _unimportable(name: str) -> None:
    raise ImportError(f"Expected every subpackage of spineage to import, found {name} failing")


MODULES = sorted(
    info.name for info in pkgutil.walk_packages(spineage.__path__, prefix="spineage.", onerror=_unimportable)
    if info.name != "spineage.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} fail (python -m pytest --doctest-modules {module.__file__})"
