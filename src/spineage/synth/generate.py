"""``spineage synth``: write a whole phantom cohort in the raw-cohort layout of DESIGN.md.

The tables are drawn first, in one process (they are small); then every scan
is rendered by a pool of workers that write their files directly, so memory
stays flat however large the cohort. Each scan's randomness comes from its own
seed (the cohort seed plus the scan's number), so the files are byte-identical
for a seed whatever the number of workers. The cohort is assembled in a
temporary folder and moved into place only when complete; ``--out`` is
replaced only when it is empty or an earlier output of synth, and leftovers of
killed runs are tidied (or put back) by the next one (:func:`prepare_output_folder`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spineage import __version__
from spineage.atomic import write_atomic, write_json_atomic
from spineage.config import SynthSettings
from spineage.errors import UserError

PHANTOM_REVISION = "atypical-3"
"""The revision of the phantom's planted findings and reports (the ground truth changes with it):
atypical-2 has Table 5 prevalences, age-typical spines without severe grades, and atypical spines
marked; atypical-3 has fewer prevalent vertebral fractures in the old and reports in real styles."""

GENERATOR_VERSION = f"spineage-phantom/{__version__}+{PHANTOM_REVISION}"

# Stream numbers of the per-item seeds: (cohort seed, stream, item index).
_TABLES, _ANATOMY, _LATENTS, _SCAN, _REPORT = 0, 1, 2, 3, 4


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (:func:`spineage.atomic.write_atomic`)."""
    write_atomic(path, lambda temporary: temporary.write_bytes(data))


def nifti_bytes(array: np.ndarray, affine: np.ndarray, axis_codes: str = "RAS") -> bytes:
    """A gzipped NIfTI-1 file as bytes, stored in ``axis_codes`` order; gzip mtime 0 for byte-identical output."""
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    if axis_codes != "RAS":
        target = nib.orientations.axcodes2ornt(tuple(axis_codes))
        transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), target)
        image = image.as_reoriented(transform)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    # Level 1: three times faster than the default for noisy images, and only slightly larger.
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def png_bytes(array: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG as bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint16)).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def _render(task: dict) -> str:
    """Render and write one scan (and its label map and report). Runs in a worker."""
    from spineage.synth.anatomy import build_anatomy, default_levels
    from spineage.synth.reports import write_report
    from spineage.synth.scanner import acquire_mri, acquire_radiograph, acquire_vfa, site_by_name

    folder = Path(task["folder"])
    levels = default_levels(task["supernumerary"] or None)
    anatomy = build_anatomy(
        height_cm=task["height_cm"],
        bio_age=task["bio_age"],
        sex=task["sex"],
        findings=task["findings"],
        levels=levels,
        rng=_rng(task["seed"], _ANATOMY, task["subject_index"]),
        bone_density=task["bone_density"],
        fat_mm=task["fat_mm"],
    )
    scan_rng = _rng(task["seed"], _SCAN, task["series_index"])
    series_id = task["series_id"]
    if task["modality"] == "mri_t2_sag":
        site = site_by_name(task["site"])
        image, labels, affine = acquire_mri(anatomy, site, tuple(task["spacing"]), scan_rng)
        write_bytes_atomic(folder / "images" / f"{series_id}.nii.gz", nifti_bytes(image, affine, site.axis_codes))
        write_bytes_atomic(folder / "labels" / f"{series_id}.nii.gz", nifti_bytes(labels, affine, site.axis_codes))
        report = write_report(task["findings"], levels, _rng(task["seed"], _REPORT, task["series_index"]))
        write_bytes_atomic(folder / "reports" / f"{series_id}.txt", report.encode())
    elif task["modality"] == "xray_lat":
        write_bytes_atomic(folder / "images" / f"{series_id}.png", png_bytes(acquire_radiograph(anatomy, tuple(task["xray_shape"]), scan_rng)))
    else:
        rows, cols = task["xray_shape"]
        vfa_shape = (int(rows * 0.75) // 8 * 8, int(cols * 0.5) // 8 * 8)
        write_bytes_atomic(folder / "images" / f"{series_id}.png", png_bytes(acquire_vfa(anatomy, vfa_shape, scan_rng)))
    return series_id


@dataclass
class CohortTables:
    """The drawn cohort before any image: subjects, outcomes, sessions and each session's findings."""

    subjects: pd.DataFrame
    outcomes: pd.DataFrame
    sessions: pd.DataFrame
    findings: list[list[dict]]  # one list per row of sessions
    effects: object


def draw_cohort_tables(n_subjects: int, settings: SynthSettings, seed: int) -> CohortTables:
    """Draw everything but the images (fast: used by generation and by statistical tests).

    Radiograph and VFA sessions get the findings of the subject at that age too,
    so that their images show the same spine.
    """
    from spineage.synth.anatomy import default_levels
    from spineage.synth.cohort import draw_subjects, plan_sessions
    from spineage.synth.degeneration import draw_findings, draw_latents
    from spineage.synth.outcomes import OutcomeEffects, simulate_outcomes
    from spineage.synth.scanner import SITES

    rng = _rng(seed, _TABLES)
    subjects = draw_subjects(n_subjects, settings.lifestyle_effects, settings.noise_sd, rng)
    try:
        effects = OutcomeEffects(**settings.outcome_effects)
    except (TypeError, ValueError) as error:
        raise UserError(f"Expected valid synth.outcome_effects, found: {error}") from None
    outcomes = simulate_outcomes(subjects[["subject_id", "sex", "age", "bio_age"]], effects, rng)
    fracture_grade = rng.choice([1, 2, 3], size=n_subjects, p=[0.5, 0.35, 0.15])
    sessions = plan_sessions(subjects, [s.name for s in SITES], [s.weight for s in SITES], settings.repeat_fraction, rng)
    latents = [draw_latents(default_levels(sup or None), _rng(seed, _LATENTS, i)) for i, sup in enumerate(subjects["supernumerary"])]
    fractured = outcomes["prevalent_vertebral_fracture"].to_numpy().astype(bool)
    sex = subjects["sex"].to_numpy()
    findings = [
        draw_findings(latents[i], float(bio_age), sex[i], bool(fractured[i]), int(fracture_grade[i]))
        for i, bio_age in zip(sessions["subject_index"], sessions["bio_age"])
    ]
    return CohortTables(subjects, outcomes, sessions, findings, effects)


def generate_cohort(
    out: Path,
    settings: SynthSettings,
    *,
    seed: int,
    profile: str | None = None,
    n_subjects: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> str:
    """Generate the phantom cohort into ``out`` (replacing an earlier one only once complete).

    Args:
        out: the raw-cohort folder to write.
        settings: the synth section of params.yaml.
        seed: the cohort seed.
        profile: ci, default or full (default: the settings' profile).
        n_subjects: overrides the profile's number of subjects.
        workers: processes rendering scans (default: the settings').
        progress: show a progress bar on stderr.

    Returns:
        A one-line summary of what was written.

    Raises:
        UserError: for a bad number of subjects or workers, an unwritable folder, or an
            ``out`` holding anything but an earlier output of synth (see :func:`prepare_output_folder`).
    """
    from tqdm import tqdm

    from spineage.synth.anatomy import DISC_HYDRATION_LOSS_PER_YEAR, MARROW_FAT_PER_YEAR, MARROW_FAT_SD
    from spineage.synth.phantom import MARROW_T2_LEAN, MARROW_T2_PER_FAT, MARROW_TEXTURE
    from spineage.synth.degeneration import LOAD_SLOPE_PER_DECADE, atypical_reasons
    from spineage.synth.scanner import SITES

    chosen = settings.profile(profile)
    n = chosen.n_subjects if n_subjects is None else n_subjects
    if n < 1:
        raise UserError(f"Expected at least 1 subject, found --n-subjects {n}")
    n_workers = settings.workers if workers is None else workers
    if n_workers < 1:
        raise UserError(f"Expected at least 1 worker, found {n_workers}")
    if seed < 0:
        raise UserError(f"Expected a non-negative seed, found {seed}")
    out = Path(out)
    work = prepare_output_folder(out)
    try:
        tables = draw_cohort_tables(n, settings, seed)
        subjects, sessions, outcomes = tables.subjects, tables.sessions, tables.outcomes
        scanners = {s.name: s.scanner for s in SITES}
        findings_rows: list[dict] = []
        tasks: list[dict] = []
        for sub in ("images", "labels", "reports"):
            (work / sub).mkdir()
        for series_index, session in enumerate(sessions.itertuples(index=False)):
            i = session.subject_index
            subject = subjects.iloc[i]
            outcome = outcomes.iloc[i]
            findings = tables.findings[series_index]
            if session.modality == "mri_t2_sag":
                findings_rows += [dict(series_id=session.series_id, **f) for f in findings]
            bmi = outcome.weight_kg / (outcome.height_cm / 100) ** 2
            tasks.append(
                dict(
                    folder=str(work), seed=seed, series_id=session.series_id, series_index=series_index,
                    subject_index=i, modality=session.modality, site=session.site, sex=subject.sex,
                    bio_age=float(session.bio_age), height_cm=float(outcome.height_cm),
                    bone_density=float(np.clip(1.0 + 0.1 * outcome.bmd_t_lumbar, 0.5, 1.3)),
                    fat_mm=float(np.clip(8.0 + 2.2 * (bmi - 20.0), 5.0, 45.0)),
                    findings=findings, supernumerary=subject.supernumerary,
                    spacing=list(chosen.mri_spacing_mm), xray_shape=list(chosen.xray_shape),
                )
            )
        _render_all(tasks, n_workers, progress, tqdm)
        _write_tables(work, subjects, sessions, outcomes, findings_rows, scanners)
        truth = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "profile": chosen.name,
            "n_subjects": n,
            "noise_sd": settings.noise_sd,
            "repeat_fraction": settings.repeat_fraction,
            "mri_spacing_mm": list(chosen.mri_spacing_mm),
            "lifestyle_effects": settings.lifestyle_effects,
            "outcome_effects": asdict(tables.effects),
            "spine_age_gap_sd": float(outcomes.attrs["sag_sd"]),
            "spine_age_gap_mean": float(outcomes.attrs["sag_mean"]),
            "degeneration_load_slope_per_decade": LOAD_SLOPE_PER_DECADE,
            "marrow_fat_per_year": MARROW_FAT_PER_YEAR,
            "marrow_fat_sd": MARROW_FAT_SD,
            "disc_hydration_loss_per_year": DISC_HYDRATION_LOSS_PER_YEAR,
            "marrow_t2": {"lean": MARROW_T2_LEAN, "per_fat": MARROW_T2_PER_FAT, "texture": MARROW_TEXTURE},
            "sites": [asdict(s) for s in SITES],
            "subjects": {
                row.subject_id: {
                    "bio_age": round(float(row.bio_age), 4),
                    "lifestyle_effect": round(float(row.lifestyle_effect), 4),
                    "individual_noise": round(float(row.individual_noise), 4),
                }
                for row in subjects.itertuples(index=False)
            },
            "series_bio_age": {row.series_id: round(float(row.bio_age), 4) for row in sessions.itertuples(index=False)},
            # Why each MRI series is atypical for its age ([] for a typical one): its structural
            # pathologies and "focal: ..." lesion complexes (spineage.synth.degeneration).
            "series_atypical": {
                row.series_id: atypical_reasons(tables.findings[index])
                for index, row in enumerate(sessions.itertuples(index=False)) if row.modality == "mri_t2_sag"
            },
        }
        (work / "ground_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
        _replace_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    n_mri = int((sessions.modality == "mri_t2_sag").sum())
    return f"wrote {out}: {n} subjects, {n_mri} MRI, {len(sessions) - n_mri} radiograph/VFA series, {len(findings_rows)} findings"


def _render_all(tasks: list[dict], workers: int, progress: bool, tqdm) -> None:
    bar = tqdm(total=len(tasks), desc="rendering scans", unit="scan", disable=not progress, file=sys.stderr)
    if workers == 1:
        for task in tasks:
            _render(task)
            bar.update()
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render, tasks, chunksize=4):
                bar.update()
    bar.close()


def _write_tables(folder: Path, subjects: pd.DataFrame, sessions: pd.DataFrame, outcomes: pd.DataFrame, findings_rows: list[dict], scanners: dict[str, str]) -> None:
    from spineage.synth.cohort import LIFESTYLE_COLUMNS

    subjects[["subject_id", "sex", "birth_year"]].to_csv(folder / "participants.csv", index=False)
    table = sessions.copy()
    table["age"] = table["age"].round(2)
    suffix = np.where(table.modality == "mri_t2_sag", ".nii.gz", ".png")
    table["image"] = "images/" + table.series_id + suffix
    table["label"] = np.where(table.modality == "mri_t2_sag", "labels/" + table.series_id + ".nii.gz", "")
    table["scanner"] = table.site.map(scanners)
    table[["series_id", "subject_id", "age", "modality", "image", "label", "site", "scanner", "session"]].to_csv(folder / "sessions.csv", index=False)
    pd.DataFrame(findings_rows, columns=["series_id", "level", "condition", "severity"]).to_csv(folder / "findings.csv", index=False)
    subjects[["subject_id", *LIFESTYLE_COLUMNS]].to_csv(folder / "lifestyle.csv", index=False)
    outcomes.round(3).to_csv(folder / "outcomes.csv", index=False)


# --------------------------------------------------------------------------- the output folder

PHANTOM_ENTRIES: frozenset[str] = frozenset(
    {"images", "labels", "reports", "participants.csv", "sessions.csv", "findings.csv", "lifestyle.csv",
     "outcomes.csv", "ground_truth.json"}
)
"""What the phantom writes at the top of its folder; its ``ground_truth.json`` names the generator."""

LINK_MARKER = ".spineage-linked.json"
"""Written into a linked cohort (source, entries), so that a rerun knows the folder as its own."""

_WRITTEN_BY = "spineage synth"
_SHOWN = 5
"""Foreign entries named in the error message."""


def prepare_output_folder(out: Path) -> Path:
    """Make ``out`` ready to be replaced and return an empty work folder beside it.

    ``out`` may be missing, empty, or an earlier output of synth (a phantom
    cohort, known by its ``ground_truth.json``, or a linked one, known by
    :data:`LINK_MARKER`) holding nothing else: anything else would be deleted
    with the old cohort, so it is refused before anything is deleted. What
    killed runs left beside ``out`` is tidied: a cohort set aside
    (``.NAME.old-PID``) while ``out`` is missing is put back, and partial
    (``.NAME.partial-PID-*``) and superseded set-aside folders are removed,
    except those of runs still alive.

    Raises:
        UserError: for an ``out`` that is a file, holds foreign entries, or cannot be written beside.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected --out {out} to be a folder, found a file")
    partial, set_aside = _leftovers(out)
    if set_aside and not out.exists() and not out.is_symlink():
        newest = max(set_aside, key=lambda folder: folder.stat().st_mtime)
        os.replace(newest, out)  # a run died between moving the old cohort aside and the new one in
        set_aside.remove(newest)
    check_replaceable(out)
    for folder in partial + set_aside:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    except OSError as error:
        raise UserError(f"Expected a writable folder for {out}, found: {error.strerror or error}") from None


def check_replaceable(out: Path) -> None:
    """Refuse an existing ``out`` holding anything an earlier run of synth did not write.

    Raises:
        UserError: naming ``out`` and a few of the foreign entries.
    """
    out = Path(out)
    if not out.is_dir():
        return
    try:
        entries = sorted(entry.name for entry in out.iterdir())
    except OSError as error:
        raise UserError(f"Expected a readable folder at --out {out}, found: {error.strerror or error}") from None
    own = _own_entries(out)
    foreign = [entry for entry in entries if entry not in own]
    if foreign:
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        what = "entry" if len(foreign) == 1 else "entries"
        raise UserError(
            f"Expected --out {out} to be empty, missing or an earlier output of spineage synth, found {len(foreign)} "
            f"other {what} in it ({shown}); nothing was deleted: move {'it' if len(foreign) == 1 else 'them'} away or choose another --out"
        )


def _own_entries(folder: Path) -> set[str]:
    """The top-level entries of ``folder`` that an earlier run of synth wrote (none if it wrote none)."""
    own: set[str] = set()
    truth = _read_json(folder / "ground_truth.json")
    if str(truth.get("generator_version", "")).startswith("spineage-phantom/"):
        own |= PHANTOM_ENTRIES
    marker = _read_json(folder / LINK_MARKER)
    if marker.get("written_by") == _WRITTEN_BY and isinstance(marker.get("entries"), list):
        own |= {str(entry) for entry in marker["entries"]} | {LINK_MARKER}
    return own


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _leftovers(out: Path) -> tuple[list[Path], list[Path]]:
    """Folders that dead runs for ``out`` left beside it: (partial cohorts, cohorts set aside)."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(?:(\d+)(?=-|$))?")
    partial: list[Path] = []
    set_aside: list[Path] = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return partial, set_aside
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        if match.group(2) is not None and _alive(int(match.group(2))):
            continue
        (partial if match.group(1) == "partial" else set_aside).append(entry)
    return partial, set_aside


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (a leftover bearing our own id is from a dead one)."""
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _replace_folder(new: Path, out: Path) -> None:
    """Move the finished cohort into place; an older one is set aside first and removed only after the move.

    A run killed between the two renames leaves no ``out`` and the old cohort as
    ``.NAME.old-PID`` beside it; :func:`prepare_output_folder` puts it back.
    """
    check_replaceable(out)  # again: the user may have put something there while the cohort was drawn
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def link_external_cohort(source: Path, out: Path) -> str:
    """Bring a user's raw cohort into ``out`` as hard links (copies across file systems).

    DVC then versions the cohort like any stage output; nothing in ``source`` is
    changed. Symbolic links in ``source`` are followed: ``out`` gets the files
    they point to, so that it holds no link out of itself.

    Raises:
        UserError: for a missing source or table, a source and ``out`` inside one
            another, an unreadable file, or an ``out`` that synth may not replace.
    """
    source = Path(source)
    out = Path(out)
    if not source.is_dir():
        raise UserError(f"Expected data.source to be 'synthetic' or a raw-cohort folder, found no folder at {source}")
    for required in ("participants.csv", "sessions.csv"):
        if not (source / required).is_file():
            raise UserError(f"Expected {required} in the raw cohort {source}, found none")
    check_separate(source, out)
    work = prepare_output_folder(out)
    try:
        count = _link_tree(source, work)
        entries = sorted(entry.name for entry in work.iterdir() if entry.name != LINK_MARKER)
        # Atomic (a new file, then a rename): a marker-named file of the source, hard-linked here, stays untouched.
        write_json_atomic(work / LINK_MARKER, {"written_by": _WRITTEN_BY, "source": os.path.realpath(source), "entries": entries})
        _replace_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return f"linked {count} files of {source} into {out}"


def check_separate(source: Path, out: Path) -> None:
    """Refuse a ``source`` and ``out`` that are one folder or lie one inside the other (real paths).

    ``out`` inside the source would grow the source on every run; the source
    inside ``out`` would be deleted with the old cohort.

    Raises:
        UserError: saying which lies in which.
    """
    real_source, real_out = Path(os.path.realpath(source)), Path(os.path.realpath(out))
    if real_out == real_source:
        raise UserError(f"Expected --out {out} to be another folder than data.source {source}, found the same folder ({real_out})")
    if real_source in real_out.parents:
        raise UserError(
            f"Expected --out {out} outside data.source {source} (the source is never changed), found it inside ({real_out})"
        )
    if real_out in real_source.parents:
        raise UserError(
            f"Expected data.source {source} outside --out {out} (which synth replaces), found it inside ({real_source})"
        )


def _link_tree(source: Path, target: Path) -> int:
    """Hard-link (else copy) every file under ``source`` into the empty folder ``target``; return how many.

    Symbolic links are followed, to files and to folders; a link to a folder
    above it (a loop) is skipped.

    Raises:
        UserError: for a folder that cannot be listed or a file that cannot be read (a broken link).
    """

    def unreadable(error: OSError) -> None:
        raise UserError(f"Expected every folder of data.source {source} to be readable, found: {error.strerror or error} ({error.filename})")

    count = 0
    for folder, subfolders, files in os.walk(source, onerror=unreadable, followlinks=True):
        here = Path(folder)
        real_here = os.path.realpath(here)
        # A link to this folder or one above it would be walked for ever.
        subfolders[:] = [name for name in subfolders if not _is_ancestor(os.path.realpath(here / name), real_here)]
        destination = target / here.relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
            path = here / name
            try:
                # The real path: os.link would link a symbolic link itself, which may point elsewhere from here.
                os.link(os.path.realpath(path), destination / name)
            except OSError:
                try:
                    shutil.copy2(path, destination / name)
                except OSError as error:
                    found = "a broken link" if path.is_symlink() and not path.exists() else (error.strerror or str(error))
                    raise UserError(f"Expected every file of data.source {source} to be readable, found {found} at {path}") from None
            count += 1
    return count


def _is_ancestor(candidate: str, path: str) -> bool:
    return path == candidate or path.startswith(candidate.rstrip(os.sep) + os.sep)
