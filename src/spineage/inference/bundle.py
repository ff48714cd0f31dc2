"""A registered spine-age model with everything inference needs: network, correction, normative range, reference.

A version of ``spine-age-mri`` or ``spine-age-xray`` is the network (the logged
model), its bias correction and normative range (tags the evaluate stage, or
``spineage recalibrate``, set on the version) and the :class:`~spineage.inference.reference.TrainingReference`
of its training scans (in the model's ``MLmodel`` metadata). :func:`load_bundle`
gathers them for a model URI; :func:`bundle_for_model_directory` does the same for
a downloaded model folder, as the MLflow pyfunc server has, by finding the version
whose logged model it is.

Example:
    >>> bundle = load_bundle("models:/spine-age-mri@production")  # doctest: +SKIP
    >>> bundle.kind, bundle.correction.method  # doctest: +SKIP
    ('mri', 'cole')
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.evaluation.bias import BiasCorrection
from spineage.evaluation.conformal import NormativeRange
from spineage.inference.reference import REFERENCE_KEY, TrainingReference

MRI_MODEL = "spine-age-mri"
XRAY_MODEL = "spine-age-xray"
MODEL_FOR_KIND: dict[str, str] = {"mri": MRI_MODEL, "radiograph": XRAY_MODEL}
"""The registered model that reads each kind of scan."""

SITE_TAG = "site"
"""Tag of a version recalibrated for a site."""


@dataclass
class ModelBundle:
    """One registered spine-age version, ready to predict.

    Args:
        name: the registered model.
        version: its version.
        kind: ``mri`` (3D) or ``radiograph`` (2D radiograph or DXA VFA).
        network: the torch module (CPU, eval mode).
        correction: the stored bias correction.
        normative: the stored normative range (None when the version has none).
        reference: the training scans' reference (None for a model logged without one).
        tags: every tag of the version.
    """

    name: str
    version: str
    kind: str
    network: Any
    correction: BiasCorrection
    normative: NormativeRange | None
    reference: TrainingReference | None
    tags: dict[str, str] = field(default_factory=dict)
    _segmenter: Any = None

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"

    @property
    def site(self) -> str | None:
        """The site this version was recalibrated for, if any."""
        return self.tags.get(SITE_TAG) or None

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing settings stored in the network (params.yaml's section at training)."""
        return dict(getattr(self.network, "preprocessing", {}) or {})

    def segmenter(self) -> Any:
        """The MRI segmentation model the training arrays were masked with (loaded once).

        Raises:
            UserError: when the model names none, or it cannot be found.
        """
        if self._segmenter is None:
            from spineage.imaging.segmentation import load_segmentation_model

            self._segmenter = load_segmentation_model(segmentation_model_location(self.preprocessing))
        return self._segmenter

    @functools.cached_property
    def segmenter_mismatch(self) -> str | None:
        """Why the segmenter found is not the one the training arrays were masked with, or None when it is.

        None as well for a network that stores no segmenter identity (trained before it was recorded).
        """
        from spineage.imaging.identity import SEGMENTER_IDENTITY_KEY, same_segmentation_model, segmentation_model_identity

        stored = self.preprocessing.get(SEGMENTER_IDENTITY_KEY)
        if not stored:
            return None
        found = segmentation_model_identity(segmentation_model_location(self.preprocessing))
        if same_segmentation_model(str(stored), found):
            return None
        return (f"the segmentation model at {self.preprocessing.get('segmentation_model')} ({found.rpartition('#')[2]}) is not "
                f"the one this version's training scans were masked with ({str(stored).rpartition('#')[2]}); "
                f"masks, and so spine ages, may differ from training")


def segmentation_model_location(preprocessing: dict[str, Any]) -> str:
    """Where the segmenter of ``preprocessing`` is: an MLflow URI as written, a folder relative to the repository root.

    Raises:
        UserError: when no segmentation model is named, or a named folder does not exist.
    """
    from spineage.registry.tracking import repo_root

    named = preprocessing.get("segmentation_model")
    if not named:
        raise UserError("Expected the model's preprocessing to name a segmentation model (preprocess.segmentation_model), found none")
    named = str(named)
    if "://" in named or named.startswith(("models:/", "runs:/")):
        return named
    folder = Path(named)
    for candidate in (folder, repo_root() / folder):
        if candidate.exists():
            return str(candidate)
    raise UserError(
        f"Expected the segmentation model folder {named} that the spine-age model's training arrays were masked with "
        f"(relative to {repo_root()}), found nothing there: run `make repro` or `spineage segment train --out {named}`"
    )


def kind_of(network: Any) -> str:
    """``mri`` for the 3D network, ``radiograph`` for the 2D one."""
    from spineage.models.spine_age import SpineAgeNet
    from spineage.models.spine_age_xray import SpineAgeXrayNet

    if isinstance(network, SpineAgeNet):
        return "mri"
    if isinstance(network, SpineAgeXrayNet):
        return "radiograph"
    raise UserError(f"Expected a spine-age network (SpineAgeNet or SpineAgeXrayNet), found a {type(network).__name__}")


def default_model_uri(kind: str) -> str:
    """``models:/<the kind's model>@production``, refused with the command that makes one when there is none.

    Raises:
        UserError: when the kind's model has no production version.
    """
    from spineage.registry.tracking import PRODUCTION, configure_mlflow, tracking_uri, version_by_alias

    configure_mlflow()
    name = MODEL_FOR_KIND[kind]
    if version_by_alias(name, PRODUCTION) is None:
        raise UserError(
            f"Expected a production version of {name} in {tracking_uri()}, found none: "
            f"promote the candidate with `spineage promote --model {name}` (or pass --model models:/{name}@candidate)"
        )
    return f"models:/{name}@{PRODUCTION}"


def _stored_correction(name: str, version: str, tags: dict[str, str]) -> BiasCorrection:
    try:
        return BiasCorrection.from_tags(tags)
    except (UserError, KeyError, ValueError):
        raise UserError(
            f"Expected a bias correction stored on {name} version {version} (the evaluate stage stores it), found none"
        ) from None


def _bundle(model_dir: Path, name: str, version: str, tags: dict[str, str]) -> ModelBundle:
    import mlflow.pytorch
    from mlflow.models import Model

    network = mlflow.pytorch.load_model(str(model_dir), map_location="cpu").eval()
    metadata = Model.load(str(model_dir / "MLmodel")).metadata or {}
    reference = metadata.get(REFERENCE_KEY)
    return ModelBundle(
        name=name, version=str(version), kind=kind_of(network), network=network,
        correction=_stored_correction(name, version, tags), normative=NormativeRange.from_tags(tags),
        reference=TrainingReference.from_dict(reference) if reference else None, tags=dict(tags),
    )


@functools.lru_cache(maxsize=4)
def _cached_bundle(tracking: str, pinned: str) -> ModelBundle:
    import mlflow
    from mlflow.exceptions import MlflowException

    name, version = pinned[len("models:/"):].split("/", 1)
    client = mlflow.MlflowClient()
    try:
        model_version = client.get_model_version(name, version)
        local = Path(mlflow.artifacts.download_artifacts(pinned))
    except MlflowException as error:
        raise UserError(f"Expected a registered model at {pinned} in {tracking}, found: {str(error).splitlines()[0]}") from None
    return _bundle(local, name, version, dict(model_version.tags))


def load_bundle(model_uri: str) -> ModelBundle:
    """The registered version ``model_uri`` names (``models:/name@alias`` or ``models:/name/N``), loaded once per process.

    Raises:
        UserError: for another kind of URI, an unset alias, a missing version, or one without a stored correction.
    """
    from spineage.registry.tracking import configure_mlflow, pinned_model_uri

    tracking = configure_mlflow()
    named = model_uri[len("models:/"):] if model_uri.startswith("models:/") else ""
    if not ("@" in named or re.fullmatch(r"[^/@]+/\d+", named)):
        raise UserError(f"Expected a registered model URI (models:/name@alias or models:/name/version), found {model_uri!r}")
    return _cached_bundle(tracking, pinned_model_uri(model_uri))


def bundle_for_model_directory(model_dir: str | Path) -> ModelBundle:
    """The bundle of a downloaded model folder: the registered version whose logged model it is supplies the tags.

    Raises:
        UserError: when no version of spine-age-mri or spine-age-xray in the tracking store is that model.
    """
    import mlflow
    from mlflow.models import Model

    from spineage.registry.tracking import configure_mlflow, tracking_uri

    configure_mlflow()
    model_dir = Path(model_dir)
    logged = Model.load(str(model_dir / "MLmodel"))
    client = mlflow.MlflowClient()
    for name in MODEL_FOR_KIND.values():
        for version in client.search_model_versions(f"name='{name}'"):
            # A SQLite store leaves the version's model_id empty; its source is models:/<model id> all the same.
            if logged.model_id and logged.model_id in (version.model_id, str(version.source).rstrip("/").rsplit("/", 1)[-1]):
                return _bundle(model_dir, name, version.version, dict(version.tags))
    raise UserError(
        f"Expected a registered version of {' or '.join(MODEL_FOR_KIND.values())} for the model in {model_dir} "
        f"(logged model {logged.model_id}) in {tracking_uri()}, found none: it holds the stored bias correction"
    )
