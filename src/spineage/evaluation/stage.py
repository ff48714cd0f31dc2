"""The ``evaluate`` stage: bias-corrected spine age, the papers' metrics, a normative range per scan, stability, Grad-CAM.

Reads the train stage's predictions of every series and:

1. fits the bias correction (:mod:`spineage.evaluation.bias`, Cole's by default) on
   the validation split, or (``fit_on: train_cv``) on out-of-fold predictions of the train
   split from ``cv_folds`` extra trainings (:mod:`spineage.evaluation.cross_validation`),
   and applies it to every series;
2. calibrates the split-conformal normative range (:mod:`spineage.evaluation.conformal`)
   on the validation split's corrected residuals, and flags each scan whose age falls
   outside it as ``atypical_for_age``;
3. measures raw and corrected predictions (MAE, WMAE, R², r, mean gap and SD) on the
   test split and on the full test set, per bracket × sex, with the train stage's
   baselines beside them; for a phantom also against the planted biological age;
4. measures repeat-scan stability (ICC(2,1)) of the corrected age on subjects never trained on;
5. lists every scan with |SAG| above ``large_gap_years`` with its findings;
6. draws the figures and a Grad-CAM montage (young, old and large-gap scans);
7. logs the figures of merit to the candidate's MLflow run (``eval_*`` metrics) and stores the
   correction and the normative range as tags of the run and of the registered model version,
   so that inference applies exactly them (:func:`stored_bias_correction`).

Outputs in ``reports/evaluate/``:

=============================  =============================================================
file                           what
=============================  =============================================================
``metrics.json``               every figure (DVC metrics)
``predictions.csv``            per series: series_id, subject_id, split, age, sex, bracket,
                               predicted_age, corrected_age, sag, age_low, age_high,
                               sag_low, sag_high, atypical_for_age
``bias_correction.json``       the fitted correction (method, slope, intercept, split, n; folds for train_cv)
``by_bracket_sex.csv``         raw and corrected figures per evaluation set × bracket × sex
``large_gaps.csv``             scans with |SAG| > large_gap_years and their findings
``predicted_vs_age.png``       predicted and corrected against chronological age
``error_by_bracket_sex.png``   absolute error by bracket × sex
``gradcam.png``                Grad-CAM montage
=============================  =============================================================

Example:
    >>> from spineage.evaluation.settings import EvaluationSettings
    >>> inputs = EvaluationInputs(Path("reports/train"), Path("data/interim"), Path("data/raw"), Path("models/spine-age"), Path("data/processed"))
    >>> evaluate_spine_age(inputs, EvaluationSettings(), Path("reports/evaluate"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import json_ready, write_atomic, write_json_atomic
from spineage.cohort.splits import (
    FULL_TEST_ABNORMAL,
    FULL_TEST_SPLITS,
    TEST,
    TRAIN,
    VALIDATION,
)
from spineage.errors import UserError
from spineage.evaluation.bias import TAG_PREFIX as BIAS_TAG_PREFIX
from spineage.evaluation.bias import (
    BiasCorrection,
    apply_bias_correction,
    fit_bias_correction,
)
from spineage.evaluation.conformal import (
    NormativeRange,
    calibrate_normative_range,
    empirical_coverage,
)
from spineage.evaluation.metrics import age_metrics, mean_absolute_error, pearson_r
from spineage.evaluation.settings import TRAIN_CV, EvaluationSettings
from spineage.raw_cohort import read_cohort_table

EVALUATION_SETS: dict[str, tuple[str, ...]] = {"test": (TEST,), "full_test": FULL_TEST_SPLITS}
"""The sets every figure is reported on: the normal test split, and the full test set (test + every abnormal or other series)."""

PREDICTION_COLUMNS: tuple[str, ...] = (
    "series_id", "subject_id", "split", "age", "sex", "bracket", "predicted_age", "corrected_age", "sag",
    "age_low", "age_high", "sag_low", "sag_high", "atypical_for_age",
)
"""Columns of ``predictions.csv``, the table every later analysis reads."""

METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
BIAS_CORRECTION = "bias_correction.json"
BY_BRACKET_SEX = "by_bracket_sex.csv"
LARGE_GAPS = "large_gaps.csv"
PREDICTED_VS_AGE = "predicted_vs_age.png"
ERROR_BY_BRACKET_SEX = "error_by_bracket_sex.png"
GRADCAM = "gradcam.png"


@dataclass(frozen=True)
class EvaluationInputs:
    """Where the evaluate stage reads.

    Args:
        train_reports: the train stage's reports (``predictions.csv``, ``metrics.json``).
        interim: the folder of ``cohort.csv`` and ``findings.parquet``.
        raw: the raw cohort (its ``ground_truth.json``, for a phantom); None for none.
        model: the train stage's model folder (``best.pt``, ``checkpoint.pt``) for Grad-CAM; None to skip it.
        processed: the preprocessed arrays (``manifest.csv``) for Grad-CAM; None to skip it.
    """

    train_reports: Path
    interim: Path
    raw: Path | None = None
    model: Path | None = None
    processed: Path | None = None


@dataclass
class EvaluationResult:
    """What the evaluate stage found (``metrics`` is ``metrics.json``'s content)."""

    metrics: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        m = self.metrics
        parts = []
        for name in EVALUATION_SETS:
            raw, corrected = m[name]["raw"], m[name]["corrected"]
            parts.append(
                f"{name} MAE {_fmt(raw['mae'])}/{_fmt(corrected['mae'])} y, WMAE {_fmt(raw['wmae'])}/{_fmt(corrected['wmae'])} y, "
                f"R² {_fmt(raw['r2'])}/{_fmt(corrected['r2'])} (raw/corrected, n {raw['n']})"
            )
        normative = m["normative_range"]
        icc = m["repeat_scans"]["all"]
        parts.append(
            f"{normative['coverage_nominal']:.0%} normative range ±{normative['half_width']:.2f} y: test coverage "
            f"{_fmt(normative['coverage_test'])}, abnormal flagged {_fmt(normative['flagged_share_abnormal'])}"
        )
        parts.append(f"repeat-scan ICC(2,1) {_fmt(icc['icc'])} [{_fmt(icc['ci_low'])}, {_fmt(icc['ci_high'])}] (n {icc['n']})")
        correction = m["bias_correction"]
        fitted = (
            f" fitted by {correction['folds']}-fold cross-validation on train (train_cv, n {correction['n']})"
            if correction["split"] == TRAIN_CV else ""
        )
        return f"{correction['method']} correction{fitted}; " + "; ".join(parts)


def _fmt(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


# --------------------------------------------------------------------------- inputs


def read_train_outputs(train_reports: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The train stage's ``predictions.csv`` and ``metrics.json``, checked.

    Raises:
        UserError: if either is missing or lacks what the evaluation needs.
    """
    predictions_path, metrics_path = Path(train_reports) / "predictions.csv", Path(train_reports) / "metrics.json"
    for path in (predictions_path, metrics_path):
        if not path.is_file():
            raise UserError(f"Expected the train stage's {path.name} at {path} (run `spineage train` first), found no such file")
    predictions = pd.read_csv(predictions_path, dtype={"series_id": str, "split": str})
    missing = sorted({"series_id", "split", "age", "predicted_age"} - set(predictions.columns))
    if missing:
        raise UserError(f"Expected columns series_id, split, age, predicted_age in {predictions_path}, found {missing} missing")
    if predictions["series_id"].duplicated().any():
        raise UserError(f"Expected one row per series in {predictions_path}, found {int(predictions['series_id'].duplicated().sum())} repeated")
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"Expected JSON in {metrics_path}, found an error: {error}") from None
    if not isinstance(metrics, dict):
        raise UserError(f"Expected a mapping in {metrics_path}, found a {type(metrics).__name__}")
    return predictions, metrics


def evaluation_table(predictions: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """The predictions with each series' subject, sex and bracket from the cohort table.

    Raises:
        UserError: for a predicted series missing from the cohort table.
    """
    cohort = cohort[["series_id", "subject_id", "sex", "bracket"]].drop_duplicates("series_id")
    table = predictions.merge(cohort, on="series_id", how="left", validate="one_to_one")
    unknown = table.loc[table["subject_id"].isna(), "series_id"].tolist()
    if unknown:
        raise UserError(f"Expected every predicted series in the cohort table, found {len(unknown)} missing (e.g. {unknown[:3]})")
    table["bracket"] = pd.to_numeric(table["bracket"].replace("", np.nan), errors="coerce")
    for column in ("age", "predicted_age"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def findings_by_series(findings_path: Path) -> dict[str, str]:
    """Each series' present (not negated) findings as one line: ``L4 disc_bulge moderate; spinal_stenosis present``."""
    if not Path(findings_path).is_file():
        raise UserError(f"Expected the findings table at {findings_path} (run `spineage findings` first), found no such file")
    findings = pd.read_parquet(findings_path)
    if "negated" in findings:
        findings = findings[~findings["negated"].astype(bool)]
    words = (findings["level"].fillna("").astype(str) + " " + findings["condition"].astype(str) + " " + findings["severity"].fillna("").astype(str))
    findings = findings.assign(text=words.str.strip())
    return findings.groupby("series_id")["text"].agg(lambda texts: "; ".join(texts)).to_dict()


# --------------------------------------------------------------------------- figures of merit


def _set_rows(table: pd.DataFrame, name: str) -> pd.DataFrame:
    return table[table["split"].isin(EVALUATION_SETS[name])]


def set_metrics(table: pd.DataFrame) -> dict[str, Any]:
    """Raw and corrected figures (and the baselines', raw) on each evaluation set."""
    baselines = [c for c in table.columns if c.startswith("baseline_")]
    figures = {}
    for name in EVALUATION_SETS:
        rows = _set_rows(table, name)
        figures[name] = {
            "raw": age_metrics(rows, rows["predicted_age"].to_numpy(float)),
            "corrected": age_metrics(rows, rows["corrected_age"].to_numpy(float)),
            "baselines": {c[len("baseline_"):]: age_metrics(rows, rows[c].to_numpy(float)) for c in baselines},
        }
    return figures


def bracket_sex_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Per evaluation set × bracket × sex: n, raw and corrected MAE, corrected mean gap and its SD."""
    rows = []
    for name in EVALUATION_SETS:
        for (bracket, sex), group in _set_rows(table, name).groupby(["bracket", "sex"], dropna=True):
            corrected = age_metrics(group, group["corrected_age"].to_numpy(float))
            rows.append({
                "set": name, "bracket": int(bracket), "sex": sex, "n": len(group),
                "raw_mae": mean_absolute_error(group["age"], group["predicted_age"]),
                "corrected_mae": corrected["mae"], "corrected_mean_gap": corrected["mean_gap"], "corrected_sd_gap": corrected["sd_gap"],
            })
    return pd.DataFrame(rows, columns=["set", "bracket", "sex", "n", "raw_mae", "corrected_mae", "corrected_mean_gap", "corrected_sd_gap"])


def truth_metrics(table: pd.DataFrame, bio: dict[str, float]) -> dict[str, Any]:
    """For a phantom: raw and corrected MAE against the planted biological age, r(SAG, planted gap), per set."""
    biological = table["series_id"].map(bio).to_numpy(float)
    figures = {}
    for name, splits in EVALUATION_SETS.items():
        rows = table["split"].isin(splits).to_numpy() & np.isfinite(biological)
        age, planted_gap = table["age"].to_numpy(float)[rows], biological[rows] - table["age"].to_numpy(float)[rows]
        figures[name] = {
            "n": int(rows.sum()),
            "raw_mae_vs_biological_age": mean_absolute_error(biological[rows], table["predicted_age"].to_numpy(float)[rows]),
            "corrected_mae_vs_biological_age": mean_absolute_error(biological[rows], table["corrected_age"].to_numpy(float)[rows]),
            "raw_gap_vs_planted_gap_r": pearson_r(table["predicted_age"].to_numpy(float)[rows] - age, planted_gap),
            "sag_vs_planted_gap_r": pearson_r(table["sag"].to_numpy(float)[rows], planted_gap),
        }
    return figures


def normative_metrics(table: pd.DataFrame, normative: NormativeRange) -> dict[str, Any]:
    """The range's calibration: empirical coverage on the normal test split, the share flagged among abnormal series."""
    test = table[table["split"] == TEST]
    abnormal = table[table["split"] == FULL_TEST_ABNORMAL]
    return {
        "coverage_nominal": normative.coverage,
        "half_width": normative.half_width,
        "n_calibration": normative.n_calibration,
        "calibration_split": normative.split,
        "coverage_test": empirical_coverage(normative, test["corrected_age"], test["age"]),
        "n_test": len(test),
        "flagged_share_test": float(test["atypical_for_age"].mean()) if len(test) else math.nan,
        "flagged_share_abnormal": float(abnormal["atypical_for_age"].mean()) if len(abnormal) else math.nan,
        "n_abnormal": len(abnormal),
    }


def large_gaps(table: pd.DataFrame, threshold: float, findings: dict[str, str]) -> pd.DataFrame:
    """Every scan with |SAG| > ``threshold``, largest first, with its findings."""
    rows = table[table["sag"].abs() > threshold].copy()
    rows["findings"] = rows["series_id"].map(findings).fillna("")
    rows = rows.reindex(rows["sag"].abs().sort_values(ascending=False).index)
    return rows[["series_id", "subject_id", "split", "age", "sex", "predicted_age", "corrected_age", "sag", "atypical_for_age", "findings"]]


# --------------------------------------------------------------------------- Grad-CAM


def gradcam_cases(table: pd.DataFrame, per_kind: int) -> list[tuple[str, str]]:
    """(series_id, kind) of the montage: the youngest and oldest test scans and the largest |SAG| of the full test set."""
    test = table[table["split"] == TEST].sort_values(["age", "series_id"])
    full = _set_rows(table, "full_test").assign(abs_sag=lambda t: t["sag"].abs()).sort_values(["abs_sag", "series_id"], ascending=[False, True])
    chosen: list[tuple[str, str]] = []
    for kind, candidates in (("young", test), ("old", test.iloc[::-1]), ("large gap", full)):
        picked = [s for s in candidates["series_id"] if s not in {c for c, _ in chosen}][:per_kind]
        chosen.extend((series_id, kind) for series_id in picked)
    return chosen


def run_gradcam(table: pd.DataFrame, settings: EvaluationSettings, model: Path, processed: Path, out: Path) -> dict[str, Any]:
    """The Grad-CAM montage of :func:`gradcam_cases`; returns the block used, its map shape and the series."""
    from spineage.evaluation.gradcam import (
        GradcamCase,
        block_map_shapes,
        choose_gradcam_block,
        load_trained_network,
        render_gradcam_montage,
        spine_age_gradcam,
        trained_settings,
    )
    from spineage.training.data import centre_crop, fit_to_network, read_manifest

    cases = gradcam_cases(table, settings.gradcam_cases)
    if not cases:
        return {"block": None, "series": []}
    manifest = read_manifest(processed).drop_duplicates("series_id").set_index("series_id")
    absent = [s for s, _ in cases if s not in manifest.index]
    if absent:
        raise UserError(f"Expected preprocessed arrays of the Grad-CAM scans in {processed}, found {absent} missing")
    training = trained_settings(model)
    arrays = [np.load(Path(processed) / str(manifest.loc[s, "file"]), allow_pickle=False) for s, _ in cases]
    cropped_shape = centre_crop(arrays[0], training.crop_shape).shape if training.crop_shape else arrays[0].shape
    volumes = np.stack([fit_to_network(a, training.crop_shape, training.input_shape) for a in arrays]).astype(np.float32)
    input_shape = tuple(int(v) for v in volumes.shape[1:])
    net = load_trained_network(model, input_shape, training)
    block = choose_gradcam_block(input_shape, len(net.blocks), settings.gradcam_layer, settings.gradcam_min_cells)
    maps = spine_age_gradcam(net, volumes, block)
    try:  # the manifest's voxel size ("4x3x4" mm), scaled by the resize to the network's grid
        native = [float(v) for v in str(manifest.loc[cases[0][0], "spacing"]).split("x")]
    except (KeyError, ValueError):
        native = [1.0, 1.0, 1.0]
    spacing = tuple(n * c / i for n, c, i in zip(native, cropped_shape, input_shape))
    rows = table.set_index("series_id")
    montage = [
        GradcamCase(s, kind, float(rows.loc[s, "age"]), float(rows.loc[s, "corrected_age"]), volume, heatmap)
        for (s, kind), volume, heatmap in zip(cases, volumes, maps)
    ]
    map_shape = block_map_shapes(input_shape, len(net.blocks))[block - 1]
    render_gradcam_montage(montage, out, block, map_shape, spacing)
    return {"block": block, "map_shape": list(map_shape), "input_shape": list(input_shape), "series": [f"{s} ({k})" for s, k in cases]}


# --------------------------------------------------------------------------- MLflow


def _model_version(model_uri: str) -> tuple[str, str] | None:
    """(name, version) of ``models:/name/version``; None for any other URI."""
    if not isinstance(model_uri, str) or not model_uri.startswith("models:/"):
        return None
    name, _, version = model_uri[len("models:/"):].rpartition("/")
    return (name, version) if name and version.isdigit() else None


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's numbers as MLflow metric names (``eval_test_corrected_mae``, ...)."""
    flat = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}_{key}", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None and math.isfinite(value):
            flat[prefix] = float(value)

    for key in ("test", "full_test", "normative_range", "repeat_scans", "truth", "large_gaps"):
        if key in metrics:
            walk(f"eval_{key}", metrics[key])
    return {k.replace("/", "_"): v for k, v in flat.items()}


def log_to_candidate(run_id: str, model_uri: str, metrics: dict[str, Any], tags: dict[str, str]) -> None:
    """Log the figures and tags to the training run, and the tags to its registered model version.

    Raises:
        UserError: if the tracking store lacks the run or the version.
    """
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    from spineage.registry.tracking import configure_mlflow, tracking_uri

    configure_mlflow()
    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
    except MlflowException:
        raise UserError(f"Expected the training run {run_id} (reports/train/metrics.json) in {tracking_uri()}, found none") from None
    now = int(time.time() * 1000)
    values = [Metric(key, value, now, 0) for key, value in flat_metrics(metrics).items()]
    run_tags = [RunTag(key, value) for key, value in tags.items()]
    for start in range(0, max(len(values), 1), 900):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=values[start:start + 900], tags=run_tags if start == 0 else [])
    version = _model_version(model_uri)
    if version is None:
        return
    try:
        for key, value in tags.items():
            client.set_model_version_tag(version[0], version[1], key, value)
    except MlflowException:
        raise UserError(f"Expected the registered model version {model_uri} in {tracking_uri()}, found none") from None


# --------------------------------------------------------------------------- the stage


def fit_correction(
    table: pd.DataFrame, settings: EvaluationSettings, inputs: EvaluationInputs, run_id: Any = None,
) -> tuple[BiasCorrection, dict[str, Any]]:
    """The bias correction of ``settings.fit_on``, and the cross-validation's figures (empty for validation).

    ``validation``: fitted on the validation split's predictions. ``train_cv``: fitted on
    out-of-fold predictions of every train series from ``settings.cv_folds`` trainings with
    the model's own settings (:func:`spineage.evaluation.cross_validation.out_of_fold_spine_ages`).

    Raises:
        UserError: if the correction cannot be fitted, or (train_cv) the model folder or arrays are unusable.
    """
    if settings.fit_on != TRAIN_CV:
        calibration = table[table["split"] == VALIDATION]
        return fit_bias_correction(settings.bias_correction, calibration["predicted_age"].to_numpy(float), calibration["age"].to_numpy(float), VALIDATION), {}
    from spineage.evaluation.cross_validation import out_of_fold_spine_ages
    from spineage.evaluation.gradcam import trained_settings

    train = table[table["split"] == TRAIN]
    name = f"bias-correction-cv-{str(run_id)[:8]}" if run_id else "bias-correction-cv"
    out_of_fold = out_of_fold_spine_ages(Path(inputs.processed), train, trained_settings(Path(inputs.model)), settings.cv_folds, run_name=name)
    rows = out_of_fold.predictions
    correction = fit_bias_correction(settings.bias_correction, rows["predicted_age"].to_numpy(float), rows["age"].to_numpy(float), TRAIN_CV)
    return correction, out_of_fold.summary()


def evaluate_spine_age(
    inputs: EvaluationInputs, settings: EvaluationSettings, reports_dir: Path, *, log_mlflow: bool = True,
) -> EvaluationResult:
    """Run the evaluate stage (module docstring) and write its outputs to ``reports_dir``.

    Args:
        inputs: where the train stage's outputs, the cohort table, the findings and the arrays are.
        settings: the ``evaluate`` section.
        reports_dir: the output folder.
        log_mlflow: log to the candidate's MLflow run and model version (reports/train/metrics.json's run_id, model_uri).
            The ``fit_on: train_cv`` fold trainings are MLflow runs (experiment ``bias-correction-cv``) either way.

    Raises:
        UserError: for a missing input, or a bias correction that cannot be fitted.
    """
    started = time.perf_counter()
    if settings.fit_on == TRAIN_CV and (inputs.model is None or inputs.processed is None):
        raise UserError(
            f"Expected the trained model folder (--model) and the preprocessed arrays (--processed) with evaluate.fit_on: "
            f"train_cv ({settings.cv_folds} extra trainings with the model's settings), found none"
        )
    predictions, train_metrics = read_train_outputs(inputs.train_reports)
    cohort = read_cohort_table(Path(inputs.interim) / "cohort.csv", ("series_id", "subject_id", "sex", "bracket"))
    table = evaluation_table(predictions, cohort)
    findings = findings_by_series(Path(inputs.interim) / "findings.parquet")

    correction, cross_validation = fit_correction(table, settings, inputs, train_metrics.get("run_id"))
    correction_figures = {**correction.as_dict(), **({"folds": settings.cv_folds} if cross_validation else {})}
    table["corrected_age"] = apply_bias_correction(correction, table["predicted_age"].to_numpy(float), table["age"].to_numpy(float))
    table["sag"] = table["corrected_age"] - table["age"]

    calibration = table[table["split"] == VALIDATION]
    normative = calibrate_normative_range(calibration["age"] - calibration["corrected_age"], settings.coverage, VALIDATION)
    ages, sags = normative.age_range(table["corrected_age"]), normative.sag_range(table["corrected_age"])
    table["age_low"], table["age_high"], table["sag_low"], table["sag_high"] = ages[:, 0], ages[:, 1], sags[:, 0], sags[:, 1]
    table["atypical_for_age"] = normative.atypical(table["corrected_age"], table["age"])

    from spineage.evaluation.stability import repeat_scan_stability
    from spineage.training.stage import biological_ages

    metrics: dict[str, Any] = {
        "bias_correction": {**correction_figures, **({"cross_validation": cross_validation} if cross_validation else {})},
        **set_metrics(table),
        "normative_range": normative_metrics(table, normative),
        "repeat_scans": repeat_scan_stability(table),
    }
    by_group = bracket_sex_metrics(table)
    metrics["by_bracket_sex"] = {
        name: {f"{r.bracket}/{r.sex}": {"n": r.n, "raw_mae": r.raw_mae, "corrected_mae": r.corrected_mae} for r in rows.itertuples()}
        for name, rows in by_group.groupby("set", sort=False)
    }
    bio = biological_ages(Path(inputs.raw) / "ground_truth.json") if inputs.raw is not None else {}
    if bio:
        metrics["truth"] = truth_metrics(table, bio)
    gaps = large_gaps(table, settings.large_gap_years, findings)
    metrics["large_gaps"] = {"threshold_years": settings.large_gap_years, "n": len(gaps), "n_full_test": int(gaps["split"].isin(FULL_TEST_SPLITS).sum())}

    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    from spineage.evaluation.figures import (
        render_error_by_bracket_sex,
        render_predicted_vs_age,
    )

    render_predicted_vs_age(table, reports_dir / PREDICTED_VS_AGE)
    render_error_by_bracket_sex(by_group, reports_dir / ERROR_BY_BRACKET_SEX)
    if inputs.model is not None and inputs.processed is not None and settings.gradcam_cases > 0:
        metrics["gradcam"] = run_gradcam(table, settings, inputs.model, inputs.processed, reports_dir / GRADCAM)

    model_uri, run_id = train_metrics.get("model_uri"), train_metrics.get("run_id")
    metrics.update({"model_uri": model_uri, "run_id": run_id, "settings": settings.as_params()})
    ordered = table.sort_values("series_id")[list(PREDICTION_COLUMNS)]
    write_atomic(reports_dir / PREDICTIONS, lambda p: ordered.to_csv(p, index=False, float_format="%.3f"))
    write_atomic(reports_dir / BY_BRACKET_SEX, lambda p: by_group.to_csv(p, index=False, float_format="%.4f"))
    write_atomic(reports_dir / LARGE_GAPS, lambda p: gaps.to_csv(p, index=False, float_format="%.3f"))
    write_json_atomic(reports_dir / BIAS_CORRECTION, correction_figures)
    if log_mlflow:
        if not run_id:
            raise UserError(f"Expected a run_id in {Path(inputs.train_reports) / 'metrics.json'} to log the evaluation to, found none")
        tags = {**correction.as_tags(), **normative.as_tags()}
        if cross_validation:
            tags[f"{BIAS_TAG_PREFIX}folds"] = str(settings.cv_folds)
        log_to_candidate(str(run_id), str(model_uri), json_ready(metrics), tags)
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    metrics = json_ready(metrics)
    write_json_atomic(reports_dir / METRICS, metrics)
    return EvaluationResult(metrics)


def stored_bias_correction(model_uri: str) -> BiasCorrection:
    """The bias correction stored with a registered model version (what inference applies).

    Raises:
        UserError: if the version has no stored correction (run the evaluate stage first).
    """
    from spineage.registry.tracking import configure_mlflow, pinned_model_uri

    configure_mlflow()
    import mlflow

    version = _model_version(pinned_model_uri(model_uri))
    if version is None:
        raise UserError(f"Expected a registered model URI (models:/name/version or models:/name@alias), found {model_uri!r}")
    tags = mlflow.MlflowClient().get_model_version(*version).tags
    return BiasCorrection.from_tags(tags)

