"""Feature vectors of a scan's findings: the 215-entry level vector and the 67-entry region vector.

Column names (documented here, used everywhere):

* level vector: ``<level>__<condition>`` for the 26 levels x 8 degenerative
  conditions, holding the severity ordinal (0 absent, mild 1, moderate 2,
  severe 3, near_complete 4, present 1), then the 7 pathology flags
  ``<pathology>`` (0/1): 26 x 8 + 7 = 215 columns.
* region vector: ``<region>__<condition>__<severity>`` for cervical, thoracic
  and lumbar x the 20 condition-severity pairs, counting the levels with that
  finding, then the same 7 pathology flags: 3 x 20 + 7 = 67 columns.

Only non-negated findings count; other findings (scoliosis etc.) are left out.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"series_id": ["a", "a"], "level": ["L4", "L5"],
    ...                       "condition": ["disc_bulge"] * 2, "severity": ["mild"] * 2})
    >>> int(region_vectors(table, ["a"]).loc["a", "lumbar__disc_bulge__mild"])
    2
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spineage.findings.vocabulary import (
    CONDITION_SEVERITY_PAIRS,
    DEGENERATIVE_CONDITIONS,
    LEVELS,
    PATHOLOGIES,
    REGIONS,
    SEVERITY_ORDINAL,
    region_of,
)

LEVEL_COLUMNS: tuple[str, ...] = tuple(f"{level}__{condition}" for level in LEVELS for condition in DEGENERATIVE_CONDITIONS) + PATHOLOGIES
REGION_COLUMNS: tuple[str, ...] = tuple(f"{region}__{condition}__{severity}" for region in REGIONS for condition, severity in CONDITION_SEVERITY_PAIRS) + PATHOLOGIES


def _present(findings: pd.DataFrame) -> pd.DataFrame:
    if "negated" in findings.columns:
        findings = findings[~findings["negated"].astype(bool)]
    return findings


def level_vectors(findings: pd.DataFrame, series_ids: list[str]) -> pd.DataFrame:
    """The 215-entry level vector of each series (rows in the order of ``series_ids``)."""
    findings = _present(findings)
    out = pd.DataFrame(0, index=pd.Index(series_ids, name="series_id"), columns=list(LEVEL_COLUMNS), dtype=np.int16)
    known = findings[findings["series_id"].isin(out.index)]
    degenerative = known[known["condition"].isin(DEGENERATIVE_CONDITIONS)]
    for row in degenerative.itertuples(index=False):
        column = f"{row.level}__{row.condition}"
        out.at[row.series_id, column] = max(out.at[row.series_id, column], SEVERITY_ORDINAL[row.severity])
    _set_pathologies(out, known)
    return out


def region_vectors(findings: pd.DataFrame, series_ids: list[str]) -> pd.DataFrame:
    """The 67-entry region vector of each series (rows in the order of ``series_ids``)."""
    findings = _present(findings)
    out = pd.DataFrame(0, index=pd.Index(series_ids, name="series_id"), columns=list(REGION_COLUMNS), dtype=np.int16)
    known = findings[findings["series_id"].isin(out.index)]
    degenerative = known[known["condition"].isin(DEGENERATIVE_CONDITIONS)].drop_duplicates(["series_id", "level", "condition", "severity"])
    if len(degenerative):
        columns = [f"{region_of(level)}__{condition}__{severity}" for level, condition, severity in zip(degenerative["level"], degenerative["condition"], degenerative["severity"])]
        counts = pd.DataFrame({"series_id": degenerative["series_id"].to_numpy(), "column": columns}).value_counts()
        for (series_id, column), count in counts.items():
            out.at[series_id, column] = count
    _set_pathologies(out, known)
    return out


def _set_pathologies(out: pd.DataFrame, findings: pd.DataFrame) -> None:
    flagged = findings[findings["condition"].isin(PATHOLOGIES)][["series_id", "condition"]].drop_duplicates()
    for row in flagged.itertuples(index=False):
        out.at[row.series_id, row.condition] = 1
