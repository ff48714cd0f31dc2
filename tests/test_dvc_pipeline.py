"""dvc.yaml declares what each stage runs on: the code it imports, the files it is given, the settings it reads.

DVC reruns a stage only when something it declares changes, so a module a stage
imports but does not declare leaves stale outputs that ``dvc repro`` calls up to
date. Each stage's import closure is derived here from the code itself, with
:mod:`ast` (nothing is imported): the ``spineage`` command in the stage's ``cmd``
is found among the typer commands of ``cli.py``; the closure starts from
``cli.py``'s module-level imports (and those of its helpers) plus the imports
inside that command, and follows every ``spineage`` import of each module reached
(module- and function-level, relative ones and ``importlib.import_module`` too;
``if TYPE_CHECKING:`` blocks never run and are skipped). Importing
``spineage.a.b`` also runs ``spineage/__init__.py`` and ``spineage/a/__init__.py``.
A module that starts ``python -m spineage`` (the ``--nproc`` launcher) brings in
``spineage/__main__.py``.

A file is declared when it, or a folder above it, is among the stage's ``deps``.
The sub-pipeline ``pipelines/ablations/dvc.yaml`` is held to the same rules, its
``matrix`` stages expanded as DVC expands them (:func:`expand_stages`), its paths
relative to its own folder.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "spineage"
CLI_MODULE = f"{PACKAGE}.cli"

OPTIONAL_INPUTS: dict[tuple[str, ...], frozenset[str]] = {
    ("report",): frozenset({"--ablations", "--truth"}),
}
"""Options naming the outputs of the separate, longer runs (make ablations, make truth): read when they
exist, never a dependency of the root pipeline (which must not wait for them); those runs re-render the report."""

PARAMS_SECTIONS_READ: dict[tuple[str, ...], frozenset[str]] = {
    ("synth",): frozenset({"seed", "data", "synth"}),
    ("show",): frozenset(),
    ("validate", "raw"): frozenset({"validation"}),
    ("validate", "features"): frozenset(),  # params.yaml is read only to fail early on a bad one
    ("validate", "processed"): frozenset({"validation", "preprocess"}),
    ("findings",): frozenset({"findings"}),
    ("cohort",): frozenset({"seed", "cohort"}),
    ("preprocess",): frozenset({"preprocess"}),
    ("segment", "train"): frozenset({"seed", "segmentation"}),
    ("segment", "pretrain"): frozenset({"seed", "synth", "segmentation"}),
    ("train",): frozenset({"seed", "train", "preprocess"}),
    ("evaluate",): frozenset({"evaluate"}),
    ("ablation-table",): frozenset(),
    ("truth-cohort",): frozenset({"synth", "truth"}),
    ("score",): frozenset({"preprocess"}),
    ("validate-truth",): frozenset({"truth"}),
    ("sag",): frozenset({"seed", "sag"}),
    ("report",): frozenset(),
    ("radiograph", "validate"): frozenset({"validation", "radiograph"}),
    ("radiograph", "preprocess"): frozenset({"radiograph"}),
    ("radiograph", "train"): frozenset({"seed", "radiograph"}),
    ("radiograph", "evaluate"): frozenset({"radiograph"}),
    ("radiograph", "outcomes"): frozenset(),
    ("radiograph", "score"): frozenset({"radiograph"}),
}
"""The params.yaml sections each pipeline command's output depends on (read off the code: the
loaders each command calls). Every command also checks seed, data, synth and validation through
``config.parse_params``; that only fails early and decides no output."""


# ---------------------------------------------------------------------------
# Imports, from the source
# ---------------------------------------------------------------------------


def module_file(module: str, src: Path) -> Path | None:
    """The file of a module of the package under ``src`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportFinder(ast.NodeVisitor):
    """The package's modules that executing a piece of code may import (without the parent packages)."""

    def __init__(self, module: str, is_package: bool, src: Path, package: str) -> None:
        self.here = module if is_package else module.rpartition(".")[0]
        self.src, self.package = src, package
        self.found: set[str] = set()
        self.runs_package_main = False

    def _ours(self, name: str) -> bool:
        return name == self.package or name.startswith(self.package + ".")

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # typing only: never runs
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names if self._ours(alias.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.here.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if not self._ours(base):
            return
        self.found.add(base)
        for alias in node.names:
            if module_file(f"{base}.{alias.name}", self.src) is not None:  # a submodule, not a name in base
                self.found.add(f"{base}.{alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            if isinstance(node.args[0].value, str) and self._ours(node.args[0].value):
                self.found.add(node.args[0].value)
        self.generic_visit(node)

    def _sequence(self, node: ast.List | ast.Tuple) -> None:
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        if any(a == "-m" and b == self.package for a, b in zip(values, values[1:])):
            self.runs_package_main = True  # e.g. [sys.executable, ..., "-m", "spineage", ...]
        self.generic_visit(node)

    visit_List = _sequence
    visit_Tuple = _sequence


def find_imports(nodes: list[ast.AST], module: str, src: Path, package: str = PACKAGE) -> tuple[set[str], bool]:
    """The package's modules imported anywhere in ``nodes`` of ``module``, and whether they run ``python -m <package>``."""
    path = module_file(module, src)
    finder = _ImportFinder(module, path is not None and path.name == "__init__.py", src, package)
    for node in nodes:
        finder.visit(node)
    return finder.found, finder.runs_package_main


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(modules: set[str], src: Path, package: str = PACKAGE, read: frozenset[str] = frozenset()) -> set[Path]:
    """Every file of the package that importing ``modules`` may execute (parent packages included).

    Modules in ``read`` count as files, but their imports are not read again (the caller
    has read the part of them that runs, e.g. one command of the CLI).
    """
    seen: set[str] = set()
    pending = [parent for module in modules for parent in _with_parents(module)]
    files: set[Path] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, src)
        if path is None:
            continue
        files.add(path)
        if module in read:
            continue
        found, runs_main = find_imports([ast.parse(path.read_text(), str(path))], module, src, package)
        if runs_main:
            found.add(f"{package}.__main__")
        pending.extend(parent for name in found for parent in _with_parents(name))
    return files


# ---------------------------------------------------------------------------
# The typer commands of cli.py
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One parameter of a typer command."""

    name: str
    names: tuple[str, ...]  # option names (--raw); empty for an argument
    annotation: str

    @property
    def is_path(self) -> bool:
        return "Path" in self.annotation

    @property
    def is_flag(self) -> bool:
        return self.annotation == "bool"


@dataclass(frozen=True)
class Command:
    """A typer command of cli.py: its words (``validate raw``), its function and its parameters."""

    words: tuple[str, ...]
    function: ast.FunctionDef
    parameters: tuple[Parameter, ...]

    def option(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if name in p.names), None)

    @property
    def arguments(self) -> list[Parameter]:
        return [p for p in self.parameters if not p.names]


def _call_name(node: ast.expr) -> str:
    return node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else ""


def _parameters(function: ast.FunctionDef) -> tuple[Parameter, ...]:
    arguments = function.args.args
    defaults = [None] * (len(arguments) - len(function.args.defaults)) + list(function.args.defaults)
    parameters = []
    for argument, default in zip(arguments, defaults):
        annotation = ast.unparse(argument.annotation) if argument.annotation is not None else ""
        if _call_name(default) == "Argument":
            names: tuple[str, ...] = ()
        else:
            declared = tuple(
                a.value for a in getattr(default, "args", [])[1:]
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("-")
            )
            # "--register/--no-register" is two names of one flag
            names = tuple(name for option in declared for name in option.split("/")) or ("--" + argument.arg.replace("_", "-"),)
        parameters.append(Parameter(argument.arg, names, annotation))
    return tuple(parameters)


def cli_commands(tree: ast.Module) -> dict[tuple[str, ...], Command]:
    """The commands of a typer CLI module: ``app.command()``, ``x.command("name")``, sub-apps by ``add_typer``."""
    prefixes: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and _call_name(node.value) == "Typer":
            prefixes.update({target.id: () for target in node.targets if isinstance(target, ast.Name)})
    for node in ast.walk(tree):
        if _call_name(node) == "add_typer" and isinstance(node.func.value, ast.Name):
            sub = node.args[0].id
            name = next((k.value.value for k in node.keywords if k.arg == "name"), sub)
            prefixes[sub] = prefixes.get(node.func.value.id, ()) + (name,)
    commands = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if _call_name(decorator) != "command" or not isinstance(decorator.func.value, ast.Name):
                continue
            named = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
            named += [k.value.value for k in decorator.keywords if k.arg == "name"]
            words = prefixes[decorator.func.value.id] + (named[0] if named else node.name.replace("_", "-"),)
            commands[words] = Command(words, node, _parameters(node))
    return commands


def _cli(src: Path) -> tuple[ast.Module, dict[tuple[str, ...], Command]]:
    tree = ast.parse(module_file(CLI_MODULE, src).read_text())
    return tree, cli_commands(tree)


def stage_command(cmd: str, commands: dict[tuple[str, ...], Command]) -> tuple[Command, list[str]]:
    """The cli command a stage's ``cmd`` runs, and the words after it."""
    words = shlex.split(cmd)
    assert words and words[0] == PACKAGE, f"Expected a stage cmd to start with {PACKAGE!r}, found {cmd!r}"
    matches = [c for w, c in commands.items() if tuple(words[1 : 1 + len(w)]) == w]
    assert matches, f"Expected {cmd!r} to run one of the commands of cli.py, found none of {sorted(commands)}"
    command = max(matches, key=lambda c: len(c.words))
    return command, words[1 + len(command.words) :]


def stage_code(cmd: str, src: Path = SRC) -> set[Path]:
    """Every file of the package that running ``cmd`` may execute."""
    tree, commands = _cli(src)
    command, _ = stage_command(cmd, commands)
    others = {c.function for c in commands.values()} - {command.function}
    nodes = [node for node in tree.body if node not in others]  # module level, helpers and this command
    modules, runs_main = find_imports(nodes, CLI_MODULE, src)
    modules.add(CLI_MODULE)
    if runs_main:
        modules.add(f"{PACKAGE}.__main__")
    return import_closure(modules, src, read=frozenset({CLI_MODULE}))


def path_arguments(cmd: str, src: Path = SRC) -> list[tuple[str, str]]:
    """(option or argument name, value) of every path the stage's ``cmd`` gives its command."""
    command, words = stage_command(cmd, _cli(src)[1])
    arguments = iter(command.arguments)
    paths = []
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            name, _, value = word.partition("=")
            parameter = command.option(name)
            assert parameter is not None, f"Expected {name} among the options of `{PACKAGE} {' '.join(command.words)}` ({cmd!r})"
            if parameter.is_flag:
                continue
            value = value or words.pop(0)
        else:
            parameter, value = next(arguments, None), word
            assert parameter is not None, f"Expected no more arguments in {cmd!r}, found {word!r}"
        if parameter.is_path:
            paths.append((parameter.names[0] if parameter.names else parameter.name, value))
    return paths


# ---------------------------------------------------------------------------
# dvc.yaml
# ---------------------------------------------------------------------------


def _paths(entries: list[Any] | None) -> list[str]:
    """Paths of a deps/outs/metrics/plots list (plain strings or one-key mappings)."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return [path.rstrip("/") for path in paths]


def _declared(path: str, listed: list[str]) -> bool:
    """Whether ``path`` or a folder above it is listed."""
    return any(path == item or path.startswith(item + "/") for item in listed)


def undeclared_code(stages: dict[str, dict[str, Any]], root: Path = ROOT, src: Path = SRC, wdir: str = ".") -> dict[str, list[str]]:
    """Per stage running a package command: the files of its import closure that its deps do not cover.

    ``wdir``: the folder of the stages' dvc.yaml relative to ``root`` (their deps are relative to it).
    """
    missing = {}
    for name, stage in stages.items():
        files = sorted(path.relative_to(root).as_posix() for path in stage_code(stage["cmd"], src))
        deps = [os.path.normpath(os.path.join(wdir, dep)) for dep in _paths(stage.get("deps"))]
        absent = [file for file in files if not _declared(file, deps)]
        if absent:
            missing[name] = absent
    return missing


def _params_sections(stage: dict[str, Any], params_file: str = "params.yaml") -> set[str]:
    sections = set()
    for entry in stage.get("params") or []:
        if isinstance(entry, str) and params_file == "params.yaml":  # a bare key names the stage folder's params.yaml
            sections.add(entry.split(".")[0])
        elif params_file in entry:
            sections.update(key.split(".")[0] for key in entry[params_file])
    return sections


def undeclared_data(stages: dict[str, dict[str, Any]], src: Path = SRC) -> dict[str, list[str]]:
    """Per stage: the paths its cmd names that are neither deps nor outs, and the params sections it reads unlisted.

    A folder counts when something inside it is declared (``--out data/interim`` with
    ``data/interim/findings.parquet`` among the outs). A params file (``params.yaml``, or
    ``../../params.yaml`` from a sub-pipeline) counts when every section the command reads
    (:data:`PARAMS_SECTIONS_READ`) is in the stage's ``params`` for that file.
    """
    commands = _cli(src)[1]
    missing = {}
    for name, stage in stages.items():
        declared = _paths(stage.get("deps")) + [
            p for key in ("outs", "metrics", "plots") for p in _paths(stage.get(key))
        ]
        command, _ = stage_command(stage["cmd"], commands)
        problems = []
        for option, value in path_arguments(stage["cmd"], src):
            if option in OPTIONAL_INPUTS.get(command.words, ()):
                continue
            value = value.rstrip("/")
            if Path(value).name == "params.yaml" and value not in declared:
                assert command.words in PARAMS_SECTIONS_READ, (
                    f"Expected PARAMS_SECTIONS_READ to say which params.yaml sections "
                    f"`{PACKAGE} {' '.join(command.words)}` reads (stage {name})"
                )
                unlisted = sorted(PARAMS_SECTIONS_READ[command.words] - _params_sections(stage, value))
                problems += [f"params: {section} (read through {option} {value})" for section in unlisted]
            elif not any(_declared(value, [item]) or _declared(item, [value]) for item in declared):
                problems.append(f"{option} {value}")
        if problems:
            missing[name] = problems
    return missing


def _report(missing: dict[str, list[str]]) -> str:
    return "\n".join(f"  {stage}: {', '.join(items)}" for stage, items in missing.items())


_REFERENCE = re.compile(r"\$\{\s*([\w.]+)\s*\}")


def _interpolate(value: Any, context: dict[str, Any]) -> Any:
    """``${name}`` and ``${item.key}`` replaced in every string (keys too); a whole-string reference keeps its type."""
    if isinstance(value, dict):
        return {_interpolate(k, context): _interpolate(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, context) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(name: str) -> Any:
        found: Any = context
        for part in name.split("."):
            assert isinstance(found, dict) and part in found, f"Expected ${{{name}}} among the vars and matrix values, found none"
            found = found[part]
        return found

    whole = _REFERENCE.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    return _REFERENCE.sub(lambda match: str(lookup(match.group(1))), value)


def expand_stages(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The stages of a dvc.yaml as DVC generates them: each ``matrix`` stage once per combination, named
    ``stage@value1-value2``, with ``vars`` and ``item`` interpolated."""
    variables: dict[str, Any] = {}
    for entry in document.get("vars") or []:
        assert isinstance(entry, dict), "Expected inline vars (a mapping), found a vars file"
        variables.update(entry)
    stages = {}
    for name, definition in document["stages"].items():
        if "matrix" not in definition:
            stages[name] = _interpolate(definition, variables)
            continue
        matrix = {key: _interpolate(values, variables) for key, values in definition["matrix"].items()}
        template = {k: v for k, v in definition.items() if k != "matrix"}
        for values in itertools.product(*matrix.values()):
            assert all(isinstance(v, (str, int, float)) for v in values), f"Expected plain matrix values in {name}, found {values}"
            stages[f"{name}@{'-'.join(str(v) for v in values)}"] = _interpolate(template, {**variables, "item": dict(zip(matrix, values))})
    return stages


ABLATIONS = "pipelines/ablations"
"""The ablation sub-pipeline's folder (its dvc.yaml, and every output it writes)."""

TRUTH = "pipelines/truth"
"""The truth sub-pipeline's folder (``make truth``)."""

RADIOGRAPH = "pipelines/radiograph"
"""The radiograph branch's folder (run by ``make repro`` through the report stage's deps)."""


@pytest.fixture(scope="module")
def stages() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def ablation_stages() -> dict[str, dict[str, Any]]:
    return expand_stages(yaml.safe_load((ROOT / ABLATIONS / "dvc.yaml").read_text()))


def test_every_stage_runs_a_spineage_command(stages) -> None:
    commands = _cli(SRC)[1]
    for name, stage in stages.items():
        command, _ = stage_command(stage["cmd"], commands)
        assert command.words in PARAMS_SECTIONS_READ, f"stage {name}: add `{' '.join(command.words)}` to PARAMS_SECTIONS_READ"


def test_every_stage_declares_the_code_it_imports(stages) -> None:
    missing = undeclared_code(stages)
    assert not missing, "Expected every imported module among the stage's deps in dvc.yaml, found missing:\n" + _report(missing)


def test_every_stage_declares_the_files_and_settings_its_command_reads(stages) -> None:
    missing = undeclared_data(stages)
    assert not missing, "Expected every path of a stage's cmd among its deps or outs, found missing:\n" + _report(missing)


def test_every_ablation_stage_declares_its_code_files_and_settings(ablation_stages) -> None:
    commands = _cli(SRC)[1]
    for name, stage in ablation_stages.items():
        command, _ = stage_command(stage["cmd"], commands)
        assert command.words in PARAMS_SECTIONS_READ, f"stage {name}: add `{' '.join(command.words)}` to PARAMS_SECTIONS_READ"
    missing = undeclared_code(ablation_stages, wdir=ABLATIONS)
    assert not missing, "Expected every imported module among the ablation stage's deps, found missing:\n" + _report(missing)
    missing = undeclared_data(ablation_stages)
    assert not missing, "Expected every path of an ablation stage's cmd among its deps or outs, found missing:\n" + _report(missing)


def test_every_truth_stage_declares_its_code_files_and_settings() -> None:
    truth_stages = expand_stages(yaml.safe_load((ROOT / TRUTH / "dvc.yaml").read_text()))
    commands = _cli(SRC)[1]
    assert [stage_command(s["cmd"], commands)[0].words for s in truth_stages.values()] == [
        ("truth-cohort",), ("score",), ("validate-truth",), ("radiograph", "score"), ("radiograph", "outcomes")]
    missing = undeclared_code(truth_stages, wdir=TRUTH)
    assert not missing, "Expected every imported module among the truth stage's deps, found missing:\n" + _report(missing)
    missing = undeclared_data(truth_stages)
    assert not missing, "Expected every path of a truth stage's cmd among its deps or outs, found missing:\n" + _report(missing)


def test_every_radiograph_stage_declares_its_code_files_and_settings() -> None:
    radiograph_stages = expand_stages(yaml.safe_load((ROOT / RADIOGRAPH / "dvc.yaml").read_text()))
    commands = _cli(SRC)[1]
    words = [stage_command(s["cmd"], commands)[0].words for s in radiograph_stages.values()]
    assert words == [("radiograph", name) for name in ("validate", "preprocess", "train", "evaluate", "outcomes")]
    missing = undeclared_code(radiograph_stages, wdir=RADIOGRAPH)
    assert not missing, "Expected every imported module among the radiograph stage's deps, found missing:\n" + _report(missing)
    missing = undeclared_data(radiograph_stages)
    assert not missing, "Expected every path of a radiograph stage's cmd among its deps or outs, found missing:\n" + _report(missing)


def test_the_ablations_vary_one_factor_at_a_time_and_evaluate_and_tabulate_every_cell(ablation_stages) -> None:
    """7 cells as the paper's Table 3: each trained once, evaluated once, one row of the table; nothing written outside."""
    trained = {}
    for name, stage in ablation_stages.items():
        words = shlex.split(stage["cmd"])
        if words[1] == "train":
            out = words[words.index("--reports") + 1]
            changed = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
            trained[out.split("/")[1]] = changed
            assert "--no-register" in words and words[words.index("--experiment") + 1] == "ablations", name
    assert sorted(trained) == sorted([
        "train_fraction-0.01", "train_fraction-0.1", "loss-smooth_l1", "loss-mean_variance",
        "region-cervical", "region-thoracic", "region-lumbar",
    ])
    for cell, changed in trained.items():
        factor, _, setting = cell.partition("-")
        key = {"train_fraction": "train.train_fraction", "loss": "train.loss", "region": "preprocess.region"}[factor]
        assert f"{key}={setting}" in changed, f"Expected cell {cell} to set {key}={setting}, found {changed}"
        assert all(c.startswith(("preprocess.masks", "preprocess.segmentation_model")) for c in changed if not c.startswith(key))
    evaluated = sorted(shlex.split(s["cmd"])[shlex.split(s["cmd"]).index("--train-reports") + 1].split("/")[1]
                       for s in ablation_stages.values() if shlex.split(s["cmd"])[1] == "evaluate")
    assert evaluated == sorted(trained)
    table = ablation_stages["table"]["cmd"].split()
    assert sorted(table[i + 1].split("/")[1] for i, word in enumerate(table) if word == "--cell") == sorted(trained)
    for name, stage in ablation_stages.items():
        for out in _paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots")):
            assert not os.path.normpath(out).startswith(".."), f"Expected {name} to write inside {ABLATIONS}, found {out}"


# ---------------------------------------------------------------------------
# The checker itself
# ---------------------------------------------------------------------------


def test_the_closure_follows_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    files = {
        "__init__.py": "",
        "cli.py": "import typer\nfrom pkg import top\napp = typer.Typer()\n"
                   "@app.command()\ndef run_it():\n    from pkg.sub.leaf import f\n"
                   "@app.command()\ndef other():\n    import pkg.unused\n",
        "top.py": "",
        "unused.py": "",
        "sub/__init__.py": "",
        "sub/leaf.py": "from typing import TYPE_CHECKING\nfrom . import sibling\nif TYPE_CHECKING:\n    import pkg.typing_only\n"
                       "def g():\n    import importlib\n    return importlib.import_module('pkg.late')\n",
        "sub/sibling.py": "import subprocess, sys\nsubprocess.call([sys.executable, '-m', 'pkg'])\n",
        "typing_only.py": "",
        "late.py": "",
        "__main__.py": "from pkg.cli import app\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    tree = ast.parse((package / "cli.py").read_text())
    commands = cli_commands(tree)
    others = [c.function for words, c in commands.items() if words != ("run-it",)]
    modules, _ = find_imports([n for n in tree.body if n not in others], "pkg.cli", tmp_path / "src", "pkg")
    closure = {p.relative_to(package).as_posix() for p in import_closure(modules | {"pkg.cli"}, tmp_path / "src", "pkg", frozenset({"pkg.cli"}))}
    assert closure == {"__init__.py", "cli.py", "top.py", "sub/__init__.py", "sub/leaf.py", "sub/sibling.py", "late.py", "__main__.py"}


def test_a_missing_dependency_is_reported() -> None:
    fake = {
        "synth_montage": {
            "cmd": "spineage show data/raw --out reports/synth/montage.png --n 8",
            "deps": ["data/raw", "src/spineage/cli.py", "src/spineage/errors.py", "src/spineage/__init__.py",
                     "src/spineage/synth/__init__.py"],
            "outs": [{"reports/synth/montage.png": {"cache": False}}],
        },
    }
    closure = {p.relative_to(ROOT).as_posix() for p in stage_code(fake["synth_montage"]["cmd"])}
    assert "src/spineage/synth/montage.py" in closure
    fake["synth_montage"]["deps"] += sorted(closure - {"src/spineage/synth/montage.py"})
    assert undeclared_code(fake) == {"synth_montage": ["src/spineage/synth/montage.py"]}
    assert undeclared_data(fake) == {}

    fake["synth_montage"]["deps"].remove("data/raw")
    assert undeclared_data(fake) == {"synth_montage": ["raw data/raw"]}


def test_an_unread_file_and_an_unlisted_params_section_are_reported() -> None:
    stage = {
        "cmd": "spineage train --processed data/processed --out models/spine-age --reports reports/train "
               "--params params.yaml --raw data/raw --gate reports/validation/processed.json",
        "deps": ["data/processed", "reports/validation/processed.json"],
        "params": ["train", "preprocess.shape"],
        "outs": ["models/spine-age", "reports/train/metrics.json"],
    }
    assert undeclared_data({"train": stage}) == {"train": ["params: seed (read through --params params.yaml)", "--raw data/raw"]}
