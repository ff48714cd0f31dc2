"""The ``spineage`` command line: one thin command per pipeline stage.

Heavy libraries are imported inside the commands so that ``spineage --help``
answers at once. A :class:`~spineage.errors.UserError` becomes one line on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from spineage.errors import UserError

app = typer.Typer(
    help="spineage: spine age and the spine age gap (SAG) from spine images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


SET_HELP = "SECTION.KEY=VALUE: a setting of the params file changed for this run (repeatable; e.g. train.loss=smooth_l1)."


def user_errors(command: Callable) -> Callable:
    """Turn a UserError raised by ``command`` into a one-line message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


@app.command()
@user_errors
def synth(
    out: Path = typer.Option(Path("data/raw"), help="Folder to write the raw cohort into."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, synth section)."),
    n_subjects: Optional[int] = typer.Option(None, help="Subjects to generate (default: the profile's)."),
    seed: Optional[int] = typer.Option(None, help="Seed (default: params.yaml's)."),
    profile: Optional[str] = typer.Option(None, help="ci, default or full (default: params.yaml's)."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: params.yaml's)."),
) -> None:
    """Generate the synthetic phantom cohort, or link your own cohort when data.source is a path."""
    from spineage.config import load_params
    from spineage.synth.generate import generate_cohort, link_external_cohort

    settings = load_params(params)
    if settings.data_source != "synthetic":
        typer.echo(link_external_cohort(Path(settings.data_source), out))
        return
    summary = generate_cohort(
        out,
        settings.synth,
        profile=profile,
        n_subjects=n_subjects,
        seed=settings.seed if seed is None else seed,
        workers=workers,
    )
    typer.echo(summary)


@app.command()
@user_errors
def show(
    raw: Path = typer.Argument(..., help="A raw-cohort folder (e.g. data/raw)."),
    out: Path = typer.Option(Path("reports/synth/montage.png"), help="PNG to write."),
    n: int = typer.Option(8, help="Scans to show, from young to old."),
) -> None:
    """Render mid-sagittal slices from young to old with the label map beside them."""
    from spineage.synth.montage import render_montage

    path = render_montage(raw, out, n_scans=n)
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def inspect(
    scan: Path = typer.Argument(..., help="A NIfTI file, a DICOM series folder, or a PNG/DICOM radiograph."),
    label: Optional[Path] = typer.Option(None, "--label", help="Its label map (default: one found next to the scan)."),
    preprocess: Optional[Path] = typer.Option(None, "--preprocess", help="Also write the array the model would see (.npy)."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (preprocess section), used with --preprocess."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show what to know before trusting a scan: format, orientation, spacing, intensities, regions, quality flags."""
    from spineage.imaging.inspect import format_inspection, inspect_scan, write_preprocessed

    report = inspect_scan(scan, label)
    if as_json:
        import json

        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        typer.echo(format_inspection(report))
    if preprocess is not None:
        record = write_preprocessed(scan, preprocess, label, params)
        status = f", {record['status']}" if record.get("status") else ""
        reason = f" ({record['reason']})" if record.get("reason") else ""
        typer.echo(f"wrote {preprocess}: shape {tuple(record['shape'])} {record['dtype']}{status}{reason}", err=as_json)


@app.command("parse-report")
@user_errors
def parse_report(
    csv: Optional[Path] = typer.Option(
        None, "--csv", help="Table of reports (.tsv read as tab-separated); without it, one report is read from stdin."
    ),
    id_column: str = typer.Option("series_id", help="Column of --csv holding the report (series) id."),
    text_column: str = typer.Option("report", help="Column of --csv holding the report text."),
    out: Optional[Path] = typer.Option(None, help="Findings table to write (.tsv for tab-separated); default stdout."),
    report_id: str = typer.Option("stdin", help="series_id of the report read from stdin."),
) -> None:
    """Turn free-text radiology reports into the long-format findings table."""
    from spineage.findings.report_reader import (
        parse_report_table,
        read_report,
        summarize_findings,
        write_findings,
    )

    if csv is not None:
        findings, summary = parse_report_table(csv, id_column, text_column, out)
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("Expected a report on stdin or a table with --csv FILE, found neither.")
        from spineage.findings.report_text import decode_report_text

        text = decode_report_text(sys.stdin.buffer.read(), "stdin")
        if not text.strip():
            raise UserError("Expected report text on stdin, found nothing.")
        findings = read_report(text, report_id)
        summary = summarize_findings(findings, 1)
        if out is not None:
            write_findings(findings, out)
    if out is None:
        typer.echo(findings.to_csv(index=False), nl=False)
    typer.echo(str(summary), err=True)


validate_app = typer.Typer(
    help=(
        "Quality gates (Great Expectations) on the pipeline's tables. A gate that finds bad data prints one "
        "line per failed expectation and exits 1; a missing folder or table exits 2. Both write the JSON result."
    ),
    no_args_is_help=True,
)
app.add_typer(validate_app, name="validate")


def _finish_gate(result, report: Path) -> None:
    """Print a gate's outcome (failures on stderr, then one summary line) and exit 1 if it failed."""
    for line in result.failure_lines():
        typer.echo(line, err=True)
    typer.echo(result.summary(report), err=not result.success)
    if not result.success:
        raise typer.Exit(code=1)


@validate_app.command("raw")
@user_errors
def validate_raw(
    data: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (validation section: age_min, age_max)."),
    report: Path = typer.Option(Path("reports/validation/raw.json"), help="JSON result to write (pass or fail)."),
) -> None:
    """Check the raw cohort: ids, ages, sexes, modalities, image and label files (label maps as label maps), findings vocabulary, lifestyle, outcomes."""
    from spineage.config import load_params
    from spineage.validation.gate import guarded_run
    from spineage.validation.raw import validate_raw_cohort

    result = guarded_run("raw", data, report, lambda: validate_raw_cohort(data, load_params(params).validation, report))
    _finish_gate(result, report)


@validate_app.command("features")
@user_errors
def validate_features(
    interim: Path = typer.Option(Path("data/interim"), help="Folder holding level_vectors.parquet and region_vectors.parquet."),
    data: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder (its MRI series must all have vectors)."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (read to fail early on a bad one; the gate has no settings)."),
    report: Path = typer.Option(Path("reports/validation/features.json"), help="JSON result to write (pass or fail)."),
) -> None:
    """Check the feature vectors: exactly the 215/67 columns, whole non-negative values, no NaN, every MRI series."""
    from spineage.config import load_params
    from spineage.validation.gate import guarded_run
    from spineage.validation.vectors import validate_feature_vectors

    def run():
        load_params(params)
        return validate_feature_vectors(interim, data, report)

    _finish_gate(guarded_run("features", interim, report, run), report)


@validate_app.command("processed")
@user_errors
def validate_processed(
    processed: Path = typer.Option(Path("data/processed"), help="The preprocess stage's folder (manifest.csv and the arrays)."),
    cohort: Path = typer.Option(Path("data/interim/cohort.csv"), help="The cohort table (every MRI series must be accounted for)."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (preprocess: target spacing and shape; validation: ages)."),
    report: Path = typer.Option(Path("reports/validation/processed.json"), help="JSON result to write (pass or fail)."),
) -> None:
    """Check the preprocessed arrays: target shape and spacing, float16, no NaN/Inf, non-empty, every cohort series."""
    from spineage.config import load_params
    from spineage.imaging.preprocess import load_preprocess_settings
    from spineage.validation.gate import guarded_run
    from spineage.validation.processed import validate_processed_arrays

    def run():
        settings = load_params(params)
        preprocess_settings = load_preprocess_settings(params)
        return validate_processed_arrays(processed, cohort, preprocess_settings, settings.validation, report)

    _finish_gate(guarded_run("processed", processed, report, run), report)


@app.command()
@user_errors
def findings(
    raw: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder (sessions.csv; findings.csv and/or reports/)."),
    out: Path = typer.Option(Path("data/interim"), help="Folder for findings.parquet and the level and region vectors."),
    reports: Path = typer.Option(Path("reports/findings"), help="Folder for summary.json and unmapped.csv."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (findings section)."),
) -> None:
    """Build the findings table of every MRI series (findings.source: its report, findings.csv, or either) and its feature vectors."""
    from spineage.findings.stage import build_findings, load_findings_settings

    summary = build_findings(raw, out, reports, load_findings_settings(params))
    typer.echo(f"wrote {out}: {summary}")


@app.command()
@user_errors
def cohort(
    raw: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder (sessions.csv, participants.csv)."),
    vectors: Path = typer.Option(Path("data/interim/region_vectors.parquet"), help="Region vectors from `spineage findings`."),
    out: Path = typer.Option(Path("data/interim/cohort.csv"), help="The cohort table to write."),
    reports: Path = typer.Option(Path("reports/cohort"), help="Folder for clusters.csv, the figures and summary.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, cohort section)."),
) -> None:
    """Define the normal cohort (UMAP + HDBSCAN per age bracket) and split it into train/validation/test."""
    from spineage.cohort.settings import load_cohort_settings
    from spineage.cohort.stage import build_cohort

    seed, settings = load_cohort_settings(params)
    summary = build_cohort(raw, vectors, out, reports, settings, seed)
    typer.echo(f"wrote {out}: {summary}")


@app.command()
@user_errors
def preprocess(
    raw: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder (sessions.csv names each series' image and label)."),
    cohort: Path = typer.Option(Path("data/interim/cohort.csv"), help="The cohort table from `spineage cohort` (the series to process)."),
    out: Path = typer.Option(Path("data/processed"), help="Folder for <series_id>.npy and manifest.csv."),
    reports: Path = typer.Option(Path("reports/preprocess"), help="Folder for failures.csv and summary.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (preprocess section)."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: params.yaml's preprocess.workers)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Resample, mask, normalise and crop every cohort MRI series to the array the model sees (incremental)."""
    from spineage.imaging.preprocess import load_preprocess_settings
    from spineage.imaging.stage import build_processed

    summary = build_processed(raw, cohort, out, reports, load_preprocess_settings(params, set_values or ()), workers=workers)
    typer.echo(f"wrote {out}: {summary}")


segment_app = typer.Typer(
    help="Spine segmentation (vertebra, disc, canal CSF, cord) for scans without a label map: train and predict.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")


@segment_app.command("train")
@user_errors
def segment_train(
    raw: Path = typer.Option(..., help="A raw-cohort folder whose MRI series have label maps (sessions.csv `label`)."),
    cohort: Optional[Path] = typer.Option(
        None, help="cohort.csv from `spineage cohort`: train on its train split only, score the other splits "
        "(default: a seeded share of subjects held out)."
    ),
    out: Optional[Path] = typer.Option(None, help="Folder to copy the model into (preprocess.segmentation_model can name it)."),
    reports: Optional[Path] = typer.Option(None, help="Folder for metrics.json (Dice by structure and split) and series.csv."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, segmentation section)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs (default: params.yaml's segmentation.epochs)."),
    max_scans: Optional[int] = typer.Option(None, help="Most labelled scans to train on (default: params.yaml's)."),
    metrics: Optional[Path] = typer.Option(None, help="JSON file for the held-out Dice and counts (as in --reports)."),
    initial_model: Optional[str] = typer.Option(
        None, help="A model folder or MLflow model URI to start from (default: params.yaml's segmentation.initial_model)."
    ),
    alias: str = typer.Option("candidate", help="The alias the new spine-seg-mri version takes: candidate, or pretrained for a pre-training a later run starts from."),
) -> None:
    """Train the segmentation U-Net, score its Dice on held-out scans, log the MLflow run and register spine-seg-mri@candidate."""
    from spineage.imaging.segmentation import load_segmentation_settings, train_segmentation, write_metrics

    settings = load_segmentation_settings(params).with_overrides(epochs=epochs, max_scans=max_scans, initial_model=initial_model)
    result = train_segmentation(raw, settings, cohort=cohort, out=out, reports=reports, alias=alias)
    if metrics is not None:
        write_metrics(result, metrics)
    typer.echo(str(result))


@segment_app.command("pretrain")
@user_errors
def segment_pretrain(
    out: Path = typer.Option(Path("models/spine-seg-pretrained"), help="Folder to copy the pre-trained model into (segment train --initial-model names it)."),
    reports: Optional[Path] = typer.Option(None, help="Folder for metrics.json (Dice on its own held-out subjects) and series.csv."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, synth and segmentation sections)."),
    seed: int = typer.Option(20251130, help="The pre-training phantom's seed (not the default cohort's: none of its subjects)."),
    n_subjects: int = typer.Option(150, help="Subjects of the pre-training phantom."),
    epochs: int = typer.Option(90, help="Epochs."),
    max_scans: int = typer.Option(160, help="Most labelled scans to train on."),
    workers: Optional[int] = typer.Option(None, help="Processes drawing the phantom (default: params.yaml's)."),
) -> None:
    """Pre-train the segmentation U-Net on a phantom of its own (SynthSeg-style) and register spine-seg-mri@pretrained."""
    from spineage.config import load_params
    from spineage.imaging.pretrain import pretrain_segmentation
    from spineage.imaging.segmentation import load_segmentation_settings

    settings = load_segmentation_settings(params).with_overrides(epochs=epochs, max_scans=max_scans)
    result = pretrain_segmentation(load_params(params), settings, seed=seed, n_subjects=n_subjects, out=out, reports=reports, workers=workers)
    typer.echo(str(result))


@segment_app.command("predict")
@user_errors
def segment_predict(
    scan: Path = typer.Argument(..., help="The scan: a NIfTI file or a DICOM series folder."),
    out: Path = typer.Option(..., help="The label map to write (.nii.gz), on the scan's canonical RAS grid."),
    model: Optional[str] = typer.Option(
        None, help="MLflow model URI (default: models:/spine-seg-mri@production, else @candidate)."
    ),
    engine: str = typer.Option(
        "unet", help="unet (the registered model: 100 vertebra, 130 disc, 60 CSF, 61 cord) or totalspineseg (level codes, if installed)."
    ),
    levels: bool = typer.Option(
        False, "--levels", help="Name vertebrae and discs (codes 1-27, 31-56) by counting up from the sacrum, where it is in view."
    ),
) -> None:
    """Segment one scan and write its label map."""
    from spineage.imaging.segmentation import segment_scan

    path, said = segment_scan(scan, out, model, engine=engine, levels=levels)
    typer.echo(f"wrote {path}" + (f": {said}" if said else ""))


@app.command()
@user_errors
def train(
    processed: Path = typer.Option(Path("data/processed"), help="The preprocess stage's folder (arrays and manifest.csv)."),
    out: Path = typer.Option(Path("models/spine-age"), help="Folder for checkpoint.pt (every epoch) and best.pt."),
    reports: Path = typer.Option(Path("reports/train"), help="Folder for metrics.json, predictions.csv and history.csv."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, train and preprocess sections)."),
    raw: Optional[Path] = typer.Option(Path("data/raw"), help="The raw cohort; its ground_truth.json gives the noise floor."),
    gate: Optional[Path] = typer.Option(
        Path("reports/validation/processed.json"), help="The processed-data gate's result, logged with the run."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out where it stopped."),
    nproc: Optional[int] = typer.Option(None, help="Training processes (DDP; default: params.yaml's train.nproc)."),
    max_epochs: Optional[int] = typer.Option(None, help="Epochs at most (default: params.yaml's)."),
    loss: Optional[str] = typer.Option(None, help="mse, smooth_l1 or mean_variance (default: params.yaml's)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
    experiment: str = typer.Option("spine-age-mri", help="The MLflow experiment of the run (e.g. ablations)."),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the model as spine-age-mri@candidate (--no-register: an experiment, never a candidate)."
    ),
    run_name: Optional[str] = typer.Option(None, help="The MLflow run's name (default: the loss and the train series)."),
) -> None:
    """Train the spine-age DCNN on the normal cohort, log the MLflow run and register spine-age-mri@candidate."""
    from spineage.config import read_params_mapping
    from spineage.training.distributed import launch_processes, launched_by_torchrun
    from spineage.training.settings import parse_training_settings

    raw_params = read_params_mapping(params, set_values or ())
    settings = parse_training_settings(raw_params["train"], seed=raw_params["seed"])
    # The options pass the train section's checks too: --max-epochs 0 stops here, before anything is written.
    settings = settings.with_overrides(nproc=nproc, max_epochs=max_epochs, loss=loss)
    if settings.nproc > 1 and not launched_by_torchrun():
        arguments = ["train", "--processed", str(processed), "--out", str(out), "--reports", str(reports), "--params", str(params)]
        arguments += ["--raw", str(raw)] if raw is not None else []
        arguments += ["--gate", str(gate)] if gate is not None else []
        arguments += ["--resume"] if resume else []
        arguments += ["--max-epochs", str(settings.max_epochs), "--loss", settings.loss]
        arguments += [word for value in set_values or () for word in ("--set", value)]
        arguments += ["--experiment", experiment, "--register" if register else "--no-register"]
        arguments += ["--run-name", run_name] if run_name is not None else []
        code = launch_processes(settings.nproc, arguments)
        if code:
            raise typer.Exit(code=code)
        return
    from spineage.training.stage import RunTracking, train_spine_age

    result = train_spine_age(
        processed, settings, out, reports,
        preprocessing=raw_params.get("preprocess") or {},
        ground_truth=raw / "ground_truth.json" if raw is not None else None,
        gate_report=gate, resume=resume, raw_dir=raw,
        tracking=RunTracking(experiment=experiment, register=register, run_name=run_name),
    )
    if result is not None:
        typer.echo(str(result))


@app.command()
@user_errors
def evaluate(
    train_reports: Path = typer.Option(Path("reports/train"), help="The train stage's reports (predictions.csv, metrics.json: run and model)."),
    interim: Path = typer.Option(Path("data/interim"), help="Folder of cohort.csv (subject, sex, bracket) and findings.parquet."),
    raw: Optional[Path] = typer.Option(Path("data/raw"), help="The raw cohort; its ground_truth.json, for a phantom, measures the SAG."),
    model: Optional[Path] = typer.Option(Path("models/spine-age"), help="The trained model folder (best.pt, checkpoint.pt), for Grad-CAM."),
    processed: Optional[Path] = typer.Option(Path("data/processed"), help="The preprocessed arrays, for Grad-CAM."),
    reports: Path = typer.Option(Path("reports/evaluate"), help="Folder for metrics.json, predictions.csv, the tables and figures."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (evaluate section)."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to the candidate's MLflow run and model version."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Bias-correct the spine age, measure it (raw and corrected), give each scan a normative range, log to the candidate."""
    from spineage.evaluation.settings import load_evaluation_settings
    from spineage.evaluation.stage import EvaluationInputs, evaluate_spine_age

    inputs = EvaluationInputs(train_reports, interim, raw, model, processed)
    result = evaluate_spine_age(inputs, load_evaluation_settings(params, set_values or ()), reports, log_mlflow=mlflow)
    typer.echo(f"wrote {reports}: {result}")


radiograph_app = typer.Typer(
    help="The radiograph and DXA VFA branch (VERTE-X): gate, preprocess, train, evaluate, outcomes.",
    no_args_is_help=True,
)
app.add_typer(radiograph_app, name="radiograph")


@radiograph_app.command("validate")
@user_errors
def radiograph_validate(
    raw: Path = typer.Option(Path("data/raw"), help="The raw cohort (sessions.csv: xray_lat and dxa_vfa images; outcomes.csv)."),
    report: Path = typer.Option(Path("reports/radiograph/validation.json"), help="The gate's result (JSON)."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (validation and radiograph sections)."),
) -> None:
    """Gate the radiograph branch's inputs (Great Expectations): images readable and 2D, ages, outcome columns in range."""
    from spineage.config import load_params
    from spineage.radiograph.gate import validate_radiograph_cohort
    from spineage.radiograph.settings import load_radiograph_settings

    result = validate_radiograph_cohort(raw, load_radiograph_settings(params), load_params(params).validation, report)
    _finish_gate(result, report)


@radiograph_app.command("preprocess")
@user_errors
def radiograph_preprocess(
    raw: Path = typer.Option(Path("data/raw"), help="The raw cohort."),
    out: Path = typer.Option(Path("data/radiograph/processed"), help="Folder for <series_id>.npy and manifest.csv."),
    reports: Path = typer.Option(Path("reports/radiograph/preprocess"), help="Folder for summary.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (radiograph section)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Equalise, scale, crop the margin, resize keeping the aspect and pad every radiograph and VFA image."""
    from spineage.radiograph.preprocess import build_radiograph_arrays
    from spineage.radiograph.settings import load_radiograph_settings

    summary = build_radiograph_arrays(raw, out, reports, load_radiograph_settings(params, set_values or ()))
    typer.echo(f"wrote {out}: {summary}")


@radiograph_app.command("train")
@user_errors
def radiograph_train(
    processed: Path = typer.Option(Path("data/radiograph/processed"), help="The radiograph preprocess folder."),
    out: Path = typer.Option(Path("models/spine-age-xray"), help="Folder for best.pt and checkpoint.pt."),
    reports: Path = typer.Option(Path("reports/radiograph/train"), help="Folder for predictions.csv, history.csv, metrics.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, radiograph section)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Train the EfficientNet (mean-variance) on the derivation radiographs; register spine-age-xray@candidate."""
    from spineage.radiograph.settings import load_radiograph_settings
    from spineage.radiograph.train import train_xray_model

    metrics = train_xray_model(processed, load_radiograph_settings(params, set_values or ()), out, reports)
    typer.echo(f"wrote {reports}: test MAE {metrics.get('mae_test', float('nan')):.2f} y, external {metrics.get('mae_external', float('nan')):.2f} y, {metrics['model_uri']}")


@radiograph_app.command("evaluate")
@user_errors
def radiograph_evaluate(
    train_reports: Path = typer.Option(Path("reports/radiograph/train"), help="The radiograph training's reports."),
    reports: Path = typer.Option(Path("reports/radiograph"), help="Folder for predictions.csv and metrics.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (radiograph section)."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Store the correction with the registered version."),
) -> None:
    """Fit the bias correction on validation, apply it to every image, store it with the model version."""
    from spineage.radiograph.evaluate import evaluate_xray_model
    from spineage.radiograph.settings import load_radiograph_settings

    metrics = evaluate_xray_model(train_reports, reports, load_radiograph_settings(params), log_mlflow=mlflow)
    typer.echo(f"wrote {reports}: accelerated above {metrics['accelerated_threshold']:+.2f} y")


@radiograph_app.command("outcomes")
@user_errors
def radiograph_outcomes(
    predictions: Path = typer.Option(Path("reports/radiograph/predictions.csv"), help="The radiograph evaluation's per-image table."),
    metrics: Path = typer.Option(Path("reports/radiograph/metrics.json"), help="The radiograph evaluation's metrics (the accelerated threshold)."),
    raw: Path = typer.Option(Path("data/raw"), help="The raw cohort (outcomes.csv; ground_truth.json for a phantom)."),
    reports: Path = typer.Option(Path("reports/radiograph/outcomes"), help="Folder for the tables, figures and truth_recovery.json."),
) -> None:
    """ROC/DeLong, Kaplan-Meier, Cox (Tables 2 and 3), explainability, FRAX and the planted hazards of the radiograph spine age."""
    from spineage.radiograph.outcomes import write_radiograph_outcomes

    result = write_radiograph_outcomes(predictions, metrics, raw, reports)
    sets = ", ".join(f"{name}: {found.get('subjects')} subjects" for name, found in result["sets"].items())
    typer.echo(f"wrote {reports}: {sets}")


@radiograph_app.command("score")
@user_errors
def radiograph_score(
    raw: Path = typer.Option(..., help="The raw cohort to score: every xray_lat and dxa_vfa image of its sessions.csv."),
    out: Path = typer.Option(..., help="Folder for processed/, predictions.csv and metrics.json."),
    model: Optional[str] = typer.Option(
        None, help="A registered radiograph model URI (default: models:/spine-age-xray@production, else @candidate)."
    ),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (radiograph section: preprocessing, derivation age)."),
) -> None:
    """Score every radiograph and VFA image of a raw cohort with a registered model and its stored correction."""
    from spineage.radiograph.score import score_radiographs
    from spineage.radiograph.settings import load_radiograph_settings
    from spineage.registry.tracking import configure_mlflow, resolve_model_uri

    configure_mlflow()
    metrics = score_radiographs(raw, out, model or resolve_model_uri("spine-age-xray"), load_radiograph_settings(params))
    typer.echo(f"wrote {out}: {metrics['images']} images scored by {metrics['model_uri']} (MAE corrected {metrics['mae_corrected']:.2f} y)")


@app.command()
@user_errors
def sag(
    predictions: Path = typer.Option(Path("reports/evaluate/predictions.csv"), help="The evaluate stage's per-series table (corrected SAG)."),
    findings: Path = typer.Option(Path("data/interim/findings.parquet"), help="The findings stage's table (each series' findings)."),
    raw: Path = typer.Option(Path("data/raw"), help="The raw cohort (lifestyle.csv, when it has one)."),
    reports: Path = typer.Option(Path("reports/sag"), help="Folder for the tables, figures and metrics.json."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, sag section)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """The spine age gap's associations: Table 5 (as the paper and adjusted), odds ratios (Figure 6), Figure 7, the multivariable model."""
    from spineage.analysis.settings import parse_sag_settings
    from spineage.analysis.stage import write_sag_analysis
    from spineage.config import read_params_mapping

    raw_params = read_params_mapping(params, set_values or ())
    lifestyle = raw / "lifestyle.csv"
    metrics = write_sag_analysis(
        predictions, findings, lifestyle if lifestyle.is_file() else None, reports,
        parse_sag_settings(raw_params.get("sag")), seed=int(raw_params["seed"]),
    )
    typer.echo(f"wrote {reports}: {metrics.get('n_series')} series, multivariable adjusted R2 {metrics.get('multivariable_adj_r_squared')}")


@app.command()
@user_errors
def report(
    reports: Path = typer.Option(Path("reports"), help="The pipeline's reports folder (cohort/, evaluate/, sag/, truth_recovery.json, ...)."),
    out: Path = typer.Option(Path("reports/report.html"), help="The page to write."),
    ablations: Optional[Path] = typer.Option(Path("pipelines/ablations/reports"), help="The ablation table's folder (absent: not shown)."),
    truth: Optional[Path] = typer.Option(
        Path("pipelines/truth/reports/truth_recovery.json"), help="`make truth`'s verdict on the external truth cohort (absent: not shown)."
    ),
) -> None:
    """Write the self-contained HTML report: cohort, model, SAG analysis, truth recovery, the radiograph branch, provenance."""
    from spineage.reporting.html import write_report
    from spineage.reporting.radiograph_section import radiograph_section

    hazards = truth.parent / "radiograph" / "truth_recovery.json" if truth is not None else None
    path = write_report(reports, out, ablations=ablations, external_truth=truth, extra_sections=[radiograph_section(reports, hazards)])
    typer.echo(f"wrote {path}")


@app.command("truth-cohort")
@user_errors
def truth_cohort(
    out: Path = typer.Option(..., help="Folder to write the truth cohort into."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (synth section; truth.seed and truth.n_subjects)."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: params.yaml's synth.workers)."),
) -> None:
    """Generate the external truth cohort of `make truth`: a fresh phantom, with the truth section's seed and size."""
    from spineage.analysis.truth_settings import load_truth_settings
    from spineage.config import load_params
    from spineage.synth.generate import generate_cohort

    truth = load_truth_settings(params)
    if truth.seed == load_params(params).seed:
        raise UserError(f"Expected truth.seed to differ from the default run's seed {truth.seed}: the truth cohort must be new subjects")
    typer.echo(generate_cohort(out, load_params(params).synth, n_subjects=truth.n_subjects, seed=truth.seed, workers=workers))


@app.command()
@user_errors
def score(
    raw: Path = typer.Option(..., help="The raw cohort to score: every MRI series of its sessions.csv."),
    out: Path = typer.Option(..., help="Folder for cohort.csv, processed/, predictions.csv and metrics.json."),
    model: Optional[str] = typer.Option(
        None, help="A registered spine-age model URI (default: models:/spine-age-mri@production, else @candidate)."
    ),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (preprocess section: grid and segmenter)."),
    workers: Optional[int] = typer.Option(None, help="Preprocessing processes (default: params.yaml's preprocess.workers)."),
    set_values: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Score a whole raw cohort with a registered model and its stored bias correction (an external test set)."""
    from spineage.evaluation.external import score_cohort
    from spineage.imaging.preprocess import load_preprocess_settings
    from spineage.registry.tracking import configure_mlflow, resolve_model_uri

    configure_mlflow()
    uri = model or resolve_model_uri("spine-age-mri")
    result = score_cohort(raw, out, uri, load_preprocess_settings(params, set_values or ()), workers=workers)
    typer.echo(f"wrote {out}: {result}")


@app.command("validate-truth")
@user_errors
def validate_truth(
    predictions: Path = typer.Option(Path("reports/evaluate/predictions.csv"), help="A prediction table (the evaluate stage's or `spineage score`'s)."),
    raw: Path = typer.Option(Path("data/raw"), help="The raw cohort the predictions are of (ground_truth.json, lifestyle.csv)."),
    cohort: Optional[Path] = typer.Option(
        Path("data/interim/cohort.csv"), help="The cohort table, to judge the normal-cohort definition (absent: skipped)."
    ),
    out: Path = typer.Option(Path("reports/truth_recovery.json"), help="The JSON file to write."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (truth section)."),
    all_splits: bool = typer.Option(False, "--all-splits", help="Judge every series (an external cohort), not truth.splits."),
) -> None:
    """Compare the pipeline's spine age gap with a phantom's planted truth: agreement, lifestyle effects, power."""
    from spineage.analysis.truth import truth_line, validate_truth as run
    from spineage.analysis.truth_settings import load_truth_settings

    result = run(predictions, raw, out, load_truth_settings(params), cohort_csv=cohort, all_splits=all_splits)
    typer.echo(truth_line(result))


@app.command()
@user_errors
def models(
    model: Optional[list[str]] = typer.Option(None, "--model", help="A registered model to list (repeatable; default: spine-age-mri and spine-age-xray)."),
) -> None:
    """List the registered spine-age versions with their aliases, key metrics, data version and run."""
    from spineage.registry.promotion import MODEL_NAMES, format_model_table, list_model_versions
    from spineage.registry.tracking import configure_mlflow

    configure_mlflow()
    typer.echo(format_model_table(list_model_versions(tuple(model) if model else MODEL_NAMES)))


@app.command()
@user_errors
def promote(
    model: str = typer.Option("spine-age-mri", help="The registered model."),
    version: Optional[int] = typer.Option(None, help="The version to promote (default: the candidate)."),
    force: bool = typer.Option(False, "--force", help="Promote even when the gate refuses (needs --reason)."),
    reason: Optional[str] = typer.Option(None, help="Why a forced promotion is right (recorded on the version)."),
    rollback: bool = typer.Option(False, "--rollback", help="Return production to the version that held it before."),
) -> None:
    """Move the production alias to a version whose corrected test WMAE is no worse than production's (a person's step, never a stage)."""
    from spineage.registry.promotion import promote as promote_version
    from spineage.registry.promotion import rollback as roll_back
    from spineage.registry.tracking import configure_mlflow

    if rollback and (version is not None or force):
        raise UserError("Expected --rollback alone, found it with --version or --force: a rollback returns to the previous production version")
    configure_mlflow()
    result = roll_back(model) if rollback else promote_version(model, version, force=force, reason=reason)
    typer.echo(str(result))


@app.command()
@user_errors
def predict(
    scans: list[Path] = typer.Argument(..., help="NIfTI files, DICOM series folders, PNG/DICOM radiographs, folders of scans, or CSV tables (path, age, sex, modality)."),
    age: Optional[float] = typer.Option(None, help="Chronological age at the scan (years): gives the SAG and its normative range (a single scan)."),
    sex: Optional[str] = typer.Option(None, help="F or M (a single scan; reported, not read by the model)."),
    model: Optional[str] = typer.Option(None, help="A registered model URI (default: models:/spine-age-mri@production for 3D scans, spine-age-xray for 2D)."),
    modality: Optional[str] = typer.Option(None, help="For 2D images: radiograph (default) or vfa (DXA vertebral fracture assessment)."),
    out: Path = typer.Option(Path("predictions"), help="Folder for <scan>.json, predictions.csv and the Grad-CAM PNGs."),
    gradcam: bool = typer.Option(False, "--gradcam", help="Also write a Grad-CAM overlay PNG per scan."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (predict section: flag thresholds); defaults without one."),
) -> None:
    """Predict spine age, the spine age gap and quality/out-of-distribution flags of new scans with a registered model."""
    from spineage.inference.predict import models_for, predict_scans, scan_requests
    from spineage.inference.settings import load_predict_settings

    settings = load_predict_settings(params)
    requests = scan_requests(scans, age=age, sex=sex, modality=modality)
    run = predict_scans(requests, out, models_for(model), settings, gradcam=gradcam, echo=typer.echo)
    typer.echo(str(run))


@app.command()
@user_errors
def recalibrate(
    table: Path = typer.Argument(..., help="CSV of a site's scans of normal spines: path (relative to the CSV) and age; optionally sex, subject_id, normal (true/false) or findings (empty: normal), modality."),
    site: str = typer.Option(..., "--site", help="The site's name: tagged on the new version, whose alias is site-<name>."),
    model: Optional[str] = typer.Option(None, help="The registered version to recalibrate (default: models:/spine-age-mri@production)."),
    holdout: float = typer.Option(0.3, help="Share of the scans (of the subjects, with subject_id) held out to compare before and after."),
    seed: Optional[int] = typer.Option(None, help="Seed of the held-out draw (default: params.yaml's)."),
    out: Optional[Path] = typer.Option(None, help="Folder for recalibration.json and predictions.csv (default: reports/recalibration/<site>)."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (seed, predict section); defaults without one."),
) -> None:
    """Refit the bias correction and normative range on a site's normal scans; register them as a new version (alias site-<name>)."""
    from spineage.inference.recalibrate import load_site_settings, recalibrate_site

    settings, params_seed = load_site_settings(params)
    result = recalibrate_site(table, site, out, model, holdout, params_seed if seed is None else seed, settings)
    typer.echo(str(result))


@app.command("ablation-table")
@user_errors
def ablation_table(
    cell: list[Path] = typer.Option(..., "--cell", help="An ablation cell's folder, <factor>-<setting> holding train/ and evaluate/ (repeatable; rows in this order)."),
    default: Optional[Path] = typer.Option(None, help="The default model's folder (the root pipeline's reports/: train/ and evaluate/), the first row."),
    out: Path = typer.Option(Path("reports"), help="Folder for table.csv and table.md."),
) -> None:
    """Gather the ablation cells' MAE, WMAE and R², raw and bias-corrected, into one table (the MRI paper's Table 3)."""
    from spineage.evaluation.ablations import table_markdown, write_ablation_table

    table = write_ablation_table(default, cell, out)
    typer.echo(table_markdown(table), nl=False)
    typer.echo(f"wrote {out}: {len(table)} rows", err=True)


def main() -> None:  # pragma: no cover - the console script calls app directly
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
