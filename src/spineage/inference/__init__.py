"""Inference on new scans: ``spineage predict``, the MLflow pyfunc that serves it, and ``spineage recalibrate``."""
