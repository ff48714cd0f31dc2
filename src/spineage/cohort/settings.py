"""The ``cohort`` section of params.yaml turned into typed settings, with clear errors for bad values.

Example:
    >>> settings = parse_cohort_settings({"min_cluster_fraction": 0.05})
    >>> settings.epsilon[70], settings.split_fractions["train"]
    (0.3, 0.8)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spineage.errors import UserError
from spineage.settings_checks import choice, number, section_mapping
from spineage.findings.vocabulary import BRACKETS

DEFAULT_EPSILON: dict[int, float] = {30: 0.7, 40: 0.7, 50: 0.6, 60: 0.7, 70: 0.3, 80: 0.3}
"""HDBSCAN cluster_selection_epsilon per age bracket: the MRI paper's values, except brackets 30 (0.7) and 50 (0.6), not 1.0.

Measured over five phantom seeds of the default profile (benchmarks/bench_phantom_cohort.py; seeds 20251121, 1, 2
and, held back while choosing, 3 and 4). At 1.0, bracket 50 merged into one cluster on one seed, and bracket 30
(about 65 series here, a few hundred in the paper) left atypical series in its normal cluster: its abnormal share
was 24 % against 37 % at 0.7 (0.5 overshot: 77-83 % on three seeds). At 0.7, bracket 50 was still 17 % abnormal on
one seed; at 0.6 every bracket of the first three seeds is 25-60 % abnormal (seed 4: 60 %, and 20 % in bracket 70,
which is not this setting's), and series with a structural pathology 86-100 % abnormal, typical ones 0-12 %.
"""

DEFAULT_SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}

_METRICS = ("canberra", "euclidean", "manhattan", "cosine", "hamming", "jaccard", "braycurtis", "chebyshev")
_INITS = ("pca", "random", "spectral")
_KEYS = {
    "umap_n_neighbors", "umap_min_dist", "umap_metric", "umap_init", "min_samples", "min_cluster_fraction",
    "epsilon", "normal_cluster_fraction", "min_bracket_series", "full_neighbourhood_series", "split", "consensus_runs",
}


@dataclass(frozen=True)
class CohortSettings:
    """Settings of the normal-cohort definition and the splits (the ``cohort`` section).

    Args:
        umap_n_neighbors: UMAP neighbours (the paper: 15).
        umap_min_dist: UMAP minimum distance (the paper: 0).
        umap_metric: distance between region vectors (the paper: canberra).
        umap_init: UMAP's initial layout. "pca" by default: UMAP's spectral
            initialisation differs from run to run when the neighbour graph has
            several components (identical vectors form islands), even with a
            seed, so the same seed would not give the same cohort.
        min_samples: HDBSCAN min_samples (the paper: 5).
        min_cluster_fraction: HDBSCAN min_cluster_size as a fraction of the
            bracket's series (at least ``min_samples`` series).
        epsilon: HDBSCAN cluster_selection_epsilon per bracket (30 ... 80).
        normal_cluster_fraction: a cluster holding more than this fraction of
            its bracket is normal (the paper: 0.15).
        full_neighbourhood_series: a bracket (or merged group) with fewer series
            than this uses proportionally fewer UMAP neighbours and a
            proportionally smaller HDBSCAN min_samples (at least 3 and 2): a
            neighbourhood of 15 is a quarter of a 60-series bracket, and UMAP
            pulls any group smaller than its neighbourhood into the crowd.
            Larger brackets (the paper's had 460-5,045 series) use the paper's
            values unchanged; 0 never scales.
        min_bracket_series: a bracket with fewer series is clustered together
            with its neighbouring bracket; if all brackets together have fewer,
            every series is kept as one normal cluster.
        split_fractions: train, validation and test fractions of the normal series.
        consensus_runs: seeded UMAP + HDBSCAN runs per bracket; a series is normal
            when it sits in a normal cluster in more than half of them (1: the
            paper's single run; odd numbers avoid ties, which count as abnormal).
    """

    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.0
    umap_metric: str = "canberra"
    umap_init: str = "pca"
    min_samples: int = 5
    min_cluster_fraction: float = 0.05
    epsilon: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_EPSILON))
    normal_cluster_fraction: float = 0.15
    min_bracket_series: int = 50
    full_neighbourhood_series: int = 120
    split_fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPLIT_FRACTIONS))
    consensus_runs: int = 9


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    return number(section, key, default, "cohort", low, high, integer)


def parse_cohort_settings(section: Any) -> CohortSettings:
    """Turn the ``cohort`` section of params.yaml into :class:`CohortSettings`, checking every value.

    Raises:
        UserError: for an unknown key, a value of the wrong type or out of range,
            an unknown bracket, or split fractions that do not sum to 1.
    """
    if section is None:
        return CohortSettings()
    section = section_mapping(section, "cohort", _KEYS)
    defaults = CohortSettings()
    metric = choice(section, "umap_metric", defaults.umap_metric, "cohort", _METRICS)
    init = choice(section, "umap_init", defaults.umap_init, "cohort", _INITS)

    epsilon = dict(DEFAULT_EPSILON)
    raw_epsilon = section.get("epsilon") or {}
    if not isinstance(raw_epsilon, dict):
        raise UserError(f"Expected a mapping of bracket to epsilon for cohort.epsilon, found {raw_epsilon!r}")
    for bracket, value in raw_epsilon.items():
        if bracket not in BRACKETS:
            raise UserError(f"Expected brackets of cohort.epsilon among {sorted(BRACKETS)}, found {bracket!r}")
        epsilon[bracket] = float(_number({"epsilon": value}, "epsilon", 0.0, 0.0, 100.0))

    fractions = dict(DEFAULT_SPLIT_FRACTIONS)
    raw_split = section.get("split") or {}
    if not isinstance(raw_split, dict):
        raise UserError(f"Expected a mapping of split to fraction for cohort.split, found {raw_split!r}")
    for name, value in raw_split.items():
        if name not in fractions:
            raise UserError(f"Expected splits of cohort.split among {sorted(fractions)}, found {name!r}")
        fractions[name] = float(_number({f"split.{name}": value}, f"split.{name}", 0.0, 0.0, 1.0))
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise UserError(f"Expected cohort.split fractions that sum to 1, found {fractions} (sum {sum(fractions.values()):.3f})")
    if fractions["train"] <= 0:
        raise UserError("Expected a positive cohort.split.train fraction, found 0")

    return CohortSettings(
        umap_n_neighbors=int(_number(section, "umap_n_neighbors", defaults.umap_n_neighbors, 2, 200, integer=True)),
        umap_min_dist=float(_number(section, "umap_min_dist", defaults.umap_min_dist, 0.0, 1.0)),
        umap_metric=metric,
        umap_init=init,
        min_samples=int(_number(section, "min_samples", defaults.min_samples, 1, 1000, integer=True)),
        min_cluster_fraction=float(_number(section, "min_cluster_fraction", defaults.min_cluster_fraction, 0.001, 0.5)),
        epsilon=epsilon,
        normal_cluster_fraction=float(_number(section, "normal_cluster_fraction", defaults.normal_cluster_fraction, 0.0, 1.0)),
        min_bracket_series=int(_number(section, "min_bracket_series", defaults.min_bracket_series, 2, 1_000_000, integer=True)),
        full_neighbourhood_series=int(_number(section, "full_neighbourhood_series", defaults.full_neighbourhood_series, 0, 1_000_000, integer=True)),
        split_fractions=fractions,
        consensus_runs=int(_number(section, "consensus_runs", defaults.consensus_runs, 1, 101, integer=True)),
    )


def load_cohort_settings(params: str | Path) -> tuple[int, CohortSettings]:
    """The seed and the cohort settings of a params file (defaults where the section is absent)."""
    from spineage.config import read_params_mapping

    raw = read_params_mapping(params)  # the seed is checked there: a non-negative integer
    return int(raw.get("seed", 0)), parse_cohort_settings(raw.get("cohort"))
