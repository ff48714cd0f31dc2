"""The synthetic phantom cohort: the embedded default data with a written-down planted truth."""
