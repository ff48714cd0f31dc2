"""The ``train`` stage: the spine-age DCNN fitted on the normal cohort, tracked in MLflow and registered.

Adam with ReduceLROnPlateau on the validation MAE, early stopping on it, the
best epoch's weights kept, a checkpoint every epoch (``--resume`` continues
an interrupted run exactly where it stopped), data-parallel over processes
when launched by torchrun. At the end the best weights predict every usable
series (all splits, for the bias correction and SAG stages), the test MAE is
written beside the noise floor the phantom planted and beside two baselines
fitted on the same splits (:mod:`spineage.training.baselines`: the train
split's mean age, and ridge regression on the structure intensities of the
manifest), and the model becomes a new version of ``spine-age-mri`` with alias
``candidate``. For a phantom (``ground_truth.json``) the predictions are also
measured against the planted biological age: the test MAE against it, and the
Pearson r of the raw gap (predicted − chronological) with the planted gap
(biological − chronological), on the test split and on every usable series.

Example:
    >>> from spineage.training.settings import TrainingSettings
    >>> result = train_spine_age("data/processed", TrainingSettings(), "models/spine-age", "reports/train")  # doctest: +SKIP
    >>> result.test_mae, result.noise_floor  # doctest: +SKIP
    (2.6, 2.1)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.training.baselines import Baseline, fit_baselines, split_maes
from spineage.training.checkpoint import (
    BEST,
    CHECKPOINT,
    load_checkpoint,
    save_checkpoint,
)
from spineage.training.data import (
    TRAINING_SPLITS,
    AugmentedVolumes,
    SeriesVolumes,
    TrainFold,
    load_splits,
    manifest_hash,
    read_manifest,
    series_subjects,
    train_subsample,
)
from spineage.training.distributed import (
    DistributedContext,
    barrier,
    broadcast_number,
    close_distributed,
    init_distributed,
)
from spineage.training.precision import (
    autocast,
    choose_cpu_precision,
    use_channels_last,
)
from spineage.training.settings import TrainingSettings

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from spineage.models.spine_age import SpineAgeNet

MODEL_NAME = "spine-age-mri"
"""The registered model every MRI training run adds a version to."""

EXPERIMENT = "spine-age-mri"
"""The MLflow experiment of the MRI spine-age training runs."""

PREDICTIONS = "predictions.csv"
METRICS = "metrics.json"
HISTORY = "history.csv"

_RESUME_KEYS = ("loss", "train_fraction", "channels", "head_channels", "crop_shape", "input_shape", "age_bins", "seed", "batch_size", "dropout")
"""Settings a resumed run must share with the interrupted one (others, e.g. max_epochs, may change)."""


@dataclass(frozen=True)
class RunTracking:
    """Where a training run is logged, and whether its model becomes a registered version.

    Args:
        experiment: the MLflow experiment (:data:`EXPERIMENT`; ``ablations`` for the ablation cells).
        register: log the model and register it as a new version of :data:`MODEL_NAME` with alias
            ``candidate``. False: the run keeps its settings, metrics and predictions only, so that
            an experiment (an ablation cell) can never become the candidate.
        run_name: the run's name (default: the loss and the number of train series).
    """

    experiment: str = EXPERIMENT
    register: bool = True
    run_name: str | None = None


@dataclass
class TrainingResult:
    """What a training run gave.

    Args:
        run_id: the MLflow run.
        model_uri: ``models:/spine-age-mri/<version>``; empty for a run not registered.
        version: the registered version; empty for a run not registered.
        best_epoch: the epoch (0-based) whose weights were kept.
        epochs: epochs trained in all (across resumes).
        validation_mae: validation MAE of the kept weights (years).
        test_mae: test MAE of the kept weights (years); NaN without a test split.
        noise_floor: mean |biological − chronological age| of the test series, from the
            phantom's ground_truth.json; NaN for a cohort without one.
        seconds: training time of this invocation.
        samples_per_second: training throughput (all processes together).
        precision: float32, bfloat16 or float16 (what the forward passes ran in).
        history: per-epoch train/validation loss and MAE.
        baseline_test_mae: test MAE (years) of each baseline (``mean_age``, ``ridge_intensity``).
    """

    run_id: str
    model_uri: str
    version: str
    best_epoch: int
    epochs: int
    validation_mae: float
    test_mae: float
    noise_floor: float
    seconds: float
    samples_per_second: float
    precision: str
    history: list[dict[str, float]] = field(default_factory=list)
    baseline_test_mae: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        ratio = self.test_mae / self.noise_floor if self.noise_floor and not math.isnan(self.noise_floor) else float("nan")
        baselines = ", ".join(
            f"{label} {self.baseline_test_mae[key]:.2f} y"
            for key, label in (("ridge_intensity", "ridge baseline"), ("mean_age", "mean-age baseline")) if key in self.baseline_test_mae
        )
        return (
            f"{self.model_uri or 'not registered'} (run {self.run_id}): best epoch {self.best_epoch + 1} of {self.epochs}, "
            f"validation MAE {self.validation_mae:.2f} y, test MAE {self.test_mae:.2f} y{f' ({baselines})' if baselines else ''}, "
            f"noise floor {self.noise_floor:.2f} y (ratio {ratio:.2f}), {self.samples_per_second:.1f} samples/s ({self.precision})"
        )


# --------------------------------------------------------------------------- provenance


def data_version(processed_dir: str | Path, lock: str | Path = "dvc.lock") -> dict[str, str]:
    """The input data's version: the md5 DVC recorded for the processed folder (if any) and the manifest hash."""
    import yaml

    version = {"manifest_sha256": manifest_hash(processed_dir)}
    lock = Path(lock)
    if lock.is_file():
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            stages = {}
        target = Path(processed_dir).as_posix().rstrip("/")
        for stage in stages.values():
            for out in (stage or {}).get("outs", []) or []:
                if str(out.get("path", "")).rstrip("/") == target and out.get("md5"):
                    version["dvc_md5"] = str(out["md5"])
    return version


def git_commit(folder: str | Path = ".") -> str:
    """The git commit of ``folder`` (``+dirty`` when the tree has changes), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True, text=True, timeout=10, check=False)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def biological_ages(ground_truth: str | Path | None) -> dict[str, float]:
    """The planted biological age of each series (ground_truth.json's ``series_bio_age``); empty without it."""
    if ground_truth is None or not Path(ground_truth).is_file():
        return {}
    try:
        bio = json.loads(Path(ground_truth).read_text()).get("series_bio_age", {})
    except (json.JSONDecodeError, OSError, AttributeError):
        return {}
    return {str(k): float(v) for k, v in bio.items() if isinstance(v, (int, float))} if isinstance(bio, dict) else {}


def noise_floor(ground_truth: str | Path | None, series_ids: list[str], ages: np.ndarray) -> float:
    """Mean |biological − chronological age| of the given series (ground_truth.json's ``series_bio_age``); NaN without it."""
    bio = biological_ages(ground_truth)
    pairs = [(bio[s], a) for s, a in zip(series_ids, ages) if s in bio]
    if not pairs:
        return float("nan")
    return float(np.mean([abs(b - a) for b, a in pairs]))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN for fewer than 3 pairs or a constant side."""
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def truth_figures(predicted: pd.Series | np.ndarray, table: pd.DataFrame, bio: dict[str, float]) -> dict[str, float]:
    """Predictions measured against the phantom's planted biological ages.

    Args:
        predicted: one predicted age per row of ``table``.
        table: ``series_id``, ``split`` and ``age`` (chronological) per series.
        bio: planted biological age by series (:func:`biological_ages`).

    Returns:
        ``test_mae_vs_biological_age`` (mean |predicted − biological| on the test split),
        ``raw_gap_vs_planted_gap_r`` (Pearson r of predicted − chronological with
        biological − chronological on the test split) and ``raw_gap_vs_planted_gap_r_all``
        (the same on every series of ``table``); NaN where no series, or too few, carry a
        biological age.

    Example:
        >>> table = pd.DataFrame({"series_id": ["a", "b", "c"], "split": "test", "age": [40.0, 50.0, 60.0]})
        >>> figures = truth_figures(np.array([42.0, 49.0, 64.0]), table, {"a": 41.0, "b": 49.5, "c": 62.0})
        >>> round(figures["test_mae_vs_biological_age"], 3), round(figures["raw_gap_vs_planted_gap_r"], 3)
        (1.167, 1.0)
    """
    biological = table["series_id"].astype(str).map(bio).to_numpy(float)
    known = np.isfinite(biological)
    predicted, ages = np.asarray(predicted, float), table["age"].to_numpy(float)
    test = known & (table["split"] == "test").to_numpy()
    raw_gap, planted_gap = predicted - ages, biological - ages
    return {
        "test_mae_vs_biological_age": float(np.mean(np.abs(predicted[test] - biological[test]))) if test.any() else float("nan"),
        "raw_gap_vs_planted_gap_r": _pearson(raw_gap[test], planted_gap[test]),
        "raw_gap_vs_planted_gap_r_all": _pearson(raw_gap[known], planted_gap[known]),
    }


def baseline_reports(
    processed_dir: Path, predictions: pd.DataFrame, bio: dict[str, float],
) -> tuple[dict[str, Baseline], dict[str, dict[str, Any]]]:
    """The baselines fitted on the usable series of ``predictions`` (with the manifest's features), and their figures.

    Returns:
        (baselines by name, figures by name: the MAE of each split as :func:`split_maes` names
        them, the truth figures when ``bio`` is given, and what the baseline chose).
    """
    manifest = read_manifest(processed_dir).drop(columns=["split", "age"]).drop_duplicates("series_id")
    manifest["series_id"] = manifest["series_id"].astype(str)
    table = predictions[["series_id", "split", "age"]].merge(manifest, on="series_id", how="left")
    baselines = fit_baselines(table)
    figures = {}
    for name, baseline in baselines.items():
        figures[name] = split_maes(baseline.predicted, table)
        if bio:
            figures[name].update(truth_figures(baseline.predicted, table, bio))
        figures[name].update({k: ", ".join(v) if isinstance(v, list) else v for k, v in baseline.settings.items()})
    return baselines, figures


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


# --------------------------------------------------------------------------- model and steps


def _segmenter_identity(preprocessing: dict[str, Any]) -> dict[str, str]:
    """The identity of the segmenter the arrays were masked with, to store with the network (none named: nothing).

    ``spineage predict`` masks a new scan with the segmenter the network names and
    flags the scan when the folder no longer holds the same model.
    """
    from spineage.imaging.identity import DEFAULT_SEGMENTATION_MODEL, SEGMENTER_IDENTITY_KEY, segmentation_model_identity

    model = preprocessing.get("segmentation_model", DEFAULT_SEGMENTATION_MODEL)
    return {SEGMENTER_IDENTITY_KEY: segmentation_model_identity(str(model).strip())} if model else {}


def build_model(settings: TrainingSettings, input_shape: tuple[int, int, int], train_ages: np.ndarray, preprocessing: dict[str, Any]) -> SpineAgeNet:
    """The paper's DCNN for ``input_shape``, its head fitted to the loss (age bins or the training ages' mean and SD)."""
    from spineage.models.losses import age_bin_centres
    from spineage.models.spine_age import SpineAgeNet

    bins = None
    if settings.loss == "mean_variance":
        low, high, width = settings.age_bins
        if train_ages.min() < low or train_ages.max() > high:
            raise UserError(
                f"Expected training ages within train.age_bins [{low:g}, {high:g}], found {train_ages.min():.1f} to {train_ages.max():.1f}"
            )
        bins = age_bin_centres(low, high, width).tolist()
    return SpineAgeNet(
        input_shape=input_shape,
        channels=settings.channels,
        head_channels=settings.head_channels,
        dropout=settings.dropout,
        age_bins=bins,
        age_mean=float(train_ages.mean()),
        age_sd=float(max(train_ages.std(), 1.0)),
        target_spacing=tuple(preprocessing.get("target_spacing_mm", (4.0, 3.0, 4.0))),
        preprocessing=preprocessing,
    )


def to_channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in channels_last_3d memory format, its 1×1×1 kernels left in plain layout.

    A (out, in, 1, 1, 1) kernel is the same memory either way, but autograd hands back
    its gradient with plain strides; DDP compares strides and would warn and copy on every step.
    """
    import torch

    net = net.to(memory_format=torch.channels_last_3d)
    for parameter in net.parameters():
        if parameter.dim() == 5 and parameter.shape[2:] == (1, 1, 1):
            parameter.data = parameter.data.clone(memory_format=torch.contiguous_format)
    return net


def _to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    import torch

    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last_3d) if channels_last else images


def _raw_outputs(
    net: SpineAgeNet, volumes: SeriesVolumes, batch_size: int, device: torch.device, precision: str, channels_last: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(raw head output in float32, true ages) per batch of ``volumes``, in order, the network in eval mode.

    Callers iterate inside ``torch.inference_mode()``.
    """
    import torch

    net.eval()
    for start in range(0, len(volumes), batch_size):
        images = torch.from_numpy(volumes.volumes[start:start + batch_size].astype(np.float32))[:, None]
        ages = torch.from_numpy(volumes.ages[start:start + batch_size]).to(device)
        with autocast(device, precision):
            raw = net(_to_device(images, device, channels_last), raw=True).float()
        yield raw, ages


def predict_ages(
    net: SpineAgeNet, volumes: SeriesVolumes, *, batch_size: int = 8, device: torch.device | None = None,
    precision: str = "float32", channels_last: bool = True,
) -> np.ndarray:
    """Spine ages (years) of every volume, in order, with the network in eval mode."""
    import torch

    device = device or next(net.parameters()).device
    with torch.inference_mode():
        batches = _raw_outputs(net, volumes, batch_size, device, precision, use_channels_last(device, channels_last))
        ages = [net.decode(raw).cpu().numpy() for raw, _ in batches]
    return np.concatenate(ages) if ages else np.zeros(0, np.float32)


def _epoch_seed(settings: TrainingSettings, epoch: int, rank: int) -> int:
    return (settings.seed * 1_000_003 + epoch * 1009 + rank) % (2**63)


def _train_one_epoch(
    model: torch.nn.Module, loader: Any, loss_function: Any, optimiser: Any, scaler: Any, device: torch.device,
    settings: TrainingSettings, precision: str, channels_last: bool, epoch: int, progress: bool,
) -> tuple[float, float, int]:
    """One pass over this process's share of the training series: mean loss, MAE (years) and samples seen."""
    import torch
    from tqdm import tqdm

    model.train()
    total_loss = total_error = 0.0
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=not progress, file=sys.stderr)
    for images, ages in bar:
        images = _to_device(images, device, channels_last)
        ages = ages.to(device)
        optimiser.zero_grad(set_to_none=True)
        with autocast(device, precision, settings.mixed_precision):
            raw = model(images, raw=True)
        loss = loss_function(raw.float(), ages)
        if not torch.isfinite(loss):
            raise UserError(f"Expected a finite training loss, found {float(loss)} in epoch {epoch + 1} (lower train.learning_rate)")
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        with torch.no_grad():
            predicted = _unwrap(model).decode(raw.detach())
            total_error += float((predicted - ages).abs().sum())
        total_loss += float(loss.detach()) * len(ages)
        seen += len(ages)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", mae=f"{total_error / seen:.2f}")
    return total_loss / max(seen, 1), total_error / max(seen, 1), seen


def _validation_loss_and_mae(net: SpineAgeNet, volumes: SeriesVolumes, loss_function: Any, device: torch.device, precision: str, channels_last: bool, batch_size: int) -> tuple[float, float]:
    import torch

    total_loss = total_error = 0.0
    with torch.inference_mode():
        for raw, ages in _raw_outputs(net, volumes, batch_size, device, precision, channels_last):
            total_loss += float(loss_function(raw, ages)) * len(ages)
            total_error += float((net.decode(raw) - ages).abs().sum())
    return total_loss / len(volumes), total_error / len(volumes)


def _unwrap(model: torch.nn.Module) -> SpineAgeNet:
    return getattr(model, "module", model)


def _state_on_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------- MLflow


def log_spine_age_model(net: SpineAgeNet, processed_dir: str | Path, train_series: list[str]) -> Any:
    """Log the network to the active MLflow run: the pytorch flavour (pickled, so that it loads back as a
    :class:`~spineage.models.spine_age.SpineAgeNet`) and the pyfunc that serves it (:mod:`spineage.inference.pyfunc`),
    with the reference of its training scans (:mod:`spineage.inference.reference`) in the metadata."""
    from spineage.inference.flavour import log_spine_age_service
    from spineage.inference.reference import REFERENCE_KEY, mri_reference

    manifest = read_manifest(processed_dir)
    reference = mri_reference(manifest[manifest["series_id"].astype(str).isin(set(train_series))])
    shape = tuple(net.input_shape)
    return log_spine_age_service(
        net, packages=("torch", "numpy", "cloudpickle"),
        metadata={
            "input_shape": list(shape),
            "target_spacing_mm": list(net.target_spacing),
            "output": "spine age (years)",
            "needs": "the spineage package",
            REFERENCE_KEY: reference.as_dict(),
        },
    )


def _start_or_resume_run(run_id: str | None, run_name: str) -> Any:
    import mlflow

    if run_id:
        try:
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            pass  # the run is gone (another tracking store): start a new one
    return mlflow.start_run(run_name=run_name)


# --------------------------------------------------------------------------- the stage


def _check_resume(state: dict[str, Any], settings: TrainingSettings, checkpoint: Path) -> None:
    saved = state.get("settings", {})
    ours = settings.as_params()
    changed = [key for key in _RESUME_KEYS if key in saved and saved[key] != ours[key]]
    if changed:
        raise UserError(f"Expected the settings of the interrupted run in {checkpoint} to resume, found {', '.join(changed)} changed")
    if state.get("finished"):
        raise UserError(f"Expected an unfinished run to resume in {checkpoint}, found one that finished at epoch {state.get('epoch', 0) + 1}")


def _train_series(processed_dir: Path, settings: TrainingSettings, raw_dir: str | Path | None) -> list[str] | None:
    """The train series of ``settings.train_fraction`` (None: all of them).

    Raises:
        UserError: for a fraction below 1 without the raw cohort that names each series' subject.
    """
    if settings.train_fraction >= 1.0:
        return None
    if raw_dir is None:
        raise UserError(
            f"Expected the raw cohort (--raw; its sessions.csv names each series' subject) with train.train_fraction "
            f"{settings.train_fraction:g}, found none"
        )
    manifest = read_manifest(processed_dir)
    train = manifest.loc[manifest["split"] == "train", "series_id"].astype(str).drop_duplicates().tolist()
    return train_subsample(train, series_subjects(raw_dir), settings.train_fraction, settings.seed)


def _threads(settings: TrainingSettings, context: DistributedContext) -> int:
    if settings.threads:
        return settings.threads
    return max(1, (os.cpu_count() or 1) // context.world_size)


def train_spine_age(
    processed_dir: str | Path,
    settings: TrainingSettings,
    out_dir: str | Path,
    reports_dir: str | Path,
    *,
    preprocessing: dict[str, Any] | None = None,
    ground_truth: str | Path | None = None,
    gate_report: str | Path | None = None,
    lock_file: str | Path = "dvc.lock",
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    raw_dir: str | Path | None = None,
    tracking: RunTracking = RunTracking(),
    fold: TrainFold | None = None,
) -> TrainingResult | None:
    """Train the spine-age DCNN on the normal cohort's train split and register the best epoch.

    Args:
        processed_dir: the preprocess stage's folder (arrays and manifest.csv).
        settings: the training settings.
        out_dir: checkpoints (``checkpoint.pt`` every epoch, ``best.pt``).
        reports_dir: ``metrics.json``, ``predictions.csv`` (every usable series) and ``history.csv``.
        preprocessing: the preprocess settings, stored in the model.
        ground_truth: the phantom's ground_truth.json, for the noise floor (optional).
        gate_report: the processed-data gate's JSON result, logged as an artifact (optional).
        lock_file: dvc.lock, for the input data's version.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: progress bars (rank 0 only).
        on_epoch_end: called on rank 0 after each epoch's checkpoint with (epoch, metrics).
        raw_dir: the raw cohort, whose sessions.csv names each series' subject (needed when
            ``settings.train_fraction`` is below 1: the subsample takes whole subjects).
        tracking: the MLflow experiment, and whether the model is registered (:class:`RunTracking`).
        fold: a cross-validation fold of the train split (:class:`~spineage.training.data.TrainFold`):
            train on its series only and predict its held-out ones as the split ``held_out`` of
            predictions.csv; None trains on the train split (``settings.train_fraction`` of it).
            A fold names its series itself, so it refuses a ``train_fraction`` below 1.

    Returns:
        The :class:`TrainingResult` on rank 0; None on the other ranks.

    Raises:
        UserError: for missing or bad inputs, an empty split, a checkpoint that does not
            fit, or an unusable tracking store.
    """
    from spineage.registry.tracking import quiet_mlflow

    if fold is not None and settings.train_fraction < 1.0:
        raise ValueError(f"a cross-validation fold names its train series; found train_fraction {settings.train_fraction} as well")
    quiet_mlflow()
    context = init_distributed()
    try:
        return _train(
            context, Path(processed_dir), settings, Path(out_dir), Path(reports_dir), preprocessing or {},
            ground_truth, gate_report, lock_file, resume, progress, on_epoch_end, raw_dir, tracking, fold,
        )
    finally:
        close_distributed(context)


def _train(
    context: DistributedContext, processed_dir: Path, settings: TrainingSettings, out_dir: Path, reports_dir: Path,
    preprocessing: dict[str, Any], ground_truth: str | Path | None, gate_report: str | Path | None,
    lock_file: str | Path, resume: bool, progress: bool, on_epoch_end: Callable[[int, dict[str, float]], None] | None,
    raw_dir: str | Path | None, tracking: RunTracking, fold: TrainFold | None,
) -> TrainingResult | None:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    from spineage.models.losses import AgeLoss
    from spineage.registry.tracking import configure_mlflow

    main = context.is_main
    progress = progress and main
    checkpoint_path = out_dir / CHECKPOINT
    state = load_checkpoint(checkpoint_path) if resume else None
    if state is not None:
        _check_resume(state, settings, checkpoint_path)
    if main:
        configure_mlflow(tracking.experiment)  # fail early on an unusable tracking store, before loading data
    device = context.device()
    if device.type == "cpu":
        torch.set_num_threads(_threads(settings, context))
    precision = choose_cpu_precision(settings.cpu_precision) if device.type == "cpu" else ("float16" if settings.mixed_precision else "float32")
    channels_last = use_channels_last(device, settings.channels_last)

    if fold is None:
        splits = load_splits(processed_dir, settings.input_shape, settings.crop_shape, _train_series(processed_dir, settings, raw_dir))
    else:
        splits = load_splits(processed_dir, settings.input_shape, settings.crop_shape, list(fold.train), fold.held_out)
    train, validation = splits["train"], splits["validation"]
    input_shape = train.shape
    torch.manual_seed(settings.seed)
    fitting = {"crop_shape": list(settings.crop_shape) if settings.crop_shape else None, "input_shape": list(input_shape)}
    net = build_model(settings, input_shape, train.ages, {**preprocessing, "fit_to_network": fitting, **_segmenter_identity(preprocessing)}).to(device)
    if channels_last:
        net = to_channels_last(net)
    loss_function = AgeLoss.for_model(
        settings.loss, net, lambda_mean=settings.lambda_mean, lambda_variance=settings.lambda_variance, beta=settings.smooth_l1_beta,
    ).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=settings.lr_factor, patience=settings.lr_patience)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and settings.mixed_precision)

    start_epoch, best_mae, best_epoch, bad_epochs, history, run_id = 0, math.inf, -1, 0, [], None
    best_state = None
    if state is not None:
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_mae, best_epoch, bad_epochs = float(state["best_mae"]), int(state["best_epoch"]), int(state["bad_epochs"])
        history, run_id = list(state["history"]), state.get("run_id") or None
        best_path = out_dir / BEST
        best_state = load_checkpoint(best_path)["model"] if best_path.is_file() else None

    model: torch.nn.Module = net
    if context.distributed:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    dataset = AugmentedVolumes(
        train, seed=settings.seed, augment=True, shift_voxels=settings.augment_shift_voxels,
        intensity=settings.augment_intensity, flip=settings.augment_flip,
    )
    sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=settings.seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, num_workers=0, drop_last=len(dataset) > settings.batch_size)

    version_of_data = data_version(processed_dir, lock_file)
    commit = git_commit()
    started = time.perf_counter()
    samples = 0
    run_context = None
    if main:
        import mlflow

        run_context = _start_or_resume_run(run_id, tracking.run_name or f"spine-age-{settings.loss}-{len(train)}train")
        run = run_context.__enter__()
        run_id = run.info.run_id
        if state is None:
            mlflow.log_params({
                **settings.as_params(),
                "input_shape": list(input_shape),
                "train_series": len(train),
                "validation_series": len(validation),
                "test_series": len(splits.get("test", ())),
                "device": device.type,
                "precision": precision,
                "channels_last": channels_last,
                "world_size": context.world_size,
                "processed_dir": str(processed_dir.resolve()),
                "data_manifest_sha256": version_of_data["manifest_sha256"],
                "data_dvc_md5": version_of_data.get("dvc_md5", "none"),
            })
            mlflow.set_tags({
                "model_name": MODEL_NAME, "task": "spine-age", "modality": "MRI", "git_commit": commit,
                "registered": str(tracking.register).lower(),
            })
            if gate_report is not None and Path(gate_report).is_file():
                mlflow.log_artifact(str(gate_report), artifact_path="validation")
        else:
            mlflow.set_tag("resumed_at_epoch", str(start_epoch + 1))
    try:
        result = _epochs(
            context, model, net, loader, sampler, dataset, validation, loss_function, optimiser, scheduler, scaler, device,
            settings, precision, channels_last, start_epoch, best_mae, best_epoch, bad_epochs, history, best_state, run_id,
            out_dir, progress, on_epoch_end,
        )
        history, best_state, best_epoch, samples, epochs_run = result
        seconds = time.perf_counter() - started
        barrier(context)
        if not main:
            return None
        return _finish(
            net, best_state, best_epoch, epochs_run, history, splits, settings, device, precision, channels_last,
            out_dir, reports_dir, ground_truth, seconds, samples, run_id, commit, version_of_data, processed_dir, tracking,
        )
    finally:
        if run_context is not None:
            run_context.__exit__(*sys.exc_info())


def _epochs(
    context: DistributedContext, model: Any, net: SpineAgeNet, loader: Any, sampler: Any, dataset: AugmentedVolumes,
    validation: SeriesVolumes, loss_function: Any, optimiser: Any, scheduler: Any, scaler: Any, device: torch.device,
    settings: TrainingSettings, precision: str, channels_last: bool, start_epoch: int, best_mae: float, best_epoch: int,
    bad_epochs: int, history: list[dict[str, float]], best_state: dict | None, run_id: str | None, out_dir: Path,
    progress: bool, on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> tuple[list[dict[str, float]], dict | None, int, int, int]:
    """The epoch loop: train, validate, schedule, keep the best, checkpoint, stop early."""
    import torch
    from tqdm import tqdm

    main = context.is_main
    samples = 0
    epochs = tqdm(range(start_epoch, settings.max_epochs), desc="training", unit="epoch", initial=start_epoch,
                  total=settings.max_epochs, disable=not progress, file=sys.stderr)
    epoch = start_epoch - 1
    for epoch in epochs:
        torch.manual_seed(_epoch_seed(settings, epoch, context.rank))
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        epoch_started = time.perf_counter()
        train_loss, train_mae, seen = _train_one_epoch(
            model, loader, loss_function, optimiser, scaler, device, settings, precision, channels_last, epoch, progress,
        )
        samples += seen * context.world_size
        throughput = seen * context.world_size / max(time.perf_counter() - epoch_started, 1e-9)
        # Rank 0 measures the validation MAE and every rank acts on its figure, so that all ranks
        # take the same scheduling and stopping decisions (their batch-norm statistics may differ).
        val_loss = val_mae = math.nan
        if main:
            val_loss, val_mae = _validation_loss_and_mae(net, validation, loss_function, device, precision, channels_last, settings.batch_size)
        val_mae = broadcast_number(val_mae, context)
        scheduler.step(val_mae)
        improved = val_mae < best_mae
        if improved:
            best_mae, best_epoch, bad_epochs = val_mae, epoch, 0
            best_state = _state_on_cpu(net)
        else:
            bad_epochs += 1
        metrics = {
            "train_loss": train_loss, "train_mae": train_mae, "val_loss": val_loss, "val_mae": val_mae,
            "lr": float(optimiser.param_groups[0]["lr"]), "samples_per_second": throughput,
        }
        history.append({"epoch": epoch, **metrics})
        stop = epoch + 1 >= settings.min_epochs and bad_epochs >= settings.early_stopping_patience
        if main:
            import mlflow

            mlflow.log_metrics(metrics, step=epoch)
            if improved:
                save_checkpoint(out_dir / BEST, {"model": best_state, "epoch": epoch, "val_mae": val_mae})
            save_checkpoint(out_dir / CHECKPOINT, {
                "model": _state_on_cpu(net), "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "best_mae": best_mae, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "history": history, "run_id": run_id or "", "settings": settings.as_params(), "finished": False,
            })
            epochs.set_postfix(loss=f"{train_loss:.3f}", mae=f"{train_mae:.2f}", val_mae=f"{val_mae:.2f}", best=f"{best_mae:.2f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        if stop:
            break
    return history, best_state, best_epoch, samples, epoch + 1


def _finish(
    net: SpineAgeNet, best_state: dict | None, best_epoch: int, epochs_run: int, history: list[dict[str, float]],
    splits: dict[str, SeriesVolumes], settings: TrainingSettings, device: torch.device, precision: str,
    channels_last: bool, out_dir: Path, reports_dir: Path, ground_truth: str | Path | None, seconds: float, samples: int,
    run_id: str | None, commit: str, version_of_data: dict[str, str], processed_dir: Path, tracking: RunTracking,
) -> TrainingResult:
    """Rank 0: the best weights predict every series; reports, MLflow metrics, the model logged and registered (unless
    ``tracking.register`` is False)."""
    import mlflow

    from spineage.registry.tracking import register_model_version

    if best_state is None:
        # Nothing learned (no epoch ran, or no validation MAE was finite): registering would move
        # @candidate to the initial weights, and the reports of a trained model would be overwritten.
        raise UserError(
            f"Expected at least one trained epoch with a finite validation MAE, found {epochs_run} epochs "
            f"(train.max_epochs {settings.max_epochs}); nothing was registered"
        )
    net.load_state_dict(best_state)
    frames, maes = [], {}
    for name, volumes in splits.items():
        predicted = predict_ages(net, volumes, batch_size=settings.batch_size, device=device, precision=precision, channels_last=channels_last)
        frames.append(pd.DataFrame({"series_id": volumes.series_ids, "split": name, "age": volumes.ages, "predicted_age": predicted}))
        if len(volumes):
            maes[name] = float(np.mean(np.abs(predicted - volumes.ages)))
    predictions = pd.concat(frames, ignore_index=True).sort_values("series_id").reset_index(drop=True)
    if not math.isfinite(maes.get("validation", math.nan)):
        raise UserError(f"Expected a finite validation MAE of the best epoch's weights, found {maes.get('validation')}; nothing was registered")
    test = splits.get("test")
    floor = noise_floor(ground_truth, test.series_ids, test.ages) if test is not None else float("nan")
    test_mae = maes.get("test", float("nan"))
    samples_per_second = samples / max(seconds, 1e-9)
    metrics = {
        "test_mae": test_mae,
        "validation_mae": maes.get("validation", float("nan")),
        "train_mae": maes.get("train", float("nan")),
        "noise_floor": floor,
        "test_mae_over_noise_floor": test_mae / floor if floor and not math.isnan(floor) else float("nan"),
        "best_epoch": best_epoch + 1,
        "epochs": epochs_run,
        "train_series": len(splits["train"]),
        "train_seconds": seconds,
        "samples_per_second": samples_per_second,
    }
    metrics.update({f"mae_{name}": value for name, value in maes.items() if name not in TRAINING_SPLITS})
    bio = biological_ages(ground_truth)
    if bio:
        metrics.update(truth_figures(predictions["predicted_age"], predictions, bio))
    baselines, baseline_figures = baseline_reports(processed_dir, predictions, bio)
    for name, baseline in baselines.items():
        predictions[f"baseline_{name}"] = baseline.predicted.to_numpy()
    baseline_metrics = {  # MLflow's flat names; metrics.json nests them under "baselines"
        f"baseline_{name}_{key}": value for name, figures in baseline_figures.items() for key, value in figures.items()
        if isinstance(value, (int, float))
    }

    reports_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(reports_dir / PREDICTIONS, lambda p: predictions.to_csv(p, index=False, float_format="%.3f"))
    write_atomic(reports_dir / HISTORY, lambda p: pd.DataFrame(history).to_csv(p, index=False, float_format="%.5g"))
    mlflow.log_metrics({k: v for k, v in {**metrics, **baseline_metrics}.items() if isinstance(v, (int, float)) and not math.isnan(v)})
    mlflow.log_artifact(str(reports_dir / PREDICTIONS))
    model_uri = version = ""
    if tracking.register:
        model_info = log_spine_age_model(net, processed_dir, list(splits["train"].series_ids))
        version = str(register_model_version(
            model_info, MODEL_NAME, alias="candidate",
            tags={"test_mae": f"{test_mae:.3f}", "loss": settings.loss, "git_commit": commit, **{f"data_{k}": v for k, v in version_of_data.items()}},
            description=f"Spine age DCNN ({settings.loss}) on {list(net.input_shape)} voxels of the normal cohort",
        ).version)
        model_uri = f"models:/{MODEL_NAME}/{version}"
    write_json_atomic(reports_dir / METRICS, {
        **{k: _json_number(v) for k, v in metrics.items()},
        "baselines": {name: {k: _json_number(v) for k, v in figures.items()} for name, figures in baseline_figures.items()},
        "precision": precision, "loss": settings.loss, "model_uri": model_uri or None, "run_id": run_id,
        "experiment": tracking.experiment, "train_fraction": settings.train_fraction,
        "data_version": version_of_data, "git_commit": commit,
    })
    final = load_checkpoint(out_dir / CHECKPOINT)
    final["finished"] = True
    save_checkpoint(out_dir / CHECKPOINT, final)
    return TrainingResult(
        run_id=str(run_id), model_uri=model_uri, version=version, best_epoch=best_epoch, epochs=epochs_run,
        validation_mae=maes.get("validation", float("nan")), test_mae=test_mae, noise_floor=floor, seconds=seconds,
        samples_per_second=samples_per_second, precision=precision, history=history,
        baseline_test_mae={name: figures["test_mae"] for name, figures in baseline_figures.items() if "test_mae" in figures},
    )


def result_summary(result: TrainingResult) -> dict[str, Any]:
    """The result as plain values (for JSON)."""
    return {k: v for k, v in asdict(result).items() if k != "history"}
