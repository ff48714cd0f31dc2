"""The command line: fast help, heavy libraries only inside commands."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from spineage.cli import app

HEAVY = ("torch", "monai", "pandas", "numpy", "scipy", "great_expectations", "mlflow", "umap", "hdbscan", "nibabel", "matplotlib")


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, spineage.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_help_lists_the_stage_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "show", "inspect", "parse-report", "validate", "findings", "cohort", "preprocess", "segment", "train"):
        assert command in result.output
