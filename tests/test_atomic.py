"""Tests of the atomic writers: whole files or none, the usual permissions, arrays without pickles."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from spineage.atomic import write_array_atomic, write_atomic, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"mae": 2.5})

    def half_then_fail(path: Path) -> None:
        path.write_text("{\"mae\":")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == '{\n  "mae": 2.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path: Path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "report.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_arrays_keep_their_name_and_refuse_pickles(tmp_path: Path):
    path = write_array_atomic(tmp_path / "s1.npy", np.arange(6, dtype=np.float16).reshape(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["s1.npy"]
    np.testing.assert_array_equal(np.load(path), np.arange(6, dtype=np.float16).reshape(2, 3))
    with pytest.raises(ValueError):
        write_array_atomic(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "objects.npy").exists()
