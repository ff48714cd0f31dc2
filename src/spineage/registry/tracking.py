"""Where MLflow keeps runs and models, and the registry moves every trainer shares.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else an SQLite file
``mlflow.db`` in the repository root (the DVC project's root, else the folder
holding ``params.yaml`` or ``dvc.yaml``, searched from the working directory upwards). Artifacts of an
SQLite store go beside it, in ``mlartifacts/<experiment>``, so that running a
command from a sub-folder never scatters ``mlruns/`` folders around.

Example:
    >>> from spineage.registry.tracking import configure_mlflow, register_model_version
    >>> configure_mlflow("segmentation")  # doctest: +SKIP
    'sqlite:////work/main/mlflow.db'
    >>> version = register_model_version(model_info, "spine-seg-mri")  # doctest: +SKIP
    >>> model_uri("spine-seg-mri", alias="candidate")
    'models:/spine-seg-mri@candidate'
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from spineage.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only, mlflow is imported where it is used
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

REPO_MARKERS: tuple[str, ...] = ("params.yaml", "dvc.yaml")
"""Files that mark the repository root (the DVC project)."""

CANDIDATE = "candidate"
"""The alias every training run gives the version it registers."""

PRODUCTION = "production"
"""The alias only ``spineage promote`` sets."""

_NOISY_LOGGERS = ("mlflow", "alembic", "urllib3", "git")


DVC_PROJECT_MARKER = ".dvc"
"""The folder that marks a DVC project's root, above any sub-pipeline's own ``dvc.yaml``."""


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root: the DVC project's root, else the nearest folder holding ``params.yaml`` or ``dvc.yaml``.

    A sub-pipeline (``pipelines/ablations/dvc.yaml``) runs its commands in its own
    folder; the project's ``.dvc/`` folder above it keeps its runs in the one store.

    Args:
        start: folder to search from, upwards (the working directory by default).

    Returns:
        The first folder, from ``start`` upwards, holding a ``.dvc/`` folder; failing
        that, the first holding one of :data:`REPO_MARKERS`; ``start`` itself when none does.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DVC_PROJECT_MARKER).is_dir() and any((folder / marker).is_file() for marker in REPO_MARKERS):
            return folder
    for folder in (here, *here.parents):
        if any((folder / marker).is_file() for marker in REPO_MARKERS):
            return folder
    return here


def tracking_uri() -> str:
    """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    return f"sqlite:///{(repo_root() / 'mlflow.db').as_posix()}"


def artifact_root(uri: str | None = None) -> str | None:
    """Where artifacts of new experiments go: ``mlartifacts/`` beside an SQLite store file.

    Args:
        uri: tracking URI (:func:`tracking_uri` by default).

    Returns:
        A ``file://`` URI for an SQLite store kept in a file, else None (a
        tracking server or a file store chooses for itself).
    """
    uri = tracking_uri() if uri is None else uri
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.endswith(":memory:"):
        return None
    database = Path(uri[len(prefix):])
    return (database.resolve().parent / "mlartifacts").as_uri()


def quiet_mlflow() -> None:
    """Keep MLflow, Alembic and Git to warnings; switch off MLflow's artifact progress bars and telemetry."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow 3 sends usage telemetry over the network unless told not to; runs here stay local.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@contextlib.contextmanager
def mlflow_log_level(level: int) -> Iterator[None]:
    """Set the ``mlflow`` logger to ``level`` inside the block (e.g. to hide expected warnings)."""
    logger = logging.getLogger("mlflow")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def configure_mlflow(experiment: str | None = None) -> str:
    """Point MLflow (tracking and registry) at :func:`tracking_uri`, quietly, and pick the experiment.

    Args:
        experiment: experiment to log runs under; created when missing, with its
            artifacts in :func:`artifact_root` ``/<experiment>`` for an SQLite store.

    Returns:
        The tracking URI in use.

    Raises:
        UserError: if the tracking store cannot be opened.
    """
    quiet_mlflow()  # before importing mlflow, which reads the telemetry switch
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not uri.endswith(":memory:"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise UserError(f"Expected the folder of the MLflow database {uri} to exist, found nothing at {folder}")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment is not None:
        try:
            found = mlflow.get_experiment_by_name(experiment)
            if found is None:
                root = artifact_root(uri)
                location = f"{root}/{experiment}" if root else None
                mlflow.create_experiment(experiment, artifact_location=location)
            elif found.lifecycle_stage == "deleted":
                mlflow.MlflowClient().restore_experiment(found.experiment_id)
            mlflow.set_experiment(experiment)
        except MlflowException as error:
            raise UserError(f"Expected a usable MLflow tracking store at {uri}, found an error: {error.message}") from None
    return uri


def pinned_requirements(*packages: str) -> list[str]:
    """``name==version`` of installed distributions, for a logged model's explicit ``pip_requirements``.

    Listing them saves MLflow from inferring requirements by loading the model
    in a subprocess (slow) and pins what the model was trained with. Local
    version labels (``+cpu``) are dropped so that the same pin fits CPU and CUDA wheels.

    Example:
        >>> pinned_requirements("numpy")[0].startswith("numpy==")
        True
    """
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            raise ValueError(f"Expected {package} to be installed to pin it, found it missing") from None
    return pins


def model_uri(name: str, alias: str | None = None, version: int | str | None = None) -> str:
    """The ``models:/`` URI of a registered model by alias (``models:/name@alias``) or version."""
    if (alias is None) == (version is None):
        raise ValueError("Give exactly one of alias and version")
    return f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"


def register_model_version(
    model: "ModelInfo | str",
    name: str,
    alias: str | None = CANDIDATE,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
) -> "ModelVersion":
    """Register a logged model as a new version of ``name`` and point ``alias`` at it.

    Args:
        model: the :class:`mlflow.models.model.ModelInfo` returned by a flavour's
            ``log_model``, or a model URI (``models:/<model_id>``, ``runs:/<run_id>/<name>``).
        name: registered model name (e.g. ``spine-seg-mri``); created when missing.
        alias: alias to set on the new version (``candidate`` for a training run;
            None for none). Only ``spineage promote`` should pass ``production``.
        tags: version tags (the run id is added when known).
        description: version description.

    Returns:
        The new :class:`~mlflow.entities.model_registry.ModelVersion`.
    """
    import mlflow

    uri = model if isinstance(model, str) else model.model_uri
    run_id = None if isinstance(model, str) else model.run_id
    version_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if run_id:
        version_tags.setdefault("run_id", run_id)
    # register_model prints "Successfully registered model ..." and "Created version ..." on stderr.
    with mlflow_log_level(logging.WARNING), contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(uri, name, tags=version_tags or None)
    client = mlflow.MlflowClient()
    if description:
        client.update_model_version(name, version.version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def set_model_alias(name: str, version: int | str, alias: str) -> None:
    """Point ``alias`` of registered model ``name`` at ``version`` (moving it if set elsewhere)."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def version_by_alias(name: str, alias: str) -> "ModelVersion | None":
    """The version of ``name`` that ``alias`` points at, or None when the model or alias is missing."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def resolve_model_uri(name: str, aliases: tuple[str, ...] = (PRODUCTION, CANDIDATE)) -> str:
    """``models:/name/<version>`` of the first alias in ``aliases`` that is set.

    Raises:
        UserError: if the model has none of the aliases (e.g. nothing was trained yet).
    """
    for alias in aliases:
        version = version_by_alias(name, alias)
        if version is not None:
            return model_uri(name, version=version.version)
    raise UserError(
        f"Expected a registered model {name!r} with alias {' or '.join(aliases)} in {tracking_uri()}, "
        "found none (train one first, or pass --model)"
    )


def pinned_model_uri(uri: str) -> str:
    """``models:/name@alias`` turned into ``models:/name/<version>``; any other URI unchanged.

    Pinning the version lets a caller cache a loaded model under a key that
    does not change meaning when the alias moves.

    Raises:
        UserError: if the alias is not set.
    """
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri[len("models:/"):].rsplit("@", 1)
        version = version_by_alias(name, alias)
        if version is None:
            raise UserError(f"Expected registered model {name!r} to have alias {alias!r} in {tracking_uri()}, found none")
        return model_uri(name, version=version.version)
    return uri


def log_torch_module(
    net: Any,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    example_shape: tuple[int, ...],
    packages: tuple[str, ...],
    metadata: dict[str, Any],
) -> "ModelInfo":
    """Log one of this package's torch modules to the active run, so that it loads back as its own class.

    The pytorch flavour pickles the module (``serialization_format="pickle"``),
    so ``mlflow.pytorch.load_model`` returns the project's class with its
    attributes; a tensor signature (``-1`` marks a free size), a zero input
    example and pinned ``pip_requirements`` go with it.

    Args:
        net: the module (copied to the CPU, contiguous memory, eval mode; the original is untouched).
        input_shape: input tensor shape for the signature.
        output_shape: output tensor shape for the signature.
        example_shape: shape of the float32 zero input example.
        packages: installed distributions to pin (see :func:`pinned_requirements`).
        metadata: model metadata (``needs`` says what loading it takes).

    Returns:
        MLflow's ``ModelInfo``.
    """
    import copy

    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    model = copy.deepcopy(net).to("cpu").to(memory_format=torch.contiguous_format).eval()
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), tuple(input_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), tuple(output_shape))]),
    )
    with mlflow_log_level(logging.ERROR):  # the pickle-format notice: the pickle is what loads back as the class
        return mlflow.pytorch.log_model(
            pytorch_model=model,
            name="model",
            signature=signature,
            input_example=np.zeros(example_shape, dtype=np.float32),
            pip_requirements=pinned_requirements(*packages),
            serialization_format="pickle",
            metadata=metadata,
        )
