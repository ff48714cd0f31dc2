"""Fixtures of the cohort tests: small raw cohorts written from the phantom's tables (no images)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def write_table_cohort(folder: Path, n_subjects: int, seed: int, truth: bool = True, reports: bool = False) -> Path:
    """Write the tables of a phantom cohort (participants, MRI sessions, findings) without images.

    Args:
        folder: the raw-cohort folder to write.
        n_subjects: subjects drawn.
        seed: the cohort seed.
        truth: also write the answer key's typical/atypical marks (``series_atypical`` of ground_truth.json).
        reports: also write each MRI series' free-text report, as ``spineage synth`` does
            (for the findings stage's default source).
    """
    import json

    from spineage.config import parse_params
    from spineage.synth.degeneration import atypical_reasons
    from spineage.synth.generate import draw_cohort_tables

    tables = draw_cohort_tables(n_subjects, parse_params({}).synth, seed)
    folder.mkdir(parents=True, exist_ok=True)
    sessions = tables.sessions.reset_index(drop=True)
    mri = sessions.modality == "mri_t2_sag"
    findings = [dict(series_id=s, **f) for s, fs, keep in zip(sessions.series_id, tables.findings, mri) if keep for f in fs]
    tables.subjects[["subject_id", "sex", "birth_year"]].to_csv(folder / "participants.csv", index=False)
    sessions.loc[mri, ["series_id", "subject_id", "age", "modality", "site", "session"]].round({"age": 2}).to_csv(
        folder / "sessions.csv", index=False
    )
    pd.DataFrame(findings, columns=["series_id", "level", "condition", "severity"]).to_csv(folder / "findings.csv", index=False)
    if truth:
        marks = {s: atypical_reasons(fs) for s, fs, keep in zip(sessions.series_id, tables.findings, mri) if keep}
        (folder / "ground_truth.json").write_text(json.dumps({"series_atypical": marks}, indent=1, sort_keys=True) + "\n")
    if reports:
        from spineage.synth.anatomy import default_levels
        from spineage.synth.generate import _REPORT, _rng
        from spineage.synth.reports import write_report

        (folder / "reports").mkdir(exist_ok=True)
        supernumerary = tables.subjects["supernumerary"].to_numpy()
        for index in mri[mri].index:
            session = sessions.loc[index]
            levels = default_levels(supernumerary[session.subject_index] or None)
            text = write_report(tables.findings[index], levels, _rng(seed, _REPORT, index))
            (folder / "reports" / f"{session.series_id}.txt").write_text(text)
    return folder


@pytest.fixture(scope="session")
def table_cohort(tmp_path_factory) -> Path:
    """A raw cohort of 600 phantom subjects (tables only) with its findings stage already run."""
    from spineage.findings.stage import FindingsSettings, build_findings

    folder = write_table_cohort(tmp_path_factory.mktemp("cohort") / "raw", 600, seed=20251121)
    build_findings(folder, folder.parent / "interim", folder.parent / "reports" / "findings",
                   FindingsSettings(source="table"), progress=False)  # tables only: no reports to read
    return folder
