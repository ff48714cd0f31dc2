"""Findings: the vocabulary, the report reader and the feature vectors."""
