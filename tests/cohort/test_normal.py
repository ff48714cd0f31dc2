"""Tests of the normal-cohort definition: cluster labels, bracket groups, clustering of clear structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spineage.cohort.normal import (
    NOISE,
    OUTSIDE_BRACKETS,
    clustering_groups,
    describe_cluster,
    normal_cohort,
)
from spineage.cohort.settings import CohortSettings, parse_cohort_settings
from spineage.errors import UserError
from spineage.findings.features import REGION_COLUMNS


def vectors(rows: list[dict[str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(0, index=[f"s{i}" for i in range(len(rows))], columns=list(REGION_COLUMNS), dtype=np.int16)
    for i, row in enumerate(rows):
        for column, value in row.items():
            frame.iloc[i, frame.columns.get_loc(column)] = value
    return frame


def test_labels_in_words():
    assert describe_cluster(vectors([{}] * 6 + [{"lumbar__disc_bulge__mild": 1}] * 4)) == "no clinically significant finding"
    bulges = vectors([{"lumbar__disc_bulge__mild": n} for n in (1, 1, 2, 2, 3, 3, 1, 2, 3, 2)])
    assert describe_cluster(bulges) == "1-3 mild lumbar disc bulges"
    worn = vectors([{"lumbar__desiccation__mild": 2, "lumbar__disc_bulge__mild": 1, "spinal_stenosis": 1}] * 5)
    assert describe_cluster(worn) == "mild lumbar disc bulges and desiccation with spinal stenosis"
    isolated = vectors([{"lumbar__protrusion__severe": 1}, {"thoracic__endplate_change__present": 1}, {"fracture": 1}])
    assert describe_cluster(isolated).startswith("no or isolated findings (most often")
    varied = vectors([
        {"lumbar__protrusion__severe": 1, "fracture": 1},
        {"thoracic__endplate_change__present": 1, "bone_lesion": 1},
        {"cervical__extrusion__mild": 1, "spinal_stenosis": 1},
    ])
    assert describe_cluster(varied).startswith("varied findings (most often")


def test_small_brackets_join_a_neighbour():
    counts = {30: 90, 40: 300, 50: 280, 60: 220, 70: 110, 80: 25}
    assert clustering_groups(counts, 50) == [(30,), (40,), (50,), (60,), (70, 80)]
    assert clustering_groups({30: 10, 40: 300, 50: 280, 60: 220, 70: 110, 80: 60}, 50)[0] == (30, 40)
    assert clustering_groups({30: 3, 40: 9, 50: 8, 60: 7, 70: 2, 80: 1}, 50) == [(30, 40, 50, 60, 70, 80)]
    assert clustering_groups(counts, 2) == [(b,) for b in counts]


def _structured_bracket(n_typical: int, n_rare: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One bracket: a large group of near-identical typical spines and two small, distinct rare groups."""
    rng = np.random.default_rng(seed)
    rows = [{"lumbar__disc_bulge__mild": int(rng.integers(1, 3))} for _ in range(n_typical)]
    rows += [{"thoracic__protrusion__severe": 1, "thoracic__endplate_change__present": 1, "thoracic__annular_fissure__present": 1}] * n_rare
    rows += [{"cervical__extrusion__moderate": 1, "cervical__desiccation__near_complete": 1, "cord_abnormality": 1}] * n_rare
    region = vectors(rows)
    series = pd.DataFrame({"series_id": region.index, "age": 40.0 + rng.uniform(0, 4, len(region))})
    return series, region


@pytest.mark.slow  # UMAP: numba compiles on first use (~20 s)
def test_clear_structure_is_found_and_rare_groups_are_abnormal():
    series, region = _structured_bracket(120, 15, seed=0)
    out, results = normal_cohort(series, region, CohortSettings(), seed=3)
    assert out["bracket"].tolist() == [40] * len(series)
    typical = out.iloc[:120]
    assert typical["normal"].mean() > 0.95
    assert not out.iloc[120:]["normal"].any()
    assert len(results) == 6 and results[1].brackets == (40,) and results[1].clustered


@pytest.mark.slow  # UMAP: numba compiles on first use (~20 s)
def test_ages_outside_the_brackets_are_never_clustered():
    series, region = _structured_bracket(60, 10, seed=1)
    series.loc[series.index[:3], "age"] = [22.0, 85.0, 90.5]
    out, _ = normal_cohort(series, region, CohortSettings(), seed=3)
    outside = out.iloc[:3]
    assert outside["bracket"].isna().all()
    assert (outside["cluster"] == OUTSIDE_BRACKETS).all() and not outside["normal"].any()
    assert set(out.iloc[3:]["cluster"]) <= set(range(10)) | {NOISE}


def test_a_tiny_cohort_is_kept_whole_as_normal():
    series, region = _structured_bracket(8, 2, seed=2)
    out, results = normal_cohort(series, region, CohortSettings(), seed=3)
    assert out["normal"].all() and (out["cluster"] == 0).all()
    assert [r.clustered for r in results] == [False]


@pytest.mark.slow  # UMAP: numba compiles on first use (~20 s)
def test_same_seed_same_clusters():
    series, region = _structured_bracket(100, 12, seed=4)
    first, _ = normal_cohort(series, region, CohortSettings(), seed=5)
    second, _ = normal_cohort(series, region, CohortSettings(), seed=5)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"epsilon": {90: 0.5}}, "brackets of cohort.epsilon"),
        ({"epsilon": {30: "wide"}}, "a number for cohort.epsilon"),
        ({"split": {"train": 0.7, "validation": 0.1, "test": 0.1}}, "sum to 1"),
        ({"split": {"holdout": 0.1}}, "splits of cohort.split"),
        ({"min_cluster_fraction": 0}, "between"),
        ({"min_samples": 2.5}, "an integer"),
        ({"umap_metric": "mahalanobis"}, "umap_metric"),
        ({"normal_fraction": 0.2}, "keys of the cohort section"),
        ("canberra", "mapping"),
    ],
)
def test_bad_cohort_settings_are_user_errors(section, message):
    with pytest.raises(UserError, match=message):
        parse_cohort_settings(section)


def test_default_settings_are_the_papers():
    settings = parse_cohort_settings({})
    assert settings == CohortSettings()
    assert (settings.umap_n_neighbors, settings.umap_min_dist, settings.umap_metric, settings.min_samples) == (15, 0.0, "canberra", 5)
    assert settings.epsilon == {30: 0.7, 40: 0.7, 50: 0.6, 60: 0.7, 70: 0.3, 80: 0.3}
    assert settings.normal_cluster_fraction == 0.15


@pytest.mark.parametrize(("n", "expected"), [(5000, (15, 5)), (120, (15, 5)), (119, (15, 5)), (90, (11, 4)), (60, (8, 2)), (10, (3, 2))])
def test_small_brackets_use_a_smaller_neighbourhood(n, expected):
    from spineage.cohort.normal import neighbourhood

    assert neighbourhood(n, CohortSettings()) == expected
    assert neighbourhood(n, CohortSettings(full_neighbourhood_series=0)) == (15, 5)  # 0: the paper's values always


def _scripted_runs(monkeypatch, labels_by_seed: dict[int, list[int]]):
    """Replace UMAP + HDBSCAN by fixed labels per run seed (rows in series-id order)."""
    import spineage.cohort.normal as normal

    def fake(vectors, epsilon, settings, seed):
        return np.zeros((len(vectors), 2)), np.asarray(labels_by_seed[seed])

    monkeypatch.setattr(normal, "embed_and_cluster", fake)


def test_a_series_is_normal_when_most_runs_put_it_in_a_normal_cluster(monkeypatch):
    from spineage.cohort.normal import run_seed

    # 10 series; cluster 0 (big) is normal in every run, cluster 1 holds 1 series (10 %: abnormal).
    runs = {
        run_seed(9, 0): [0, 0, 0, 0, 0, 0, 0, 0, 1, -1],
        run_seed(9, 1): [0, 0, 0, 0, 0, 0, 0, 1, 0, -1],
        run_seed(9, 2): [0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    }
    _scripted_runs(monkeypatch, runs)
    series, region = _structured_bracket(8, 1, seed=0)
    settings = CohortSettings(min_bracket_series=2, consensus_runs=3)
    out, results = normal_cohort(series, region, settings, seed=9)
    out = out.set_index("series_id").loc[sorted(out["series_id"])]
    # Series 6, 7, 8 are outside a normal cluster once in three runs: still normal, agreement 2/3.
    assert out["normal"].tolist() == [True] * 9 + [False]
    assert out["normal_agreement"].round(4).tolist() == [1.0] * 6 + [0.6667] * 3 + [0.6667]
    group = next(r for r in results if r.clustered)
    assert group.runs == 3 and group.representative_run == 0
    assert group.stability == pytest.approx(out["normal_agreement"].mean(), abs=1e-4)


def test_one_run_is_the_papers_single_run(monkeypatch):
    from spineage.cohort.normal import run_seed

    labels = [0, 0, 0, 0, 0, 0, 0, 1, 1, -1]
    _scripted_runs(monkeypatch, {run_seed(4, 0): labels})
    assert run_seed(4, 0) == 4  # run 0 uses the seed itself
    series, region = _structured_bracket(8, 1, seed=0)
    out, _ = normal_cohort(series, region, CohortSettings(min_bracket_series=2, consensus_runs=1), seed=4)
    out = out.set_index("series_id").loc[sorted(out["series_id"])]
    assert out["normal"].tolist() == [True] * 7 + [True, True, False]  # cluster 1 holds 20 % > 15 %
    assert (out["normal_agreement"] == 1.0).all()


@pytest.mark.slow  # UMAP: numba compiles on first use (~20 s)
def test_shuffled_rows_give_the_same_cohort():
    series, region = _structured_bracket(100, 12, seed=6)
    settings = CohortSettings(consensus_runs=3)
    first, _ = normal_cohort(series, region, settings, seed=5)
    rng = np.random.default_rng(0)
    shuffled_series = series.iloc[rng.permutation(len(series))].reset_index(drop=True)
    shuffled_region = region.iloc[rng.permutation(len(region))]
    second, _ = normal_cohort(shuffled_series, shuffled_region, settings, seed=5)
    pd.testing.assert_frame_equal(first.set_index("series_id").sort_index(), second.set_index("series_id").sort_index())


@pytest.mark.parametrize("runs", [0, 2.5, "many"])
def test_bad_consensus_runs_are_user_errors(runs):
    with pytest.raises(UserError, match="cohort.consensus_runs"):
        parse_cohort_settings({"consensus_runs": runs})
