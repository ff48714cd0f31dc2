"""Figures without a display: matplotlib on its Agg backend, each figure written atomically as PNG and closed.

Example:
    >>> import tempfile, pathlib
    >>> plt = headless_pyplot()
    >>> fig, ax = plt.subplots()
    >>> save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "f.png").read_bytes()[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spineage.atomic import write_atomic


def headless_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed; imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lay ``fig`` out tightly, write it as PNG to ``path`` (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        return write_atomic(Path(path), lambda p: fig.savefig(p, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
