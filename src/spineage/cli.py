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
        text = sys.stdin.read()
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
    """Check the raw cohort's tables: ids, ages, sexes, modalities, image files, findings vocabulary, lifestyle, outcomes."""
    from spineage.config import load_params
    from spineage.validation.raw import validate_raw_cohort

    settings = load_params(params)
    _finish_gate(validate_raw_cohort(data, settings.validation, report), report)


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
    from spineage.validation.vectors import validate_feature_vectors

    load_params(params)
    _finish_gate(validate_feature_vectors(interim, data, report), report)


@app.command()
@user_errors
def findings(
    raw: Path = typer.Option(Path("data/raw"), help="The raw-cohort folder (sessions.csv; findings.csv and/or reports/)."),
    out: Path = typer.Option(Path("data/interim"), help="Folder for findings.parquet and the level and region vectors."),
    reports: Path = typer.Option(Path("reports/findings"), help="Folder for summary.json and unmapped.csv."),
    params: Path = typer.Option(Path("params.yaml"), help="The params file (findings section)."),
) -> None:
    """Build the findings table of every MRI series (findings.csv, else its report) and its feature vectors."""
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


def main() -> None:  # pragma: no cover - the console script calls app directly
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
