"""A fresh SQLite MLflow store for a test, copied from one built once per process.

Building an MLflow database runs every Alembic migration (seconds); copying a
prepared one takes milliseconds.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _template() -> Path:
    """An empty, fully migrated MLflow database, built once per test process."""
    from spineage.registry.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    database = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{database}", (folder / "mlartifacts").as_uri())
    return database


def fresh_store(folder: Path) -> str:
    """Copy the prepared database into ``folder`` and return its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "mlflow.db"
    shutil.copyfile(_template(), database)
    return f"sqlite:///{database}"
