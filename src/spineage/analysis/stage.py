"""The ``sag`` stage: what the spine age gap goes with (the MRI paper's section 4.5, Table 5, Figures 6 and 7).

Reads the evaluate stage's ``predictions.csv`` (bias-corrected spine age and SAG of every series),
the findings table and, when there is one, the raw cohort's ``lifestyle.csv``; keeps the series of
``settings.splits`` (the full test set); and writes to the reports folder:

==========================  ===================================================================
file                        what
==========================  ===================================================================
``series.csv``              the analysis table, one row per series
                            (:mod:`spineage.analysis.covariates`)
``associations.csv``        Table 5: SAG per finding and lifestyle factor, unadjusted and
                            adjusted (:mod:`spineage.analysis.associations`)
``associations.md``         the same as Markdown, laid out like the paper's table
``odds_ratios.csv``         Figure 6's odds ratios, high against low gap (:mod:`spineage.analysis.odds`)
``odds_ratios.png``         Figure 6, the forest plot
``sag_vs_age_work.png``     Figure 7, SAG by age and physically demanding work (one group without lifestyle)
``multivariable.csv``       the explainability model's terms (:mod:`spineage.analysis.explain`)
``metrics.json``            the headline numbers (DVC metrics, flat where they are numbers:
                            ``n_series``, ``n_high``, ``multivariable_adj_r_squared`` …)
==========================  ===================================================================

Without a lifestyle table the lifestyle rows and terms are left out, Figure 7 shows every series as one
group, and ``metrics.json`` says so (``lifestyle_present``: false, and a note).

Example:
    >>> from spineage.analysis.settings import SagSettings
    >>> write_sag_analysis(Path("reports/evaluate/predictions.csv"), Path("data/interim/findings.parquet"),
    ...                    Path("data/raw/lifestyle.csv"), Path("reports/sag"), SagSettings(), seed=42)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from spineage.analysis.associations import (
    SIGNIFICANCE,
    associations_markdown,
    sag_associations,
)
from spineage.analysis.covariates import analysis_table
from spineage.analysis.explain import multivariable_gap_model
from spineage.analysis.odds import gap_group_odds_ratios
from spineage.analysis.settings import SagSettings
from spineage.atomic import json_ready, write_atomic, write_json_atomic
from spineage.errors import UserError

SERIES = "series.csv"
ASSOCIATIONS = "associations.csv"
ASSOCIATIONS_MARKDOWN = "associations.md"
ODDS_RATIOS = "odds_ratios.csv"
ODDS_FOREST = "odds_ratios.png"
SAG_BY_AGE_AND_WORK = "sag_vs_age_work.png"
MULTIVARIABLE = "multivariable.csv"
METRICS = "metrics.json"

MIN_SERIES = 10
"""The fewest series of the analysed splits the stage accepts."""


def read_predictions(path: Path) -> pd.DataFrame:
    """The evaluate stage's ``predictions.csv``.

    Raises:
        UserError: if the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected the evaluate stage's predictions at {path} (run `spineage evaluate` first), found no such file")
    return pd.read_csv(path, dtype={"series_id": str, "subject_id": str, "split": str, "sex": str})


def read_findings(path: Path) -> pd.DataFrame:
    """The findings table (``findings.parquet``).

    Raises:
        UserError: if the file is missing or not Parquet.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Expected the findings table at {path} (run `spineage findings` first), found no such file")
    try:
        return pd.read_parquet(path)
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"Expected a Parquet findings table at {path}, found one that does not read: {str(error).splitlines()[0]}") from None


def read_lifestyle(path: Path | None) -> pd.DataFrame | None:
    """``lifestyle.csv`` as text cells (the raw-cohort policy), or None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    from spineage.raw_cohort import read_table

    return read_table(path, "the lifestyle table")


def _significant(table: pd.DataFrame, column: str) -> int:
    return int((table[column] < SIGNIFICANCE).sum())


def write_sag_analysis(
    predictions_csv: Path, findings_parquet: Path, lifestyle_csv: Path | None, reports: Path, settings: SagSettings, seed: int,
) -> dict[str, Any]:
    """Run the sag stage (module docstring) and write its outputs to ``reports``.

    Args:
        predictions_csv: the evaluate stage's predictions.
        findings_parquet: the findings table.
        lifestyle_csv: the raw cohort's lifestyle table; None (or a path without a file) leaves lifestyle out.
        reports: the output folder.
        settings: the ``sag`` section.
        seed: the seed of Figure 7's bootstrap bands.

    Returns:
        The content of ``metrics.json``.

    Raises:
        UserError: for a missing or bad input, or fewer than :data:`MIN_SERIES` series in the analysed splits.
    """
    predictions, findings, lifestyle = read_predictions(predictions_csv), read_findings(findings_parquet), read_lifestyle(lifestyle_csv)
    table = analysis_table(predictions, findings, lifestyle, settings)
    if len(table) < MIN_SERIES:
        raise UserError(f"Expected at least {MIN_SERIES} series in the splits {list(settings.splits)} of {predictions_csv}, found {len(table)}")

    associations = sag_associations(table, settings)
    odds = gap_group_odds_ratios(table, settings)
    terms, model = multivariable_gap_model(table, settings)

    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    from spineage.analysis.figures import plot_odds_forest, plot_sag_by_age_and_work

    notes = []
    plot_odds_forest(odds, reports / ODDS_FOREST)
    plot_sag_by_age_and_work(table, settings, reports / SAG_BY_AGE_AND_WORK, seed)
    if lifestyle is None:
        notes.append(f"no lifestyle table ({lifestyle_csv}): lifestyle associations and terms skipped; {SAG_BY_AGE_AND_WORK} has one group")
    write_atomic(reports / SERIES, lambda p: table.to_csv(p, index=False, float_format="%.3f"))
    write_atomic(reports / ASSOCIATIONS, lambda p: associations.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(reports / ASSOCIATIONS_MARKDOWN, lambda p: p.write_text(associations_markdown(associations, settings.adjust_for)))
    write_atomic(reports / ODDS_RATIOS, lambda p: odds.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(reports / MULTIVARIABLE, lambda p: terms.to_csv(p, index=False, float_format="%.6g"))

    high = table["sag"] > settings.high_gap_years
    low = table["sag"] < settings.low_gap_years
    metrics: dict[str, Any] = {
        "n_series": len(table),
        "n_subjects": int(table["subject_id"].nunique()),
        "splits": list(settings.splits),
        "sag_mean": float(table["sag"].mean()),
        "sag_sd": float(table["sag"].std(ddof=1)),
        "n_high": int(high.sum()),
        "n_low": int(low.sum()),
        "thresholds": {"high_gap_years": settings.high_gap_years, "low_gap_years": settings.low_gap_years},
        **{f"multivariable_{key}": value for key, value in model.items()},
        "lifestyle_present": lifestyle is not None,
        "significant_associations": {
            "p_below": SIGNIFICANCE,
            "estimated": int(associations["effect"].notna().sum()),
            "unadjusted": _significant(associations, "p"),
            "adjusted": _significant(associations, "adj_p"),
        },
        "significant_odds_ratios": _significant(odds, "p"),
        "notes": notes,
        "seed": seed,
        "settings": settings.as_params(),
    }
    metrics = json_ready(metrics)
    write_json_atomic(reports / METRICS, metrics)
    return metrics
