"""Quality gates on the pipeline's tables, run with Great Expectations (GX Core 1.x).

* :mod:`spineage.validation.gate`: checks as plain data, run as GX suites, one line per failure, JSON results.
* :mod:`spineage.validation.raw`: the raw-cohort gate (``spineage validate raw``).
* :mod:`spineage.validation.vectors`: the feature-vector gate (``spineage validate features``).
* :mod:`spineage.validation.processed`: the preprocessed-array gate (``spineage validate processed``).

Nothing here imports great_expectations until a gate runs: importing it takes seconds.
"""
