"""DeLong's AUROC variance and test against sklearn, a slow direct computation, worked and published values, a bootstrap."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from spineage.analysis.delong import (
    AurocComparison,
    auroc,
    auroc_ci,
    compare_aurocs,
    delong_covariance,
    roc_curve_points,
)
from spineage.errors import UserError

Z_95 = 1.959963984540054


def direct_delong(labels: np.ndarray, scores_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook DeLong computation, O(m·n): every positive against every negative.

    psi(x, y) = 1 if x > y, ½ if x == y, 0 otherwise; V10[i] = mean_j psi(X_i, Y_j),
    V01[j] = mean_i psi(X_i, Y_j), AUC = mean psi, and
    S[r, s] = sum_i (V10r[i] - AUCr)(V10s[i] - AUCs) / ((m - 1) m) + the same over j with n.
    """
    positive = np.asarray(labels) == 1
    rows = np.atleast_2d(np.asarray(scores_matrix, dtype=float))
    m, n = int(positive.sum()), int((~positive).sum())
    v10, v01 = np.empty((len(rows), m)), np.empty((len(rows), n))
    for r, row in enumerate(rows):
        x, y = row[positive][:, None], row[~positive][None, :]
        psi = (x > y) + 0.5 * (x == y)
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
    aucs = v10.mean(axis=1)
    d10, d01 = v10 - aucs[:, None], v01 - aucs[:, None]
    return aucs, d10 @ d10.T / ((m - 1) * m) + d01 @ d01.T / ((n - 1) * n)


def _correlated_scores(n: int, seed: int, noise_a: float, noise_b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """labels (about 30 % positive) and two scores: one latent signal (shifted by 1 in positives) plus noise of their own."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    signal = labels + rng.normal(0.0, 1.0, n)
    return labels, signal + rng.normal(0.0, noise_a, n), signal + rng.normal(0.0, noise_b, n)


# --- the AUROC itself --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_sklearn_on_data_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = rng.integers(0, 8, 300) + labels * rng.integers(0, 3, 300)  # few values: many ties across classes
    assert len(np.unique(scores)) < 12
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_a_score_lower_in_positives_is_reported_below_one_half_not_flipped() -> None:
    labels, scores, _ = _correlated_scores(200, seed=3, noise_a=0.5, noise_b=0.5)
    high = auroc(labels, scores)
    assert high > 0.7
    assert auroc(labels, -scores) == pytest.approx(1.0 - high, abs=1e-12)
    assert compare_aurocs(labels, -scores, scores).difference == pytest.approx(1.0 - 2.0 * high, abs=1e-12)


def test_boolean_and_float_labels_are_read_as_zero_one() -> None:
    labels, scores, _ = _correlated_scores(100, seed=4, noise_a=1.0, noise_b=1.0)
    assert auroc(labels.astype(bool), scores) == auroc(labels.astype(float), scores) == auroc(labels, scores)


# --- against a hand-worked example, the slow direct computation and a published one -------------


def test_the_hand_worked_example() -> None:
    # positives 0.9, 0.8, 0.4; negatives 0.5, 0.3, 0.1 (score a)
    #   V10 (share of negatives below each positive): 0.9 -> 3/3, 0.8 -> 3/3, 0.4 -> 2/3 (not 0.5)
    #   V01 (share of positives above each negative): 0.5 -> 2/3, 0.3 -> 3/3, 0.1 -> 3/3
    #   AUC = 8/9; deviations of V10 (1/9, 1/9, -2/9): S10 = (1 + 1 + 4) / 81 / 2 = 1/27, S01 the same,
    #   var = (1/27) / 3 + (1/27) / 3 = 2/81.
    # positives 0.7, 0.2, 0.6; negatives 0.3, 0.6, 0.1 (score b, one positive-negative tie at 0.6)
    #   V10: 0.7 -> 3/3, 0.2 -> 1/3, 0.6 -> (2 + ½)/3 = 5/6;  V01: 0.3 -> 2/3, 0.6 -> (1 + ½)/3 = 1/2, 0.1 -> 1
    #   AUC = 13/18; V10 deviations (5, -7, 2)/18: S10 = 78/324/2; V01 deviations (-1, -4, 5)/18: S01 = 42/324/2,
    #   var = (39/324 + 21/324) / 3 = 20/324 = 5/81.
    # covariance: S10_ab = (5 - 7 - 4)/162/2 = -1/54, S01_ab = (2 - 4 + 5)/162/2 = 1/108,
    #   cov = (-1/54 + 1/108) / 3 = -1/324; var of the difference = (8 + 20 + 2)/324 = 5/54,
    #   difference 1/6, z² = (1/36) / (5/54) = 0.3.
    labels = np.array([1, 1, 1, 0, 0, 0])
    score_a = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.1])
    score_b = np.array([0.7, 0.2, 0.6, 0.3, 0.6, 0.1])
    aucs, covariance = delong_covariance(labels, np.vstack([score_a, score_b]))
    np.testing.assert_allclose(aucs, [8 / 9, 13 / 18], rtol=0, atol=1e-15)
    np.testing.assert_allclose(covariance, [[2 / 81, -1 / 324], [-1 / 324, 5 / 81]], rtol=0, atol=1e-15)
    result = compare_aurocs(labels, score_a, score_b)
    assert result.difference == pytest.approx(1 / 6, abs=1e-15)
    assert result.z == pytest.approx(math.sqrt(0.3), rel=1e-12)
    assert result.p == pytest.approx(2 * norm.sf(math.sqrt(0.3)), rel=1e-12)
    half = Z_95 * math.sqrt(5 / 54)
    assert result.ci_difference == pytest.approx((1 / 6 - half, 1 / 6 + half), rel=1e-12)
    assert result.ci_a == pytest.approx((8 / 9 - Z_95 * math.sqrt(2 / 81), 1.0), rel=1e-12)  # high end clipped
    assert (result.n_positive, result.n_negative) == (3, 3)


@pytest.mark.parametrize(("n", "prevalence", "levels", "seed"), [(40, 0.5, 5, 0), (57, 0.2, 9, 1), (120, 0.7, 30, 2)])
def test_the_variance_and_covariance_equal_the_direct_computation(n: int, prevalence: float, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prevalence).astype(int)
    labels[:2], labels[2:4] = 1, 0
    shared = rng.normal(0, 1, n)  # correlates the three scores, so the covariances are far from 0
    latent = labels[None, :] * np.array([[1.0], [0.3], [-0.5]]) + shared + rng.normal(0, 0.7, (3, n))
    scores = np.round(latent * levels / 4) / levels  # coarse: ties within and across the classes
    aucs, covariance = delong_covariance(labels, scores)
    direct_aucs, direct_covariance = direct_delong(labels, scores)
    np.testing.assert_allclose(aucs, direct_aucs, rtol=0, atol=1e-13)
    np.testing.assert_allclose(covariance, direct_covariance, rtol=1e-10, atol=1e-15)
    off_diagonal = np.abs(direct_covariance[np.triu_indices(3, 1)])
    assert off_diagonal.min() > 0.1 * direct_covariance.diagonal().min()  # the covariances are really tested
    single_aucs, single_variance = delong_covariance(labels, scores[2])
    assert single_variance.shape == (1, 1)
    assert single_variance[0, 0] == pytest.approx(direct_covariance[2, 2], rel=1e-10)
    assert single_aucs[0] < 0.5  # the third score is lower in positives and stays so


def test_the_hanley_mcneil_ct_ratings_give_the_published_area_and_delong_interval() -> None:
    # Hanley and McNeil (1982, Radiology 143:29) Table 1: 109 CT images rated 1 (definitely
    # normal) to 5 (definitely abnormal); they report an area of 0.893. Stata's roctab manual
    # (Example 1, same data, DeLong standard error) prints 0.8932, SE 0.0307, 95 % CI 0.83295 to 0.95339.
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    labels = np.r_[np.zeros(normal.size, int), np.ones(abnormal.size, int)]
    auc, low, high = auroc_ci(labels, np.r_[normal, abnormal])
    assert round(auc, 4) == 0.8932
    assert round(math.sqrt(delong_covariance(labels, np.r_[normal, abnormal])[1][0, 0]), 4) == 0.0307
    assert (round(low, 5), round(high, 5)) == (0.83295, 0.95339)


# --- against a bootstrap, and the test's behaviour under the null and the alternative ---------


def test_the_standard_error_of_the_difference_matches_a_stratified_bootstrap() -> None:
    labels, score_a, score_b = _correlated_scores(400, seed=11, noise_a=0.4, noise_b=1.2)
    result = compare_aurocs(labels, score_a, score_b)
    covariance = delong_covariance(labels, np.vstack([score_a, score_b]))[1]
    delong_se = math.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    assert result.difference > 0.05 and covariance[0, 1] > 0  # different true AUCs, correlated scores
    expected_ci = (result.difference - Z_95 * delong_se, result.difference + Z_95 * delong_se)
    assert result.ci_difference == pytest.approx(expected_ci, rel=1e-9)

    rng = np.random.default_rng(12)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    differences = np.empty(2000)
    for b in range(differences.size):  # resample within each class: m and n stay fixed, as DeLong assumes
        rows = np.r_[rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)]
        differences[b] = auroc(labels[rows], score_a[rows]) - auroc(labels[rows], score_b[rows])
    bootstrap_sd = differences.std(ddof=1)
    assert delong_se == pytest.approx(bootstrap_sd, rel=0.15)
    assert differences.mean() == pytest.approx(result.difference, abs=0.25 * bootstrap_sd)


def test_equal_true_aurocs_are_not_found_different() -> None:
    labels, score_a, score_b = _correlated_scores(400, seed=21, noise_a=0.8, noise_b=0.8)
    result = compare_aurocs(labels, score_a, score_b)
    assert result.p > 0.2
    assert result.ci_difference[0] < 0 < result.ci_difference[1]
    assert result.ci_a[0] < result.auc_a < result.ci_a[1] and result.ci_b[0] < result.auc_b < result.ci_b[1]


def test_a_clear_difference_is_found_with_its_sign() -> None:
    labels, score_a, score_b = _correlated_scores(400, seed=22, noise_a=0.2, noise_b=3.0)
    result = compare_aurocs(labels, score_a, score_b)
    assert result.p < 0.001
    assert result.z > 0 and result.difference > 0 and result.ci_difference[0] > 0
    swapped = compare_aurocs(labels, score_b, score_a)
    assert swapped.difference == pytest.approx(-result.difference, abs=1e-15)
    assert swapped.z == pytest.approx(-result.z, rel=1e-12) and swapped.p == pytest.approx(result.p, rel=1e-12)
    assert swapped.ci_difference == pytest.approx((-result.ci_difference[1], -result.ci_difference[0]), rel=1e-12)


def test_the_same_ranking_twice_has_difference_zero_and_p_one_without_warnings() -> None:
    labels, score, _ = _correlated_scores(150, seed=5, noise_a=1.0, noise_b=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for other in (score, np.exp(score)):  # identical, and a monotone transform (same ranks)
            result = compare_aurocs(labels, score, other)
            assert (result.difference, result.z, result.p, result.ci_difference) == (0.0, 0.0, 1.0, (0.0, 0.0))
            assert result.ci_a == result.ci_b and result.ci_a[0] < result.auc_a < result.ci_a[1]


def test_a_perfect_score_against_a_constant_one_has_no_variance_and_p_zero() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_aurocs(labels, np.array([6, 5, 4, 3, 2, 1]), np.zeros(6))
    assert (result.auc_a, result.auc_b, result.difference) == (1.0, 0.5, 0.5)
    assert result.z == math.inf and result.p == 0.0
    assert result.ci_a == (1.0, 1.0) and result.ci_b == (0.5, 0.5)


# --- intervals, curve and the result type ------------------------------------------------------


def test_auroc_ci_agrees_with_compare_and_narrows_with_alpha() -> None:
    labels, score_a, score_b = _correlated_scores(200, seed=6, noise_a=0.5, noise_b=1.0)
    auc, low, high = auroc_ci(labels, score_a)
    result = compare_aurocs(labels, score_a, score_b)
    assert (auc, (low, high)) == (pytest.approx(result.auc_a, abs=1e-15), pytest.approx(result.ci_a, rel=1e-12))
    variance = direct_delong(labels, score_a)[1][0, 0]
    assert (low, high) == pytest.approx((auc - Z_95 * math.sqrt(variance), auc + Z_95 * math.sqrt(variance)), rel=1e-10)
    _, low_90, high_90 = auroc_ci(labels, score_a, alpha=0.10)
    assert low < low_90 < auc < high_90 < high


def test_the_roc_curve_runs_from_corner_to_corner_and_its_area_is_the_auroc() -> None:
    labels, score, _ = _correlated_scores(120, seed=7, noise_a=1.0, noise_b=1.0)
    fpr, tpr = roc_curve_points(labels, np.round(score, 1))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(labels, np.round(score, 1)), abs=1e-12)


def test_the_comparison_is_a_frozen_record() -> None:
    labels, score_a, score_b = _correlated_scores(60, seed=8, noise_a=1.0, noise_b=1.0)
    result = compare_aurocs(labels, score_a, score_b)
    assert isinstance(result, AurocComparison)
    assert (result.n_positive, result.n_negative) == (int(labels.sum()), int((labels == 0).sum()))
    assert all(isinstance(value, float) for value in (result.auc_a, result.z, result.p, *result.ci_a, *result.ci_difference))
    with pytest.raises(AttributeError):
        result.p = 0.0  # type: ignore[misc]


# --- what a user can get wrong -----------------------------------------------------------------

GOOD_LABELS = np.array([1, 1, 0, 0, 1, 0])
GOOD_SCORES = np.array([0.9, 0.4, 0.3, 0.5, 0.7, 0.1])


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        (np.array([1, 2, 0, 0, 1, 0]), GOOD_SCORES, r"labels of 0 \(negative\) and 1 \(positive\), found 1 other label\(s\): 2"),
        (np.array([1, -1, 0, 0, 1, 0]), GOOD_SCORES, r"found 1 other label\(s\): -1"),
        (np.array([1.0, np.nan, 0, 0, 1, 0]), GOOD_SCORES, r"found 1 other label\(s\): nan"),
        (np.array(["yes", "no", "no", "no", "yes", "no"]), GOOD_SCORES, r"labels of 0 .* found values of type"),
        (GOOD_LABELS, GOOD_SCORES[:5], r"one score per label \(6 labels\), found 5 scores"),
        (GOOD_LABELS, np.array([0.9, np.nan, 0.3, 0.5, np.nan, 0.1]), r"scores without NaN, found 2 NaN score"),
        (np.zeros(6, int), GOOD_SCORES, r"at least one positive and one negative, found 0 positive\(s\) and 6 negative\(s\)"),
        (np.ones(6, int), GOOD_SCORES, r"found 6 positive\(s\) and 0 negative\(s\)"),
        (np.array([], int), np.array([]), r"found 0 positive\(s\) and 0 negative\(s\)"),
        (GOOD_LABELS, np.vstack([GOOD_SCORES, GOOD_SCORES]), r"a 1-D array of scores, found an array of shape \(2, 6\)"),
    ],
)
def test_bad_inputs_are_user_errors_that_say_what_was_found(labels: np.ndarray, scores: np.ndarray, message: str) -> None:
    with pytest.raises(UserError, match=message):
        auroc(labels, scores)


def test_the_variance_needs_two_of_each_class_and_a_sensible_alpha() -> None:
    labels = np.array([1, 0, 0, 0])
    assert auroc(labels, np.array([0.9, 0.1, 0.2, 0.3])) == 1.0  # the area alone needs one of each
    with pytest.raises(UserError, match=r"at least 2 positives and 2 negatives .*found 1 positive\(s\) and 3 negative\(s\)"):
        delong_covariance(labels, np.array([0.9, 0.1, 0.2, 0.3]))
    with pytest.raises(UserError, match=r"alpha in \(0, 1\), found 1.5"):
        compare_aurocs(GOOD_LABELS, GOOD_SCORES, GOOD_SCORES, alpha=1.5)
    with pytest.raises(UserError, match=r"alpha in \(0, 1\), found 0"):
        auroc_ci(GOOD_LABELS, GOOD_SCORES, alpha=0)
    with pytest.raises(UserError, match=r"one score per label \(6 labels\), found 5 scores"):
        compare_aurocs(GOOD_LABELS, GOOD_SCORES, GOOD_SCORES[:5])
    with pytest.raises(UserError, match=r"scores without NaN, found 1 NaN"):
        roc_curve_points(GOOD_LABELS, np.array([0.9, 0.4, 0.3, np.nan, 0.7, 0.1]))
