"""Two cells of pipelines/ablations/dvc.yaml run as DVC runs them, on the ci phantom cohort with a tiny network.

The commands are the sub-pipeline's own (its matrix expanded), run in its folder
against a root laid out as the root pipeline leaves it: the outputs land in the
cells' folders, each cell is an MLflow run of the ``ablations`` experiment with the
evaluation's figures, and no model version is registered.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from spineage.cli import app
from tests.mlflow_store import fresh_store
from tests.params_file import write_params
from tests.test_dvc_pipeline import ABLATIONS, ROOT, expand_stages
from tests.training.conftest import TINY

CELLS = ("train_fraction-0.1", "region-lumbar")
"""A training-set-size cell (the subject-grouped subsample) and a region cell (its own preprocessing)."""


def _stages_of(cell: str, stages: dict[str, dict]) -> list[str]:
    """The commands that make ``cell``'s folder, in the order DVC runs them."""
    factor, _, setting = cell.partition("-")
    names = {"train_fraction": ["train_fraction"], "loss": ["train_loss"], "region": ["preprocess_region", "train_region"]}[factor]
    return [stages[f"{name}@{setting}"]["cmd"] for name in names] + [stages[f"evaluate@{cell}"]["cmd"]]


@pytest.mark.slow
def test_two_ablation_cells_train_evaluate_and_are_tabulated_without_registering(
    ci_cohort: Path, tmp_path: Path, monkeypatch,
) -> None:
    import mlflow

    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    for name in ("raw", "interim", "processed"):
        (root / "data" / name).symlink_to(ci_cohort / name, target_is_directory=True)
    (root / ".dvc").mkdir()  # the project root: the cells' runs go to its store, not one in pipelines/ablations
    train = {**TINY.as_section(), "max_epochs": 4, "min_epochs": 4}
    # The ci cohort has 5 validation series: enough for an 80 % normative range, not a 90 % one. A 4-epoch tiny
    # network may predict one age for all (Cole's correction refuses a flat slope); Beheshti's fits any.
    evaluate = {"coverage": 0.8, "bias_correction": "beheshti"}
    write_params(root / "params.yaml", {"seed": TINY.seed, "train": train, "preprocess": {"workers": 1}, "evaluate": evaluate})
    (root / "reports" / "validation").mkdir(parents=True)
    (root / "reports" / "validation" / "processed.json").write_text(json.dumps({"success": True}))
    folder = root / ABLATIONS
    folder.mkdir(parents=True)
    store = fresh_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(folder)
    stages = expand_stages(yaml.safe_load((ROOT / ABLATIONS / "dvc.yaml").read_text()))
    before = {p: p.stat().st_mtime_ns for p in (ci_cohort / "processed").iterdir()}

    runner = CliRunner()
    for cell in CELLS:
        for cmd in _stages_of(cell, stages):
            result = runner.invoke(app, shlex.split(cmd)[1:])
            assert result.exit_code == 0, f"{cmd}\n{result.output}"
    table_cmd = ["ablation-table", *[w for c in CELLS for w in ("--cell", f"cells/{c}")], "--out", "reports"]
    result = runner.invoke(app, table_cmd)
    assert result.exit_code == 0, result.output

    table = pd.read_csv(folder / "reports" / "table.csv", keep_default_na=False).set_index("cell")
    assert list(table.index) == list(CELLS)
    figures = table[["mae_raw", "mae_corrected", "wmae_raw", "wmae_corrected", "r2_raw", "r2_corrected"]].astype(float)
    assert np.isfinite(figures.to_numpy()).all() and (figures[["mae_raw", "mae_corrected"]] > 0).all().all()
    manifest = pd.read_csv(ci_cohort / "processed" / "manifest.csv")
    all_train = int(((manifest.split == "train") & manifest.status.isin(["ok", "flagged"])).sum())
    assert 2 <= table.loc["train_fraction-0.1", "train_series"] < all_train / 2  # a tenth, in whole subjects
    for cell in CELLS:
        evaluation = json.loads((folder / "cells" / cell / "evaluate" / "metrics.json").read_text())
        assert table.loc[cell, "mae_corrected"] == pytest.approx(evaluation["test"]["corrected"]["mae"], abs=1e-4)

    # The region cell preprocessed the lumbar spine into its own folder; the root's arrays were left alone.
    lumbar = pd.read_csv(folder / "cells" / "region-lumbar" / "processed" / "manifest.csv")
    assert lumbar.status.isin(["ok", "flagged"]).sum() > 0
    assert {p: p.stat().st_mtime_ns for p in (ci_cohort / "processed").iterdir()} == before
    assert not (root / "models").exists() and not (root / "reports" / "train").exists()

    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.get_experiment_by_name("ablations")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(CELLS)
    for run in runs:
        assert run.data.tags["registered"] == "false"
        assert "eval_test_corrected_mae" in run.data.metrics  # the evaluate stage logged to the cell's run
    assert runs[0].data.params["train_fraction"] in {"0.1", "1.0"}
    assert client.search_registered_models() == []
    assert not (folder / "mlflow.db").exists()
