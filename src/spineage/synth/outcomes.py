"""Subject-level outcomes of the radiograph branch of the phantom cohort.

VERTE-X (Cho, Hong et al. 2025) shows that the spine age read from a lateral
radiograph predicts osteoporosis, prevalent vertebral fracture, incident fracture
and death. This module plants those relations in the phantom: given each
subject's sex, chronological ``age`` and biological spine age ``bio_age`` (from
the phantom generator), it simulates bone density, covariates, a prevalent
vertebral fracture and the follow-up of ``outcomes.csv``.

How the planted hazard ratios are meant to be read:

* The *spine age gap* is ``bio_age - age``; it is standardized over the subjects
  given (mean and sample SD, ``ddof=1``), and the hazard of each event is
  multiplied by the planted HR for each SD. That HR is the gap's **total effect
  adjusted for chronological age and sex**: a Cox model on (standardized gap,
  age, sex) recovers it. To keep it so, nothing else in the hazards depends on
  the gap: bone density enters the fracture hazard only through its departure
  from what biological age and sex predict (the gap's own path through bone loss
  is part of the planted HR), the covariates depend on chronological age and sex
  only, and neither a prevalent fracture nor an incident one changes a hazard.
* Vertebral and non-vertebral fracture are two cause-specific hazards with the
  same baseline shape and the same age, sex, bone-density and covariate effects;
  they differ only in their HR per SD of the gap and in their share of the
  baseline hazard. The any-fracture hazard at the mean gap then has the log-HR
  ``s * log(hr_vertebral) + (1 - s) * log(hr_nonvertebral)``, where ``s`` is the
  vertebral share, so the share is not a free setting: it is solved from
  ``hr_fracture_per_sd`` (see :attr:`OutcomeEffects.vertebral_fracture_share`).
  With the defaults ``s`` is 0.41 and a Cox fit of any first fracture gives an
  HR within a few hundredths of 1.40.
* Death is a competing event: it ends fracture follow-up. Administrative
  censoring comes from uniform accrual (follow-up available between
  ``accrual_min_years`` and ``accrual_max_years``) plus exponential loss to
  follow-up.

The standardization is returned with the frame (``frame.attrs["sag_mean"]`` and
``frame.attrs["sag_sd"]``) and by :func:`spine_age_gap_sd`, so the caller can
write it into ``ground_truth.json`` next to ``dataclasses.asdict(effects)``.

Example:
    >>> import numpy as np, pandas as pd
    >>> subjects = pd.DataFrame({"subject_id": ["s1", "s2", "s3"], "sex": ["F", "M", "F"],
    ...                          "age": [40.0, 60.0, 80.0], "bio_age": [38.0, 63.0, 81.0]})
    >>> outcomes = simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(0))
    >>> list(outcomes["subject_id"]), round(outcomes.attrs["sag_sd"], 3)
    (['s1', 's2', 's3'], 2.517)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from spineage.errors import UserError

REFERENCE_AGE: float = 60.0
"""Age (years) at which baseline rates and prevalences are stated."""

YOUNG_ADULT_AGE: float = 30.0
"""Biological age at which the mean T-score is 0 for a man (the T-score's reference)."""

MENOPAUSE_AGE: float = 50.0
"""Biological age after which women lose bone faster."""

REQUIRED_COLUMNS: tuple[str, ...] = ("subject_id", "sex", "age", "bio_age")

OUTCOME_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "bmd_t_lumbar",
    "bmd_t_femoral_neck",
    "bmd_t_total_hip",
    "osteoporosis",
    "prevalent_vertebral_fracture",
    "height_cm",
    "weight_kg",
    "diabetes",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "spinal_prosthesis",
    "followup_years",
    "death",
    "fracture_followup_years",
    "incident_fracture",
    "incident_fracture_type",
)
"""The columns of ``outcomes.csv``, in order."""

OSTEOPOROSIS_T_SCORE: float = -2.5
"""WHO threshold: osteoporosis when the lowest T-score is at or below it."""


class OutcomeInputError(UserError, ValueError):
    """A subjects table the outcome simulator cannot use.

    It is a :class:`~spineage.errors.UserError` (the CLI prints one line) and a
    :class:`ValueError` (what a library caller expects for a bad argument).
    """


@dataclass(frozen=True)
class OutcomeEffects:
    """Planted effects of the outcomes model (all written to ground_truth.json by the caller via asdict).

    Rates and prevalences are stated for a reference subject: a woman of 60 with
    the mean spine age gap, no covariates, bone density as expected for her age.
    Ages in the hazards are chronological; ages in bone density and prevalent
    fracture are biological. Values are chosen to look like a Korean hospital
    cohort (the VERTE-X setting) with ages 25-84.

    Attributes:
        bmd_slope_per_year: T-score change per year of biological age after 30,
            both sexes (about -0.2 per decade, as in cross-sectional DXA data).
        bmd_female_shift: T-score offset for women at every age.
        bmd_postmenopausal_slope_per_year: extra T-score change per year of
            biological age after 50 in women (postmenopausal loss).
        bmd_per_10kg: T-score change per 10 kg of weight above the sex mean
            (heavier skeletons are denser).
        bmd_glucocorticoid_shift: T-score offset with glucocorticoid use.
        bmd_rheumatoid_shift: T-score offset with rheumatoid arthritis.
        bmd_site_offsets: mean T-score offset of lumbar spine, femoral neck and
            total hip (the femoral neck reads lowest; the lumbar spine is kept
            up by degenerative sclerosis).
        bmd_sd: SD of each site's T-score around what biological age, sex,
            weight and covariates predict.
        bmd_site_correlation: correlation of the three sites' deviations.
        prevalent_fracture_odds_at_60: odds of a prevalent vertebral fracture at
            biological age 60 with a lumbar T-score of 0.
        prevalent_fracture_log_odds_per_year: log-odds change per year of
            biological age.
        prevalent_fracture_log_odds_per_t: log-odds change per unit of lumbar
            T-score (negative: lower density, more fractures). Together these
            give about 1 % at 40, 3 % at 50 and 20 % at 80: about 4 % of the
            phantom's age mix, beside the MRI paper's 2.7 % of series (Table 5).
        height_female_cm, height_male_cm: mean height at 25.
        height_sd_cm: SD of height within sex.
        height_loss_per_year_cm: fall in mean height per year of age after 25
            (shrinkage and the secular trend together).
        height_loss_prevalent_fracture_cm: height lost with a prevalent
            vertebral fracture.
        weight_female_kg, weight_male_kg: mean weight.
        weight_sd_kg: residual SD of weight after height.
        weight_per_height_cm: kg of weight per cm of height above the sex mean.
        diabetes_prevalence_at_60, diabetes_log_odds_per_year,
        diabetes_male_odds_ratio: logistic prevalence of diabetes.
        glucocorticoid_prevalence_at_60, glucocorticoid_log_odds_per_year:
            logistic prevalence of long-term glucocorticoid use.
        rheumatoid_prevalence_at_60, rheumatoid_log_odds_per_year,
        rheumatoid_male_odds_ratio: logistic prevalence of rheumatoid arthritis
            (in women at 60; men have about a third of the odds).
        prosthesis_prevalence_at_60, prosthesis_log_odds_per_year: logistic
            prevalence of spinal instrumentation.
        hr_fracture_per_sd: HR of any incident fracture per SD of the spine age
            gap (paper: 1.22-1.71). It fixes the vertebral share of the
            fracture hazard; it must lie between the two cause-specific HRs.
        hr_vertebral_fracture_per_sd: cause-specific HR of vertebral fracture.
        hr_nonvertebral_fracture_per_sd: cause-specific HR of non-vertebral
            fracture.
        hr_death_per_sd: HR of death per SD of the spine age gap.
        fracture_rate_at_60: any-fracture Weibull rate (cumulative hazard at one
            year, per year**shape) for the reference subject.
        fracture_weibull_shape: Weibull shape of the fracture hazard in time.
        fracture_log_hr_per_year: log-HR of fracture per year of chronological age.
        fracture_male_hr: HR of fracture for men against women.
        fracture_hr_per_t_deficit: HR of fracture per unit of femoral-neck
            T-score below what biological age and sex predict.
        fracture_hr_diabetes, fracture_hr_glucocorticoids,
        fracture_hr_rheumatoid, fracture_hr_prosthesis: covariate HRs.
        vertebral_share_fallback: vertebral share of the fracture hazard, used
            only when the two cause-specific HRs are equal (then the any-fracture
            HR cannot fix it).
        death_rate_at_60: Weibull rate of death for the reference subject.
        death_weibull_shape: Weibull shape of the death hazard in time (above 1:
            subjects age during follow-up).
        death_log_hr_per_year: log-HR of death per year of chronological age
            (Gompertz-like doubling about every 8 years).
        death_male_hr: HR of death for men against women.
        death_hr_diabetes, death_hr_glucocorticoids, death_hr_rheumatoid: covariate HRs.
        accrual_min_years, accrual_max_years: administrative follow-up is
            uniform between these (subjects enrolled over a 10-year window).
        loss_to_followup_rate: yearly rate of random loss to follow-up.
    """

    # Bone density (T-scores).
    bmd_slope_per_year: float = -0.02
    bmd_female_shift: float = -0.2
    bmd_postmenopausal_slope_per_year: float = -0.025
    bmd_per_10kg: float = 0.25
    bmd_glucocorticoid_shift: float = -0.4
    bmd_rheumatoid_shift: float = -0.3
    bmd_site_offsets: tuple[float, float, float] = (0.1, -0.3, 0.0)
    bmd_sd: float = 1.0
    bmd_site_correlation: float = 0.7
    # Prevalent vertebral fracture (logistic).
    prevalent_fracture_odds_at_60: float = 0.025
    prevalent_fracture_log_odds_per_year: float = 0.04
    prevalent_fracture_log_odds_per_t: float = -0.4
    # Body size.
    height_female_cm: float = 161.0
    height_male_cm: float = 174.0
    height_sd_cm: float = 6.0
    height_loss_per_year_cm: float = 0.12
    height_loss_prevalent_fracture_cm: float = 1.5
    weight_female_kg: float = 57.0
    weight_male_kg: float = 71.0
    weight_sd_kg: float = 8.5
    weight_per_height_cm: float = 0.6
    # Covariates (logistic prevalences, chronological age and sex only).
    diabetes_prevalence_at_60: float = 0.14
    diabetes_log_odds_per_year: float = 0.045
    diabetes_male_odds_ratio: float = 1.3
    glucocorticoid_prevalence_at_60: float = 0.03
    glucocorticoid_log_odds_per_year: float = 0.02
    rheumatoid_prevalence_at_60: float = 0.02
    rheumatoid_log_odds_per_year: float = 0.02
    rheumatoid_male_odds_ratio: float = 0.35
    prosthesis_prevalence_at_60: float = 0.02
    prosthesis_log_odds_per_year: float = 0.05
    # Incident fracture (two cause-specific Weibull proportional hazards).
    hr_fracture_per_sd: float = 1.40
    hr_vertebral_fracture_per_sd: float = 1.71
    hr_nonvertebral_fracture_per_sd: float = 1.22
    fracture_rate_at_60: float = 0.019
    fracture_weibull_shape: float = 1.0
    fracture_log_hr_per_year: float = 0.035
    fracture_male_hr: float = 0.6
    fracture_hr_per_t_deficit: float = 1.5
    fracture_hr_diabetes: float = 1.3
    fracture_hr_glucocorticoids: float = 1.6
    fracture_hr_rheumatoid: float = 1.4
    fracture_hr_prosthesis: float = 1.2
    vertebral_share_fallback: float = 0.4
    # Death (Weibull proportional hazard).
    hr_death_per_sd: float = 1.31
    death_rate_at_60: float = 0.0045
    death_weibull_shape: float = 1.15
    death_log_hr_per_year: float = 0.085
    death_male_hr: float = 1.7
    death_hr_diabetes: float = 1.8
    death_hr_glucocorticoids: float = 1.5
    death_hr_rheumatoid: float = 1.4
    # Censoring.
    accrual_min_years: float = 2.0
    accrual_max_years: float = 12.0
    loss_to_followup_rate: float = 0.02

    def __post_init__(self) -> None:
        """Reject settings that cannot describe a hazard or a probability."""
        for field in fields(self):
            value = getattr(self, field.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"OutcomeEffects.{field.name} must be finite, found {value!r}.")
            is_ratio = field.name.startswith("hr_") or "_hr" in field.name or field.name.endswith("odds_ratio")
            is_positive = is_ratio or field.name.endswith(("_rate_at_60", "_shape", "_sd", "_odds_at_60"))
            if is_positive and value <= 0:
                raise ValueError(f"OutcomeEffects.{field.name} must be positive, found {value!r}.")
            is_probability = field.name.endswith("_prevalence_at_60") or field.name == "vertebral_share_fallback"
            if is_probability and not 0 < value < 1:
                raise ValueError(f"OutcomeEffects.{field.name} must lie strictly between 0 and 1, found {value!r}.")
        if len(self.bmd_site_offsets) != 3:
            raise ValueError(
                f"OutcomeEffects.bmd_site_offsets must hold 3 offsets (lumbar, femoral neck, total hip), "
                f"found {len(self.bmd_site_offsets)}."
            )
        if not 0 <= self.bmd_site_correlation <= 1:
            raise ValueError(
                f"OutcomeEffects.bmd_site_correlation must lie between 0 and 1, found {self.bmd_site_correlation!r}."
            )
        if not 0 <= self.accrual_min_years < self.accrual_max_years:
            raise ValueError(
                "OutcomeEffects needs 0 <= accrual_min_years < accrual_max_years, "
                f"found {self.accrual_min_years!r} and {self.accrual_max_years!r}."
            )
        if self.loss_to_followup_rate < 0:
            raise ValueError(
                f"OutcomeEffects.loss_to_followup_rate must not be negative, found {self.loss_to_followup_rate!r}."
            )
        low, high = sorted((self.hr_vertebral_fracture_per_sd, self.hr_nonvertebral_fracture_per_sd))
        if not low <= self.hr_fracture_per_sd <= high:
            raise ValueError(
                "OutcomeEffects.hr_fracture_per_sd must lie between the vertebral and non-vertebral HRs "
                f"({low!r} to {high!r}), found {self.hr_fracture_per_sd!r}."
            )

    @property
    def vertebral_fracture_share(self) -> float:
        """Vertebral share of the fracture hazard at the mean gap, solved from the three HRs.

        The any-fracture log-HR per SD near the mean gap is the share-weighted
        mean of the two cause-specific log-HRs, so the share that makes it equal
        ``log(hr_fracture_per_sd)`` is
        ``(log HR_any - log HR_nv) / (log HR_v - log HR_nv)`` (0.41 with the
        defaults). When the two cause-specific HRs are equal, any share works and
        ``vertebral_share_fallback`` is used.
        """
        log_v = math.log(self.hr_vertebral_fracture_per_sd)
        log_nv = math.log(self.hr_nonvertebral_fracture_per_sd)
        if math.isclose(log_v, log_nv, abs_tol=1e-12):
            return self.vertebral_share_fallback
        return (math.log(self.hr_fracture_per_sd) - log_nv) / (log_v - log_nv)


def validate_subjects(subjects: pd.DataFrame) -> None:
    """Check that a subjects table can feed :func:`simulate_outcomes`.

    Args:
        subjects: one row per subject with ``subject_id``, ``sex`` (F/M),
            ``age`` and ``bio_age`` (years).

    Raises:
        OutcomeInputError: (a ``ValueError``) naming what was expected and found.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in subjects.columns]
    if missing:
        raise OutcomeInputError(
            f"Subjects table needs columns {list(REQUIRED_COLUMNS)}, found {list(subjects.columns)} "
            f"(missing {missing})."
        )
    bad_sex = subjects.loc[~subjects["sex"].isin(("F", "M")), "sex"]
    if len(bad_sex):
        raise OutcomeInputError(
            f"Column 'sex' must hold only 'F' or 'M', found {sorted(map(repr, bad_sex.unique()))[:5]} "
            f"in {len(bad_sex)} rows."
        )
    for column in ("age", "bio_age"):
        values = pd.to_numeric(subjects[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            examples = subjects.loc[bad, column].head(3).tolist()
            raise OutcomeInputError(
                f"Column {column!r} must hold finite numbers of years, found {examples} in {int(bad.sum())} rows."
            )


def spine_age_gap_standardization(subjects: pd.DataFrame) -> tuple[float, float]:
    """Mean and sample SD (``ddof=1``) of the spine age gap ``bio_age - age`` over the subjects.

    Args:
        subjects: table with ``age`` and ``bio_age``.

    Returns:
        ``(mean, sd)`` in years; the SD is ``nan`` with fewer than two subjects.
    """
    gap = subjects["bio_age"].to_numpy(dtype=float) - subjects["age"].to_numpy(dtype=float)
    if len(gap) < 2:
        return (float(gap.mean()) if len(gap) else math.nan, math.nan)
    return float(gap.mean()), float(gap.std(ddof=1))


def spine_age_gap_sd(subjects: pd.DataFrame) -> float:
    """SD (years, ``ddof=1``) of the spine age gap used to express the planted HRs per SD.

    Args:
        subjects: table with ``age`` and ``bio_age``.

    Returns:
        The SD, the value :func:`simulate_outcomes` stores in ``attrs["sag_sd"]``.
    """
    return spine_age_gap_standardization(subjects)[1]


def standardized_spine_age_gap(subjects: pd.DataFrame) -> np.ndarray:
    """The spine age gap in SDs from its mean over the subjects: the covariate the planted HRs act on.

    A gap that does not vary (fewer than two subjects, or all gaps equal)
    standardizes to zero, since there is nothing for an HR to act on.

    Args:
        subjects: table with ``age`` and ``bio_age``.

    Returns:
        One value per row, in row order.
    """
    mean, sd = spine_age_gap_standardization(subjects)
    gap = subjects["bio_age"].to_numpy(dtype=float) - subjects["age"].to_numpy(dtype=float)
    if not math.isfinite(sd) or sd < 1e-9:  # equal gaps up to float noise
        return np.zeros(len(gap))
    return (gap - mean) / sd


def _logistic(log_odds: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-log_odds))


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


def _weibull_event_times(
    log_hazard_ratio: np.ndarray, rate: float, shape: float, rng: np.random.Generator
) -> np.ndarray:
    """Event times with cumulative hazard ``rate * exp(lp) * t**shape`` by inverting an Exp(1) draw."""
    unit_exponential = rng.exponential(1.0, size=len(log_hazard_ratio))
    return (unit_exponential / (rate * np.exp(log_hazard_ratio))) ** (1.0 / shape)


def _round_years(t: np.ndarray) -> np.ndarray:
    """Round to 0.01 years, never to 0: rounding is monotone, so fracture follow-up stays within follow-up."""
    return np.maximum(np.round(t, 2), 0.01)


def simulate_outcomes(subjects: pd.DataFrame, effects: OutcomeEffects, rng: np.random.Generator) -> pd.DataFrame:
    """One row per subject (same order), columns below.

    Columns are :data:`OUTCOME_COLUMNS`: ``subject_id``; the three T-scores
    (rounded to 0.1); ``osteoporosis`` (lowest T-score at or below -2.5);
    ``prevalent_vertebral_fracture``; ``height_cm`` and ``weight_kg`` (0.1);
    the covariates ``diabetes``, ``glucocorticoids``, ``rheumatoid_arthritis``,
    ``spinal_prosthesis``; ``followup_years`` and ``death``;
    ``fracture_followup_years``, ``incident_fracture`` and
    ``incident_fracture_type`` (``"vertebral"``, ``"non_vertebral"`` or ``""``).
    Times are rounded to 0.01 years and are at least 0.01; fracture follow-up
    never exceeds follow-up. Flags are 0/1 integers.

    ``attrs["sag_mean"]`` and ``attrs["sag_sd"]`` hold the standardization of
    the spine age gap, and ``attrs["vertebral_fracture_share"]`` the solved
    share of the fracture hazard.

    Args:
        subjects: one row per subject with ``subject_id``, ``sex`` (F/M),
            ``age`` (chronological, at the baseline radiograph) and ``bio_age``.
        effects: the planted effects.
        rng: the only source of randomness; the same state gives the same frame.

    Returns:
        The outcomes table.

    Raises:
        OutcomeInputError: (a ``ValueError``) for missing columns, a sex other
            than F/M, or an age that is not a finite number.

    Example:
        >>> import numpy as np, pandas as pd
        >>> subjects = pd.DataFrame({"subject_id": [1, 2], "sex": ["F", "M"],
        ...                          "age": [55.0, 70.0], "bio_age": [57.0, 69.0]})
        >>> simulate_outcomes(subjects, OutcomeEffects(), np.random.default_rng(1)).shape
        (2, 17)
    """
    validate_subjects(subjects)
    n = len(subjects)
    age = subjects["age"].to_numpy(dtype=float)
    bio_age = subjects["bio_age"].to_numpy(dtype=float)
    female = (subjects["sex"].to_numpy() == "F").astype(float)
    male = 1.0 - female
    sag_mean, sag_sd = spine_age_gap_standardization(subjects)
    gap_z = standardized_spine_age_gap(subjects)
    e = effects

    # Covariates hang on chronological age and sex only, so that leaving them out
    # of an analysis does not confound the gap's planted HR.
    centred_age = age - REFERENCE_AGE
    diabetes = rng.random(n) < _logistic(
        _logit(e.diabetes_prevalence_at_60)
        + e.diabetes_log_odds_per_year * centred_age
        + math.log(e.diabetes_male_odds_ratio) * male
    )
    glucocorticoids = rng.random(n) < _logistic(
        _logit(e.glucocorticoid_prevalence_at_60) + e.glucocorticoid_log_odds_per_year * centred_age
    )
    rheumatoid = rng.random(n) < _logistic(
        _logit(e.rheumatoid_prevalence_at_60)
        + e.rheumatoid_log_odds_per_year * centred_age
        + math.log(e.rheumatoid_male_odds_ratio) * male
    )
    prosthesis = rng.random(n) < _logistic(
        _logit(e.prosthesis_prevalence_at_60) + e.prosthesis_log_odds_per_year * centred_age
    )

    # Body size: height before any fracture; the fracture's loss is applied below.
    height_mean = np.where(female == 1, e.height_female_cm, e.height_male_cm)
    height_deviation = rng.normal(0.0, e.height_sd_cm, n)
    weight_mean = np.where(female == 1, e.weight_female_kg, e.weight_male_kg)
    weight = weight_mean + e.weight_per_height_cm * height_deviation + rng.normal(0.0, e.weight_sd_kg, n)
    weight = np.maximum(weight, 35.0)  # keep the tail off impossible adult weights

    # Bone density: the age/sex part follows BIOLOGICAL age (this is how the gap
    # reaches the T-scores); the rest is the subject's own bone, shared by the
    # three sites through one latent factor.
    years_since_young = np.maximum(bio_age - YOUNG_ADULT_AGE, 0.0)
    years_since_menopause = np.maximum(bio_age - MENOPAUSE_AGE, 0.0)
    bmd_expected = (
        e.bmd_slope_per_year * years_since_young
        + female * (e.bmd_female_shift + e.bmd_postmenopausal_slope_per_year * years_since_menopause)
    )
    bmd_own = (
        e.bmd_per_10kg * (weight - weight_mean) / 10.0
        + e.bmd_glucocorticoid_shift * glucocorticoids
        + e.bmd_rheumatoid_shift * rheumatoid
    )
    shared = rng.standard_normal(n)
    site_specific = rng.standard_normal((n, 3))
    site_noise = e.bmd_sd * (
        math.sqrt(e.bmd_site_correlation) * shared[:, None]
        + math.sqrt(1.0 - e.bmd_site_correlation) * site_specific
    )
    t_scores = bmd_expected[:, None] + bmd_own[:, None] + np.asarray(e.bmd_site_offsets)[None, :] + site_noise
    t_scores = np.round(t_scores, 1)
    osteoporosis = t_scores.min(axis=1) <= OSTEOPOROSIS_T_SCORE
    # What the fracture hazard sees of bone: the femoral neck's departure from
    # what biological age and sex predict, so the gap acts on fractures only via
    # its planted HR.
    t_deficit = (e.bmd_site_offsets[1] + bmd_expected) - t_scores[:, 1]

    prevalent_fracture = rng.random(n) < _logistic(
        math.log(e.prevalent_fracture_odds_at_60)
        + e.prevalent_fracture_log_odds_per_year * (bio_age - REFERENCE_AGE)
        + e.prevalent_fracture_log_odds_per_t * t_scores[:, 0]
    )
    height = (
        height_mean
        + height_deviation
        - e.height_loss_per_year_cm * np.maximum(age - 25.0, 0.0)
        - e.height_loss_prevalent_fracture_cm * prevalent_fracture
    )

    # Incident fracture: one linear predictor shared by the two causes, each cause
    # adding its own gap effect and its share of the baseline rate.
    fracture_lp = (
        e.fracture_log_hr_per_year * centred_age
        + math.log(e.fracture_male_hr) * male
        + math.log(e.fracture_hr_per_t_deficit) * t_deficit
        + math.log(e.fracture_hr_diabetes) * diabetes
        + math.log(e.fracture_hr_glucocorticoids) * glucocorticoids
        + math.log(e.fracture_hr_rheumatoid) * rheumatoid
        + math.log(e.fracture_hr_prosthesis) * prosthesis
    )
    share = e.vertebral_fracture_share
    # A share of exactly 0 or 1 leaves a cause with no hazard: never observed.
    vertebral_time = np.full(n, np.inf)
    if share > 0:
        vertebral_time = _weibull_event_times(
            fracture_lp + math.log(e.hr_vertebral_fracture_per_sd) * gap_z,
            share * e.fracture_rate_at_60,
            e.fracture_weibull_shape,
            rng,
        )
    nonvertebral_time = np.full(n, np.inf)
    if share < 1:
        nonvertebral_time = _weibull_event_times(
            fracture_lp + math.log(e.hr_nonvertebral_fracture_per_sd) * gap_z,
            (1.0 - share) * e.fracture_rate_at_60,
            e.fracture_weibull_shape,
            rng,
        )

    death_lp = (
        math.log(e.hr_death_per_sd) * gap_z
        + e.death_log_hr_per_year * centred_age
        + math.log(e.death_male_hr) * male
        + math.log(e.death_hr_diabetes) * diabetes
        + math.log(e.death_hr_glucocorticoids) * glucocorticoids
        + math.log(e.death_hr_rheumatoid) * rheumatoid
    )
    death_time = _weibull_event_times(death_lp, e.death_rate_at_60, e.death_weibull_shape, rng)

    administrative = rng.uniform(e.accrual_min_years, e.accrual_max_years, n)
    lost = rng.exponential(1.0 / e.loss_to_followup_rate, n) if e.loss_to_followup_rate > 0 else np.full(n, np.inf)
    censor_time = np.minimum(administrative, lost)

    followup = np.minimum(death_time, censor_time)
    died = death_time <= censor_time
    fracture_time = np.minimum(vertebral_time, nonvertebral_time)
    fractured = fracture_time <= followup  # death first is a competing event, not a fracture
    fracture_followup = np.minimum(fracture_time, followup)
    fracture_type = np.where(
        fractured, np.where(vertebral_time <= nonvertebral_time, "vertebral", "non_vertebral"), ""
    )

    outcomes = pd.DataFrame(
        {
            "subject_id": subjects["subject_id"].to_numpy(),
            "bmd_t_lumbar": t_scores[:, 0],
            "bmd_t_femoral_neck": t_scores[:, 1],
            "bmd_t_total_hip": t_scores[:, 2],
            "osteoporosis": osteoporosis.astype(np.int64),
            "prevalent_vertebral_fracture": prevalent_fracture.astype(np.int64),
            "height_cm": np.round(height, 1),
            "weight_kg": np.round(weight, 1),
            "diabetes": diabetes.astype(np.int64),
            "glucocorticoids": glucocorticoids.astype(np.int64),
            "rheumatoid_arthritis": rheumatoid.astype(np.int64),
            "spinal_prosthesis": prosthesis.astype(np.int64),
            "followup_years": _round_years(followup),
            "death": died.astype(np.int64),
            "fracture_followup_years": _round_years(fracture_followup),
            "incident_fracture": fractured.astype(np.int64),
            "incident_fracture_type": pd.Series(fracture_type, dtype=object),
        },
        columns=list(OUTCOME_COLUMNS),
    )
    outcomes.attrs["sag_mean"] = sag_mean
    outcomes.attrs["sag_sd"] = sag_sd
    outcomes.attrs["vertebral_fracture_share"] = share
    return outcomes
