"""``spineage radiograph train``: the VERTE-X spine-age network fitted on the derivation radiographs.

The derivation cohort is every lateral radiograph (``xray_lat``) of a subject at least
``derivation_min_age`` old, split 60/20/20 by subject (stratified by sex x age bracket,
:func:`spineage.cohort.splits.assign_splits`); the DXA VFA images are the external test
set (``external``; a VFA image of a subject whose radiograph the network trained or
early-stopped on is ``external_seen`` and never scored). Radiographs of younger subjects
are predicted (``younger``) but neither trained nor scored.

=================  ============================================================
split              images
=================  ============================================================
``train``          derivation radiographs, fitted on
``validation``     derivation radiographs, early stopping and the bias correction
``test``           derivation radiographs, held out
``external``       VFA images of subjects outside train and validation
``external_seen``  VFA images of subjects in train or validation (not scored)
``younger``        radiographs below the derivation age (not scored)
=================  ============================================================

The network (:class:`~spineage.models.spine_age_xray.SpineAgeXrayNet`) is trained with
the mean-variance loss, Adam, ReduceLROnPlateau and early stopping on the validation MAE,
light augmentation (shifts, intensity), one seed, float32 with channels_last on a CPU.
Outputs: ``<out>/best.pt`` and ``checkpoint.pt``; ``<reports>/predictions.csv`` (every
image: split, age, predicted_age, and the pixel-ridge baseline's), ``history.csv`` and
``metrics.json`` (MAE per split beside two baselines: the train mean age, and a ridge
regression on the image averaged to 32 x 16 pixels); one MLflow run in ``spine-age-xray``,
the model registered as ``spine-age-xray@candidate``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.errors import UserError
from spineage.radiograph.settings import RadiographSettings

MODEL_NAME = "spine-age-xray"
EXPERIMENT = "spine-age-xray"
RADIOGRAPH, VFA = "xray_lat", "dxa_vfa"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
EXTERNAL, EXTERNAL_SEEN, YOUNGER = "external", "external_seen", "younger"
SCORED_SPLITS: tuple[str, ...] = (TRAIN, VALIDATION, TEST, EXTERNAL)
PREDICTIONS, HISTORY, METRICS = "predictions.csv", "history.csv", "metrics.json"


@dataclass
class Images:
    """Preprocessed images in memory: (n, rows, columns) float16, with their ids and ages."""

    series_ids: list[str]
    ages: np.ndarray
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.series_ids)


def read_radiograph_manifest(processed: str | Path) -> pd.DataFrame:
    """The usable rows (status ok) of the radiograph preprocessing manifest.

    Raises:
        UserError: if the manifest is missing or lacks a column.
    """
    path = Path(processed) / "manifest.csv"
    if not path.is_file():
        raise UserError(f"Expected the radiograph manifest at {path} (run `spineage radiograph preprocess` first), found no such file")
    manifest = pd.read_csv(path, dtype={"series_id": str, "subject_id": str, "modality": str, "sex": str, "status": str, "file": str},
                           keep_default_na=False)
    needed = ("series_id", "subject_id", "modality", "age", "sex", "status", "file")
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise UserError(f"Expected columns {list(needed)} in {path}, found {missing} missing")
    manifest = manifest[manifest["status"] == "ok"].copy()
    manifest["age"] = pd.to_numeric(manifest["age"], errors="coerce")
    return manifest.dropna(subset=["age"]).reset_index(drop=True)


def assign_radiograph_splits(manifest: pd.DataFrame, settings: RadiographSettings) -> pd.Series:
    """Each image's split (module docstring): derivation radiographs by subject 60/20/20, VFA external.

    Raises:
        UserError: if the derivation cohort is too small to split (fewer than 10 subjects).
    """
    from spineage.cohort.splits import assign_splits
    from spineage.findings.vocabulary import bracket_of

    split = pd.Series(YOUNGER, index=manifest.index, dtype=object)
    derivation = (manifest["modality"] == RADIOGRAPH) & (manifest["age"] >= settings.derivation_min_age)
    rows = manifest[derivation]
    if rows["subject_id"].nunique() < 10:
        raise UserError(
            f"Expected radiographs of at least 10 subjects aged {settings.derivation_min_age:g} or more to derive the model, "
            f"found {rows['subject_id'].nunique()}"
        )
    table = pd.DataFrame({
        "series_id": rows["series_id"], "subject_id": rows["subject_id"], "sex": rows["sex"],
        # every derivation image is "normal" here: the splits are by subject, stratified by sex x bracket
        "bracket": [bracket_of(min(age, 84.99)) or 80 for age in rows["age"]], "normal": True,
    })
    fractions = dict(zip((TRAIN, VALIDATION, TEST), settings.split))
    split[derivation] = assign_splits(table, fractions, settings.seed).to_numpy()
    seen = set(manifest.loc[split.isin([TRAIN, VALIDATION]), "subject_id"])
    vfa = manifest["modality"] == VFA
    split[vfa] = np.where(manifest.loc[vfa, "subject_id"].isin(seen), EXTERNAL_SEEN, EXTERNAL)
    return split


def load_images(processed: str | Path, rows: pd.DataFrame, image_shape: tuple[int, int]) -> Images:
    """The arrays of ``rows`` (manifest rows) in memory.

    Raises:
        UserError: for a missing or unreadable array, or one of another shape than ``image_shape``.
    """
    arrays = []
    for row in rows.itertuples(index=False):
        path = Path(processed) / str(row.file)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UserError(f"Expected a readable array for {row.series_id} at {path}, found: {error}") from None
        if array.shape != tuple(image_shape):
            raise UserError(
                f"Expected every preprocessed image of shape {tuple(image_shape)} (radiograph.image_shape), found {array.shape} "
                f"for {row.series_id}; rerun `spineage radiograph preprocess`"
            )
        arrays.append(array.astype(np.float16, copy=False))
    stacked = np.stack(arrays) if arrays else np.zeros((0, *image_shape), np.float16)
    return Images(list(rows["series_id"]), rows["age"].to_numpy(np.float32), stacked)


PIXEL_GRID: tuple[int, int] = (32, 16)
"""The area-averaged grid (rows x columns) the pixel-ridge baseline reads."""

PIXEL_RIDGE_ALPHAS: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
"""Its penalties (on 512 standardised pixels, more than the MRI ridge's nine features need)."""


def pixel_ridge_baseline(images: Images, table: pd.DataFrame) -> tuple[pd.Series, float]:
    """Ridge regression of age on each image averaged down to :data:`PIXEL_GRID`: fitted on train, alpha chosen on validation.

    What a linear read of the image's brightness pattern reaches on the same splits, beside the network.

    Returns:
        The predicted age of every row of ``table`` (same order as ``images``) and the chosen alpha.
    """
    import torch

    from spineage.training.baselines import ridge_baseline

    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(images.images.astype(np.float32))[:, None], PIXEL_GRID)
    features = pd.DataFrame(pooled.reshape(len(images), -1).numpy(), index=table.index).add_prefix("pixel_")
    fitted = ridge_baseline(pd.concat([table[["split", "age"]], features], axis=1), list(features.columns), PIXEL_RIDGE_ALPHAS)
    return fitted.predicted, float(fitted.settings["alpha"])


def _augment(batch: Any, settings: RadiographSettings, generator: Any) -> Any:
    """Random shifts (zero fill) and intensity scale/offset, drawn from ``generator`` (seeded per epoch)."""
    import torch

    if settings.augment_shift_pixels:
        limit = settings.augment_shift_pixels
        shifts = torch.randint(-limit, limit + 1, (2,), generator=generator).tolist()
        batch = torch.roll(batch, shifts=shifts, dims=(2, 3))
        rows, columns = batch.shape[2:]
        if shifts[0] > 0:
            batch[:, :, : shifts[0]] = 0
        elif shifts[0] < 0:
            batch[:, :, rows + shifts[0]:] = 0
        if shifts[1] > 0:
            batch[:, :, :, : shifts[1]] = 0
        elif shifts[1] < 0:
            batch[:, :, :, columns + shifts[1]:] = 0
    if settings.augment_intensity:
        size = (batch.shape[0], 1, 1, 1)
        scale = 1 + settings.augment_intensity * (2 * torch.rand(size, generator=generator) - 1)
        offset = settings.augment_intensity * (2 * torch.rand(size, generator=generator) - 1)
        batch = batch * scale + offset
    return batch


def _to_tensor(images: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(images.astype(np.float32))[:, None].contiguous(memory_format=torch.channels_last)


def predict_xray_ages(net: Any, images: Images, batch_size: int = 32) -> np.ndarray:
    """Spine ages (years) of every image, the network in eval mode, float32 on the CPU."""
    import torch

    net.eval()
    ages = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            ages.append(net(_to_tensor(images.images[start:start + batch_size])).float().numpy())
    return np.concatenate(ages) if ages else np.zeros(0, np.float32)


def train_xray_model(processed: str | Path, settings: RadiographSettings, out: str | Path, reports: str | Path,
                     *, register: bool = True, progress: bool = True) -> dict[str, Any]:
    """Fit the spine-age EfficientNet on the derivation radiographs and predict every image (module docstring).

    Returns:
        The content of ``metrics.json``.

    Raises:
        UserError: for a missing manifest or arrays, a derivation cohort too small, or no finite validation MAE.
    """
    import torch

    from spineage.models.losses import AgeLoss, age_bin_centres
    from spineage.models.spine_age_xray import SpineAgeXrayNet
    from spineage.training.checkpoint import BEST, CHECKPOINT, save_checkpoint

    started = time.perf_counter()
    processed, out, reports = Path(processed), Path(out), Path(reports)
    manifest = read_radiograph_manifest(processed)
    manifest["split"] = assign_radiograph_splits(manifest, settings).to_numpy()
    images = load_images(processed, manifest, settings.image_shape)
    by_split = {name: np.flatnonzero(manifest["split"].to_numpy() == name) for name in (TRAIN, VALIDATION)}
    train_ages = images.ages[by_split[TRAIN]]
    low, high, width = settings.age_bins
    if train_ages.min() < low or train_ages.max() > high:
        raise UserError(f"Expected training ages within radiograph.age_bins [{low:g}, {high:g}], found {train_ages.min():.1f} to {train_ages.max():.1f}")

    torch.manual_seed(settings.seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    bins = age_bin_centres(low, high, width)
    preprocessing = {"image_shape": list(settings.image_shape), "margin_fraction": settings.margin_fraction, "equalise": settings.equalise}
    net = SpineAgeXrayNet(settings.image_shape, settings.model, bins.tolist(), preprocessing).to(memory_format=torch.channels_last)
    loss_function = AgeLoss("mean_variance", age_bins=bins, lambda_mean=settings.lambda_mean, lambda_variance=settings.lambda_variance)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, mode="min", factor=0.5, patience=3)
    validation = Images([images.series_ids[i] for i in by_split[VALIDATION]], images.ages[by_split[VALIDATION]], images.images[by_split[VALIDATION]])

    from spineage.inference.flavour import log_spine_age_service
    from spineage.inference.reference import REFERENCE_KEY, radiograph_reference
    from spineage.registry.tracking import configure_mlflow, register_model_version
    from spineage.training.stage import data_version, git_commit

    version_of_data = data_version(processed)  # the promotion gate compares versions on the same test split by it

    configure_mlflow(EXPERIMENT)
    import mlflow

    history: list[dict[str, float]] = []
    best_mae, best_epoch, best_state, waited, samples = math.inf, -1, None, 0, 0
    out.mkdir(parents=True, exist_ok=True)
    epochs = range(settings.max_epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="training", unit="epoch")
    with mlflow.start_run(run_name=f"{settings.model} mean_variance on {len(by_split[TRAIN])} radiographs") as run:
        mlflow.log_params({**settings.as_params(), "train_images": len(by_split[TRAIN]), "validation_images": len(validation),
                           **{f"data_{key}": value for key, value in version_of_data.items()}})
        for epoch in epochs:
            net.train()
            generator = torch.Generator().manual_seed(settings.seed * 1000 + epoch)
            order = by_split[TRAIN][torch.randperm(len(by_split[TRAIN]), generator=generator).numpy()]
            total = 0.0
            # drop a last batch of one: batch normalisation needs two
            for start in range(0, len(order) - 1, settings.batch_size):
                index = order[start:start + settings.batch_size]
                if len(index) < 2:
                    continue
                batch = _augment(_to_tensor(images.images[index]), settings, generator)
                loss = loss_function(net(batch, raw=True), torch.from_numpy(images.ages[index]))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(index)
                samples += len(index)
            mae = float(np.mean(np.abs(predict_xray_ages(net, validation) - validation.ages)))
            scheduler.step(mae)
            history.append({"epoch": epoch + 1, "train_loss": total / max(len(order), 1), "validation_mae": mae,
                            "learning_rate": optimiser.param_groups[0]["lr"]})
            mlflow.log_metrics({"train_loss": history[-1]["train_loss"], "validation_mae": mae}, step=epoch + 1)
            if math.isfinite(mae) and mae < best_mae:
                best_mae, best_epoch, waited = mae, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                save_checkpoint(out / BEST, {"model": best_state, "epoch": epoch + 1, "val_mae": mae})
            else:
                waited += 1
            save_checkpoint(out / CHECKPOINT, {"settings": settings.as_params(), "epoch": epoch + 1, "history": history})
            if waited >= settings.early_stopping_patience and epoch + 1 >= settings.min_epochs:
                break
        if best_state is None:
            raise UserError(f"Expected a finite validation MAE in at least one epoch, found none in {len(history)}; nothing was registered")
        train_seconds = time.perf_counter() - started
        net.load_state_dict(best_state)
        manifest["predicted_age"] = predict_xray_ages(net, images)
        manifest["baseline_ridge_pixels"], ridge_alpha = pixel_ridge_baseline(images, manifest)
        baseline = float(train_ages.mean())
        metrics: dict[str, Any] = {
            "model": settings.model, "image_shape": list(settings.image_shape), "best_epoch": best_epoch + 1, "epochs": len(history),
            "train_seconds": round(train_seconds, 1), "samples_per_second": samples / max(train_seconds, 1e-9),
            "images": {name: int((manifest["split"] == name).sum()) for name in (*SCORED_SPLITS, EXTERNAL_SEEN, YOUNGER)},
            "baseline_mean_age": baseline, "baseline_ridge_pixels_alpha": ridge_alpha,
        }
        for name in SCORED_SPLITS:
            rows = manifest[manifest["split"] == name]
            if len(rows):
                metrics[f"mae_{name}"] = float(np.mean(np.abs(rows["predicted_age"] - rows["age"])))
                metrics[f"baseline_mae_{name}"] = float(np.mean(np.abs(baseline - rows["age"])))
                metrics[f"ridge_pixels_mae_{name}"] = float(np.mean(np.abs(rows["baseline_ridge_pixels"] - rows["age"])))
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)})
        metrics["run_id"] = run.info.run_id
        metrics["git_commit"] = git_commit()
        metrics["data_version"] = version_of_data
        metrics["model_uri"] = ""
        if register:
            shape = settings.image_shape
            reference = radiograph_reference(manifest[manifest["split"] == TRAIN])
            info = log_spine_age_service(net.eval(), packages=("torch", "numpy", "cloudpickle", "monai"),
                                         metadata={"image_shape": list(shape), "output": "spine age (years)",
                                                   "needs": "the spineage package", REFERENCE_KEY: reference.as_dict()})
            tags = {"test_mae": f"{metrics.get('mae_test', math.nan):.3f}", "git_commit": metrics["git_commit"],
                    **{f"data_{key}": value for key, value in version_of_data.items()}}
            version = register_model_version(info, MODEL_NAME, tags=tags,
                                             description=f"Spine age {settings.model} (mean-variance) on {list(shape)} radiographs")
            metrics["model_uri"] = f"models:/{MODEL_NAME}/{version.version}"
    reports.mkdir(parents=True, exist_ok=True)
    columns = ["series_id", "subject_id", "modality", "sex", "split", "age", "predicted_age", "baseline_ridge_pixels"]
    write_atomic(reports / PREDICTIONS, lambda p: manifest[columns].to_csv(p, index=False, float_format="%.3f"))
    write_atomic(reports / HISTORY, lambda p: pd.DataFrame(history).to_csv(p, index=False, float_format="%.5g"))
    write_json_atomic(reports / METRICS, metrics)
    return metrics
