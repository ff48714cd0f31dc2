"""spineage: spine age and the spine age gap (SAG) from spine images."""

__version__ = "0.1.0"
