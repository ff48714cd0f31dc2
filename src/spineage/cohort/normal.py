"""The data-driven normal cohort (MRI paper, section 2.3).

Within each age bracket (:data:`~spineage.findings.vocabulary.BRACKETS`), the
67-entry region vectors of the series are embedded with UMAP (Canberra
distance, 15 neighbours, minimum distance 0, two components, seeded, PCA
initialisation so that the same seed gives the same embedding) and
clustered with HDBSCAN on the embedding (``min_samples`` 5, a minimum cluster
size that is a fraction of the bracket, and a per-bracket
``cluster_selection_epsilon``); a bracket under ``full_neighbourhood_series``
(120) series scales the neighbours and min_samples down in proportion
(:func:`neighbourhood`). A cluster holding more than 15 % of its
bracket is a common, age-typical pattern: its series are **normal**. Series in
smaller clusters and HDBSCAN's noise points are **abnormal**.

**Consensus.** One UMAP + HDBSCAN run can flip a series between normal and
abnormal on a change as small as another seed, another BLAS or another row
order. So the method runs ``consensus_runs`` times with seeds derived from the
one seed (run 0 uses the seed itself, so one run is exactly the paper's
method), always on the rows sorted by series id (the input order never
matters), and a series is **normal when it sits in a normal cluster in more
than half of the runs**. Each series' *agreement* is the share of runs that
agree with that verdict; a bracket's *stability* is the mean agreement of its
series. The cluster numbers and words written out are those of the run that
agrees most with the consensus (the representative run).

Cluster numbers written out:

* ``0, 1, ...``: HDBSCAN's clusters of the bracket, largest first;
* ``-1``: noise (unclustered), abnormal;
* ``-2``: outside the age brackets (younger than 25 or 85 and older): never
  clustered, ``normal`` False, bracket empty.

A bracket with fewer than ``min_bracket_series`` series is too small for UMAP
and HDBSCAN to mean anything: it is clustered together with its neighbouring
bracket (80 with 70 in the default-size phantom; :func:`clustering_groups`),
with the epsilon of the larger one, and the 15 % threshold applies to the
merged group (a bracket of a dozen series cannot set a norm of its own: two
series would be 15 % of it). If even all brackets together fall short (a tiny test cohort),
every series forms one cluster ``0``, kept as normal so that there is still a
training set, and the summary says so.

Each cluster gets a label in words from its members' region vectors
(:func:`describe_cluster`), e.g. "no clinically significant finding",
"1-3 mild lumbar disc bulges", "mild lumbar desiccation and disc bulges".

Example:
    >>> from spineage.cohort.normal import describe_cluster  # doctest: +SKIP
    >>> describe_cluster(region_vectors.loc[members])  # doctest: +SKIP
    '1-3 mild lumbar disc bulges'
"""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spineage.cohort.settings import CohortSettings
from spineage.findings.features import REGION_COLUMNS
from spineage.findings.vocabulary import BRACKETS, PATHOLOGIES

NOISE = -1
OUTSIDE_BRACKETS = -2

_NOUNS: dict[str, tuple[str, str]] = {
    "disc_bulge": ("disc bulge", "disc bulges"),
    "disc_osteophyte_complex": ("disc-osteophyte complex", "disc-osteophyte complexes"),
    "uncovertebral_osteophyte": ("uncovertebral osteophytes", "uncovertebral osteophytes"),
    "protrusion": ("disc protrusion", "disc protrusions"),
    "extrusion": ("disc extrusion", "disc extrusions"),
    "desiccation": ("desiccation", "desiccation"),
    "endplate_change": ("endplate change", "endplate changes"),
    "annular_fissure": ("annular fissure", "annular fissures"),
}
_PATHOLOGY_NOUNS: dict[str, str] = {
    "bone_lesion": "a bone lesion",
    "congenital_canal_narrowing": "a congenitally narrow canal",
    "cord_abnormality": "a cord abnormality",
    "fracture": "a vertebral fracture",
    "soft_tissue_edema": "soft-tissue oedema",
    "spinal_stenosis": "spinal stenosis",
    "spondylolisthesis": "spondylolisthesis",
}
_SEVERITY_WORDS = {"present": "", "mild": "mild", "moderate": "moderate", "severe": "severe",
                   "near_complete": "near-complete"}

DOMINANT_PREVALENCE = 0.5
"""A finding names a cluster when at least this share of its members has it."""

MAX_NAMED = 3
"""At most this many findings name a cluster (the most common first)."""


def _count_phrase(counts: np.ndarray, severity: str, region: str, condition: str) -> str:
    """ "1-3 mild lumbar disc bulges" from the counts of one region-vector entry over a cluster."""
    low, high = (int(round(v)) for v in np.quantile(counts, [0.1, 0.9]))
    singular, plural = _NOUNS[condition]
    noun = singular if high <= 1 else plural
    number = str(high) if low == high else f"{low}-{high}"
    return " ".join(w for w in (number, _SEVERITY_WORDS[severity], region, noun) if w)


def describe_cluster(members: pd.DataFrame) -> str:
    """Name a cluster in words from its members' region vectors.

    The findings at least half of the members have name the cluster; with
    one, the label gives the usual range of its count ("1-3 mild lumbar disc
    bulges"); with several, those of one severity and region are joined
    ("mild lumbar desiccation and disc bulges"). A cluster where most members
    have no finding at all is "no clinically significant finding".

    Args:
        members: region vectors (columns :data:`~spineage.findings.features.REGION_COLUMNS`).
    """
    if members.empty:
        return "empty"
    values = members.reindex(columns=list(REGION_COLUMNS), fill_value=0).to_numpy()
    present = values > 0
    if (~present.any(axis=1)).mean() >= DOMINANT_PREVALENCE:
        return "no clinically significant finding"
    prevalence = present.mean(axis=0)
    order = np.argsort(-prevalence, kind="stable")
    dominant = [i for i in order if prevalence[i] >= DOMINANT_PREVALENCE][:MAX_NAMED]
    if not dominant:
        top = int(order[0])
        most_often = f"most often {_entry_phrase(REGION_COLUMNS[top], None)}, {100 * prevalence[top]:.0f} %"
        if np.median(present.sum(axis=1)) <= 1:
            return f"no or isolated findings ({most_often})"
        return f"varied findings ({most_often})"
    degenerative = [i for i in dominant if REGION_COLUMNS[i] not in PATHOLOGIES]
    pathologies = [REGION_COLUMNS[i] for i in dominant if REGION_COLUMNS[i] in PATHOLOGIES]
    if len(degenerative) == 1:
        text = _entry_phrase(REGION_COLUMNS[degenerative[0]], values[:, degenerative[0]])
    else:
        groups: dict[tuple[str, str], list[str]] = {}
        for i in degenerative:
            region, condition, severity = REGION_COLUMNS[i].split("__")
            groups.setdefault((severity, region), []).append(_NOUNS[condition][1])
        parts = []
        for (severity, region), nouns in groups.items():
            joined = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]
            parts.append(" ".join(w for w in (_SEVERITY_WORDS[severity], region, joined) if w))
        text = "; ".join(parts)
    if pathologies:
        names = [_PATHOLOGY_NOUNS[p] for p in pathologies]
        text = (f"{text} with " if text else "") + " and ".join(names)
    return text


def _entry_phrase(column: str, counts: np.ndarray | None) -> str:
    """A region-vector entry in words, with the usual range of its count when ``counts`` is given."""
    if column in PATHOLOGIES:
        return _PATHOLOGY_NOUNS[column]
    region, condition, severity = column.split("__")
    if counts is None:
        return " ".join(w for w in (_SEVERITY_WORDS[severity], region, _NOUNS[condition][1]) if w)
    return _count_phrase(counts, severity, region, condition)


@dataclass
class BracketClusters:
    """The clustering of one age bracket, or of a small bracket merged with its neighbour.

    Args:
        brackets: the bracket labels clustered together (usually one: ``(40,)``).
        series_ids: their series, in the order of ``labels`` and ``embedding``.
        series_brackets: the bracket of each series.
        labels: cluster per series (0, 1, ... largest first; -1 noise).
        embedding: the 2-D UMAP embedding, or None when there were too few series to cluster.
        normal_clusters: the clusters holding more than the normal fraction of the series.
        cluster_labels: the words naming each cluster (noise included).
        normal: the consensus verdict per series (normal in more than half of the runs).
        agreement: per series, the share of runs agreeing with ``normal``.
        runs: the UMAP + HDBSCAN runs behind the consensus (1 when not clustered).
        representative_run: the run whose clusters are written out.
    """

    brackets: tuple[int, ...]
    series_ids: list[str]
    series_brackets: np.ndarray
    labels: np.ndarray
    embedding: np.ndarray | None
    normal_clusters: set[int]
    cluster_labels: dict[int, str]
    normal: np.ndarray
    agreement: np.ndarray
    runs: int = 1
    representative_run: int = 0

    @property
    def stability(self) -> float:
        """The mean agreement of the group's series with the consensus (1.0: every run agreed on every series)."""
        return float(self.agreement.mean()) if len(self.agreement) else 1.0

    @property
    def name(self) -> str:
        """``"40"``, or ``"70+80"`` for merged brackets."""
        return "+".join(str(b) for b in self.brackets)

    @property
    def clustered(self) -> bool:
        """Whether UMAP and HDBSCAN ran (False below ``min_bracket_series`` series)."""
        return self.embedding is not None


def clustering_groups(counts: dict[int, int], minimum: int) -> list[tuple[int, ...]]:
    """Brackets to cluster together: each bracket alone, a small one merged with a neighbour.

    A bracket with fewer than ``minimum`` series (but some) joins the smaller of
    its neighbouring groups, repeatedly, until every non-empty group has
    ``minimum`` series or there is one group left.

    Example:
        >>> clustering_groups({30: 90, 40: 300, 50: 280, 60: 220, 70: 110, 80: 25}, 50)
        [(30,), (40,), (50,), (60,), (70, 80)]
    """
    groups = [[b] for b in BRACKETS]
    size = lambda group: sum(counts.get(b, 0) for b in group)  # noqa: E731
    while len(groups) > 1:
        small = [g for g in groups if 0 < size(g) < minimum]
        if not small:
            break
        group = min(small, key=size)
        i = groups.index(group)
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(groups)]
        j = min(neighbours, key=lambda j: (size(groups[j]), j))
        low, high = sorted((i, j))
        groups[low : high + 1] = [groups[low] + groups[high]]
    return [tuple(g) for g in groups]


def embed_and_cluster(vectors: np.ndarray, epsilon: float, settings: CohortSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """UMAP embedding and HDBSCAN labels of one bracket's region vectors.

    Returns:
        (embedding of shape (n, 2), HDBSCAN labels with -1 for noise).
    """
    import hdbscan
    import umap

    n = len(vectors)
    with warnings.catch_warnings():
        # UMAP warns that a seed forces one thread (wanted: determinism) and about
        # disconnected components (expected: identical vectors form tight islands).
        warnings.simplefilter("ignore")
        n_neighbors, min_samples = neighbourhood(n, settings)
        embedding = umap.UMAP(
            n_neighbors=min(n_neighbors, n - 1),
            min_dist=settings.umap_min_dist,
            n_components=2,
            metric=settings.umap_metric,
            init=settings.umap_init,
            random_state=seed,
        ).fit_transform(vectors.astype(np.float64))
        min_cluster_size = max(min_samples, 2, int(round(settings.min_cluster_fraction * n)))
        labels = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_epsilon=float(epsilon),
        ).fit_predict(embedding)
    return embedding, labels


def neighbourhood(n: int, settings: CohortSettings) -> tuple[int, int]:
    """UMAP's n_neighbors and HDBSCAN's min_samples for a bracket of ``n`` series.

    The settings' values from ``full_neighbourhood_series`` series up; below,
    scaled down in proportion (at least 3 and 2), so that the neighbourhood
    stays a small share of the bracket and a rare pattern's few series can
    still form a group of their own.

    Example:
        >>> from spineage.cohort.settings import CohortSettings
        >>> neighbourhood(600, CohortSettings()), neighbourhood(60, CohortSettings()), neighbourhood(6, CohortSettings())
        ((15, 5), (8, 2), (3, 2))
    """
    full = settings.full_neighbourhood_series
    if not full or n >= full:
        return settings.umap_n_neighbors, settings.min_samples
    share = n / full
    return max(3, int(round(settings.umap_n_neighbors * share))), max(2, int(round(settings.min_samples * share)))


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... from the largest (ties: HDBSCAN's order); noise stays -1."""
    clusters, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = clusters[np.argsort(-counts, kind="stable")]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping.get(int(label), NOISE) for label in labels], dtype=int)


def run_seed(seed: int, run: int) -> int:
    """The UMAP seed of consensus run ``run``: the seed itself for run 0, independent streams after it.

    Example:
        >>> run_seed(7, 0)
        7
        >>> run_seed(7, 1) == run_seed(7, 1) != run_seed(7, 2)
        True
    """
    if run == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(run)]).generate_state(1)[0])


def normal_clusters_of(labels: np.ndarray, fraction: float) -> set[int]:
    """The clusters (not noise) holding more than ``fraction`` of the series."""
    clusters, counts = np.unique(labels[labels >= 0], return_counts=True)
    return {int(c) for c, k in zip(clusters, counts) if k > fraction * len(labels)}


def cluster_group(
    brackets: tuple[int, ...], series_brackets: np.ndarray, region_vectors: pd.DataFrame,
    settings: CohortSettings, seed: int,
) -> BracketClusters:
    """Cluster one bracket's series (or a merged group's) and decide by consensus which are normal.

    The rows are sorted by series id first, so the result does not depend on
    the order they come in; the result's ``series_ids`` are in that sorted order.

    Args:
        brackets: the brackets clustered together; the epsilon is that of the
            one with the most series.
        series_brackets: the bracket of each row of ``region_vectors``.
        region_vectors: the series' region vectors (index series_id).
        settings: the cohort settings (``consensus_runs`` runs).
        seed: the seed the runs' UMAP seeds derive from (:func:`run_seed`).
    """
    ids = region_vectors.index.astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    series_ids = ids[order].tolist()
    series_brackets = np.asarray(series_brackets)[order]
    region_vectors = region_vectors.iloc[order]
    n = len(series_ids)
    if n < settings.min_bracket_series:
        labels = np.zeros(n, dtype=int)
        names = {0: describe_cluster(region_vectors)} if n else {}
        return BracketClusters(brackets, series_ids, series_brackets, labels, None, {0} if n else set(), names,
                               normal=np.ones(n, dtype=bool), agreement=np.ones(n))

    largest = max(brackets, key=lambda b: ((series_brackets == b).sum(), b))
    values = region_vectors.to_numpy()
    runs = []
    for run in range(settings.consensus_runs):
        embedding, raw_labels = embed_and_cluster(values, settings.epsilon[largest], settings, run_seed(seed, run))
        labels = _by_size(raw_labels)
        runs.append((embedding, labels, normal_clusters_of(labels, settings.normal_cluster_fraction)))
    votes = np.array([np.isin(labels, sorted(normal)) for _, labels, normal in runs])
    consensus = votes.mean(axis=0) > 0.5
    agreement = (votes == consensus).mean(axis=0)
    representative = int(np.argmax((votes == consensus).mean(axis=1)))  # the first of equals
    embedding, labels, normal = runs[representative]
    names = {int(c): describe_cluster(region_vectors[labels == c]) for c in np.unique(labels)}
    if NOISE in names:
        names[NOISE] = f"unclustered (noise): {names[NOISE]}"
    return BracketClusters(brackets, series_ids, series_brackets, labels, embedding, normal, names,
                           normal=consensus, agreement=agreement, runs=len(runs), representative_run=representative)


def normal_cohort(
    series: pd.DataFrame, region_vectors: pd.DataFrame, settings: CohortSettings, seed: int,
    progress: bool = False,
) -> tuple[pd.DataFrame, list[BracketClusters]]:
    """Assign every series a bracket, a cluster and normal/abnormal.

    Args:
        series: one row per MRI series with ``series_id`` and ``age``.
        region_vectors: the region vectors, index series_id (every series must have one).
        settings: the cohort settings.
        seed: the seed of every UMAP run.
        progress: show a progress bar over the brackets.

    Returns:
        (a table with series_id, bracket (nullable integer), cluster, cluster_label,
        normal, normal_agreement, in the order of ``series``; the clustering of
        each group of brackets).
    """
    from tqdm import tqdm

    from spineage.findings.vocabulary import bracket_of

    brackets = pd.array([bracket_of(float(a)) for a in series["age"]], dtype="Int64")
    out = pd.DataFrame(
        {
            "series_id": series["series_id"].astype(str).to_numpy(),
            "bracket": brackets,
            "cluster": OUTSIDE_BRACKETS,
            "cluster_label": "outside the age brackets (25-84 years)",
            "normal": False,
            "normal_agreement": 1.0,
        }
    )
    counts = {b: int((out["bracket"] == b).sum()) for b in BRACKETS}
    results: list[BracketClusters] = []
    groups = clustering_groups(counts, settings.min_bracket_series)
    for group in tqdm(groups, desc="clustering brackets", unit="bracket", disable=not progress):
        rows = np.flatnonzero(out["bracket"].isin(list(group)).fillna(False).to_numpy())
        ids = out["series_id"].to_numpy()[rows]
        result = cluster_group(group, out["bracket"].to_numpy()[rows].astype(int), region_vectors.loc[ids], settings, seed)
        results.append(result)
        rows = rows[np.argsort(ids, kind="stable")]  # the result's rows are sorted by series id
        out.loc[rows, "cluster"] = result.labels
        out.loc[rows, "cluster_label"] = [result.cluster_labels[int(c)] for c in result.labels]
        out.loc[rows, "normal"] = result.normal
        out.loc[rows, "normal_agreement"] = np.round(result.agreement, 4)
    out["cluster"] = out["cluster"].astype(int)
    out["normal"] = out["normal"].astype(bool)
    return out, results


def cluster_table(results: list[BracketClusters]) -> pd.DataFrame:
    """One row per (bracket group, cluster): n, percent of the group, normal, label (noise included).

    ``bracket`` is the group's name: ``"40"``, or ``"70+80"`` for merged brackets.
    The clusters are the representative run's; ``normal`` says whether the
    cluster is above the normal fraction in that run, ``consensus_normal_share``
    how many of its series the consensus calls normal.
    """
    rows = []
    for result in results:
        n = len(result.labels)
        for cluster in sorted(result.cluster_labels, key=lambda c: (c < 0, c)):
            count = int((result.labels == cluster).sum())
            rows.append(
                dict(
                    bracket=result.name,
                    cluster=int(cluster),
                    n=count,
                    percent=round(100.0 * count / n, 1) if n else 0.0,
                    normal=cluster in result.normal_clusters,
                    consensus_normal_share=round(float(result.normal[result.labels == cluster].mean()), 4) if count else 0.0,
                    label=result.cluster_labels[cluster],
                )
            )
    return pd.DataFrame(rows, columns=["bracket", "cluster", "n", "percent", "normal", "consensus_normal_share", "label"])


def plot_bracket(bracket: int, result: BracketClusters, path, normal_cluster_fraction: float) -> None:
    """The UMAP scatter of one bracket coloured by cluster, with label and share in the legend (Figure 3).

    For a bracket clustered together with a neighbour, the neighbour's series
    are drawn in light grey behind it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 6.0))
    mine = result.series_brackets == bracket
    n = int(mine.sum())
    low, high = BRACKETS[bracket]
    title = f"Age bracket {bracket} ({low}-{high} years): {n} series"
    if len(result.brackets) > 1:
        title += f", clustered with bracket(s) {', '.join(str(b) for b in result.brackets if b != bracket)}"
    if not result.clustered:
        reason = "no series" if n == 0 else f"too few series to cluster (all {len(result.labels)} kept as normal)"
        ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        colours = plt.get_cmap("tab10")
        if (~mine).any():
            ax.scatter(result.embedding[~mine, 0], result.embedding[~mine, 1], s=6, c="gainsboro",
                       label="other bracket of the group")
        for cluster in sorted(result.cluster_labels, key=lambda c: (c < 0, c)):
            mask = (result.labels == cluster) & mine
            if not mask.any():
                continue
            share = 100.0 * (result.labels == cluster).sum() / len(result.labels)
            status = "normal" if cluster in result.normal_clusters else "abnormal"
            colour = "dimgrey" if cluster < 0 else colours(cluster % 10)
            marker = "x" if cluster < 0 else ("o" if cluster in result.normal_clusters else "^")
            text = textwrap.fill(f"{result.cluster_labels[cluster]} ({share:.1f} %, {status})", 60)
            ax.scatter(result.embedding[mask, 0], result.embedding[mask, 1], s=10, c=[colour], marker=marker,
                       label=text, linewidths=0.8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title=f"normal: clusters > {100 * normal_cluster_fraction:.0f} %", title_fontsize=8)
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
    ax.set_title(title, fontsize=10)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
