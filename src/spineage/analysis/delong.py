"""The AUROC of a score, DeLong's variance, and DeLong's test of two correlated AUROCs.

The radiograph paper compares the AUROC of spine age with that of chronological age for
prevalent vertebral fracture and osteoporosis, the two scores measured on the same subjects,
so the two AUROCs are correlated and are compared with DeLong's test (DeLong, DeLong and
Clarke-Pearson 1988). This module follows the fast algorithm of Sun and Xu (2014, IEEE Signal
Processing Letters 21(11)): one O(N log N) ranking per score instead of the m × n comparisons.

With m positives X and n negatives Y, and for each score the midranks (ties share the average
rank) ``Tz`` over all N = m + n subjects, ``Tx`` among the positives and ``Ty`` among the
negatives, the structural components (placement values) are

====================  ==============================  ============================================
component             from midranks                   meaning
====================  ==============================  ============================================
``V10[i]`` (positive)  ``(Tz[X_i] - Tx[i]) / n``       share of negatives below X_i (ties count ½)
``V01[j]`` (negative)  ``1 - (Tz[Y_j] - Ty[j]) / m``   share of positives above Y_j (ties count ½)
====================  ==============================  ============================================

The AUROC is the mean of either; for k scores, with ``S10`` and ``S01`` the k × k sample
covariances (divisor m - 1 and n - 1) of the V10 and V01 rows, the covariance of the k AUROCs
is ``S = S10 / m + S01 / n``. The test of ``auc_a == auc_b`` is ``z = (auc_a - auc_b) / sd``
with ``sd² = S_aa + S_bb - 2 S_ab``, two-sided against the standard normal.

Choices:

* A score is never flipped: one that is lower in positives has an AUROC below 0.5, reported as is.
* Confidence intervals are Wald intervals on the AUC scale (as pROC's ``ci.auc`` with
  ``method = "delong"``), ``auc ± z sqrt(S_aa)`` clipped to [0, 1]; the difference's interval is
  clipped to [-1, 1].
* A difference whose DeLong variance is exactly 0 (the same ranking twice, say) gets z = 0 and
  p = 1 when the difference is 0; a non-zero difference with no variance (a perfect score against
  a constant one) gets an infinite z and p = 0.

Example:
    >>> labels = np.array([1, 1, 1, 0, 0, 0])
    >>> spine_age = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.1])
    >>> round(auroc(labels, spine_age), 4)
    0.8889
    >>> aucs, covariance = delong_covariance(labels, spine_age)
    >>> round(float(covariance[0, 0]), 6)  # 2 / 81
    0.024691
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from spineage.errors import UserError


@dataclass(frozen=True)
class AurocComparison:
    """DeLong's comparison of the AUROCs of two scores on the same subjects (:func:`compare_aurocs`).

    Attributes:
        auc_a: the AUROC of the first score.
        auc_b: the AUROC of the second score.
        ci_a: (low, high) of ``auc_a``, clipped to [0, 1].
        ci_b: (low, high) of ``auc_b``, clipped to [0, 1].
        difference: ``auc_a - auc_b``.
        ci_difference: (low, high) of the difference, clipped to [-1, 1].
        z: the difference over its DeLong standard error.
        p: the two-sided p of ``auc_a == auc_b``.
        n_positive: subjects labelled 1.
        n_negative: subjects labelled 0.
    """

    auc_a: float
    auc_b: float
    ci_a: tuple[float, float]
    ci_b: tuple[float, float]
    difference: float
    ci_difference: tuple[float, float]
    z: float
    p: float
    n_positive: int
    n_negative: int


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve of ``scores`` for ``labels`` (ties between a positive and a negative count ½).

    Args:
        labels: 1 for a positive subject, 0 for a negative one.
        scores: one score per subject, higher meaning more likely positive.

    Returns:
        The probability that a random positive scores above a random negative (plus half that of
        a tie); below 0.5 for a score that is lower in positives (never flipped).

    Raises:
        UserError: for labels other than 0/1, lengths that differ, NaN scores, or a class without subjects.

    Example:
        >>> auroc(np.array([1, 1, 0, 0]), np.array([0.7, 0.5, 0.5, 0.2]))
        0.875
    """
    positive = _checked_labels(labels, minimum=1)
    return float(_placements(positive, _checked_scores(scores, positive.size, single=True))[0][0])


def delong_covariance(labels: np.ndarray, scores_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AUROCs of k scores on the same subjects and DeLong's k × k covariance matrix of them.

    Args:
        labels: 1 for a positive subject, 0 for a negative one (N subjects).
        scores_matrix: one score per row, shape (k, N); a single score of shape (N,) is one row.

    Returns:
        ``(aucs, covariance)``: the k AUROCs and ``S = S10 / m + S01 / n`` (module docstring).

    Raises:
        UserError: for bad labels or scores, or fewer than 2 positives or 2 negatives (no variance).

    Example:
        >>> labels = np.array([1, 1, 1, 0, 0, 0])
        >>> scores = np.array([[0.9, 0.8, 0.4, 0.5, 0.3, 0.1], [0.7, 0.2, 0.6, 0.3, 0.6, 0.1]])
        >>> aucs, covariance = delong_covariance(labels, scores)
        >>> np.round(aucs * 18, 6).tolist(), np.round(covariance * 324, 6).tolist()
        ([16.0, 13.0], [[8.0, -1.0], [-1.0, 20.0]])
    """
    positive = _checked_labels(labels, minimum=2)
    return _covariance(positive, _checked_scores(scores_matrix, positive.size, single=False))


def auroc_ci(labels: np.ndarray, scores: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """The AUROC of ``scores`` and its level ``1 - alpha`` DeLong (Wald) interval, clipped to [0, 1].

    Args:
        labels: 1 for a positive subject, 0 for a negative one.
        scores: one score per subject, higher meaning more likely positive.
        alpha: one minus the interval's coverage.

    Returns:
        ``(auc, low, high)``.

    Raises:
        UserError: for bad labels or scores, fewer than 2 of a class, or alpha outside (0, 1).

    Example:
        >>> auc, low, high = auroc_ci(np.array([1, 1, 1, 0, 0, 0]), np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.1]))
        >>> round(auc, 4), round(low, 4), high
        (0.8889, 0.5809, 1.0)
    """
    _check_alpha(alpha)
    positive = _checked_labels(labels, minimum=2)
    aucs, covariance = _covariance(positive, _checked_scores(scores, positive.size, single=True))
    low, high = _wald_interval(float(aucs[0]), float(covariance[0, 0]), alpha, bounds=(0.0, 1.0))
    return float(aucs[0]), low, high


def compare_aurocs(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, alpha: float = 0.05) -> AurocComparison:
    """DeLong's two-sided test that two scores measured on the same subjects have the same AUROC.

    Args:
        labels: 1 for a positive subject, 0 for a negative one.
        scores_a: the first score (spine age, say), one per subject.
        scores_b: the second score (chronological age, say), one per subject.
        alpha: one minus the coverage of the three intervals.

    Returns:
        Both AUROCs with their intervals, the difference ``auc_a - auc_b`` with its interval, z and p.

    Raises:
        UserError: for bad labels or scores, fewer than 2 of a class, or alpha outside (0, 1).

    Example:
        >>> labels = np.array([1, 1, 1, 0, 0, 0])
        >>> result = compare_aurocs(labels, np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.1]), np.array([0.7, 0.2, 0.6, 0.3, 0.6, 0.1]))
        >>> round(result.difference, 4), round(result.z ** 2, 6), round(result.p, 4)
        (0.1667, 0.3, 0.5839)
    """
    _check_alpha(alpha)
    positive = _checked_labels(labels, minimum=2)
    rows = [_checked_scores(scores, positive.size, single=True)[0] for scores in (scores_a, scores_b)]
    aucs, v10, v01 = _placements(positive, np.vstack(rows))
    m, n = v10.shape[1], v01.shape[1]
    variances = v10.var(axis=1, ddof=1) / m + v01.var(axis=1, ddof=1) / n
    # The difference's variance from the differences of the placements (not S_aa + S_bb - 2 S_ab):
    # the same ranking twice then gives exactly 0 instead of a rounding residue.
    variance_difference = float(np.var(v10[0] - v10[1], ddof=1) / m + np.var(v01[0] - v01[1], ddof=1) / n)
    difference = float(aucs[0] - aucs[1])
    if variance_difference > 0:
        z = difference / math.sqrt(variance_difference)
    else:
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return AurocComparison(
        auc_a=float(aucs[0]),
        auc_b=float(aucs[1]),
        ci_a=_wald_interval(float(aucs[0]), float(variances[0]), alpha, bounds=(0.0, 1.0)),
        ci_b=_wald_interval(float(aucs[1]), float(variances[1]), alpha, bounds=(0.0, 1.0)),
        difference=difference,
        ci_difference=_wald_interval(difference, variance_difference, alpha, bounds=(-1.0, 1.0)),
        z=z,
        p=float(2.0 * norm.sf(abs(z))),
        n_positive=m,
        n_negative=n,
    )


def roc_curve_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical ROC curve: false and true positive rates at every threshold, from (0, 0) to (1, 1).

    Args:
        labels: 1 for a positive subject, 0 for a negative one.
        scores: one score per subject, higher meaning more likely positive.

    Returns:
        ``(fpr, tpr)``, increasing; the trapezoidal area under them is :func:`auroc`.

    Raises:
        UserError: for labels other than 0/1, lengths that differ, NaN scores, or a class without subjects.

    Example:
        >>> fpr, tpr = roc_curve_points(np.array([1, 1, 0, 0]), np.array([0.7, 0.5, 0.5, 0.2]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    from sklearn.metrics import roc_curve

    positive = _checked_labels(labels, minimum=1)
    row = _checked_scores(scores, positive.size, single=True)[0]
    fpr, tpr, _ = roc_curve(positive.astype(int), row)
    return fpr.astype(float), tpr.astype(float)


def _placements(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aucs (k,), V10 (k, m), V01 (k, n)) of the score rows, from three midrankings per row (Sun and Xu)."""
    m, n = int(positive.sum()), int((~positive).sum())
    ranks_all = rankdata(scores, method="average", axis=1)
    ranks_positive = rankdata(scores[:, positive], method="average", axis=1)
    ranks_negative = rankdata(scores[:, ~positive], method="average", axis=1)
    v10 = (ranks_all[:, positive] - ranks_positive) / n
    v01 = 1.0 - (ranks_all[:, ~positive] - ranks_negative) / m
    return v10.mean(axis=1), v10, v01


def _covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(aucs (k,), S (k, k)) of checked score rows: ``S = S10 / m + S01 / n``."""
    aucs, v10, v01 = _placements(positive, scores)
    return aucs, np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]


def _wald_interval(estimate: float, variance: float, alpha: float, bounds: tuple[float, float]) -> tuple[float, float]:
    half = norm.ppf(1.0 - alpha / 2.0) * math.sqrt(max(variance, 0.0))
    return float(max(bounds[0], estimate - half)), float(min(bounds[1], estimate + half))


def _checked_labels(labels: np.ndarray, minimum: int) -> np.ndarray:
    """The labels as a boolean array (True = positive), with at least ``minimum`` of each class."""
    values = np.asarray(labels)
    if values.ndim != 1:
        raise UserError(f"Expected labels as a 1-D array, found an array of shape {values.shape}")
    try:
        numeric = values.astype(float)
    except (TypeError, ValueError):
        raise UserError(f"Expected labels of 0 (negative) and 1 (positive), found values of type {values.dtype}") from None
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        found = ", ".join(repr(value) for value in np.unique(values[bad])[:5].tolist())
        raise UserError(f"Expected labels of 0 (negative) and 1 (positive), found {int(bad.sum())} other label(s): {found}")
    positive = numeric == 1.0
    m, n = int(positive.sum()), int((~positive).sum())
    if m < minimum or n < minimum:
        need = "one positive and one negative"
        if minimum > 1:
            need = f"{minimum} positives and {minimum} negatives (for DeLong's variance)"
        raise UserError(f"Expected at least {need}, found {m} positive(s) and {n} negative(s)")
    return positive


def _checked_scores(scores: np.ndarray, n_labels: int, single: bool) -> np.ndarray:
    """The scores as a float array of shape (k, N): one row when ``single``, else (N,) or (k, N)."""
    try:
        values = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"Expected numeric scores, found values of type {np.asarray(scores).dtype}") from None
    if values.ndim != 1 and (single or values.ndim != 2):
        expected = "a 1-D array of scores" if single else "scores of shape (N,) or (k, N)"
        raise UserError(f"Expected {expected}, found an array of shape {values.shape}")
    values = np.atleast_2d(values)
    if values.shape[1] != n_labels:
        raise UserError(f"Expected one score per label ({n_labels} labels), found {values.shape[1]} scores")
    missing = int(np.isnan(values).sum())
    if missing:
        raise UserError(f"Expected scores without NaN, found {missing} NaN score(s)")
    return values


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise UserError(f"Expected alpha in (0, 1), found {alpha!r}")
