"""The cohort: the data-driven normal-spine definition and the train/validation/test splits."""
