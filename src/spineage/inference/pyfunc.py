"""The spine-age models as MLflow pyfunc models: a table of scan paths in, spine ages, SAG and flags out.

Each spine-age version is logged with two flavours: ``pytorch`` (the network
itself, what the pipeline's stages load) and ``python_function``, whose loader is
this module, so that

    mlflow models serve -m models:/spine-age-mri@production --env-manager local

answers ``POST /invocations`` with :func:`spineage.inference.predict.predict_scan`'s
fields for every row of ``{"dataframe_records": [{"path": ..., "age": ..., "sex": ...}]}``.
The stored correction and normative range are tags of the registered version, which
the server finds by the logged model's id (:func:`~spineage.inference.bundle.bundle_for_model_directory`),
in the tracking store that ``MLFLOW_TRACKING_URI`` (or the repository's ``mlflow.db``) names.
A bad row (a missing scan, an age out of range) answers HTTP 400 with the one-line reason.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
    """The flavour's save: the pytorch flavour as usual, then this module as the pyfunc loader (``Model.log`` calls it)."""
    import mlflow.pytorch

    mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors["python_function"]["loader_module"] = __name__
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
    """Log a spine-age network to the active run with the pytorch flavour and this pyfunc (module docstring).

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


class SpineAgeService:
    """What ``mlflow.pyfunc.load_model`` returns for a spine-age model: ``predict`` takes a table of scans.

    The registered version (its correction) is looked up on the first prediction, so that
    loading the model needs no tracking store.
    """

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self._models: Any = None

    def _bundle_models(self) -> Any:
        from spineage.inference.bundle import bundle_for_model_directory
        from spineage.inference.predict import Models

        if self._models is None:
            bundle = bundle_for_model_directory(self.model_dir)
            self._models = Models(uri=bundle.uri, _loaded={bundle.uri: bundle})
        return self._models

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One output row (:data:`OUTPUT_COLUMNS`) per input row (:data:`INPUT_COLUMNS`).

        Raises:
            MlflowException: (INVALID_PARAMETER_VALUE, HTTP 400 when served) naming the row and what was wrong.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from spineage.errors import UserError
        from spineage.inference.predict import ScanRequest, predict_scan, summary_row
        from spineage.inference.settings import load_predict_settings
        from spineage.registry.tracking import repo_root

        table = pd.DataFrame(model_input)
        if "path" not in table.columns:
            raise MlflowException(f"Expected a path column, found {list(table.columns)}", error_code=INVALID_PARAMETER_VALUE)
        settings = load_predict_settings(repo_root() / "params.yaml")
        rows = []
        for index, row in enumerate(table.to_dict("records")):
            age = row.get("age")
            request = ScanRequest(
                Path(str(row["path"])), None if age is None or pd.isna(age) else float(age),
                None if row.get("sex") is None or pd.isna(row.get("sex")) else str(row["sex"]),
                None if row.get("modality") is None or pd.isna(row.get("modality")) else str(row["modality"]),
            )
            try:
                result = predict_scan(request, self._bundle_models(), settings)
            except UserError as error:
                raise MlflowException(f"row {index}: {error}", error_code=INVALID_PARAMETER_VALUE) from None
            summary = summary_row(result)
            rows.append({name: summary[name] for name, _ in OUTPUT_COLUMNS})
        output = pd.DataFrame(rows, columns=[name for name, _ in OUTPUT_COLUMNS])
        for name, kind in OUTPUT_COLUMNS:
            if kind == "double":
                output[name] = pd.to_numeric(output[name], errors="coerce").astype(np.float64)
        return output


def _load_pyfunc(data_path: str, model_config: Any = None) -> SpineAgeService:
    """MLflow's pyfunc entry point: ``data_path`` is the model folder's ``data`` (the pytorch flavour's)."""
    return SpineAgeService(Path(data_path).parent)
