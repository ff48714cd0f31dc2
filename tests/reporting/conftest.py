"""Fixtures of the report tests: a tiny reports folder shaped like the pipeline's, and a parser of the written page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

SCRIPT_LABEL = "<script>alert('label')</script> mild lumbar disc bulges"
"""A cluster label that would run as a script if the template did not escape it."""

FIGURE_SIZES: dict[str, tuple[int, int]] = {
    "cohort/age_histogram.png": (60, 40),
    "cohort/umap_30.png": (50, 30),
    "cohort/umap_40.png": (52, 30),
    "evaluate/predicted_vs_age.png": (70, 35),
    "evaluate/error_by_bracket_sex.png": (64, 32),
    "evaluate/gradcam.png": (48, 40),
    "sag/odds_ratios.png": (44, 36),
    "sag/sag_vs_age_work.png": (46, 38),
}
"""Every figure of the fake reports folder and its size in pixels (each a different size, so that a swap shows)."""


def _png(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (240, 244, 248))
    ImageDraw.Draw(image).rectangle((4, 4, size[0] - 5, size[1] - 5), outline=(31, 95, 153), fill=(200, 60, 60))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _csv(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.strip() + "\n")


def _figures(kind: str) -> dict[str, float | int]:
    base = {"raw": 2.744054, "corrected": 2.746886, "mean_age": 10.9139, "ridge_intensity": 2.6018}[kind]
    return {"mae": base, "wmae": base + 0.03, "r2": 0.9246 if kind != "mean_age" else -0.0091, "r": 0.9657 if kind != "mean_age" else None,
            "mean_gap": 1.0901, "sd_gap": 3.3335, "n": 37}


def _evaluate_metrics() -> dict:
    sets = {name: {"raw": _figures("raw"), "corrected": _figures("corrected"),
                   "baselines": {"mean_age": _figures("mean_age"), "ridge_intensity": _figures("ridge_intensity")}}
            for name in ("test", "full_test")}
    return sets | {
        "bias_correction": {"intercept": 3.7864, "method": "cole", "n": 43, "slope": 0.93576, "split": "validation"},
        "gradcam": {"block": 3, "series": ["mri-00185-1 (young)", "mri-00391-1 (large gap)"]},
        "large_gaps": {"n": 2, "n_full_test": 2, "threshold_years": 15.0},
        "model_uri": "models:/spine-age-mri/6",
        "normative_range": {"calibration_split": "validation", "coverage_nominal": 0.9, "coverage_test": 0.8378, "flagged_share_abnormal": 0.2009,
                            "flagged_share_test": 0.1621, "half_width": 5.4514, "n_abnormal": 214, "n_calibration": 43, "n_test": 37},
        "repeat_scans": {
            "all": {"ci_high": 1.0, "ci_low": 0.86, "f": 93.45, "icc": 0.98195, "mean_years_between": 1.47, "n": 5, "p": 0.000334},
            "men": {"ci_high": None, "ci_low": None, "f": None, "icc": None, "mean_years_between": 1.695, "n": 2, "p": None},
        },
        "run_id": "d5f53224bd2c443b964a5829117d5c85",
        "truth": {"test": {"corrected_mae_vs_biological_age": 1.5389, "n": 37, "raw_gap_vs_planted_gap_r": 0.8316,
                           "raw_mae_vs_biological_age": 1.7243, "sag_vs_planted_gap_r": 0.8715}},
    }


def _cohort_summary() -> dict:
    category = {"abnormal": 3, "abnormal_share": 0.1, "normal": 27, "normal_share": 0.9, "series": 30}
    return {
        "brackets": {  # out of order on purpose: the page sorts brackets
            "40": {"abnormal_share": 0.3261, "clustered": True, "clustered_as": "40", "series": 184, "stability": 0.9565, "unanimous_share": 0.9022},
            "30": {"abnormal_share": 0.197, "clustered": True, "clustered_as": "30", "series": 66, "stability": 0.9344, "unanimous_share": 0.6818},
        },
        "consensus_runs": 9, "normal": 405, "normal_share": 0.6543, "series": 619, "stability": 0.9549,
        "splits": {"full_test_abnormal": 214, "test": 37, "train": 325, "validation": 43},
        "truth": {"brackets": {"30": {"typical": category}},
                  "by_reason": {"spondylolisthesis": {"abnormal": 55, "abnormal_share": 0.8594, "series": 64}},
                  "overall": {"typical": category | {"series": 385}}, "series_without_marks": 0, "source": "ground_truth.json series_atypical"},
    }


ASSOCIATIONS_CSV = """
model,variable,category,n,n_reference,effect,ci_low,ci_high,p,adj_effect,adj_ci_low,adj_ci_high,adj_p,note
lifestyle,packs_per_day,per pack,120,,0.8123,0.2,1.4,0.0104,0.7712,0.15,1.39,0.0151,
cervical_degenerative,disc_bulge,moderate,40,300,1.9876,1.1,2.9,0.00012,1.7512,0.9,2.6,0.00031,
lumbar_degenerative,desiccation,severe,31,300,1.2345,0.5,2.0,0.0033,1.1111,0.4,1.8,0.0002,
lumbar_degenerative,protrusion,mild,12,300,-0.4567,-1.9,1.0,0.5432,-0.3012,-1.8,1.2,0.6789,few cases
pathologies,fracture,present,9,500,2.5,,,,,,,,not estimable
"""

ODDS_RATIOS_CSV = """
variable,cases_high,n_high,cases_low,n_low,odds_ratio,ci_low,ci_high,p
spinal_stenosis,14,100,4,100,3.9054,1.24,12.31,0.0198
"""

MULTIVARIABLE_CSV = """
term,effect,ci_low,ci_high,p
work[T.heavy],2.3456,1.2,3.5,0.00004
sedentary_hours_per_day,0.1357,-0.05,0.32,0.1532
"""

LARGE_GAPS_CSV = """
series_id,subject_id,split,age,sex,predicted_age,corrected_age,sag,atypical_for_age,findings
mri-00391-1,sub-00391,full_test_abnormal,58.0,M,75.2,74.6,16.6,True,L4 severe desiccation
mri-00312-1,sub-00312,full_test_abnormal,66.0,F,44.1,47.0,-19.0,True,none
"""

ABLATION_CSV = """
cell,factor,setting,train_series,test_series,mae_raw,mae_corrected,wmae_raw,wmae_corrected,r2_raw,r2_corrected
default,default,,325.0000,37.0000,2.7441,2.7469,2.7780,2.7168,0.9246,0.9231
train_fraction-0.01,train_fraction,0.01,4.0000,37.0000,9.6417,11.4696,11.1991,11.9115,0.2015,-0.2159
"""

# The shape spineage.analysis.truth.validate_truth writes (the default run's, two effects kept).
TRUTH_RECOVERY = {
    "adjusted_for": [
        "age",
        "sex_male"
    ],
    "cis_holding_planted": 7,
    "effects": [
        {
            "attenuation": 0.9077,
            "ci_high": 2.8346,
            "ci_holds_planted": True,
            "ci_low": 0.0816,
            "falsely_found": None,
            "name": "packs_per_day",
            "oracle_ci_high": 2.6691,
            "oracle_ci_low": 0.5438,
            "oracle_effect": 1.6064,
            "oracle_p": 0.0032,
            "p": 0.038,
            "pipeline_effect": 1.4581,
            "planted": 0.93,
            "power": 0.2526,
            "recovered": True,
            "subjects_for_target_power": 1550,
            "target": True
        },
        {
            "attenuation": 0.7981,
            "ci_high": 0.1279,
            "ci_holds_planted": True,
            "ci_low": -0.2441,
            "falsely_found": False,
            "name": "sedentary_hours_per_day",
            "oracle_ci_high": 0.0708,
            "oracle_ci_low": -0.2164,
            "oracle_effect": -0.0728,
            "oracle_p": 0.3192,
            "p": 0.5391,
            "pipeline_effect": -0.0581,
            "planted": 0.0,
            "power": None,
            "recovered": None,
            "subjects_for_target_power": None,
            "target": False
        }
    ],
    "generator_version": "spineage-phantom/0.1.0+atypical-3",
    "mae_vs_biological_age_corrected": 2.0819,
    "mae_vs_biological_age_raw": 2.4193,
    "mae_vs_chronological_age_corrected": 3.3245,
    "normal_cohort": {
        "overall": {
            "atypical": {
                "abnormal": 202,
                "abnormal_share": 0.8632,
                "normal": 32,
                "normal_share": 0.1368,
                "series": 234
            },
            "structural_pathology": {
                "abnormal": 98,
                "abnormal_share": 0.8235,
                "normal": 21,
                "normal_share": 0.1765,
                "series": 119
            },
            "typical": {
                "abnormal": 12,
                "abnormal_share": 0.0312,
                "normal": 373,
                "normal_share": 0.9688,
                "series": 385
            }
        }
    },
    "one_series_per_subject": True,
    "phantom_seed": 20251121,
    "planted_effects": 7,
    "planted_gap_sd": 3.0678,
    "planted_truth": True,
    "power": {
        "alpha": 0.05,
        "expected_effect": "planted effect x the slope of SAG on the planted gap",
        "min_effect_years": 0.5,
        "power_all_target_effects": 0.0064,
        "power_of_each_target_effect": {
            "exercise_vigorous": 0.1905,
            "packs_per_day": 0.2526,
            "work_heavy": 0.1337
        },
        "residual_sd_oracle": 2.9242,
        "residual_sd_pipeline": 3.7878,
        "slope_sag_on_planted_gap": 0.9705,
        "subjects": 246,
        "subjects_for_target_power": 3674,
        "target_power": 0.9
    },
    "sag_sd": 3.8427,
    "sag_vs_planted_gap_r": 0.7748,
    "splits": [
        "test",
        "full_test_abnormal"
    ],
    "subjects": 246,
    "target_met": False,
    "targets": 3,
    "targets_recovered": 1
}


def make_reports(root: Path, sag: bool = True, truth: bool = True, ablations: bool = True) -> Path:
    """A fake ``reports/`` folder under ``root`` (and ``root/ablations`` with the ablation table) shaped like the pipeline's."""
    reports = root / "reports"
    for name, size in FIGURE_SIZES.items():
        if sag or not name.startswith("sag/"):
            _png(reports / name, size)
    _json(reports / "cohort" / "summary.json", _cohort_summary())
    _csv(reports / "cohort" / "clusters.csv", f"""
bracket,cluster,n,percent,normal,consensus_normal_share,label
30,0,24,36.4,True,1.0,"{SCRIPT_LABEL}"
30,1,6,9.1,False,0.0,moderate lumbar disc protrusions
40,0,65,35.3,True,1.0,no clinically significant finding
""")
    _json(reports / "train" / "metrics.json", {
        "baselines": {"mean_age": {"test_mae": 10.9139, "train_mae": 11.0851, "validation_mae": 12.5483},
                      "ridge_intensity": {"test_mae": 2.6019, "train_mae": 2.4765, "validation_mae": 3.0594}},
        "data_version": {"dvc_md5": "734677b31ee9a78aba3ff489ddea3240.dir", "manifest_sha256": "be3e9d5cfb1934fa"},
        "git_commit": "f8874c91bdfe49a7c5941a08b634d690bbf2f85e", "model_uri": "models:/spine-age-mri/6",
        "noise_floor": 2.34396, "run_id": "d5f53224bd2c443b964a5829117d5c85", "test_mae": 2.7441, "test_mae_over_noise_floor": 1.1707,
        "train_mae": 2.2934, "validation_mae": 2.564,
    })
    _json(reports / "evaluate" / "metrics.json", _evaluate_metrics())
    _csv(reports / "evaluate" / "by_bracket_sex.csv", """
set,bracket,sex,n,raw_mae,corrected_mae,corrected_mean_gap,corrected_sd_gap
test,30,F,2,1.3110,1.4577,-1.4577,1.8367
full_test,80,M,6,3.5537,3.2709,0.7921,4.2301
""")
    _csv(reports / "evaluate" / "large_gaps.csv", LARGE_GAPS_CSV)
    _json(reports / "segment" / "metrics.json", {
        "dice": {"canal_csf": 0.9028, "cord": 0.7927, "disc": 0.819, "mean": 0.8394, "vertebra": 0.843},
        "dice_by_split": {"test": {"canal_csf": 0.9104, "cord": 0.8014, "disc": 0.8189, "mean": 0.8435, "vertebra": 0.8435}},
        "held_out_scans": 130, "held_out_scans_by_split": {"test": 37}, "model_uri": "models:/spine-seg-mri/3",
        "run_id": "1243e6c9de844712860fef3ec321fa2f", "train_scans": 120,
    })
    if sag:
        _csv(reports / "sag" / "associations.csv", ASSOCIATIONS_CSV)
        _csv(reports / "sag" / "odds_ratios.csv", ODDS_RATIOS_CSV)
        _csv(reports / "sag" / "multivariable.csv", MULTIVARIABLE_CSV)
        _json(reports / "sag" / "metrics.json", {"n_series": 619, "multivariable_n": 610, "multivariable_adj_r_squared": 0.4123, "multivariable_r_squared": 0.4351})
    if truth:
        _json(reports / "truth_recovery.json", TRUTH_RECOVERY)
    if ablations:
        _csv(root / "ablations" / "table.csv", ABLATION_CSV)
    return reports


@pytest.fixture()
def full_reports(tmp_path: Path) -> Path:
    """A reports folder with every part: cohort, model, SAG, truth recovery (and ``../ablations/table.csv``)."""
    return make_reports(tmp_path / "pipeline")


@pytest.fixture()
def bare_reports(tmp_path: Path) -> Path:
    """A reports folder of a real (not phantom) cohort before the sag stage: no SAG, no truth, no ablations."""
    return make_reports(tmp_path / "pipeline", sag=False, truth=False, ablations=False)


class ParsedPage(HTMLParser):
    """What a written page holds: its tags' attributes, its text, its section headings and its table cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self.cells: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        if tag in ("h2", "td", "th"):
            self._open.append(tag)
            (self.headings if tag == "h2" else self.cells).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open:
            target = self.headings if self._open[-1] == "h2" else self.cells
            target[-1] += data

    @property
    def all_text(self) -> str:
        """The page's text with every entity decoded and runs of white space as one space."""
        return " ".join(" ".join(self.text).split())

    def images(self) -> list[dict[str, str]]:
        """The attributes of every ``<img>``."""
        return [attrs for tag, attrs in self.tags if tag == "img"]


def parse_page(path: Path) -> ParsedPage:
    """The written page at ``path``, parsed."""
    page = ParsedPage()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page
