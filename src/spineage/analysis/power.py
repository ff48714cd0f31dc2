"""Power of a regression coefficient's two-sided test, and the sample that reaches a target power.

The spine age gap is measured with error, so a planted lifestyle effect reaches the
pipeline's regression attenuated (times the slope of the estimated gap on the true
one) and under a larger residual SD. With the standard error ``se`` a fitted model
gives at ``n`` subjects, the standard error at ``m`` subjects is ``se * sqrt(n / m)``
(the design's spread per subject stays the same), and the power of the two-sided
level-``alpha`` test of an expected coefficient ``b`` is
``Phi(|b| / se - z) + Phi(-|b| / se - z)`` with ``z`` the ``1 - alpha / 2`` quantile.

Example:
    >>> round(two_sided_power(0.5, 0.25, alpha=0.05), 3)
    0.516
    >>> subjects_for_power(0.5, 0.25, n=100, alpha=0.05, power=0.8)
    197
"""

from __future__ import annotations

import math

from scipy.stats import norm

from spineage.errors import UserError


def two_sided_power(effect: float, standard_error: float, alpha: float = 0.05) -> float:
    """Power of the two-sided level-``alpha`` z-test of a coefficient whose expected value is ``effect``.

    Args:
        effect: the expected coefficient (years per unit).
        standard_error: its standard error at the sample size of interest.
        alpha: the test's level.

    Raises:
        UserError: for a non-positive standard error or an alpha outside (0, 1).
    """
    _check(standard_error, alpha)
    z = norm.ppf(1.0 - alpha / 2.0)
    ratio = abs(effect) / standard_error
    return float(norm.cdf(ratio - z) + norm.cdf(-ratio - z))


def subjects_for_power(effect: float, standard_error: float, n: int, alpha: float = 0.05, power: float = 0.9) -> int | None:
    """Subjects needed for ``power`` (one-sided approximation), given ``standard_error`` at ``n`` subjects.

    Returns:
        The smallest whole number of subjects, or None for a zero effect (no sample finds it).

    Raises:
        UserError: for a non-positive standard error or n, or alpha or power outside (0, 1).
    """
    _check(standard_error, alpha)
    if n < 1 or not 0.0 < power < 1.0:
        raise UserError(f"Expected n >= 1 and a power in (0, 1), found n={n} and power={power}")
    if effect == 0:
        return None
    needed = n * (standard_error * (norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) / abs(effect)) ** 2
    return int(math.ceil(needed))


def _check(standard_error: float, alpha: float) -> None:
    if not standard_error > 0 or not math.isfinite(standard_error):
        raise UserError(f"Expected a positive, finite standard error, found {standard_error!r}")
    if not 0.0 < alpha < 1.0:
        raise UserError(f"Expected a test level alpha in (0, 1), found {alpha!r}")
