"""Checkpoints are written atomically and read with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spineage.errors import UserError
from spineage.training.checkpoint import load_checkpoint, save_checkpoint
from spineage.training.precision import (
    autocast,
    choose_cpu_precision,
    use_channels_last,
)


class Payload:
    """Not a tensor or plain value: a weights_only load must refuse it."""


def test_a_checkpoint_round_trips_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 2, "model": {"w": torch.arange(3.0)}, "history": [{"mae": 1.5}]})
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_corrupt_or_code_carrying_checkpoints_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="found nothing there"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="readable training checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"payload": Payload()}, tmp_path / "code.pt")
    with pytest.raises(UserError, match="readable training checkpoint"):
        load_checkpoint(tmp_path / "code.pt")


def test_precision_choices() -> None:
    assert choose_cpu_precision("float32") == "float32" and choose_cpu_precision("bfloat16") == "bfloat16"
    assert choose_cpu_precision("auto") in ("float32", "bfloat16")
    with pytest.raises(ValueError):
        choose_cpu_precision("float16")
    assert use_channels_last("cpu") and not use_channels_last("cuda:0") and not use_channels_last("cpu", False)
    with autocast(torch.device("cpu"), "bfloat16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "float32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
