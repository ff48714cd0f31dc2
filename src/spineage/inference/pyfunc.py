"""The spine-age models as MLflow pyfunc models: a table of scan paths in, spine ages, SAG and flags out.

Each spine-age version is logged (:mod:`spineage.inference.flavour`) with two
flavours: ``pytorch`` (the network itself, what the pipeline's stages load) and
``python_function``, whose loader is this module, so that

    mlflow models serve -m models:/spine-age-mri@production --env-manager local

answers ``POST /invocations`` with :func:`spineage.inference.predict.predict_scan`'s
fields for every row (:data:`~spineage.inference.flavour.INPUT_COLUMNS`) of ``{"dataframe_records": [{"path": ..., "age": ..., "sex": ...}]}``.
The stored correction and normative range are tags of the registered version, which
the server finds by the logged model's id (:func:`~spineage.inference.bundle.bundle_for_model_directory`),
in the tracking store that ``MLFLOW_TRACKING_URI`` (or the repository's ``mlflow.db``) names.
A bad row (a missing scan, an age out of range) answers HTTP 400 with the one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.inference.flavour import OUTPUT_COLUMNS


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
            self._models = Models.pinned(bundle)
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
        try:  # the model and the settings, once for the table: their errors are not any row's
            models, settings = self._bundle_models(), load_predict_settings(repo_root() / "params.yaml")
        except UserError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        rows = []
        for index, row in enumerate(table.to_dict("records")):
            age = row.get("age")
            request = ScanRequest(
                Path(str(row["path"])), None if age is None or pd.isna(age) else float(age),
                None if row.get("sex") is None or pd.isna(row.get("sex")) else str(row["sex"]),
                None if row.get("modality") is None or pd.isna(row.get("modality")) else str(row["modality"]),
            )
            try:
                result = predict_scan(request, models, settings)
            except UserError as error:
                raise MlflowException(f"row {index}: {error}", error_code=INVALID_PARAMETER_VALUE) from None
            summary = summary_row(result)
            rows.append({name: summary[name] for name, _ in OUTPUT_COLUMNS})
        output = pd.DataFrame(rows, columns=[name for name, _ in OUTPUT_COLUMNS])
        for name, kind in OUTPUT_COLUMNS:
            if kind == "double":
                values = pd.to_numeric(output[name], errors="coerce").astype(np.float64)
                # A missing value (no age: no SAG) stays None: the scoring server writes a float NaN as the
                # token NaN, which is not JSON (strict clients refuse the whole answer); None is null.
                output[name] = values.astype(object).where(values.notna(), None)
        return output


def _load_pyfunc(data_path: str, model_config: Any = None) -> SpineAgeService:
    """MLflow's pyfunc entry point: ``data_path`` is the model folder's ``data`` (the pytorch flavour's)."""
    return SpineAgeService(Path(data_path).parent)
