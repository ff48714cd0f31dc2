"""The pinned environment: requirements.lock, the Makefile's set-up that installs it, the Python check.

Byte-identical outputs (and dvc.lock's hashes) hold for one set of versions only, so the whole
environment is pinned in ``requirements.lock`` (``make lock``) and ``make setup`` installs exactly
it, after torch. Nothing here touches the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
MAKEFILE = ROOT / "Makefile"
CHECK_PYTHON = ROOT / ".ci" / "check_python.sh"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:;.*)?$")

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def lock_pins() -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of requirements.lock."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def project_requirements() -> list[Requirement]:
    """pyproject's ``dependencies`` and ``dev`` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def makefile_variable(name: str) -> str:
    """The value of a ``NAME := value`` line of the Makefile."""
    match = re.search(rf"^{name}\s*:=\s*(\S+)\s*$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, f"the Makefile has no `{name} := ...` line"
    return match.group(1)


def make_env() -> dict[str, str]:
    """This process's environment without the flags of a ``make`` that may be running the tests."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def setup_recipe(*overrides: str) -> list[str]:
    """The commands ``make setup`` would run (``make -n -B``, variables expanded), without running them."""
    result = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), ".venv/.installed", *overrides],
        capture_output=True, text=True, check=True, env=make_env(),
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def line_index(lines: list[str], needle: str) -> int:
    """Index of the one line containing ``needle``."""
    hits = [i for i, line in enumerate(lines) if needle in line]
    assert len(hits) == 1, f"expected one set-up line with {needle!r}, found {len(hits)} in:\n" + "\n".join(lines)
    return hits[0]


def fake_python(tmp_path: Path, minor_version: str) -> Path:
    """An executable that answers set-up's version question like a Python ``minor_version`` would."""
    path = tmp_path / f"python{minor_version}"
    path.write_text(f"#!/bin/sh\necho {minor_version}\n")
    path.chmod(0o755)
    return path


# --- the lock file -------------------------------------------------------------------------


def test_every_direct_requirement_is_pinned_in_the_lock_within_its_specifier():
    pins = lock_pins()
    problems = []
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        if name not in pins:
            problems.append(f"{requirement.name}: no `==` pin in requirements.lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement.name}: locked {pins[name]} is outside pyproject's {requirement.specifier}")
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_the_lock_holds_no_torch_and_no_cuda_packages():
    """torch is installed on its own (TORCH_INDEX); the lock comes from the CPU wheel's dependencies."""
    cuda = [n for n in lock_pins() if n == "torch" or n.startswith("nvidia-") or n == "triton"]
    assert not cuda, f"requirements.lock should not pin {cuda}; rerun `make lock` against the CPU torch wheel"
    assert "sympy" in lock_pins(), "torch's own dependencies (sympy, ...) should be pinned in the lock"


def test_the_lock_pins_every_line_exactly():
    """Every requirement line is a bare ``name==version``: no ranges, URLs or editables slip in."""
    requirement_lines = [
        line for line in LOCK.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    loose = [line for line in requirement_lines if not PIN.match(line)]
    assert not loose, f"lines of requirements.lock that are not exact pins: {loose}"
    assert len(requirement_lines) == len(lock_pins())


def test_the_lock_says_how_to_refresh_it():
    assert "make lock" in "\n".join(LOCK.read_text().splitlines()[:10])


# --- the Makefile's set-up -----------------------------------------------------------------


def test_setup_is_redone_when_the_lock_changes():
    match = re.search(r"^\$\(STAMP\)\s*:(.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, "the Makefile has no `$(STAMP): ...` rule"
    assert {"pyproject.toml", "requirements.lock"} <= set(match.group(1).split())


def test_makefile_torch_and_python_agree_with_pyproject():
    torch = next(r for r in project_requirements() if canonicalize_name(r.name) == "torch")
    assert torch.specifier == SpecifierSet(f"=={makefile_variable('TORCH_VERSION')}")
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(makefile_variable("PYTHON_VERSION")) in SpecifierSet(requires_python)


@needs_make
def test_setup_installs_torch_then_the_lock_then_the_project_without_dependencies():
    lines = setup_recipe()
    torch = line_index(lines, "torch==2.13.0")
    lock = line_index(lines, "-r requirements.lock")
    project = line_index(lines, "--no-deps -e .")
    assert torch < lock < project
    assert "--index-url" not in lines[torch], "with TORCH_INDEX empty, torch comes from pip's own configuration"
    assert "pip check" in " ".join(lines[project + 1:])


@needs_make
def test_torch_index_applies_to_the_torch_install_only():
    index = "https://download.pytorch.org/whl/cpu"
    lines = setup_recipe(f"TORCH_INDEX={index}")
    torch = line_index(lines, "torch==2.13.0")
    assert f"--index-url {index}" in lines[torch]
    assert [i for i, line in enumerate(lines) if index in line] == [torch]


# --- the running environment ---------------------------------------------------------------


def test_this_environment_was_installed_from_the_lock():
    """What it checks: every package pinned in requirements.lock is installed here at exactly its
    pinned version, and torch is 2.13.0. That holds after ``make setup`` (which installs the lock)
    and fails after a dependency is added or the lock refreshed without reinstalling."""
    missing, different = [], []
    for name, pinned in sorted(lock_pins().items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
        if Version(installed) != Version(pinned):
            different.append(f"{name} {installed} (lock: {pinned})")
    assert not missing and not different, (
        f"this environment ({sys.prefix}) does not match requirements.lock; run `make setup`.\n"
        f"missing: {missing}\ndifferent: {different}"
    )
    assert Version(version("torch")).public == makefile_variable("TORCH_VERSION")


# --- the Python check ----------------------------------------------------------------------


def test_python_check_stops_a_wrong_python_in_one_line(tmp_path):
    python = fake_python(tmp_path, "3.12")
    result = subprocess.run(
        ["sh", str(CHECK_PYTHON), "3.11", str(python)], capture_output=True, text=True,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip().splitlines()
    assert output == [f"spineage needs Python 3.11, found 3.12 ({python}); set PYTHON=/path/to/python3.11"]


def test_python_check_passes_the_right_python_silently(tmp_path):
    result = subprocess.run(
        ["sh", str(CHECK_PYTHON), "3.11", str(fake_python(tmp_path, "3.11"))], capture_output=True, text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_python_check_names_a_missing_python(tmp_path):
    missing = tmp_path / "no-such-python"
    result = subprocess.run(["sh", str(CHECK_PYTHON), "3.11", str(missing)], capture_output=True, text=True)
    assert result.returncode != 0
    assert f"found no Python ({missing})" in result.stderr


@needs_make
def test_setup_stops_before_making_a_venv_with_the_wrong_python(tmp_path):
    """``make setup`` in a copy of the repository's set-up files, with a Python 3.12 stand-in."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock", ".ci/check_python.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    python = fake_python(tmp_path, "3.12")
    result = subprocess.run(
        ["make", "-C", str(tmp_path), f"PYTHON={python}", "setup"], capture_output=True, text=True, env=make_env(),
    )
    assert result.returncode != 0
    assert f"spineage needs Python 3.11, found 3.12 ({python})" in result.stderr
    assert not (tmp_path / ".venv").exists()


@needs_make
def test_make_pretrain_runs_the_frozen_stage_s_own_command_then_commits_it() -> None:
    """``dvc repro`` never runs a frozen stage, even with ``-f``: ``make pretrain`` runs the command dvc.yaml gives it."""
    import yaml

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pretrain_segment"]
    assert stage.get("frozen") is True
    result = subprocess.run(["make", "-n", "-C", str(ROOT), "pretrain"], capture_output=True, text=True, check=True, env=make_env())
    run, commit = [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("make")][-2:]
    snippet = re.search(r'python -c "(.+?)"\)"$', run)
    assert snippet, f"expected the stage's command read from dvc.yaml in: {run}"
    read = subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert read.stdout.strip() == stage["cmd"]
    assert commit.endswith("dvc commit -f pretrain_segment")
