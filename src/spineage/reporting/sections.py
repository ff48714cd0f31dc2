"""Gathering the report from the reports folder: every stage's figures and tables as page sections.

Each part reads its stage's files and turns them into :mod:`~spineage.reporting.blocks`,
in the order a reader of the MRI paper (Bazargani et al. 2025) expects. Only the
evaluate stage's ``metrics.json`` is required; every other file is optional, and a
missing one becomes a one-line note on the page rather than an error.

==============================  ===========================================================
section                         files read (under ``reports/`` unless said otherwise)
==============================  ===========================================================
1. The cohort                   ``cohort/summary.json``, ``cohort/clusters.csv``,
                                ``cohort/age_histogram.png``, ``cohort/umap_<bracket>.png``
2. The model                    ``evaluate/metrics.json`` (required), ``train/metrics.json``,
                                ``evaluate/predicted_vs_age.png``, ``evaluate/by_bracket_sex.csv``,
                                ``evaluate/error_by_bracket_sex.png``, ``evaluate/gradcam.png``,
                                ``evaluate/large_gaps.csv``, ``segment/metrics.json``, the
                                ablation sub-pipeline's ``table.csv`` (or ``table.md``)
3. The SAG analysis             ``sag/associations.csv``, ``sag/odds_ratios.csv``,
                                ``sag/odds_ratios.png``, ``sag/sag_vs_age_work.png``,
                                ``sag/multivariable.csv``, ``sag/metrics.json``
4. Truth recovery               ``truth_recovery.json`` (a phantom cohort only)
(extra sections)                whatever the caller adds (the radiograph branch)
5. Provenance                   ``train/metrics.json`` (data version, commit, model, run)
==============================  ===========================================================

The file names are the stages' contracts (e.g. :data:`spineage.evaluation.stage.METRICS`);
they are repeated here rather than imported so that the report does not load the stages
(``tests/reporting`` checks that they agree).

Example:
    >>> page = gather_report(Path("reports"), ablations=Path("pipelines/ablations/reports"))  # doctest: +SKIP
    >>> [section.title for section in page.sections]  # doctest: +SKIP
    ['The cohort', 'The model', 'The SAG analysis', 'Truth recovery', 'Provenance']
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.reporting.blocks import (
    Block,
    Column,
    FigureGrid,
    Heading,
    Note,
    Section,
    Table,
    Text,
    figure_from_png,
    key_value_table,
    table_from_records,
)
from spineage.reporting.formatting import (
    MISSING,
    as_float,
    format_compact,
    format_count,
    format_estimate,
    format_number,
    format_p,
    format_share,
    format_value,
    is_missing,
)

# --------------------------------------------------------------------------- the files read

COHORT, TRAIN, EVALUATE, SEGMENT, SAG = "cohort", "train", "evaluate", "segment", "sag"
"""The stages' folders under ``reports/``."""

METRICS = "metrics.json"
COHORT_SUMMARY = "summary.json"
CLUSTERS = "clusters.csv"
AGE_HISTOGRAM = "age_histogram.png"
UMAP_PATTERN = "umap_*.png"
PREDICTED_VS_AGE = "predicted_vs_age.png"
BY_BRACKET_SEX = "by_bracket_sex.csv"
ERROR_BY_BRACKET_SEX = "error_by_bracket_sex.png"
GRADCAM = "gradcam.png"
LARGE_GAPS = "large_gaps.csv"
ABLATION_CSV = "table.csv"
ABLATION_MARKDOWN = "table.md"
ASSOCIATIONS = "associations.csv"
ODDS_RATIOS = "odds_ratios.csv"
ODDS_RATIOS_FIGURE = "odds_ratios.png"
SAG_VS_AGE_WORK = "sag_vs_age_work.png"
MULTIVARIABLE = "multivariable.csv"
TRUTH_RECOVERY = "truth_recovery.json"

ASSOCIATION_MODELS: dict[str, str] = {
    "lumbar_degenerative": "Lumbar degenerative findings",
    "cervical_degenerative": "Cervical degenerative findings",
    "thoracic_degenerative": "Thoracic degenerative findings",
    "pathologies": "Structural and canal pathologies",
    "other_findings": "Other findings",
    "lifestyle": "Lifestyle",
}
"""The blocks of the SAG associations table (the paper's Table 5), in its order, with their titles."""

LARGE_GAP_ROWS = 50
"""At most this many large-gap scans are listed (largest |SAG| first)."""


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows.

    Args:
        title: the page's title.
        highlights: the key figures shown at the top, as (label, value) pairs.
        sections: the numbered sections, in order.
        generated: when the page was made (UTC).
        version: the spineage version that made it.
    """

    title: str
    highlights: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]
    generated: str
    version: str


# --------------------------------------------------------------------------- reading


def read_json_report(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"Expected JSON in {path}, found unreadable content ({error})") from error
    if not isinstance(data, dict):
        raise UserError(f"Expected a JSON object in {path}, found {type(data).__name__}")
    return data


def read_csv_report(path: Path) -> list[dict[str, Any]] | None:
    """The rows of the CSV table in ``path`` (missing cells as None), or None when the file is absent."""
    if not path.is_file():
        return None
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise UserError(f"Expected a CSV table in {path}, found unreadable content ({error})") from error
    return table.astype(object).where(table.notna(), None).to_dict("records")


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one (so that a changed report never breaks the page)."""
    return dict(value) if isinstance(value, Mapping) else {}


def _shown(reports: Path, *parts: str) -> str:
    """How the page names a file of the reports folder: ``reports/evaluate/gradcam.png``."""
    return "/".join((reports.name or str(reports), *parts))


def _order(key: Any) -> tuple[int, float, str]:
    """Sort key putting numeric keys (age brackets) first, in numeric order, then text."""
    text = str(key)
    match = re.match(r"\d+(\.\d+)?", text)
    return (0, float(match.group()), text) if match else (1, 0.0, text)


def _years(value: Any) -> str:
    text = format_number(value)
    return text if text == MISSING else f"{text} y"


def _text(value: Any) -> str:
    """A text cell as it is (``0.01`` stays ``0.01``), ``–`` when missing."""
    return MISSING if is_missing(value) else str(value)


def _title(name: str) -> str:
    """A key as a header: ``n_reference`` → ``n reference``."""
    return str(name).replace("_", " ")


# --------------------------------------------------------------------------- 1. the cohort


def cohort_section(reports: Path) -> Section:
    """The cohort (the paper's Figures 2 and 3): age histogram, normal share per bracket, UMAPs, clusters, planted truth."""
    title = "The cohort"
    folder = reports / COHORT
    if not folder.is_dir():
        return Section(title, [Note(f"The cohort reports are not available: {_shown(reports, COHORT)}/ is missing (run the cohort stage).")])
    summary = read_json_report(folder / COHORT_SUMMARY) or {}
    blocks: list[Block] = []
    if summary:
        blocks.append(Text(
            f"{format_count(summary.get('series'))} MRI series; the data-driven normal cohort holds "
            f"{format_count(summary.get('normal'))} of them ({format_share(summary.get('normal_share'))}). Normal is decided "
            f"per age bracket by UMAP of the findings' region vectors (Canberra distance) and HDBSCAN, as a consensus of "
            f"{format_count(summary.get('consensus_runs'))} runs (stability {format_number(summary.get('stability'))})."
        ))
    blocks.append(figure_from_png(folder / AGE_HISTOGRAM, "Age at scan of every series (the paper's Figure 2).",
                                  _shown(reports, COHORT, AGE_HISTOGRAM)))

    brackets = _mapping(summary.get("brackets"))
    if brackets:
        records = []
        for bracket in sorted(brackets, key=_order):
            row = _mapping(brackets[bracket])
            abnormal = as_float(row.get("abnormal_share"))
            records.append(row | {"bracket": bracket, "normal_share": None if abnormal is None else 1.0 - abnormal})
        blocks.append(table_from_records(records, [
            Column("Bracket", "bracket", _text, numeric=False),
            Column("Series", "series", format_count),
            Column("Clustered as", "clustered_as", _text, numeric=False),
            Column("Normal share", "normal_share", format_share),
            Column("Stability", "stability", format_number),
            Column("Unanimous share", "unanimous_share", format_share),
        ], caption="Normal share per age bracket (brackets with few series are clustered together)."))
    splits = _mapping(summary.get("splits"))
    if splits:
        blocks.append(key_value_table(((name, format_count(n)) for name, n in splits.items()),
                                      caption="Series per split.", headers=("split", "series"), numeric=True))

    umaps = sorted(folder.glob(UMAP_PATTERN), key=lambda path: _order(path.stem.removeprefix("umap_")))
    panels = [figure_from_png(path, f"Bracket {path.stem.removeprefix('umap_')}", _shown(reports, COHORT, path.name)) for path in umaps]
    figures = tuple(panel for panel in panels if panel.kind == "figure")
    blocks.extend(panel for panel in panels if panel.kind == "note")
    if figures:
        blocks.append(FigureGrid(figures, "UMAP of the region vectors per age bracket, coloured by cluster; the clusters marked "
                                          "normal form the normal cohort (the paper's Figure 3)."))
    else:
        blocks.append(Note(f"UMAP figures not available: no {_shown(reports, COHORT, UMAP_PATTERN)}."))

    clusters = read_csv_report(folder / CLUSTERS)
    if clusters is None:
        blocks.append(Note(f"Cluster table not available: {_shown(reports, COHORT, CLUSTERS)} is missing."))
    else:
        blocks.append(table_from_records(clusters, [
            Column("Bracket", "bracket", _text, numeric=False),
            Column("Cluster", "cluster", format_count),
            Column("n", "n", format_count),
            Column("% of bracket", "percent", lambda value: format_number(value, 1)),
            Column("Normal", "normal", format_value, numeric=False),
            Column("Label", "label", format_value, numeric=False),
        ], caption="Clusters per bracket, labelled by their most typical findings."))
    truth = _mapping(summary.get("truth"))
    if truth:
        blocks.extend(_cohort_truth_blocks(truth))
    return Section(title, blocks)


def _cohort_truth_blocks(truth: dict[str, Any]) -> list[Block]:
    """The planted truth of a phantom against the data-driven normal cohort (the cohort summary's ``truth``)."""
    blocks: list[Block] = [Heading("Against the planted truth")]
    source = truth.get("source")
    blocks.append(Text(
        "The phantom marks every series as typical or atypical for its age, or as carrying a structural pathology"
        f"{f' ({source})' if source else ''}; the tables show where the data-driven normal cohort put them."
    ))
    counts = [
        Column("Series", "series", format_count), Column("Normal", "normal", format_count),
        Column("Abnormal", "abnormal", format_count), Column("Normal share", "normal_share", format_share),
    ]
    records = [_mapping(row) | {"bracket": "all", "planted": planted} for planted, row in _mapping(truth.get("overall")).items()]
    for bracket, categories in sorted(_mapping(truth.get("brackets")).items(), key=lambda item: _order(item[0])):
        records += [_mapping(row) | {"bracket": bracket, "planted": planted} for planted, row in _mapping(categories).items()]
    if records:
        blocks.append(table_from_records(records, [
            Column("Bracket", "bracket", _text, numeric=False), Column("Planted as", "planted", _title, numeric=False), *counts,
        ], caption="Planted category against the normal / abnormal call, overall and per bracket."))
    reasons = [_mapping(row) | {"reason": reason} for reason, row in _mapping(truth.get("by_reason")).items()]
    if reasons:
        blocks.append(table_from_records(reasons, [
            Column("Planted reason", "reason", _title, numeric=False), Column("Series", "series", format_count),
            Column("Abnormal", "abnormal", format_count), Column("Abnormal share", "abnormal_share", format_share),
        ], caption="Series planted atypical or pathological, by reason: the share called abnormal.",
            footnote=f"Series without a planted mark: {format_count(truth.get('series_without_marks'))}."
            if "series_without_marks" in truth else ""))
    return blocks


# --------------------------------------------------------------------------- 2. the model

_PREDICTORS: dict[str, str] = {
    "raw": "spine-age CNN, raw",
    "corrected": "spine-age CNN, bias-corrected",
    "mean_age": "baseline: mean training age",
    "ridge_intensity": "baseline: ridge on intensity percentiles",
}
_SETS: dict[str, str] = {"test": "test (normal)", "full_test": "full test (all)"}


def _predictor(key: str) -> str:
    return _PREDICTORS.get(key, f"baseline: {_title(key)}")


def model_section(reports: Path, evaluation: dict[str, Any], ablations: Path | None = None) -> Section:
    """The model: accuracy against the baselines and the noise floor, error by bracket × sex, normative range,
    repeat-scan ICC, segmentation Dice, ablations, Grad-CAM and the large-gap cases."""
    train = read_json_report(reports / TRAIN / METRICS) or {}
    folder = reports / EVALUATE
    blocks: list[Block] = [Heading("Accuracy")]
    correction = _mapping(evaluation.get("bias_correction"))
    if correction:
        blocks.append(Text(
            f"Bias correction: {correction.get('method', MISSING)} (slope {format_number(correction.get('slope'))}, "
            f"intercept {format_number(correction.get('intercept'))}), fitted on the {correction.get('split', MISSING)} split "
            f"(n {format_count(correction.get('n'))}); the corrected rows apply it."
        ))
    blocks.extend(_accuracy_tables(evaluation, train))
    blocks.append(figure_from_png(folder / PREDICTED_VS_AGE, "Predicted (left) and bias-corrected (right) spine age against chronological age.",
                                  _shown(reports, EVALUATE, PREDICTED_VS_AGE)))

    blocks.append(Heading("Error by age bracket and sex"))
    blocks.append(figure_from_png(folder / ERROR_BY_BRACKET_SEX, "Mean absolute error by bracket × sex, raw and corrected (the paper's Figure 4).",
                                  _shown(reports, EVALUATE, ERROR_BY_BRACKET_SEX)))
    by_group = read_csv_report(folder / BY_BRACKET_SEX)
    if by_group is None:
        blocks.append(Note(f"Error table not available: {_shown(reports, EVALUATE, BY_BRACKET_SEX)} is missing."))
    else:
        blocks.append(table_from_records(by_group, [
            Column("Set", "set", lambda name: _SETS.get(name, _text(name)), numeric=False), Column("Bracket", "bracket", format_value),
            Column("Sex", "sex", _text, numeric=False),
            Column("n", "n", format_count), Column("Raw MAE (y)", "raw_mae", format_number),
            Column("Corrected MAE (y)", "corrected_mae", format_number), Column("Corrected mean gap (y)", "corrected_mean_gap", format_number),
            Column("Corrected SD gap (y)", "corrected_sd_gap", format_number),
        ], caption="Error per evaluation set × bracket × sex."))

    blocks.append(Heading("Normative range and repeat scans"))
    blocks.extend(_normative_blocks(evaluation))
    blocks.append(Heading("Segmentation"))
    blocks.extend(_segmentation_blocks(reports))
    blocks.append(Heading("Ablations"))
    blocks.extend(ablation_blocks(ablations))
    blocks.append(Heading("Grad-CAM"))
    cases = _mapping(evaluation.get("gradcam")).get("series")
    blocks.append(figure_from_png(folder / GRADCAM, "Grad-CAM of the spine-age network on young, old and large-gap scans"
                                  + (f": {format_compact(cases)}." if cases else "."), _shown(reports, EVALUATE, GRADCAM)))
    blocks.append(Heading("Large spine age gaps"))
    blocks.extend(_large_gap_blocks(reports, evaluation))
    return Section("The model", blocks)


def _accuracy_tables(evaluation: dict[str, Any], train: dict[str, Any]) -> list[Block]:
    figures = [
        Column("Set", "set", _text, numeric=False), Column("Predictor", "predictor", _text, numeric=False), Column("n", "n", format_count),
        Column("MAE (y)", "mae", format_number), Column("WMAE (y)", "wmae", format_number), Column("R²", "r2", format_number),
        Column("r", "r", format_number), Column("Mean gap (y)", "mean_gap", format_number), Column("SD gap (y)", "sd_gap", format_number),
    ]
    records = []
    for name, label in _SETS.items():
        figures_of_set = _mapping(evaluation.get(name))
        for kind in ("raw", "corrected"):
            if kind in figures_of_set:
                records.append(_mapping(figures_of_set[kind]) | {"set": label, "predictor": _predictor(kind)})
        for baseline, row in _mapping(figures_of_set.get("baselines")).items():
            records.append(_mapping(row) | {"set": label, "predictor": _predictor(baseline)})
    blocks: list[Block] = []
    if records:
        blocks.append(table_from_records(records, figures, caption=(
            "Spine age against chronological age beside the baselines: MAE, WMAE (the mean of the per-bracket MAEs), "
            "R², Pearson r, and the mean and SD of the gap (years).")))
    else:
        blocks.append(Note("The evaluate metrics hold no test figures."))

    if train:
        rows = [train | {"predictor": "spine-age CNN, raw"}]
        rows += [_mapping(row) | {"predictor": _predictor(name)} for name, row in _mapping(train.get("baselines")).items()]
        blocks.append(table_from_records(rows, [
            Column("Predictor", "predictor", _text, numeric=False), Column("Train", "train_mae", format_number),
            Column("Validation", "validation_mae", format_number), Column("Test", "test_mae", format_number),
            Column("Full test, abnormal", "mae_full_test_abnormal", format_number),
            Column("Test, vs biological age", "test_mae_vs_biological_age", format_number),
        ], caption="MAE (years) per split, as the train stage measured it."))
        floor = as_float(train.get("noise_floor"))
        if floor is not None:
            ratio = as_float(train.get("test_mae_over_noise_floor"))
            blocks.append(Text(
                f"Noise floor: {_years(floor)}, the mean gap between the phantom's planted biological age and the chronological "
                f"age of the test series — what a perfect estimate of biological age would score against chronological age."
                + (f" The test MAE is {format_number(ratio)} times the floor." if ratio is not None else "")
            ))
    truth = _mapping(evaluation.get("truth"))
    if truth:
        rows = [_mapping(row) | {"set": _SETS.get(name, name)} for name, row in truth.items()]
        blocks.append(table_from_records(rows, [
            Column("Set", "set", _text, numeric=False), Column("n", "n", format_count),
            Column("Raw MAE vs biological age (y)", "raw_mae_vs_biological_age", format_number),
            Column("Corrected MAE vs biological age (y)", "corrected_mae_vs_biological_age", format_number),
            Column("r (raw gap, planted gap)", "raw_gap_vs_planted_gap_r", format_number),
            Column("r (SAG, planted gap)", "sag_vs_planted_gap_r", format_number),
        ], caption="Against the phantom's planted biological age and age gap."))
    return blocks


def _normative_blocks(evaluation: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    normative = _mapping(evaluation.get("normative_range"))
    if normative:
        blocks.append(Text(
            "Split-conformal normative range: a scan whose chronological age lies outside the range around its corrected "
            "spine age is flagged atypical for age."
        ))
        blocks.append(key_value_table([
            ("Nominal coverage", format_share(normative.get("coverage_nominal"))),
            ("Half width", f"± {_years(normative.get('half_width'))}"),
            ("Calibrated on", f"{normative.get('calibration_split', MISSING)} (n {format_count(normative.get('n_calibration'))})"),
            ("Coverage on test", f"{format_share(normative.get('coverage_test'))} (n {format_count(normative.get('n_test'))})"),
            ("Flagged on test", format_share(normative.get("flagged_share_test"))),
            ("Flagged among abnormal", f"{format_share(normative.get('flagged_share_abnormal'))} (n {format_count(normative.get('n_abnormal'))})"),
        ], caption="Normative range."))
    else:
        blocks.append(Note("Normative range not available: the evaluate metrics hold no `normative_range`."))
    repeats = _mapping(evaluation.get("repeat_scans"))
    if repeats:
        rows = [_mapping(row) | {"group": group} for group, row in repeats.items()]
        blocks.append(table_from_records(rows, [
            Column("Group", "group", _text, numeric=False), Column("Subjects", "n", format_count),
            Column("ICC(2,1)", "icc", format_number),
            Column("95 % CI", lambda r: MISSING if is_missing(r.get("ci_low"))
                   else f"{format_number(r.get('ci_low'))} to {format_number(r.get('ci_high'))}"),
            Column("F", "f", format_number), Column("p", "p", format_p),
            Column("Mean years between scans", "mean_years_between", format_number),
        ], caption="Repeat-scan stability of the corrected spine age on subjects never trained on."))
    else:
        blocks.append(Note("Repeat-scan ICC not available: the evaluate metrics hold no `repeat_scans`."))
    return blocks


def _segmentation_blocks(reports: Path) -> list[Block]:
    metrics = read_json_report(reports / SEGMENT / METRICS)
    if metrics is None:
        return [Note(f"Segmentation metrics not available: {_shown(reports, SEGMENT, METRICS)} is missing.")]
    blocks: list[Block] = []
    by_split = _mapping(metrics.get("held_out_scans_by_split"))
    splits = ", ".join(f"{name} {format_count(n)}" for name, n in by_split.items())
    blocks.append(Text(
        f"Dice of the segmentation model {metrics.get('model_uri') or ''} on {format_count(metrics.get('held_out_scans'))} held-out scans"
        f"{f' ({splits})' if splits else ''}, trained on {format_count(metrics.get('train_scans'))} scans."
    ))
    columns = {"all held-out": _mapping(metrics.get("dice"))} | {name: _mapping(row) for name, row in _mapping(metrics.get("dice_by_split")).items()}
    structures = list(dict.fromkeys(key for row in columns.values() for key in row))
    structures = [s for s in structures if s != "mean"] + (["mean"] if "mean" in structures else [])
    if structures:
        rows = [(_title(structure), *(format_number(row.get(structure)) for row in columns.values())) for structure in structures]
        blocks.append(Table(("Structure", *columns), rows, "Dice by structure and split.", (False, *(True,) * len(columns))))
    return blocks


def ablation_blocks(ablations: Path | None) -> list[Block]:
    """The ablation table (the paper's Table 3) from the ablation sub-pipeline's ``table.csv`` (or ``table.md``).

    Paired ``<figure>_raw`` / ``<figure>_corrected`` columns print side by side as the paper does (``2.74 / 2.75``).
    """
    missing = [Note("Ablations: not run (make ablations).")]
    if ablations is None:
        return missing
    records = read_csv_report(ablations / ABLATION_CSV)
    caption = "Ablations: one setting of the default model changed at a time, test-split figures raw / corrected (the paper's Table 3)."
    if records is None:
        markdown = ablations / ABLATION_MARKDOWN
        if not markdown.is_file():
            return missing
        table = _markdown_table(markdown.read_text())
        return [Table(table[0], table[1], caption)] if table else missing
    if not records:
        return missing
    keys = list(records[0])
    if {"factor", "setting"} <= set(keys) and "cell" in keys:
        keys.remove("cell")  # the folder's name repeats factor and setting
    columns: list[Column] = []
    for key in keys:
        if key.endswith("_corrected") and key.removesuffix("_corrected") + "_raw" in keys:
            continue
        if key.endswith("_raw") and (pair := key.removesuffix("_raw") + "_corrected") in keys:
            columns.append(Column(f"{_figure_name(key.removesuffix('_raw'))} raw / corrected",
                                  lambda r, a=key, b=pair: f"{format_number(r.get(a))} / {format_number(r.get(b))}"))
            continue
        if key == "setting":  # a setting's value is text even when every cell looks like a number (0.01, 0.1)
            columns.append(Column("Setting", key, _setting, numeric=False))
            continue
        numeric = all(as_float(r.get(key)) is not None or is_missing(r.get(key)) for r in records)
        whole = numeric and all(as_float(r.get(key)) is None or as_float(r.get(key)) == round(as_float(r.get(key))) for r in records)
        formatter: Callable[[Any], str] = format_count if whole else format_number if numeric else format_value
        columns.append(Column(_title(key).capitalize(), key, formatter, numeric=numeric))
    return [table_from_records(records, columns, caption)]


def _setting(value: Any) -> str:
    return "(as params.yaml)" if is_missing(value) else str(value)


def _figure_name(key: str) -> str:
    return {"mae": "MAE (y)", "wmae": "WMAE (y)", "r2": "R²"}.get(key, _title(key))


def _markdown_table(text: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]] | None:
    """Header and rows of the first Markdown table in ``text``, or None when it holds none."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    cells = [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in lines]
    cells = [row for row in cells if not all(re.fullmatch(r":?-+:?", cell) for cell in row)]
    if len(cells) < 2 or any(len(row) != len(cells[0]) for row in cells):
        return None
    return cells[0], cells[1:]


def _large_gap_blocks(reports: Path, evaluation: dict[str, Any]) -> list[Block]:
    threshold = _mapping(evaluation.get("large_gaps")).get("threshold_years")
    rows = read_csv_report(reports / EVALUATE / LARGE_GAPS)
    if rows is None:
        return [Note(f"Large-gap cases not available: {_shown(reports, EVALUATE, LARGE_GAPS)} is missing.")]
    if not rows:
        return [Text(f"No scan has |SAG| above {_years(threshold)}." if threshold is not None else "No scan has a large spine age gap.")]
    rows.sort(key=lambda r: -abs(as_float(r.get("sag")) or 0.0))
    shown = rows[:LARGE_GAP_ROWS]
    return [table_from_records(shown, [
        Column("Series", "series_id", _text, numeric=False), Column("Subject", "subject_id", _text, numeric=False),
        Column("Split", "split", _text, numeric=False), Column("Sex", "sex", _text, numeric=False), Column("Age", "age", format_number),
        Column("Predicted", "predicted_age", format_number), Column("Corrected", "corrected_age", format_number),
        Column("SAG (y)", "sag", format_number), Column("Atypical for age", "atypical_for_age", format_value, numeric=False),
        Column("Findings", "findings", format_value, numeric=False),
    ], caption=f"Scans with |SAG| above {_years(threshold)}, largest first, with their findings.",
        footnote=f"The {len(shown)} largest of {len(rows)}." if len(rows) > len(shown) else "")]


# --------------------------------------------------------------------------- 3. the spine age gap


def sag_section(reports: Path) -> Section:
    """The SAG analysis: associations (the paper's Table 5), odds ratios (Figure 6), SAG against age by work (Figure 7),
    and the multivariable model that explains SAG."""
    title = "The SAG analysis"
    folder = reports / SAG
    if not folder.is_dir():
        return Section(title, [Note(f"The SAG analysis is not available: {_shown(reports, SAG)}/ is missing (run the sag stage).")])
    blocks: list[Block] = [Heading("Associations")]
    associations = read_csv_report(folder / ASSOCIATIONS)
    if associations is None:
        blocks.append(Note(f"Associations not available: {_shown(reports, SAG, ASSOCIATIONS)} is missing."))
    else:
        blocks.append(Text(
            "The spine age gap (years) against each finding and lifestyle factor: the effect is the difference in SAG against "
            "the reference group (or per unit), with its 95 % confidence interval, unadjusted and adjusted (the paper's Table 5)."
        ))
        blocks.append(_association_table(associations))

    blocks.append(Heading("High against low SAG"))
    blocks.append(figure_from_png(folder / ODDS_RATIOS_FIGURE, "Odds ratios of findings with a high against a low SAG (the paper's Figure 6).",
                                  _shown(reports, SAG, ODDS_RATIOS_FIGURE)))
    odds = read_csv_report(folder / ODDS_RATIOS)
    if odds is None:
        blocks.append(Note(f"Odds ratios not available: {_shown(reports, SAG, ODDS_RATIOS)} is missing."))
    else:
        blocks.append(table_from_records(odds, [
            Column("Variable", "variable", _title, numeric=False),
            Column("High SAG: cases / n", lambda r: f"{format_count(r.get('cases_high'))} / {format_count(r.get('n_high'))}"),
            Column("Low SAG: cases / n", lambda r: f"{format_count(r.get('cases_low'))} / {format_count(r.get('n_low'))}"),
            Column("Odds ratio (95 % CI)", lambda r: format_estimate(r.get("odds_ratio"), r.get("ci_low"), r.get("ci_high"))),
            Column("p", "p", format_p),
        ], caption="Odds ratios, high against low SAG."))

    blocks.append(Heading("SAG, age and work"))
    blocks.append(figure_from_png(folder / SAG_VS_AGE_WORK, "SAG against chronological age by type of work (the paper's Figure 7).",
                                  _shown(reports, SAG, SAG_VS_AGE_WORK)))

    blocks.append(Heading("What explains SAG"))
    metrics = read_json_report(folder / METRICS) or {}
    if metrics:
        blocks.append(Text(
            f"A multivariable linear model of SAG on {format_count(metrics.get('multivariable_n'))} series: R² "
            f"{format_number(metrics.get('multivariable_r_squared'))}, adjusted R² {format_number(metrics.get('multivariable_adj_r_squared'))}."
        ))
    terms = read_csv_report(folder / MULTIVARIABLE)
    if terms is None:
        blocks.append(Note(f"The multivariable model is not available: {_shown(reports, SAG, MULTIVARIABLE)} is missing."))
    else:
        blocks.append(table_from_records(terms, [
            Column("Term", "term", _text, numeric=False),
            Column("Effect on SAG (95 % CI)", lambda r: format_estimate(r.get("effect"), r.get("ci_low"), r.get("ci_high"))),
            Column("p", "p", format_p),
        ], caption="Terms of the multivariable model (years of SAG per unit or against the reference)."))
    return Section(title, blocks)


def _association_table(rows: list[dict[str, Any]]) -> Table:
    """One table, one block of rows per ``model`` value in the paper's order (then any other models), as Table 5."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("model") or "associations"), []).append(row)
    order = [name for name in ASSOCIATION_MODELS if name in groups] + [name for name in groups if name not in ASSOCIATION_MODELS]
    ordered = [row for name in order for row in groups[name]]
    labels = [ASSOCIATION_MODELS.get(name, _title(name).capitalize()) if index == 0 else ""
              for name in order for index in range(len(groups[name]))]
    table = table_from_records(ordered, [
        Column("Variable", "variable", _title, numeric=False), Column("Category", "category", format_value, numeric=False),
        Column("n", "n", format_count), Column("n (reference)", "n_reference", format_count),
        Column("Effect (95 % CI)", lambda r: format_estimate(r.get("effect"), r.get("ci_low"), r.get("ci_high"))),
        Column("p", "p", format_p),
        Column("Adjusted effect (95 % CI)", lambda r: format_estimate(r.get("adj_effect"), r.get("adj_ci_low"), r.get("adj_ci_high"))),
        Column("Adjusted p", "adj_p", format_p),
        Column("Note", "note", lambda v: "" if is_missing(v) else str(v), numeric=False),
    ], caption="SAG associations (years), unadjusted and adjusted.")
    return Table(table.columns, table.rows, table.caption, table.numeric, row_groups=tuple(labels))


# --------------------------------------------------------------------------- 4. truth recovery


def truth_recovery_section(reports: Path, external: Path | None = None) -> Section:
    """How well the pipeline recovers the phantom's planted effects: on the default run's full test set
    (``truth_recovery.json``) and, when ``make truth`` has run, on the external truth cohort (``external``)."""
    title = "Truth recovery"
    truth = read_json_report(reports / TRUTH_RECOVERY)
    if truth is None or truth.get("planted_truth") is False:
        return Section(title, [Note(f"The cohort has no planted truth ({_shown(reports, TRUTH_RECOVERY)} is absent or says so): there is nothing to recover.")])
    blocks = _truth_blocks(truth, f"The phantom's planted effects against what the pipeline found on the default run's full test set, from "
                                  f"{_shown(reports, TRUTH_RECOVERY)}.")
    blocks.append(Heading("The external truth cohort (make truth)"))
    found = read_json_report(Path(external)) if external is not None else None
    if found is None:
        blocks.append(Note("Not run: `make truth` scores a fresh, larger phantom (sized by the power above) with the registered model."))
    else:
        blocks += _truth_blocks(found, f"A fresh phantom scored by the registered model and its stored correction, from {Path(external).name}.")
    return Section(title, blocks)


def _truth_blocks(truth: dict[str, Any], intro: str) -> list[Block]:
    """One truth_recovery.json (:func:`spineage.analysis.truth.validate_truth`): the verdict, every planted effect
    (oracle against pipeline), the power, and the normal cohort against the planted marks."""
    power = _mapping(truth.get("power"))
    blocks: list[Block] = [Text(intro), key_value_table([
        ("Subjects (one series each)", format_count(truth.get("subjects"))),
        ("r (SAG, planted gap)", format_number(truth.get("sag_vs_planted_gap_r"))),
        ("MAE against biological age, raw / corrected", f"{_years(truth.get('mae_vs_biological_age_raw'))} / {_years(truth.get('mae_vs_biological_age_corrected'))}"),
        (f"Planted effects of at least {format_number(power.get('min_effect_years'))} y found (right sign, p < {format_number(power.get('alpha'))})",
         f"{format_count(truth.get('targets_recovered'))} of {format_count(truth.get('targets'))}"),
        ("95 % CIs holding the planted value", f"{format_count(truth.get('cis_holding_planted'))} of {format_count(truth.get('planted_effects'))}"),
        ("Target met", format_value(truth.get("target_met"))),
        ("Regressions adjusted for", format_value(truth.get("adjusted_for"))),
        ("Phantom", f"{_text(truth.get('generator_version'))}, seed {_text(truth.get('phantom_seed'))}"),
    ], caption="The verdict.")]
    effects = [_mapping(item) for item in truth.get("effects") or [] if isinstance(item, Mapping)]
    if effects:
        blocks.append(Heading("Planted effects"))
        blocks.append(table_from_records(effects, [
            Column("Effect", "name", _text, numeric=False),
            Column("Planted (y)", "planted", format_number),
            Column("Oracle: planted gap (95 % CI)", lambda r: format_estimate(r.get("oracle_effect"), r.get("oracle_ci_low"), r.get("oracle_ci_high"))),
            Column("Oracle p", "oracle_p", format_p),
            Column("Pipeline: SAG (95 % CI)", lambda r: format_estimate(r.get("pipeline_effect"), r.get("ci_low"), r.get("ci_high"))),
            Column("Pipeline p", "p", format_p),
            Column("Attenuation", "attenuation", format_number),
            Column("CI holds planted", "ci_holds_planted", format_value, numeric=False),
            Column("Found", lambda r: _found(r), numeric=False),
            Column("Power", "power", format_number),
            Column(f"Subjects for {format_share(power.get('target_power'))} power", "subjects_for_target_power", format_count),
        ], caption="Each planted lifestyle effect: one multivariable regression of the planted gap (oracle) and of the pipeline's SAG "
                   "on the same subjects; attenuation = pipeline / oracle."))
    if power:
        blocks.append(Heading("Power"))
        blocks.append(key_value_table([
            ("Slope of SAG on the planted gap", format_number(power.get("slope_sag_on_planted_gap"))),
            ("Residual SD, oracle / pipeline (y)", f"{format_number(power.get('residual_sd_oracle'))} / {format_number(power.get('residual_sd_pipeline'))}"),
            ("Expected pipeline effect", _text(power.get("expected_effect"))),
            ("Power of all target effects together", format_number(power.get("power_all_target_effects"))),
            (f"Subjects for {format_share(power.get('target_power'))} power on each target effect", format_count(power.get("subjects_for_target_power"))),
        ], caption="The two-sided test's power at this size (normal approximation)."))
    normal = _mapping(_mapping(truth.get("normal_cohort")).get("overall"))
    if normal:
        blocks.append(Heading("Normal cohort against the planted marks"))
        blocks.append(table_from_records([{"group": key} | _mapping(value) for key, value in normal.items()], [
            Column("Planted", "group", _title, numeric=False), Column("Series", "series", format_count),
            Column("Abnormal", "abnormal", format_count), Column("Abnormal share", "abnormal_share", format_share),
        ], caption="Series judged abnormal by the cohort stage, by their planted status."))
    return blocks


def _found(row: dict[str, Any]) -> str:
    """Whether a planted effect was found: yes/no for a non-zero one, "falsely" for a zero one found significant."""
    if row.get("falsely_found") is not None:
        return "falsely" if row.get("falsely_found") else "no (none planted)"
    return format_value(row.get("recovered"))


def _records_table(records: list[dict[str, Any]], caption: str = "", first: str | None = None) -> Table:
    """A table whose columns are the union of the records' keys, in order of first appearance."""
    keys = list(dict.fromkeys(key for record in records for key in record))
    if first and first in keys:
        keys.remove(first)
        keys.insert(0, first)
    numeric = [all(as_float(r.get(k)) is not None or is_missing(r.get(k)) for r in records) for k in keys]
    rows = [tuple(format_value(record.get(key), key) if key in record else MISSING for key in keys) for record in records]
    return Table(tuple(_title(k) for k in keys), rows, caption, tuple(numeric))


def _nested_table(value: Any) -> Block:
    """A mapping as a key/value table, or as a table of its rows when every value is itself a mapping."""
    if isinstance(value, Mapping):
        if value and all(isinstance(item, Mapping) for item in value.values()):
            return _records_table([{"name": name} | dict(item) for name, item in value.items()], first="name")
        return key_value_table((_title(key), format_value(item, str(key))) for key, item in value.items())
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        return _records_table([dict(item) for item in value])
    return Text(format_value(value))


# --------------------------------------------------------------------------- 5. provenance


def provenance_section(reports: Path, evaluation: dict[str, Any], generated: str, version: str) -> Section:
    """Data version, code commit, model, MLflow run, when the page was made and by which spineage."""
    train = read_json_report(reports / TRAIN / METRICS) or {}
    segment = read_json_report(reports / SEGMENT / METRICS) or {}

    def first(key: str) -> Any:
        return train.get(key) or evaluation.get(key)

    items = [
        ("Data version", format_value(train.get("data_version"))),
        ("Code commit", format_value(first("git_commit"))),
        ("Model", format_value(first("model_uri"))),
        ("MLflow run", format_value(first("run_id"))),
    ]
    if segment:
        items.append(("Segmentation model", f"{format_value(segment.get('model_uri'))} (run {format_value(segment.get('run_id'))})"))
    items += [("Generated", generated), ("spineage", version)]
    return Section("Provenance", [key_value_table(items, caption="Where the figures come from.")])


# --------------------------------------------------------------------------- the page


def _highlights(reports: Path, evaluation: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    test = _mapping(_mapping(evaluation.get("test")).get("corrected"))
    full = _mapping(_mapping(evaluation.get("full_test")).get("corrected"))
    icc = _mapping(_mapping(evaluation.get("repeat_scans")).get("all"))
    normative = _mapping(evaluation.get("normative_range"))
    cohort = read_json_report(reports / COHORT / COHORT_SUMMARY) or {}
    items = [
        ("Test MAE, corrected", f"{_years(test.get('mae'))} (n {format_count(test.get('n'))})"),
        ("Test R², corrected", format_number(test.get("r2"))),
        ("Full-test MAE, corrected", f"{_years(full.get('mae'))} (n {format_count(full.get('n'))})"),
        ("Normal cohort", f"{format_count(cohort.get('normal'))} of {format_count(cohort.get('series'))} series" if cohort else MISSING),
        ("Repeat-scan ICC", format_number(icc.get("icc"))),
        (f"Normative range coverage (nominal {format_share(normative.get('coverage_nominal'))})", format_share(normative.get("coverage_test"))),
    ]
    return tuple(items)


def gather_report(
    reports: Path,
    ablations: Path | None = None,
    extra_sections: Sequence[Section] | None = None,
    generated: datetime | None = None,
    external_truth: Path | None = None,
) -> ReportPage:
    """Everything the page shows, gathered from the reports folder.

    Args:
        reports: the ``reports/`` folder (``evaluate/metrics.json`` must exist).
        ablations: the ablation sub-pipeline's reports folder (``table.csv``); None when not run.
        extra_sections: further sections (the radiograph branch's), shown after truth recovery and before provenance.
        generated: when the page is made; now when None.
        external_truth: ``make truth``'s truth_recovery.json (the external truth cohort); None or absent: not shown.

    Raises:
        UserError: when the evaluate metrics are missing, or a report file cannot be read.
    """
    from spineage import __version__

    reports = Path(reports)
    metrics = reports / EVALUATE / METRICS
    if not reports.is_dir():
        raise UserError(f"Expected a reports folder at {reports}, found none; run `make repro` first")
    evaluation = read_json_report(metrics)
    if evaluation is None:
        raise UserError(f"Expected the evaluate stage's {metrics}, found none; run `make repro` first")
    extra = tuple(extra_sections or ())
    for section in extra:
        if not isinstance(section, Section):
            raise TypeError(f"Expected each extra section to be a spineage.reporting.blocks.Section, found {type(section).__name__}")
    stamp = (generated or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sections = (
        cohort_section(reports),
        model_section(reports, evaluation, None if ablations is None else Path(ablations)),
        sag_section(reports),
        truth_recovery_section(reports, external_truth),
        *extra,
        provenance_section(reports, evaluation, stamp, __version__),
    )
    anchors = [section.anchor for section in sections]
    repeated = sorted({anchor for anchor in anchors if anchors.count(anchor) > 1})
    if repeated:
        raise ValueError(f"Expected each section's anchor once, found {repeated} more than once")
    return ReportPage("Spine age report", _highlights(reports, evaluation), sections, stamp, __version__)
