"""Training checkpoints: written atomically every epoch, read back with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (the model and
optimiser state, the scheduler state, the epoch, the early-stopping state, the
history and the MLflow run id), so loading it never unpickles code.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> _ = save_checkpoint(path, {"epoch": 3, "weights": {"w": torch.ones(2)}})
    >>> load_checkpoint(path)["epoch"]
    3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spineage.atomic import write_atomic
from spineage.errors import UserError

CHECKPOINT = "checkpoint.pt"
"""The latest epoch's state, in the training output folder (what ``--resume`` reads)."""

BEST = "best.pt"
"""The weights of the epoch with the lowest validation MAE."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file beside ``path``, then rename it."""
    import torch

    return write_atomic(Path(path), lambda temporary: torch.save(state, temporary))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``, onto the CPU).

    Raises:
        UserError: if it is missing or not a readable checkpoint.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected a training checkpoint at {path}, found nothing there")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"Expected a readable training checkpoint at {path}, found an error: {first}") from None
    if not isinstance(state, dict):
        raise UserError(f"Expected a training checkpoint (a mapping) at {path}, found a {type(state).__name__}")
    return state
