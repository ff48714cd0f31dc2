"""The ablation table: each cell's test-split figures, raw and corrected, in the paper's Table 3 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spineage.cli import app
from spineage.errors import UserError
from spineage.evaluation.ablations import (
    COLUMNS,
    cell_from_folder,
    write_ablation_table,
)


def _cell(folder: Path, mae: tuple[float, float], wmae: tuple[float, float], r2: tuple[float, float], train_series: int | None = 40) -> Path:
    """A cell folder as the train and evaluate stages leave it (the figures that matter, and some that do not)."""
    (folder / "train").mkdir(parents=True)
    (folder / "evaluate").mkdir(parents=True)
    train = {"test_mae": mae[0], "run_id": "r"} | ({"train_series": train_series} if train_series is not None else {})
    (folder / "train" / "metrics.json").write_text(json.dumps(train))
    figures = {kind: {"n": 12, "mae": mae[i], "wmae": wmae[i], "r2": r2[i], "r": 0.9} for i, kind in enumerate(("raw", "corrected"))}
    other = {kind: {"n": 30, "mae": 99.0, "wmae": 99.0, "r2": -1.0} for kind in ("raw", "corrected")}
    (folder / "evaluate" / "metrics.json").write_text(json.dumps({"test": figures, "full_test": other, "bias_correction": {}}))
    return folder


def test_the_table_holds_each_cells_test_figures_raw_and_corrected_in_order(tmp_path: Path) -> None:
    default = _cell(tmp_path / "reports", (3.47, 3.67), (3.60, 3.60), (0.87, 0.85), train_series=None)
    lumbar = _cell(tmp_path / "cells" / "region-lumbar", (5.1, 5.4), (5.5, 5.3), (0.61, 0.58), train_series=400)
    small = _cell(tmp_path / "cells" / "train_fraction-0.01", (9.0, 8.0), (9.5, 8.5), (-0.2, 0.1), train_series=5)

    table = write_ablation_table(default, [small, lumbar], tmp_path / "out")

    assert list(table.columns) == list(COLUMNS)
    assert list(table.cell) == ["default", "train_fraction-0.01", "region-lumbar"]
    assert list(table.factor) == ["default", "train_fraction", "region"] and list(table.setting) == ["", "0.01", "lumbar"]
    row = table.set_index("cell").loc["region-lumbar"]
    assert (row.mae_raw, row.mae_corrected, row.wmae_raw, row.wmae_corrected, row.r2_raw, row.r2_corrected) == (5.1, 5.4, 5.5, 5.3, 0.61, 0.58)
    assert row.train_series == 400 and row.test_series == 12  # the test split's n, not the full test set's
    assert pd.isna(table.set_index("cell").loc["default", "train_series"])  # older train reports do not say
    written = pd.read_csv(tmp_path / "out" / "table.csv", keep_default_na=False)
    assert list(written.cell) == list(table.cell) and written.mae_corrected.astype(float).tolist() == pytest.approx([3.67, 8.0, 5.4])
    markdown = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert len(markdown) == 2 + 3
    assert markdown[2] == "| default | (as params.yaml) | – | 12 | 3.47 / 3.67 | 3.60 / 3.60 | 0.870 / 0.850 |"
    assert markdown[3] == "| train_fraction | 0.01 | 5 | 12 | 9.00 / 8.00 | 9.50 / 8.50 | -0.200 / 0.100 |"


def test_a_missing_or_incomplete_cell_or_a_repeated_one_is_a_user_error(tmp_path: Path) -> None:
    cell = _cell(tmp_path / "cells" / "loss-smooth_l1", (4.0, 4.1), (4.2, 4.3), (0.8, 0.79))
    with pytest.raises(UserError, match=r"Expected .*loss-mean_variance/evaluate/metrics.json .*found no such file"):
        write_ablation_table(None, [cell, tmp_path / "cells" / "loss-mean_variance"], tmp_path / "out")
    with pytest.raises(UserError, match="more than once"):
        write_ablation_table(None, [cell, cell], tmp_path / "out")
    with pytest.raises(UserError, match="named <factor>-<setting>"):
        cell_from_folder(tmp_path / "smoothl1")
    (cell / "evaluate" / "metrics.json").write_text(json.dumps({"test": {"raw": {"mae": 1.0}}}))
    with pytest.raises(UserError, match="test.raw and test.corrected"):
        write_ablation_table(None, [cell], tmp_path / "out")
    assert not (tmp_path / "out" / "table.csv").exists()


def test_the_command_writes_both_files_and_prints_the_markdown(tmp_path: Path) -> None:
    cell = _cell(tmp_path / "cells" / "loss-smooth_l1", (4.0, 4.1), (4.2, 4.3), (0.8, 0.79))
    result = CliRunner().invoke(app, ["ablation-table", "--cell", str(cell), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "| loss | smooth_l1 | 40 | 12 | 4.00 / 4.10 |" in result.output
    assert (tmp_path / "out" / "table.csv").is_file() and (tmp_path / "out" / "table.md").is_file()

    missing = CliRunner().invoke(app, ["ablation-table", "--cell", str(tmp_path / "cells" / "loss-l1"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "error: Expected" in missing.output
