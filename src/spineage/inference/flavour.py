"""How the spine-age models are logged: the pytorch flavour plus a pyfunc served by :mod:`spineage.inference.pyfunc`.

The training stages log with :func:`log_spine_age_service`; this module names the
serving module only as a string (:data:`LOADER_MODULE`), so the stages that log a
model do not depend on the inference code that serves it.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import Any

LOADER_MODULE = "spineage.inference.pyfunc"
"""The module whose ``_load_pyfunc`` MLflow calls to load a spine-age model as a pyfunc."""

INPUT_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("path", "string", True), ("age", "double", False), ("sex", "string", False), ("modality", "string", False),
)
"""(name, MLflow type, required) of the served model's input table."""
OUTPUT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("scan", "string"), ("kind", "string"), ("model", "string"), ("spine_age_raw", "double"), ("spine_age", "double"),
    ("sag", "double"), ("sag_low", "double"), ("sag_high", "double"), ("atypical_for_age", "boolean"),
    ("in_distribution", "boolean"), ("flags", "string"),
)
"""(name, MLflow type) of the served model's output table."""


def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
    """The flavour's save: the pytorch flavour as usual, then :data:`LOADER_MODULE` as the pyfunc loader (``Model.log`` calls it)."""
    import mlflow.pytorch

    mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors["python_function"]["loader_module"] = LOADER_MODULE
    mlflow_model.save(str(Path(path) / "MLmodel"))


def served_signature() -> Any:
    """The table-in, table-out signature of :data:`INPUT_COLUMNS` and :data:`OUTPUT_COLUMNS`."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(kind, name, required=required) for name, kind, required in INPUT_COLUMNS]),
        outputs=Schema([ColSpec(kind, name) for name, kind in OUTPUT_COLUMNS]),
    )


def log_spine_age_service(net: Any, packages: tuple[str, ...], metadata: dict[str, Any]) -> Any:
    """Log a spine-age network to the active run with the pytorch flavour and the serving pyfunc (module docstring).

    Args:
        net: the network (copied to the CPU, contiguous memory, eval mode; the original is untouched).
        packages: installed distributions to pin in the model's requirements.
        metadata: the MLmodel metadata (the training reference among it).

    Returns:
        MLflow's ``ModelInfo``.
    """
    import torch
    from mlflow.models import Model

    from spineage.registry.tracking import mlflow_log_level, pinned_requirements

    model = copy.deepcopy(net).to("cpu").to(memory_format=torch.contiguous_format).eval()
    with mlflow_log_level(logging.ERROR):  # the pickle-format notice: the pickle is what loads back as the class
        return Model.log(
            artifact_path=None, name="model", flavor=sys.modules[__name__], pytorch_model=model,
            signature=served_signature(), pip_requirements=pinned_requirements(*packages),
            serialization_format="pickle", metadata=metadata,
        )
