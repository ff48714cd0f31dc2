"""The ablation table (the MRI paper's Table 3): each cell's MAE, WMAE and R², raw and bias-corrected.

The ablation sub-pipeline (``pipelines/ablations/dvc.yaml``) changes one setting of the
default model at a time (training-set size, loss, spine region) and trains and evaluates
each cell as the root pipeline does. A cell's folder is named ``<factor>-<setting>``
(``train_fraction-0.01``, ``loss-smooth_l1``, ``region-lumbar``) and holds the train
stage's reports in ``train/`` and the evaluate stage's in ``evaluate/``; the default
model is the root pipeline's ``reports/`` folder, laid out the same way.

===================  ==============================================================
column               what
===================  ==============================================================
``cell``             the folder's name (``default`` for the default model)
``factor``           what the cell changes (``default``: nothing)
``setting``          its value in the cell
``train_series``     series trained on (NaN when the train reports do not say)
``test_series``      series of the normal test split the figures are measured on
``mae_raw``          MAE (years) of the network's predictions on test
``mae_corrected``    MAE after the bias correction fitted on validation
``wmae_*``, ``r2_*``  WMAE (mean of the per-bracket MAEs) and R², likewise
===================  ==============================================================

Example:
    >>> cell_from_folder(Path("cells/loss-smooth_l1"))
    AblationCell(name='loss-smooth_l1', factor='loss', setting='smooth_l1', folder=PosixPath('cells/loss-smooth_l1'))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spineage.atomic import write_atomic
from spineage.errors import UserError

DEFAULT = "default"
"""The cell name and factor of the default model's row."""

COLUMNS: tuple[str, ...] = (
    "cell", "factor", "setting", "train_series", "test_series",
    "mae_raw", "mae_corrected", "wmae_raw", "wmae_corrected", "r2_raw", "r2_corrected",
)
"""Columns of ``table.csv``, in order."""

TABLE_CSV = "table.csv"
TABLE_MARKDOWN = "table.md"


@dataclass(frozen=True)
class AblationCell:
    """One row of the table: a folder holding ``train/metrics.json`` and ``evaluate/metrics.json``.

    Args:
        name: the folder's name.
        factor: what the cell changes (the name's part before the first ``-``).
        setting: the changed setting's value (the part after it).
        folder: the folder.
    """

    name: str
    factor: str
    setting: str
    folder: Path


def cell_from_folder(folder: str | Path, default: bool = False) -> AblationCell:
    """The cell of a folder named ``<factor>-<setting>``; ``default=True`` for the default model's folder.

    Raises:
        UserError: for a cell folder whose name is not ``<factor>-<setting>``.
    """
    folder = Path(folder)
    if default:
        return AblationCell(DEFAULT, DEFAULT, "", folder)
    factor, dash, setting = folder.name.partition("-")
    if not (factor and dash and setting):
        raise UserError(f"Expected an ablation cell folder named <factor>-<setting> (e.g. loss-smooth_l1), found {folder.name!r}")
    return AblationCell(folder.name, factor, setting, folder)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"Expected {path} (run the cell's train and evaluate stages first), found no such file")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"Expected JSON in {path}, found an error: {error}") from None
    if not isinstance(values, dict):
        raise UserError(f"Expected a mapping in {path}, found a {type(values).__name__}")
    return values


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def cell_row(cell: AblationCell) -> dict[str, Any]:
    """The cell's row: its test-split figures, raw and corrected, from ``evaluate/metrics.json``.

    Raises:
        UserError: if a metrics file is missing or lacks the test split's raw and corrected figures.
    """
    evaluate_path = cell.folder / "evaluate" / "metrics.json"
    evaluation = _read_json(evaluate_path)
    train = _read_json(cell.folder / "train" / "metrics.json")
    test = evaluation.get("test")
    if not (isinstance(test, dict) and isinstance(test.get("raw"), dict) and isinstance(test.get("corrected"), dict)):
        raise UserError(f"Expected test.raw and test.corrected figures in {evaluate_path}, found {sorted(test) if isinstance(test, dict) else test!r}")
    row: dict[str, Any] = {
        "cell": cell.name, "factor": cell.factor, "setting": cell.setting,
        "train_series": _number(train.get("train_series")), "test_series": _number(test["raw"].get("n")),
    }
    for figure in ("mae", "wmae", "r2"):
        for kind in ("raw", "corrected"):
            row[f"{figure}_{kind}"] = _number(test[kind].get(figure))
    return row


def ablation_table(cells: list[AblationCell]) -> pd.DataFrame:
    """One row per cell (:func:`cell_row`), in the order given, with the columns of :data:`COLUMNS`.

    Raises:
        UserError: for no cells, two cells of one name, or a cell whose metrics are missing.
    """
    if not cells:
        raise UserError("Expected at least one ablation cell, found none")
    names = [cell.name for cell in cells]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"Expected each ablation cell once, found {repeated} more than once")
    return pd.DataFrame([cell_row(cell) for cell in cells], columns=list(COLUMNS))


def _pair(raw: float, corrected: float, digits: int) -> str:
    def text(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.{digits}f}"

    return f"{text(raw)} / {text(corrected)}"


def table_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, raw and corrected side by side as the paper prints them (``3.47 / 3.67``)."""
    lines = [
        "| Factor | Setting | Train series | Test series | MAE (y) raw / corrected | WMAE (y) raw / corrected | R² raw / corrected |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        count = "–" if math.isnan(row.train_series) else f"{row.train_series:.0f}"
        tested = "–" if math.isnan(row.test_series) else f"{row.test_series:.0f}"
        lines.append(
            f"| {row.factor} | {row.setting or '(as params.yaml)'} | {count} | {tested} | {_pair(row.mae_raw, row.mae_corrected, 2)} | "
            f"{_pair(row.wmae_raw, row.wmae_corrected, 2)} | {_pair(row.r2_raw, row.r2_corrected, 3)} |"
        )
    return "\n".join(lines) + "\n"


def write_ablation_table(default: str | Path | None, cells: list[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Gather the default model and the cells into ``table.csv`` and ``table.md`` in ``out_dir``.

    Args:
        default: the default model's folder (the root pipeline's ``reports/``), first row; None for none.
        cells: the cell folders (``cells/<factor>-<setting>``), in the order the rows should take.
        out_dir: where the two files go.

    Returns:
        The table.

    Raises:
        UserError: for a missing metrics file, a badly named cell folder or a repeated cell.
    """
    rows = ([cell_from_folder(default, default=True)] if default is not None else []) + [cell_from_folder(c) for c in cells]
    table = ablation_table(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / TABLE_CSV, lambda p: table.to_csv(p, index=False, float_format="%.4f"))
    markdown = table_markdown(table)
    write_atomic(out_dir / TABLE_MARKDOWN, lambda p: Path(p).write_text(markdown))
    return table
