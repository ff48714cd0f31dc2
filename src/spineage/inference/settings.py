"""The ``predict`` section of params.yaml: when a new scan is flagged as unlike the training scans.

Inference needs no params file (a user may only have a tracking server); when
there is one, its ``predict`` section is read.

Example:
    >>> settings = parse_predict_settings({"min_segmentation_confidence": 0.9})
    >>> settings.min_segmentation_confidence, settings.reference_margin
    (0.9, 0.1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spineage.settings_checks import field_names, number, section_mapping


@dataclass(frozen=True)
class PredictSettings:
    """Thresholds of the quality and out-of-distribution flags (the ``predict`` section).

    Args:
        reference_margin: a measurement outside the training range (lowest to highest over the
            training scans) by more than this share of the range's width, or of its median value
            when that is larger, is flagged.
        min_segmentation_confidence: a lower mean top-class probability inside the segmented
            spine is flagged (the segmenter is unsure where the spine is). The default run's
            segmenter scores held-out phantom scans 0.88-0.91 (the segment stage's ``series.csv``),
            the real lumbar scan 0.86 and the small real cervical crop 0.74.
        min_regions_in_view: fewer spine regions (cervical, thoracic, lumbar) in the field of
            view than this is flagged; the training scans are whole-spine.
        min_age: the youngest age accepted with ``--age`` (younger is an error).
        max_age: the oldest age accepted with ``--age``.
    """

    reference_margin: float = 0.1
    min_segmentation_confidence: float = 0.8
    min_regions_in_view: int = 3
    min_age: float = 18.0
    max_age: float = 100.0

    def as_params(self) -> dict[str, Any]:
        """Plain values."""
        return asdict(self)


_DEFAULTS = PredictSettings()


def parse_predict_settings(section: Any) -> PredictSettings:
    """Turn the ``predict`` section of params.yaml into :class:`PredictSettings`.

    Raises:
        UserError: for an unknown key or a bad value.
    """
    from spineage.errors import UserError

    section = section_mapping(section, "predict", field_names(PredictSettings))
    settings = PredictSettings(
        reference_margin=float(number(section, "reference_margin", _DEFAULTS.reference_margin, "predict", 0.0, 10.0)),
        min_segmentation_confidence=float(
            number(section, "min_segmentation_confidence", _DEFAULTS.min_segmentation_confidence, "predict", 0.0, 1.0)
        ),
        min_regions_in_view=int(number(section, "min_regions_in_view", _DEFAULTS.min_regions_in_view, "predict", 0, 3, integer=True)),
        min_age=float(number(section, "min_age", _DEFAULTS.min_age, "predict", 0.0, 130.0)),
        max_age=float(number(section, "max_age", _DEFAULTS.max_age, "predict", 0.0, 130.0)),
    )
    if settings.min_age >= settings.max_age:
        raise UserError(f"Expected predict.min_age below predict.max_age, found {settings.min_age:g} and {settings.max_age:g}")
    return settings


def load_predict_settings(params: str | Path | None) -> PredictSettings:
    """The ``predict`` section of ``params`` when that file exists, else the defaults."""
    if params is None or not Path(params).is_file():
        return _DEFAULTS
    from spineage.config import read_params_mapping

    return parse_predict_settings(read_params_mapping(params).get("predict"))
