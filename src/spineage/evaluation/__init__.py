"""Evaluation of the spine-age model: bias correction, metrics, normative ranges, repeat-scan stability, Grad-CAM."""
