"""``spineage recalibrate``: refit a spine-age version's bias correction and normative range on one site's normal scans.

A site's scanners and protocols differ from the training sites', so its normal
spines come out older or younger than their age. Given a table of the site's
scans of normal spines, every scan goes through the registered network as
``spineage predict`` sends it (:func:`~spineage.inference.predict.predict_scan`);
the scans are dealt (seeded, by subject when the table names them) into a fit
part and a held-out part:

=========  ==================================================================================
part       what it is used for
=========  ==================================================================================
fit        the source version's correction method (Cole or Beheshti) refitted by least
           squares, and the split-conformal normative range recalibrated on its residuals
           at the source range's coverage (0.9 when it has none)
held out   MAE of the corrected age, mean spine age gap and coverage of the normative range,
           with the stored correction and range (before) and with the new ones (after)
=========  ==================================================================================

The same network is logged again (a new logged model, so that the served pyfunc
finds its version by the model id) in a run of the ``recalibration`` experiment
and registered as a new version of the same registered model, tagged with the
new correction and range, the site and the version it came from, under the alias
``site-<site>``. It is never ``candidate`` or ``production``: a person promotes.

Example:
    >>> result = recalibrate_site(Path("site.csv"), "Leeds General", None, None, 0.3, 7, PredictSettings())  # doctest: +SKIP
    >>> str(result)  # doctest: +SKIP
    'spine-age-mri v3 (alias site-leeds-general) recalibrated from v1 on 40 normal scans: held-out MAE 7.9 -> 3.1 y, ...'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spineage.errors import UserError
from spineage.evaluation.bias import BiasCorrection, apply_bias_correction, fit_bias_correction
from spineage.evaluation.conformal import NormativeRange, calibrate_normative_range, empirical_coverage
from spineage.inference.predict import ScanRequest, checked_age, checked_sex
from spineage.inference.settings import PredictSettings

EXPERIMENT = "recalibration"
"""The MLflow experiment of the runs that log a recalibrated version."""
DEFAULT_COVERAGE = 0.9
"""Coverage of the new normative range when the source version has none."""
MIN_FIT = 3
"""Fewest fit scans (subjects) a linear correction is refitted on."""
MIN_HELD_OUT = 3
"""Fewest held-out scans (subjects) the before/after figures are judged on."""
REPORT = "recalibration.json"
PREDICTIONS = "predictions.csv"
OPTIONAL_COLUMNS = ("sex", "subject_id", "normal", "findings", "modality")
TRUE_WORDS = ("true", "yes", "1", "y", "t")
FALSE_WORDS = ("false", "no", "0", "n", "f")


# --------------------------------------------------------------------------- the fit, from arrays


@dataclass(frozen=True)
class HeldOutFigures:
    """How a correction and range do on the held-out scans.

    Args:
        n: held-out scans.
        mae: mean absolute difference of the corrected age from the age (years).
        mean_gap: mean spine age gap, corrected − chronological age (years); 0 for a site like the training ones.
        coverage: share of held-out ages inside their normative range (None without a range).
    """

    n: int
    mae: float
    mean_gap: float
    coverage: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return {"n": self.n, "mae": self.mae, "mean_gap": self.mean_gap, "coverage": self.coverage}


@dataclass(frozen=True)
class SiteCalibration:
    """A site's new correction and normative range, and how they and the stored ones do on the held-out scans.

    Args:
        correction: the correction refitted on the fit part.
        normative: the normative range recalibrated on the fit part's residuals.
        before: the stored correction and range on the held-out part.
        after: the new ones on the held-out part.
        held_out: per input row, whether it was held out (else fitted on).
    """

    correction: BiasCorrection
    normative: NormativeRange
    before: HeldOutFigures
    after: HeldOutFigures
    held_out: np.ndarray = field(repr=False, compare=False)

    @property
    def n_fit(self) -> int:
        """Scans fitted on."""
        return int((~self.held_out).sum())


def held_out_count(units: int, holdout_fraction: float) -> int:
    """Units (subjects or scans) held out of ``units``: the share, rounded half up, and at least :data:`MIN_HELD_OUT`.

    Example:
        >>> held_out_count(14, 0.3), held_out_count(40, 0.3)
        (4, 12)
    """
    return max(MIN_HELD_OUT, int(math.floor(holdout_fraction * units + 0.5)))


def fit_count_needed(coverage: float) -> int:
    """Fit scans a correction and a ``coverage`` normative range need (the conformal quantile must be finite).

    The count is :func:`~spineage.evaluation.conformal.calibrate_normative_range`'s, computed the same
    way (floating point makes it 10, not 9, at 0.9), so that a table passing here is never refused there.

    Example:
        >>> fit_count_needed(0.9), fit_count_needed(0.5)
        (10, 3)
    """
    return max(MIN_FIT, math.ceil(1.0 / (1.0 - coverage)) - 1)


def units_needed(coverage: float, holdout_fraction: float) -> int:
    """The fewest units (subjects or scans) that leave enough both to fit and to hold out.

    Example:
        >>> units_needed(0.9, 0.3)
        14
    """
    units = fit_count_needed(coverage) + MIN_HELD_OUT
    while units - held_out_count(units, holdout_fraction) < fit_count_needed(coverage):
        units += 1
    return units


def check_holdout_fraction(holdout_fraction: float) -> float:
    """``holdout_fraction`` when strictly between 0 and 1.

    Raises:
        UserError: otherwise.
    """
    if not (isinstance(holdout_fraction, (int, float)) and 0.0 < float(holdout_fraction) < 1.0):
        raise UserError(f"Expected --holdout (the share of scans held out) strictly between 0 and 1, found {holdout_fraction!r}")
    return float(holdout_fraction)


def check_enough_units(units: int, coverage: float, holdout_fraction: float, what: str = "normal scans", note: str = "") -> None:
    """Refuse too few ``what`` to fit a ``coverage`` range and still hold some out.

    Raises:
        UserError: naming how many are needed and how many were found.
    """
    needed = units_needed(coverage, holdout_fraction)
    if units < needed:
        held = held_out_count(needed, holdout_fraction)
        raise UserError(
            f"Expected at least {needed} {what} to recalibrate ({needed - held} to fit the correction and a "
            f"{coverage:.0%} normative range, {held} held out at holdout {holdout_fraction:g}), found {units}{note}"
        )


def _held_out_units(units: int, holdout_fraction: float, seed: int) -> np.ndarray:
    chosen = np.random.default_rng(seed).permutation(units)[: held_out_count(units, holdout_fraction)]
    held = np.zeros(units, dtype=bool)
    held[chosen] = True
    return held


def held_out_figures(correction: BiasCorrection, normative: NormativeRange | None, predicted: np.ndarray, ages: np.ndarray) -> HeldOutFigures:
    """MAE, mean gap and normative-range coverage of ``correction`` and ``normative`` on these scans."""
    corrected = apply_bias_correction(correction, predicted, ages)
    gap = corrected - ages
    coverage = None if normative is None else empirical_coverage(normative, corrected, ages)
    return HeldOutFigures(n=len(ages), mae=float(np.mean(np.abs(gap))), mean_gap=float(np.mean(gap)), coverage=coverage)


def fit_site_calibration(
    predicted: Sequence[float] | np.ndarray,
    ages: Sequence[float] | np.ndarray,
    subjects: Sequence[Any] | None,
    *,
    method: str,
    coverage: float,
    holdout_fraction: float,
    seed: int,
    stored_correction: BiasCorrection,
    stored_normative: NormativeRange | None,
    split: str = "site",
) -> SiteCalibration:
    """Deal a site's scans into fit and held-out parts, refit the correction and range, and judge both versions.

    The deal depends on the scans, not on their order: subjects (or, without them, the
    scans ordered by age and prediction) are permuted with ``seed``, so shuffling the
    rows gives the same result.

    Args:
        predicted: raw spine ages (years) of the site's normal scans.
        ages: their chronological ages (years).
        subjects: their subjects (a subject's scans stay on one side), or None to deal scans.
        method: the correction to refit (cole or beheshti; the source version's).
        coverage: nominal coverage of the new normative range.
        holdout_fraction: share of the subjects (scans) held out.
        seed: seed of the deal.
        stored_correction: the source version's correction (the "before").
        stored_normative: the source version's normative range (None: coverage before is None).
        split: name recorded on the new correction and range (``site:<site>``; never a test split).

    Raises:
        UserError: for mismatched or non-finite inputs, a bad ``holdout_fraction``, too few
            subjects (scans) for ``coverage``, or (Cole) predictions that do not rise with age.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ages = rng.uniform(30, 80, 200)
        >>> stored = BiasCorrection("cole", 0.8, 10.0, "validation", 100)
        >>> predicted = 0.8 * ages + 10 + 8 + rng.normal(0, 1, 200)  # the site adds 8 years
        >>> site = fit_site_calibration(predicted, ages, None, method="cole", coverage=0.9, holdout_fraction=0.3,
        ...                             seed=1, stored_correction=stored, stored_normative=None)
        >>> round(site.before.mean_gap), round(site.after.mean_gap), site.after.n
        (10, 0, 60)
    """
    predicted, ages = np.asarray(predicted, float), np.asarray(ages, float)
    if predicted.shape != ages.shape or predicted.ndim != 1:
        raise UserError(f"Expected one predicted age per chronological age, found {predicted.shape} and {ages.shape}")
    if subjects is not None and len(subjects) != len(ages):
        raise UserError(f"Expected one subject per scan, found {len(subjects)} subjects for {len(ages)} scans")
    bad = int((~np.isfinite(predicted) | ~np.isfinite(ages)).sum())
    if bad:
        raise UserError(f"Expected finite predicted and chronological ages, found {bad} that are not")
    holdout_fraction = check_holdout_fraction(holdout_fraction)

    # Work in a canonical order so that the deal and every sum are the same whatever the rows' order.
    order = np.lexsort((predicted, ages))
    predicted, ages = predicted[order], ages[order]
    if subjects is not None:
        keys = np.asarray([str(s) for s in subjects])[order]
        units, unit_of_row = np.unique(keys, return_inverse=True)
        check_enough_units(len(units), coverage, holdout_fraction, what="subjects")
    else:
        unit_of_row = np.arange(len(ages))
        check_enough_units(len(ages), coverage, holdout_fraction)
    held = _held_out_units(int(unit_of_row.max()) + 1, holdout_fraction, seed)[unit_of_row]

    correction = fit_bias_correction(method, predicted[~held], ages[~held], split)
    residuals = ages[~held] - apply_bias_correction(correction, predicted[~held], ages[~held])
    normative = calibrate_normative_range(residuals, coverage, split)
    held_in_input_order = np.empty_like(held)
    held_in_input_order[order] = held
    return SiteCalibration(
        correction=correction, normative=normative,
        before=held_out_figures(stored_correction, stored_normative, predicted[held], ages[held]),
        after=held_out_figures(correction, normative, predicted[held], ages[held]),
        held_out=held_in_input_order,
    )


# --------------------------------------------------------------------------- the site's table


def site_slug(site: str) -> str:
    """The site's name as it goes in an alias and a folder: lower case, letters, digits and dashes.

    Raises:
        UserError: for a name with no letter or digit.

    Example:
        >>> site_slug("  St. Mary's (Leeds) ")
        'st-mary-s-leeds'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", str(site).strip().lower()).strip("-")[:60].strip("-")
    if not slug:
        raise UserError(f"Expected a site name (--site) with at least one letter or digit, found {site!r}")
    return slug


@dataclass
class SiteTable:
    """The rows of a site's table: the normal scans to predict, and the rows left out for findings.

    Args:
        table: the CSV.
        rows: the table as read (``path`` as written), with a ``normal`` column.
        requests: one per normal row (absolute paths), in the table's order.
        subjects: the normal rows' subjects, or None when the table has no ``subject_id``.
    """

    table: Path
    rows: pd.DataFrame
    requests: list[ScanRequest]
    subjects: list[str] | None

    @property
    def n_left_out(self) -> int:
        """Rows left out because their spine is not normal."""
        return int((~self.rows["normal"]).sum())


def _is_normal(value: Any, line: int, table: Path) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise UserError(f"Expected normal to be true or false on every row of {table}, found {value!r} on line {line}")


def read_site_table(table: Path, settings: PredictSettings) -> SiteTable:
    """Read a site's table (module docstring): ``path`` (relative to the CSV's folder) and ``age``; optionally
    ``sex``, ``subject_id``, ``normal`` (true/false) or ``findings`` (free text, empty for a normal spine), ``modality``.

    Raises:
        UserError: for a missing or unreadable table, a missing column, an empty path, a missing
            or out-of-range age, a bad sex or a ``normal`` that is not true or false.
    """
    table = Path(table)
    if not table.is_file():
        raise UserError(f"Expected a CSV of the site's scans (path, age), found no such file: {table}")
    try:
        rows = pd.read_csv(table, dtype={"path": str, "sex": str, "subject_id": str, "findings": str, "modality": str, "normal": str})
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"Expected a readable CSV of the site's scans at {table}, found: {str(error).splitlines()[0]}") from None
    missing = [column for column in ("path", "age") if column not in rows.columns]
    if missing:
        raise UserError(
            f"Expected columns path and age in {table} (optionally {', '.join(OPTIONAL_COLUMNS)}), "
            f"found {list(rows.columns)}: no {' or '.join(missing)}"
        )
    if rows.empty:
        raise UserError(f"Expected at least one scan in {table}, found none")
    normal = np.ones(len(rows), dtype=bool)
    if "normal" in rows.columns:
        normal &= np.array([_is_normal(value, index + 2, table) for index, value in enumerate(rows["normal"])])
    if "findings" in rows.columns:
        normal &= rows["findings"].fillna("").str.strip().eq("").to_numpy()
    rows = rows.assign(normal=normal)

    requests, subjects = [], []
    for index, row in enumerate(rows.itertuples(index=False)):
        line = index + 2  # the header is line 1
        if pd.isna(row.path) or not str(row.path).strip():
            raise UserError(f"Expected a scan path on every row of {table}, found none on line {line}")
        if pd.isna(row.age):
            raise UserError(f"Expected an age on every row of {table}, found none on line {line} ({row.path})")
        try:
            age = checked_age(float(row.age), settings)
            sex = checked_sex(getattr(row, "sex", None))
        except (UserError, ValueError) as error:
            raise UserError(f"{table} line {line} ({row.path}): {error}") from None
        if not row.normal:
            continue
        path = Path(str(row.path).strip())
        modality = getattr(row, "modality", None)
        requests.append(ScanRequest(path if path.is_absolute() else table.parent / path, age, sex, None if pd.isna(modality) else modality))
        if "subject_id" in rows.columns:
            subject = row.subject_id
            if pd.isna(subject) or not str(subject).strip():
                raise UserError(f"Expected a subject_id on every row of {table} (or no such column), found none on line {line}")
            subjects.append(str(subject).strip())
    return SiteTable(table, rows, requests, subjects if "subject_id" in rows.columns else None)


# --------------------------------------------------------------------------- the stage


def load_site_settings(params: str | Path | None) -> tuple[PredictSettings, int]:
    """The ``predict`` section and the seed of ``params`` when that file exists, else the defaults (both checked)."""
    from spineage.config import Params, load_params
    from spineage.inference.settings import load_predict_settings

    seed = load_params(params).seed if params is not None and Path(params).is_file() else Params().seed
    return load_predict_settings(params), seed


@dataclass
class RecalibrationResult:
    """What ``spineage recalibrate`` did.

    Args:
        site: the site's name.
        alias: the alias of the new version (``site-<slug>``).
        source_uri: the version recalibrated (``models:/name/N``).
        new_uri: the new version.
        n_scans: normal scans used; ``n_left_out``: rows left out for findings.
        calibration: the new correction and range, and the before/after figures.
        out: the folder of :data:`REPORT` and :data:`PREDICTIONS`.
    """

    site: str
    alias: str
    source_uri: str
    new_uri: str
    n_scans: int
    n_left_out: int
    calibration: SiteCalibration
    out: Path

    def __str__(self) -> str:
        before, after = self.calibration.before, self.calibration.after
        coverage = ""
        if after.coverage is not None:
            was = "none" if before.coverage is None else f"{before.coverage:.0%}"
            coverage = f", coverage {was} -> {after.coverage:.0%} (nominal {self.calibration.normative.coverage:.0%})"
        left_out = f" ({self.n_left_out} left out for findings)" if self.n_left_out else ""
        name, version = self.new_uri[len("models:/"):].split("/")
        return (
            f"{name} v{version} (alias {self.alias}) recalibrated for site {self.site} from v{self.source_uri.rsplit('/', 1)[1]} "
            f"on {self.n_scans} normal scans{left_out}: held-out ({after.n}) MAE {before.mae:.1f} -> {after.mae:.1f} y, "
            f"mean gap {before.mean_gap:+.1f} -> {after.mean_gap:+.1f} y{coverage}; wrote {self.out}"
        )


def _raw_spine_ages(site: SiteTable, models: Any, settings: PredictSettings, progress: bool) -> list[dict[str, Any]]:
    """Every normal scan's :func:`predict_scan` result; the first that fails is an error naming it."""
    from spineage.inference.predict import predict_scan

    steps: Any = site.requests
    if progress and len(site.requests) > 1:
        from tqdm import tqdm

        steps = tqdm(site.requests, desc="recalibrate", unit="scan")
    results = []
    for request in steps:
        try:
            results.append(predict_scan(request, models, settings))
        except UserError as error:
            detail = str(error) if str(request.path) in str(error) else f"{request.path}: {error}"
            raise UserError(f"Expected every normal scan of {site.table} to be predicted, found {detail}") from None
    return results


def _source_model_files(uri: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The source version's MLmodel metadata (its training reference) and the distributions its requirements name."""
    import tempfile

    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="recalibrate-") as folder:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=folder))
        metadata = dict(Model.load(str(local / "MLmodel")).metadata or {})
        requirements = local / "requirements.txt"
        lines = requirements.read_text().splitlines() if requirements.is_file() else []
    names = [re.split(r"[<>=!~;\[\s]", line.strip(), maxsplit=1)[0] for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]
    return metadata, tuple(name for name in names if name) or ("torch", "numpy", "cloudpickle")


def _register(bundle: Any, calibration: SiteCalibration, site: str, alias: str, report: dict[str, Any]) -> Any:
    """Log the source network again in a ``recalibration`` run, with the figures; register it as a new version."""
    import mlflow

    from spineage.inference.bundle import SITE_TAG
    from spineage.inference.flavour import log_spine_age_service
    from spineage.registry.tracking import configure_mlflow, register_model_version

    metadata, packages = _source_model_files(bundle.uri)
    configure_mlflow(EXPERIMENT)
    # The registry's tags as they are now (a loaded bundle is cached for the process).
    source_tags = mlflow.MlflowClient().get_model_version(bundle.name, bundle.version).tags
    tags = {
        **calibration.correction.as_tags(), **calibration.normative.as_tags(),
        SITE_TAG: site, "recalibrated_from": bundle.version,
        **{key: value for key, value in source_tags.items() if key.startswith("data_")},
    }
    figures = {f"{when}_{name}": value for when, held in (("before", calibration.before), ("after", calibration.after))
               for name, value in held.as_dict().items() if name != "n" and value is not None}
    with mlflow.start_run(run_name=f"{bundle.name}-{alias}"):
        mlflow.set_tags({SITE_TAG: site, "recalibrated_from": bundle.uri})
        mlflow.log_params({"site": site, "source_model": bundle.uri, "method": calibration.correction.method,
                           "coverage": calibration.normative.coverage, **report["deal"]})
        mlflow.log_metrics({**figures, "n_fit": calibration.n_fit, "n_held_out": calibration.after.n})
        info = log_spine_age_service(bundle.network, packages=packages, metadata=metadata)
        version = register_model_version(
            info, bundle.name, alias=alias, tags=tags,
            description=f"{bundle.name} v{bundle.version} recalibrated for site {site} on {report['counts']['normal']} normal scans",
        )
        mlflow.log_dict({**report, "new": {"uri": f"models:/{bundle.name}/{version.version}", "version": str(version.version)}}, REPORT)
    return version


def _predictions_table(site: SiteTable, results: list[dict[str, Any]], calibration: SiteCalibration, stored: BiasCorrection) -> pd.DataFrame:
    raw = np.array([result["spine_age_raw"] for result in results], float)
    ages = np.array([request.age for request in site.requests], float)
    before = apply_bias_correction(stored, raw, ages)
    after = apply_bias_correction(calibration.correction, raw, ages)
    table = site.rows.drop(columns=["normal"]).copy()
    columns = {"split": "left_out", "spine_age_raw": np.nan, "spine_age_before": np.nan, "spine_age_after": np.nan,
               "sag_before": np.nan, "sag_after": np.nan, "in_distribution": None}
    table = table.assign(**columns)
    used = site.rows.index[site.rows["normal"].to_numpy()]
    table.loc[used, "split"] = np.where(calibration.held_out, "held_out", "fit")
    table.loc[used, "spine_age_raw"] = raw
    table.loc[used, "spine_age_before"], table.loc[used, "spine_age_after"] = before, after
    table.loc[used, "sag_before"], table.loc[used, "sag_after"] = before - ages, after - ages
    table.loc[used, "in_distribution"] = [result["quality"]["in_distribution"] for result in results]
    return table


def recalibrate_site(
    table: Path,
    site: str,
    out: Path | None = None,
    model_uri: str | None = None,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    settings: PredictSettings = PredictSettings(),
    progress: bool = True,
) -> RecalibrationResult:
    """Recalibrate a registered spine-age version for a site and register the result (module docstring).

    Args:
        table: CSV of the site's scans (:func:`read_site_table`).
        site: the site's name (the ``site`` tag; its slug makes the alias and the default folder).
        out: folder for :data:`REPORT` and :data:`PREDICTIONS` (default ``reports/recalibration/<slug>``).
        model_uri: the version to recalibrate (default ``models:/spine-age-mri@production``).
        holdout_fraction: share of the subjects (scans) held out for the before/after figures.
        seed: seed of the held-out deal.
        settings: the predict section (accepted ages, flag thresholds).
        progress: show a progress bar over the scans.

    Returns:
        The new version, the figures and where the reports are.

    Raises:
        UserError: for an empty site name, a bad table, an unknown model, too few normal scans,
            a scan that cannot be predicted, or a site whose predictions do not follow age;
            nothing is registered or written then.
    """
    from spineage.atomic import json_ready, write_atomic, write_json_atomic
    from spineage.inference.bundle import default_model_uri, load_bundle
    from spineage.inference.predict import Models

    site = str(site).strip()
    slug = site_slug(site)
    holdout_fraction = check_holdout_fraction(holdout_fraction)
    out = Path(out) if out is not None else Path("reports") / "recalibration" / slug
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected --out to be a folder, found the file {out}")
    site_table = read_site_table(table, settings)
    bundle = load_bundle(model_uri or default_model_uri("mri"))
    coverage = bundle.normative.coverage if bundle.normative is not None else DEFAULT_COVERAGE
    note = f" ({site_table.n_left_out} more left out for findings)" if site_table.n_left_out else ""
    if site_table.subjects is None:
        check_enough_units(len(site_table.requests), coverage, holdout_fraction, note=note)
    else:
        check_enough_units(len(set(site_table.subjects)), coverage, holdout_fraction, what="subjects with normal scans", note=note)

    # Pinned to the version: an alias moved during the run changes nothing.
    results = _raw_spine_ages(site_table, Models.pinned(bundle), settings, progress)
    calibration = fit_site_calibration(
        [result["spine_age_raw"] for result in results], [request.age for request in site_table.requests], site_table.subjects,
        method=bundle.correction.method, coverage=coverage, holdout_fraction=holdout_fraction, seed=seed,
        stored_correction=bundle.correction, stored_normative=bundle.normative, split=f"site:{site}",
    )
    alias = f"site-{slug}"
    report: dict[str, Any] = json_ready({
        "site": site, "alias": alias, "table": str(table),
        "source": {"uri": bundle.uri, "version": bundle.version, "correction": bundle.correction.as_dict(),
                   "normative_range": None if bundle.normative is None else bundle.normative.as_dict()},
        "counts": {"rows": len(site_table.rows), "normal": len(site_table.requests), "left_out": site_table.n_left_out,
                   "fit": calibration.n_fit, "held_out": calibration.after.n,
                   "flagged": sum(not result["quality"]["in_distribution"] for result in results)},
        "deal": {"holdout_fraction": holdout_fraction, "seed": seed, "by": "scan" if site_table.subjects is None else "subject"},
        "held_out": {"before": calibration.before.as_dict(), "after": calibration.after.as_dict()},
        "correction": calibration.correction.as_dict(), "normative_range": calibration.normative.as_dict(),
    })
    version = _register(bundle, calibration, site, alias, report)
    new_uri = f"models:/{bundle.name}/{version.version}"
    report["new"] = {"uri": new_uri, "version": str(version.version)}

    predictions = _predictions_table(site_table, results, calibration, bundle.correction)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / PREDICTIONS, lambda path: predictions.to_csv(path, index=False, float_format="%.3f"))
    write_json_atomic(out / REPORT, report)
    return RecalibrationResult(site, alias, bundle.uri, new_uri, len(site_table.requests), site_table.n_left_out, calibration, out)
