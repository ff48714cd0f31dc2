"""Writing outputs atomically: a temporary file beside the target, then a rename.

An interrupted run never leaves a half-written output, and an existing output
stays whole until its replacement is complete.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_json_atomic(folder / "metrics.json", {"mae": 2.5}).read_text()
    '{\\n  "mae": 2.5\\n}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it owner-only; outputs get the usual permissions
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None, NumPy scalars as Python ones, tuples as lists (strict JSON has none of them).

    Example:
        >>> json_ready({"r": float("nan"), "n": (1, 2.5)})
        {'r': None, 'n': [1, 2.5]}
    """
    import math

    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # a NumPy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def write_array_atomic(path: Path, array) -> Path:
    """Write a NumPy array as ``.npy`` (no pickles), atomically."""
    import numpy as np

    def save(temporary: Path) -> None:
        with temporary.open("wb") as stream:  # np.save on a path would append ".npy" to the temporary name
            np.save(stream, np.asarray(array), allow_pickle=False)

    return write_atomic(path, save)
