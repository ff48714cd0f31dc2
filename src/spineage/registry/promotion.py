"""Gated promotion of a registered spine-age model to ``production``, its rollback, and the table of versions.

``train`` points the alias ``candidate`` at the version it registers; only a person,
through :func:`promote`, moves ``production``. The gate compares the figure each model
is judged by, read from the version's training run (where the evaluate stage logged it):

==================  ==================================  =====================================
model               gate metric (lower is better)       run metric keys read, first found
==================  ==================================  =====================================
``spine-age-mri``   corrected test WMAE                 ``eval_test_corrected_wmae``
``spine-age-xray``  corrected test MAE                  ``eval_test_corrected_mae``,
                                                        ``test_corrected_mae``
==================  ==================================  =====================================

A version passes when its figure is no worse (``<=``) than the current production
version's **on the same test split**: both carry the same data version
(``data_dvc_md5`` and ``data_manifest_sha256``, version tags, else the run's params;
a hash neither version carries counts as equal, but a version carrying neither hash is
never comparable).
Anything else is refused with one line saying why; ``force`` with a ``reason`` overrides.

Every promotion (and rollback) is recorded as tags of the promoted version
(:data:`PROMOTION_TAGS`), and the registered model keeps ``production_history``, the
versions that held production, oldest first, so that :func:`rollback` can return to
the one before.

Example:
    >>> result = promote("spine-age-mri")  # doctest: +SKIP
    >>> result.message  # doctest: +SKIP
    'Promoted spine-age-mri version 7 to production: corrected test WMAE 2.717 y, the first production version'
    >>> print(format_model_table(list_model_versions()))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from spineage.errors import UserError
from spineage.registry.tracking import CANDIDATE, PRODUCTION

if TYPE_CHECKING:  # pragma: no cover - typing only, mlflow is imported where it is used
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAMES: tuple[str, ...] = ("spine-age-mri", "spine-age-xray")
"""The registered spine-age models (DESIGN.md, fixed points)."""

METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "test_corrected_wmae": ("eval_test_corrected_wmae",),
    "test_corrected_mae": ("eval_test_corrected_mae", "test_corrected_mae"),
    # The train stages log the same raw figure (``test_mae`` for MRI, ``mae_test`` for radiographs) before evaluate runs.
    "test_raw_mae": ("eval_test_raw_mae", "test_raw_mae", "test_mae", "mae_test"),
    "test_normative_coverage": ("eval_normative_range_coverage_test",),
}
"""Column of :func:`list_model_versions` → the run metric keys holding it, first found wins.

``eval_*`` are what :func:`spineage.evaluation.stage.log_to_candidate` logs for the MRI
evaluate stage; ``test_<raw|corrected>_mae`` is what the radiograph evaluate stage logs.
"""

DATA_VERSION_KEYS: tuple[str, ...] = ("data_dvc_md5", "data_manifest_sha256")
"""Version tags (and run params) saying which data a version was trained and tested on."""

PROMOTION_TAGS: tuple[str, ...] = (
    "promoted_by", "promoted_at", "promotion_reason", "promotion_metric", "promotion_candidate_value",
    "promotion_production_value", "promotion_previous_version", "promotion_forced",
)
"""Version tags written by every promotion and rollback."""

HISTORY_TAG = "production_history"
"""Registered-model tag: the versions that held production, oldest first, comma-separated."""

GATE_PASSED = "gate passed"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class GateMetric:
    """The figure a model is promoted on.

    Args:
        column: the :data:`METRIC_KEYS` column holding it.
        label: how a message names it.
        evaluate_command: the command that logs it.
    """

    column: str
    label: str
    evaluate_command: str

    @property
    def keys(self) -> tuple[str, ...]:
        """The run metric keys holding the figure, first found wins."""
        return METRIC_KEYS[self.column]


GATE_METRICS: dict[str, GateMetric] = {
    "spine-age-mri": GateMetric("test_corrected_wmae", "corrected test WMAE", "spineage evaluate"),
    "spine-age-xray": GateMetric("test_corrected_mae", "corrected test MAE", "spineage radiograph evaluate"),
}
"""Model name → the metric its promotion is gated on."""


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` or :func:`rollback` did.

    Args:
        name: registered model name.
        version: the version now in production (the one asked for, for a no-op).
        previous_version: the version that held production before, None for the first.
        metric: the run metric key compared (the first of the gate's keys when none was found).
        candidate_value: the promoted version's figure, None when it has none.
        production_value: the previous production version's figure, None when there is none.
        forced: whether ``--force`` overrode the gate.
        reason: the recorded reason (``gate passed``, ``rollback`` or the forced reason); None for a no-op.
        message: one line for the user.
    """

    name: str
    version: str
    previous_version: str | None
    metric: str
    candidate_value: float | None
    production_value: float | None
    forced: bool
    reason: str | None
    message: str

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- reading the registry


def _client() -> MlflowClient:
    from spineage.registry.tracking import configure_mlflow

    configure_mlflow()
    import mlflow

    return mlflow.MlflowClient()


def _registered_names(client: MlflowClient) -> list[str]:
    return sorted(model.name for model in client.search_registered_models())


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of ``name``, oldest first; empty when the model is not registered."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted((v for v in found if v.name == name), key=lambda v: int(v.version))


def _number(version: ModelVersion) -> str:
    """The version number as text (MLflow 3 gives an int, tags and aliases take text)."""
    return str(version.version)


def _run_data(client: MlflowClient, run_id: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """The run's latest metrics and its params; empty when the run is gone or was never recorded."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}, {}
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return {}, {}
    return dict(run.data.metrics), dict(run.data.params)


def _first_metric(metrics: dict[str, float], keys: Iterable[str]) -> tuple[str | None, float | None]:
    """(key, value) of the first of ``keys`` with a finite value in ``metrics``, else (None, None)."""
    for key in keys:
        value = metrics.get(key)
        if value is not None and math.isfinite(float(value)):
            return key, float(value)
    return None, None


def _data_version(version: ModelVersion, params: dict[str, str]) -> dict[str, str | None]:
    """``data_dvc_md5`` and ``data_manifest_sha256`` of a version: its tags, else its run's params; None when unknown."""
    found: dict[str, str | None] = {}
    for key in DATA_VERSION_KEYS:
        value = (version.tags or {}).get(key) or params.get(key)
        found[key] = value if value and value.lower() != "none" else None
    return found


@dataclass(frozen=True)
class _VersionFacts:
    """What the gate needs to know about one version."""

    version: ModelVersion
    metric_key: str | None
    metric_value: float | None
    data: dict[str, str | None]


def _facts(client: MlflowClient, version: ModelVersion, gate: GateMetric) -> _VersionFacts:
    metrics, params = _run_data(client, version.run_id)
    key, value = _first_metric(metrics, gate.keys)
    return _VersionFacts(version, key, value, _data_version(version, params))


def _require_model(client: MlflowClient, name: str) -> GateMetric:
    """The gate metric of ``name``, after checking it is registered and gated.

    Raises:
        UserError: naming the registered models, if ``name`` is not one of them or has no gate.
    """
    names = _registered_names(client)
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise UserError(f"Expected a registered model named {name!r}, found only: {listed}")
    if name not in GATE_METRICS:
        raise UserError(f"Expected a model with a promotion gate ({', '.join(GATE_METRICS)}), found {name!r}")
    return GATE_METRICS[name]


def _require_version(client: MlflowClient, name: str, version: int | str | None) -> ModelVersion:
    """The version asked for (``candidate`` when None).

    Raises:
        UserError: naming the existing versions, if it does not exist.
    """
    versions = _versions(client, name)
    listed = ", ".join(_number(v) for v in versions) or "none"
    if version is None:
        from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version_by_alias(name, CANDIDATE)
        except MlflowException:
            pass
        raise UserError(f"Expected {name} to have a version with alias {CANDIDATE!r} (train one first, or pass --version), found none among versions {listed}")
    wanted = str(version).strip()
    for found in versions:
        if _number(found) == wanted:
            return found
    raise UserError(f"Expected version {wanted!r} of {name}, found only versions {listed}")


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    return [v.strip() for v in tags.get(HISTORY_TAG, "").split(",") if v.strip()]


def _production(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, PRODUCTION)
    except MlflowException:
        return None


# --------------------------------------------------------------------------- the table


def list_model_versions(names: Iterable[str] = MODEL_NAMES) -> pd.DataFrame:
    """One row per registered version of ``names``: aliases, key test figures, data version, run, promotion tags.

    A model that is not registered is simply absent; a figure the run never logged
    (or a run that is gone) stays empty (NaN, or "" for text).

    Args:
        names: registered model names.

    Returns:
        Columns ``model``, ``version`` (int), ``aliases`` (comma-joined), the :data:`METRIC_KEYS`
        columns, :data:`DATA_VERSION_KEYS`, ``run_id``, ``created`` (UTC timestamp) and
        :data:`PROMOTION_TAGS`; ordered by model, then version.
    """
    client = _client()
    rows = []
    registered = set(_registered_names(client))
    for name in names:
        if name not in registered:
            continue
        # Searched versions come without their aliases; the registered model holds them.
        aliases: dict[str, list[str]] = {}
        for alias, number in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(number), []).append(alias)
        for version in _versions(client, name):
            metrics, params = _run_data(client, version.run_id)
            tags = version.tags or {}
            rows.append({
                "model": name,
                "version": int(version.version),
                "aliases": ",".join(sorted(aliases.get(_number(version), []))),
                **{column: _first_metric(metrics, keys)[1] for column, keys in METRIC_KEYS.items()},
                **{key: value or "" for key, value in _data_version(version, params).items()},
                "run_id": version.run_id or "",
                "created": pd.to_datetime(version.creation_timestamp, unit="ms", utc=True) if version.creation_timestamp else pd.NaT,
                **{key: tags.get(key, "") for key in PROMOTION_TAGS},
            })
    columns = ["model", "version", "aliases", *METRIC_KEYS, *DATA_VERSION_KEYS, "run_id", "created", *PROMOTION_TAGS]
    table = pd.DataFrame(rows, columns=columns)
    for column in METRIC_KEYS:
        table[column] = table[column].astype(float)
    return table


_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"), ("version", "version"), ("aliases", "aliases"),
    ("test_corrected_wmae", "WMAE corr"), ("test_corrected_mae", "MAE corr"), ("test_raw_mae", "MAE raw"),
    ("test_normative_coverage", "coverage"), ("data", "data (dvc/manifest)"), ("run_id", "run"),
    ("created", "created (UTC)"), ("promoted", "promoted"),
)


def _cell(column: str, row: pd.Series) -> str:
    if column in METRIC_KEYS:
        value = row[column]
        return "" if pd.isna(value) else f"{value:.2f}"
    if column == "data":
        dvc, manifest = str(row["data_dvc_md5"])[:8], str(row["data_manifest_sha256"])[:8]
        return f"{dvc or '-'}/{manifest or '-'}" if dvc or manifest else ""
    if column == "run_id":
        return str(row["run_id"])[:8]
    if column == "created":
        return "" if pd.isna(row["created"]) else row["created"].strftime("%Y-%m-%d %H:%M")
    if column == "promoted":
        if not row["promoted_at"]:
            return ""
        forced = " forced" if row["promotion_forced"] == "true" else ""
        return f"{row['promoted_at'][:16].replace('T', ' ')} by {row['promoted_by']}{forced}: {row['promotion_reason']}"
    return str(row[column])


def format_model_table(table: pd.DataFrame) -> str:
    """A plain-text table of :func:`list_model_versions`' rows, for the terminal.

    Figures in years (coverage as a fraction) with two decimals; empty cells where a
    version has no figure; the data version as the first 8 characters of each hash.

    Example:
        >>> format_model_table(pd.DataFrame(columns=["model"]))
        'no registered model versions'
    """
    if table.empty:
        return "no registered model versions"
    cells = [[_cell(column, row) for column, _ in _TABLE_COLUMNS] for _, row in table.iterrows()]
    header = [title for _, title in _TABLE_COLUMNS]
    widths = [max(len(text) for text in column) for column in zip(header, *cells)]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in (header, *cells)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- promotion


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def _describe_data(data: dict[str, str | None]) -> str:
    return ", ".join(f"{key} {value or 'missing'}" for key, value in data.items())


def _user(user: str | None) -> str:
    if user:
        return user
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def _record(
    client: MlflowClient, name: str, version: str, *, user: str | None, reason: str, metric: str,
    candidate_value: float | None, production_value: float | None, previous: str | None, forced: bool, history: list[str],
) -> None:
    """Move ``production`` to ``version``, then write the promotion tags and ``production_history``."""
    client.set_registered_model_alias(name, PRODUCTION, version)
    tags = {
        "promoted_by": _user(user),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion_reason": reason,
        "promotion_metric": metric,
        "promotion_candidate_value": _fmt(candidate_value),
        "promotion_production_value": _fmt(production_value),
        "promotion_previous_version": previous or "none",
        "promotion_forced": str(bool(forced)).lower(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))


def _with_current(history: list[str], current: str | None) -> list[str]:
    """The history ending with the current production version (an alias set by hand is taken in)."""
    if current is not None and (not history or history[-1] != current):
        return [*history, current]
    return history


def _gate(name: str, gate: GateMetric, candidate: _VersionFacts, production: _VersionFacts | None) -> str:
    """Why the gate passes (a phrase for the message).

    Raises:
        UserError: one line saying why the candidate may not be promoted.
    """
    number = _number(candidate.version)
    override = "pass --force --reason to override"
    if candidate.metric_value is None:
        raise UserError(
            f"Refusing to promote {name} version {number}: its run has no {gate.label} ({', '.join(gate.keys)}); "
            f"run `{gate.evaluate_command}` first, or {override}"
        )
    if production is None:
        return f"{gate.label} {candidate.metric_value:.3f} y, the first production version"
    held = _number(production.version)
    if production.metric_value is None:
        raise UserError(
            f"Refusing to promote {name} version {number}: production version {held} has no {gate.label} "
            f"({', '.join(gate.keys)}) to compare with; {override}"
        )
    if not any(candidate.data.values()) or candidate.data != production.data:
        raise UserError(
            f"Refusing to promote {name} version {number}: its test figures are not on the same test split as production "
            f"version {held}'s (version {number}: {_describe_data(candidate.data)}; version {held}: "
            f"{_describe_data(production.data)}); {override}"
        )
    if candidate.metric_value > production.metric_value:
        raise UserError(
            f"Refusing to promote {name} version {number}: its {gate.label} {candidate.metric_value:.3f} y is worse than "
            f"production version {held}'s {production.metric_value:.3f} y on the same data; {override}"
        )
    return f"{gate.label} {candidate.metric_value:.3f} y <= production version {held}'s {production.metric_value:.3f} y on the same data"


def promote(
    name: str, version: int | str | None = None, force: bool = False, reason: str | None = None, user: str | None = None,
) -> PromotionResult:
    """Move the alias ``production`` of ``name`` to ``version`` if it passes the gate (module docstring).

    Args:
        name: registered model (``spine-age-mri`` or ``spine-age-xray``).
        version: the version to promote; None for the one with alias ``candidate``.
        force: promote whatever the gate says (needs ``reason``).
        reason: why the gate is overridden; recorded.
        user: who promotes (recorded); the login name by default.

    Returns:
        What was done; promoting the version already in production changes nothing.

    Raises:
        UserError: for an unknown model or version, a forced promotion without a reason,
            or a version the gate refuses (one line: why, and that ``--force --reason`` overrides).
    """
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise UserError(f"Expected a --reason with --force (it is recorded on the promoted version of {name}), found none")
    client = _client()
    gate = _require_model(client, name)
    chosen = _require_version(client, name, version)
    current = _production(client, name)
    candidate = _facts(client, chosen, gate)
    metric = candidate.metric_key or gate.keys[0]
    if current is not None and _number(current) == _number(chosen):
        return PromotionResult(
            name, _number(chosen), _number(current), metric, candidate.metric_value, candidate.metric_value, False, None,
            f"{name} version {_number(chosen)} is already in production; nothing changed",
        )
    production = _facts(client, current, gate) if current is not None else None
    production_value = production.metric_value if production is not None else None
    previous = _number(current) if current is not None else None
    if force:
        recorded = reason
        against = f"production version {previous}'s {_fmt(production_value)}" if previous else "no production version before"
        message = f"Promoted {name} version {_number(chosen)} to production, forced ({reason}): {gate.label} {_fmt(candidate.metric_value)}, {against}"
    else:
        why = _gate(name, gate, candidate, production)
        recorded = GATE_PASSED
        message = f"Promoted {name} version {_number(chosen)} to production: {why}"
    history = [*_with_current(_history(client, name), previous), _number(chosen)]
    _record(
        client, name, _number(chosen), user=user, reason=recorded, metric=metric, candidate_value=candidate.metric_value,
        production_value=production_value, previous=previous, forced=force, history=history,
    )
    return PromotionResult(name, _number(chosen), previous, metric, candidate.metric_value, production_value, force, recorded, message)


def rollback(name: str, user: str | None = None) -> PromotionResult:
    """Return ``production`` of ``name`` to the version that held it before (``production_history``).

    The current version leaves the history; the restored version gets the promotion tags
    with reason ``rollback``. No gate: a rollback returns to a version a person promoted before.

    Args:
        name: registered model.
        user: who rolls back (recorded); the login name by default.

    Raises:
        UserError: for an unknown model, nothing in production, or no earlier production version.
    """
    client = _client()
    gate = _require_model(client, name)
    current = _production(client, name)
    if current is None:
        raise UserError(f"Expected {name} to have a version in production to roll back, found none")
    history = _with_current(_history(client, name), _number(current))
    if len(history) < 2:
        raise UserError(
            f"Expected an earlier production version of {name} in its {HISTORY_TAG} to roll back to, "
            f"found only version {_number(current)} (in production now)"
        )
    history = history[:-1]
    restored = _require_version(client, name, history[-1])
    before, after = _facts(client, restored, gate), _facts(client, current, gate)
    metric = before.metric_key or after.metric_key or gate.keys[0]
    _record(
        client, name, _number(restored), user=user, reason=ROLLBACK, metric=metric, candidate_value=before.metric_value,
        production_value=after.metric_value, previous=_number(current), forced=False, history=history,
    )
    message = (
        f"Rolled {name} back to version {_number(restored)} in production (from version {_number(current)}): "
        f"{gate.label} {_fmt(before.metric_value)} (was {_fmt(after.metric_value)})"
    )
    return PromotionResult(name, _number(restored), _number(current), metric, before.metric_value, after.metric_value, False, ROLLBACK, message)
