"""SynthSeg-style training images: a new MRI contrast drawn from a label map for every training crop.

A network trained on one scanner's contrast learns that contrast, not the
spine's shape (the phantom-trained U-Net painted half the abdomen of a real
lumbar scan as vertebra). Billot et al. (SynthSeg, Medical Image Analysis 2023)
train instead on images synthesised on the fly from label maps: each tissue
gets a random intensity in every draw, and the image is deformed, shaded by a
bias field, blurred to a random resolution and made noisy, so the only thing
that stays the same from draw to draw is the anatomy.

The pieces:

* :func:`tissue_map` turns a scan's spine classes into finer *tissues*, the
  labels the intensities are drawn for. Like SynthSeg's extra-cerebral labels,
  the tissues outside the spine come from clustering the phantom scan's own
  intensities (air, fat, muscle, organs, brain fall in different clusters),
  and each spine class is split the same way (vertebra: cortex and marrow;
  disc: annulus and nucleus), so the synthetic images have structure
  everywhere, not only in the spine. :func:`tissue_classes` maps tissues back
  to the spine classes, so a class map never changes when intensities do.
* :class:`LabelToImage` / :class:`LabelToImaged` (array and dictionary twins):
  a random mean and spread per tissue, the one step MONAI has no transform for.
* :func:`synthesis_transform`: the whole chain, MONAI transforms for the rest
  (``RandAffined`` and ``RandGridDistortiond`` for rotation, scaling and a smooth deformation, ``RandFlipd``,
  ``RandBiasFieldd``, ``RandGaussianSmoothd`` with separate widths per axis for
  slice thickness and in-plane resolution, ``RandSimulateLowResolutiond``,
  ``RandAdjustContrastd``, ``RandRicianNoised``) and one of ours for the last step,
  :class:`RandFieldOfViewd`: a smaller field of view on the canal, cervical or lumbar only).

Tissue code 0 means *outside the field of view* (padding): it synthesises to
the darkest value, as the sliding window pads a real scan.

Example:
    >>> import numpy as np
    >>> classes = np.zeros((4, 8, 8), np.uint8); classes[:, 2:6, 2:6] = 1
    >>> image = classes * 0.8 + np.linspace(0, 0.2, 8)[None, None, :]
    >>> tissues = tissue_map(image, classes, background_tissues=2, spine_tissues=(1, 1, 1, 1))
    >>> tissue_classes(background_tissues=2, spine_tissues=(1, 1, 1, 1)).tolist()
    [0, 0, 0, 1, 2, 3, 4]
    >>> bool((tissue_classes(2, (1, 1, 1, 1))[tissues] == classes).all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.transforms import Randomizable

N_SPINE_CLASSES = 4
"""Vertebra, disc, canal CSF, cord: the foreground classes of the segmenter (indices 1-4)."""


@dataclass(frozen=True)
class SynthesisSettings:
    """How far each random draw of the synthesis may go (the ``segmentation.synthesis_*`` settings).

    Args:
        background_tissues: intensity clusters of the phantom scan outside the spine, each
            a tissue with its own random intensity.
        spine_tissues: tissues per spine class (vertebra, disc, canal CSF, cord).
        real_image_fraction: share of crops that keep the phantom's own rendered image
            (augmented the same way) instead of a synthesised one.
        rotation_deg: largest rotation about each axis.
        scaling: largest relative change of size (0.15: 85 %-115 %).
        elastic: largest relative stretch of a grid cell by the smooth deformation (0.15: 85 %-115 %).
        bias: largest coefficient of the polynomial log bias field (MONAI's ``RandBiasField``: its
            20 cubic terms add up, so 0.1 already darkens a corner by up to e).
        max_blur_voxels: largest Gaussian blur width per axis (working-grid voxels).
        noise: largest Rician noise SD (intensities scaled to 0-1).
        texture: largest amplitude of the smooth random shading within each tissue.
        cord_growth_probability: share of crops whose cord grows by a voxel into the canal
            (:class:`RandGrowTissued`).
        field_of_view_probability: share of crops cut to a smaller field of view on the canal (:class:`RandFieldOfViewd`).
    """

    background_tissues: int = 8
    spine_tissues: tuple[int, int, int, int] = (2, 2, 1, 1)
    real_image_fraction: float = 0.35
    rotation_deg: float = 15.0
    scaling: float = 0.15
    elastic: float = 0.15
    bias: float = 0.1
    max_blur_voxels: float = 1.2
    noise: float = 0.06
    texture: float = 0.15
    cord_growth_probability: float = 0.0
    field_of_view_probability: float = 0.5


# --------------------------------------------------------------------------- tissues


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 15) -> np.ndarray:
    """Sorted centres of a 1-D k-means of ``values`` (started at evenly spaced quantiles)."""
    centres = np.quantile(values, (np.arange(k) + 0.5) / k).astype(np.float64)
    for _ in range(iterations):
        nearest = np.abs(values[:, None] - centres[None, :]).argmin(1)
        for j in range(k):
            chosen = values[nearest == j]
            if chosen.size:
                centres[j] = chosen.mean()
    return np.sort(centres)


def _clusters(values: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster index (0..k-1, darkest first) of each value, from a 1-D k-means on a sample."""
    if k <= 1 or values.size == 0:
        return np.zeros(values.shape, dtype=np.int64)
    sample = values if values.size <= 20_000 else values[rng.choice(values.size, 20_000, replace=False)]
    centres = _kmeans_1d(sample.astype(np.float64), k)
    edges = (centres[1:] + centres[:-1]) / 2
    return np.searchsorted(edges, values)


def tissue_classes(background_tissues: int, spine_tissues: Sequence[int]) -> np.ndarray:
    """The spine class (0 background, 1-4) of each tissue code of :func:`tissue_map`, as a lookup array.

    Code 0 (outside the field of view) and codes 1..``background_tissues`` are
    background; then come the tissues of vertebra, disc, canal CSF and cord in turn.
    """
    if len(spine_tissues) != N_SPINE_CLASSES:
        raise ValueError(f"Expected tissues for {N_SPINE_CLASSES} spine classes, found {list(spine_tissues)}")
    lookup = [0] * (1 + background_tissues)
    for index, count in enumerate(spine_tissues, start=1):
        lookup += [index] * int(count)
    return np.asarray(lookup, dtype=np.uint8)


def tissue_map(
    image: np.ndarray,
    classes: np.ndarray,
    background_tissues: int = 8,
    spine_tissues: Sequence[int] = (2, 2, 1, 1),
    seed: int = 0,
) -> np.ndarray:
    """Split a scan's class map into tissues by clustering its intensities within each class.

    Args:
        image: the scan's intensities (any scale), the same grid as ``classes``.
        classes: class indices (0 background, 1 vertebra, 2 disc, 3 canal CSF, 4 cord).
        background_tissues: clusters of the background.
        spine_tissues: clusters of each spine class.
        seed: the sample the clusters are fitted on.

    Returns:
        uint8 tissue codes: 1..``background_tissues`` background (darkest first), then
        each spine class's tissues (see :func:`tissue_classes`). Never 0.
    """
    from scipy.ndimage import gaussian_filter

    classes = np.asarray(classes)
    if classes.shape != np.shape(image):
        raise ValueError(f"Expected an image and a class map of one shape, found {np.shape(image)} and {classes.shape}")
    lookup = tissue_classes(background_tissues, spine_tissues)
    if lookup.size > 255:
        raise ValueError(f"Expected at most 255 tissues, found {lookup.size - 1}")
    # Smoothed first: the clusters should follow tissues, not the noise of one voxel.
    smooth = gaussian_filter(np.asarray(image, dtype=np.float32), sigma=0.7)
    rng = np.random.default_rng(seed)
    tissues = np.zeros(classes.shape, dtype=np.uint8)
    for index in range(N_SPINE_CLASSES + 1):
        inside = classes == index
        if not inside.any():
            continue
        first = int(np.flatnonzero(lookup == index)[0 if index else 1])
        count = background_tissues if index == 0 else int(spine_tissues[index - 1])
        tissues[inside] = first + _clusters(smooth[inside], count, rng)
    return tissues


# --------------------------------------------------------------------------- label to image


class LabelToImage(Randomizable):
    """Draw an image from a tissue map: a random mean and spread for every tissue, Gaussian within it.

    The array form; :class:`LabelToImaged` is the dictionary form. Code 0 (outside the
    field of view) is always 0; the other tissues' means are drawn uniformly from
    [0, 1] and their SDs from [0, ``max_sd``], anew at every call (SynthSeg's Gaussian
    mixture with uniform priors), so no contrast is learnt as the spine's.

    Args:
        n_tissues: tissue codes the maps may hold (the largest code + 1).
        max_sd: largest within-tissue SD.
        texture: largest amplitude of a smooth random shading within each tissue (0: flat tissues).

    Example:
        >>> import numpy as np
        >>> draw = LabelToImage(n_tissues=3, max_sd=0.0)
        >>> draw.set_random_state(0)  # doctest: +ELLIPSIS
        <...LabelToImage object at ...>
        >>> image = draw(np.array([[[0, 1, 2, 2]]]))
        >>> float(image[0, 0, 0]), bool(image[0, 0, 2] == image[0, 0, 3])
        (0.0, True)
    """

    def __init__(self, n_tissues: int, max_sd: float = 0.05, texture: float = 0.0) -> None:
        self.n_tissues = int(n_tissues)
        self.max_sd = float(max_sd)
        self.texture = float(texture)

    def _smooth_field(self, shape: tuple[int, ...]) -> np.ndarray:
        """A smooth random field in about [-1, 1]: coarse Gaussian noise (a cell per ~8 voxels), trilinear upsampled."""
        import torch
        import torch.nn.functional as F

        spatial = shape[-3:]
        coarse = self.R.standard_normal([max(2, n // 8) for n in spatial]).astype(np.float32)
        field = F.interpolate(torch.from_numpy(coarse)[None, None], size=tuple(spatial), mode="trilinear", align_corners=False)
        return np.broadcast_to(field[0, 0].numpy(), shape) / 2.0

    def randomize(self, data: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """A new (means, SDs) per tissue; code 0 stays 0."""
        means = self.R.uniform(0.0, 1.0, self.n_tissues).astype(np.float32)
        sds = self.R.uniform(0.0, self.max_sd, self.n_tissues).astype(np.float32)
        means[0], sds[0] = 0.0, 0.0
        return means, sds

    def __call__(self, tissues: Any) -> Any:
        """The image (float32, the shape and array type of ``tissues``) for one new draw."""
        import torch

        means, sds = self.randomize()
        as_tensor = isinstance(tissues, torch.Tensor)
        codes = np.asarray(tissues.detach().cpu() if as_tensor else tissues).astype(np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= self.n_tissues):
            raise ValueError(f"Expected tissue codes in 0..{self.n_tissues - 1}, found {codes.min()}..{codes.max()}")
        noise = self.R.standard_normal(codes.shape).astype(np.float32)
        image = means[codes] + sds[codes] * noise
        if self.texture > 0 and codes.ndim >= 3:
            # Real tissue is not flat: each tissue shades by a smooth random field of its own strength,
            # so blobs of intensity outside the spine are seen often and never mean "spine".
            image += (self.R.uniform(0.0, self.texture, self.n_tissues).astype(np.float32)[codes]) * self._smooth_field(codes.shape)
        return torch.from_numpy(image) if as_tensor else image


class LabelToImaged(Randomizable):
    """Dictionary form of :class:`LabelToImage`: reads ``tissue_key``, writes ``image_key``.

    When ``keep_fraction`` > 0 that share of calls leaves an existing ``image_key``
    as it is (the phantom's own rendering), so a run can mix real and synthetic contrast.
    """

    def __init__(
        self, tissue_key: str, image_key: str, n_tissues: int, max_sd: float = 0.05, keep_fraction: float = 0.0, texture: float = 0.0
    ) -> None:
        self.tissue_key, self.image_key = tissue_key, image_key
        self.draw = LabelToImage(n_tissues, max_sd, texture)
        self.keep_fraction = float(keep_fraction)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "LabelToImaged":
        """Seed this transform's draws and those of its :class:`LabelToImage` (MONAI's ``Randomizable``)."""
        super().set_random_state(seed, state)
        self.draw.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> bool:
        """Whether this call keeps the existing image."""
        return bool(self.R.uniform() < self.keep_fraction)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        keep = self.randomize() and self.image_key in out
        if not keep:
            out[self.image_key] = self.draw(out[self.tissue_key])
        return out


class RandGrowTissued(Randomizable):
    """Now and then grow one set of tissues by a voxel across the slice plane into a neighbouring set.

    The phantom's cord fills about half of its canal's depth; in real necks it fills
    two thirds or more, leaving a thin rim of CSF. Growing the cord into the canal (in
    X and Y, never along the spine) varies that ratio. A phantom image in ``image_key``
    no longer matches the grown labels, so it is dropped and the image is synthesised.

    Args:
        tissue_key: the tissue map (1, X, Y, Z).
        grow: tissue codes that grow.
        into: tissue codes they may take over.
        prob: share of calls that grow.
        image_key: the key of an image drawn from the old labels, removed when growing.
    """

    def __init__(self, tissue_key: str, grow: Sequence[int], into: Sequence[int], prob: float = 0.5, image_key: str = "image") -> None:
        self.tissue_key, self.image_key = tissue_key, image_key
        self.grow, self.into, self.prob = tuple(int(g) for g in grow), tuple(int(i) for i in into), float(prob)

    def randomize(self, data: Any = None) -> bool:
        """Whether this call grows."""
        return bool(self.R.uniform() < self.prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch
        import torch.nn.functional as F

        out = dict(data)
        if not self.randomize() or not self.grow:
            return out
        tissues = torch.as_tensor(out[self.tissue_key])
        growing = torch.isin(tissues, torch.tensor(self.grow, dtype=tissues.dtype))
        if not growing.any():
            return out
        grown = F.max_pool3d(growing[None].float(), kernel_size=(3, 3, 1), stride=1, padding=(1, 1, 0))[0] > 0
        taken = grown & torch.isin(tissues, torch.tensor(self.into, dtype=tissues.dtype))
        fill = torch.full_like(tissues, self.grow[0])
        out[self.tissue_key] = torch.where(taken, fill, tissues)
        out.pop(self.image_key, None)
        return out


class TissueToClassd:
    """Set ``class_key`` to the spine class of every voxel of ``tissue_key`` (after the deformation moved it)."""

    def __init__(self, tissue_key: str, class_key: str, lookup: np.ndarray) -> None:
        self.tissue_key, self.class_key, self.lookup = tissue_key, class_key, np.asarray(lookup)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        out = dict(data)
        tissues = out[self.tissue_key]
        codes = np.asarray(tissues.detach().cpu() if isinstance(tissues, torch.Tensor) else tissues).astype(np.int64)
        out[self.class_key] = torch.from_numpy(self.lookup[codes].astype(np.int64))
        return out


class ScaleToUnitd:
    """Map the 0.5 and 99.5 intensity percentiles of ``keys`` to 0 and 1, clipped to [-0.5, 1.5].

    The same scaling :func:`spineage.imaging.segmentation.normalise_intensity` applies to a
    scan before the network sees it.
    """

    def __init__(self, keys: Sequence[str], percentiles: Sequence[float] = (0.5, 99.5)) -> None:
        self.keys, self.percentiles = tuple(keys), tuple(percentiles)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        out = dict(data)
        for key in self.keys:
            image = torch.as_tensor(out[key]).float()
            # Every 7th voxel is plenty for two percentiles and 5x cheaper than all of them.
            sample = image.flatten()[:: 7 if image.numel() > 20_000 else 1]
            low, high = torch.quantile(sample, torch.tensor(self.percentiles) / 100.0)
            scale = (high - low) if high > low else torch.tensor(1.0)
            out[key] = torch.clamp((image - low) / scale, -0.5, 1.5)
        return out


class RandFieldOfViewd(Randomizable):
    """Now and then keep only a smaller box of the crop, centred near the spinal canal: a cervical or lumbar scan.

    Real small fields of view are planned on the spine, so the box holds a voxel of
    the canal (a class in ``anchor_classes``, picked at random) at a random place
    in its middle half; without one in the crop the box lies anywhere. Outside the
    box image and label are ``fill_value`` (nothing seen, nothing labelled), as the
    sliding window pads a small scan. MONAI's ``RandCoarseDropoutd`` (keeping one
    box) places it uniformly, which seldom puts a small box on the canal.

    Args:
        keys: the image and label keys, cut alike.
        label_key: the class map the anchor is picked from.
        smallest: the smallest box (voxels per axis); the largest is the whole crop.
        anchor_classes: class indices the box is centred near (canal CSF, cord).
        prob: share of calls that cut.
        fill_value: what lies outside the box.
    """

    def __init__(
        self, keys: Sequence[str], label_key: str, smallest: Sequence[int], anchor_classes: Sequence[int] = (3, 4),
        prob: float = 0.2, fill_value: float = 0.0,
    ) -> None:
        self.keys, self.label_key = tuple(keys), label_key
        self.smallest, self.anchor_classes = tuple(int(s) for s in smallest), tuple(int(c) for c in anchor_classes)
        self.prob, self.fill_value = float(prob), float(fill_value)

    def box(self, label: np.ndarray) -> tuple[slice, ...] | None:
        """The box to keep (a slice per spatial axis of the (1, X, Y, Z) ``label``), or None to keep everything."""
        if self.R.uniform() >= self.prob:
            return None
        shape = label.shape[1:]
        sizes = [int(self.R.randint(min(s, n), n + 1)) for s, n in zip(self.smallest, shape)]
        anchors = np.argwhere(np.isin(label[0], self.anchor_classes))
        if len(anchors):
            centre = anchors[self.R.randint(len(anchors))]
            starts = [int(c - size * self.R.uniform(0.25, 0.75)) for c, size in zip(centre, sizes)]
        else:
            starts = [int(self.R.randint(0, n - size + 1)) for n, size in zip(shape, sizes)]
        starts = [min(max(0, start), n - size) for start, n, size in zip(starts, shape, sizes)]
        return tuple(slice(start, start + size) for start, size in zip(starts, sizes))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        out = dict(data)
        label = out[self.label_key]
        box = self.box(np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label))
        if box is None:
            return out
        for key in self.keys:
            value = torch.as_tensor(out[key])
            kept = torch.full_like(value, self.fill_value)
            kept[(slice(None), *box)] = value[(slice(None), *box)]
            out[key] = kept
        return out


# --------------------------------------------------------------------------- the chain


def deformation_transform(patch_size: Sequence[int], settings: SynthesisSettings = SynthesisSettings()) -> Any:
    """The spatial half of the synthesis: one random deformation applied to ``tissue`` and ``image`` alike.

    A rotation and scaling about the crop's centre that also cuts out ``patch_size``
    (``RandAffined``), a smooth non-linear deformation (``RandGridDistortiond``; MONAI's
    ``Rand3DElasticd`` does the same job about ten times slower on a CPU, where the
    pipeline trains) and a left-right mirror (``RandFlipd``, the one flip that keeps the
    anatomy plausible). Tissues are resampled by nearest neighbour, the image (when the
    dictionary holds one) bilinearly; outside the crop both become 0.
    """
    from monai.transforms import Compose, RandAffined, RandFlipd, RandGridDistortiond

    angle = float(np.radians(settings.rotation_deg))
    keys = ["tissue", "image"]
    modes = ("nearest", "bilinear")
    return Compose([
        RandAffined(
            keys=keys, prob=1.0, rotate_range=(angle, angle / 2, angle / 2), scale_range=(settings.scaling,) * 3,
            spatial_size=tuple(int(p) for p in patch_size), mode=modes, padding_mode="zeros", allow_missing_keys=True,
        ),
        RandGridDistortiond(
            keys=keys, num_cells=4, prob=0.8, distort_limit=(-settings.elastic, settings.elastic),
            mode=modes, padding_mode="zeros", allow_missing_keys=True,
        ),
        RandFlipd(keys=keys, spatial_axis=0, prob=0.5, allow_missing_keys=True),
    ])


def synthesis_transform(
    patch_size: Sequence[int], n_tissues: int, lookup: np.ndarray, settings: SynthesisSettings = SynthesisSettings()
) -> Any:
    """The MONAI ``Compose`` that turns a tissue crop into a training pair.

    Input: a dictionary with ``tissue`` (1, X, Y, Z) tissue codes of a crop somewhat larger
    than ``patch_size`` and, optionally, ``image`` (1, X, Y, Z), the phantom's own
    normalised rendering of the same crop. Output: ``image`` (1, *patch_size) float32
    scaled as the network's input, and ``label`` (1, *patch_size) class indices.

    Order (SynthSeg's): now and then widen the cord (:class:`RandGrowTissued`), deform the tissues (and the phantom image) together
    (:func:`deformation_transform`), draw the image from the tissues, then what a scanner
    adds - bias field, blur per axis (slice thickness, in-plane resolution), lower
    resolution, a contrast curve, noise - and last a smaller field of view.

    Args:
        patch_size: the network's crop (voxels).
        n_tissues: tissue codes the maps hold (``len(lookup)``).
        lookup: :func:`tissue_classes`'s table.
        settings: the ranges of every random draw.
    """
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandBiasFieldd,
        RandGaussianSmoothd,
        RandRicianNoised,
        RandSimulateLowResolutiond,
    )

    blur = (0.0, float(settings.max_blur_voxels))
    patch = tuple(int(p) for p in patch_size)
    # Down to 15 % of the patch along the spine and front to back (a cervical crop), 40 % across (a thin slab).
    smallest = tuple(max(4, int(round(p * share))) for p, share in zip(patch, (0.4, 0.15, 0.15)))
    cord, canal = (np.flatnonzero(lookup == index).tolist() for index in (4, 3))
    return Compose([
        RandGrowTissued("tissue", grow=cord, into=canal, prob=settings.cord_growth_probability),
        *deformation_transform(patch, settings).transforms,
        TissueToClassd("tissue", "label", lookup),
        LabelToImaged("tissue", "image", n_tissues, keep_fraction=settings.real_image_fraction, texture=settings.texture),
        RandBiasFieldd(keys="image", degree=3, coeff_range=(0.0, float(settings.bias)), prob=0.9),
        RandGaussianSmoothd(keys="image", sigma_x=blur, sigma_y=blur, sigma_z=blur, prob=0.7),
        RandSimulateLowResolutiond(keys="image", zoom_range=(0.5, 1.0), prob=0.25),
        ScaleToUnitd(["image"]),
        RandAdjustContrastd(keys="image", gamma=(0.6, 1.6), prob=0.5),
        RandRicianNoised(keys="image", std=float(settings.noise), prob=0.7, relative=False, channel_wise=True, sample_std=True),
        ScaleToUnitd(["image"]),
        # A smaller field of view (a cervical or lumbar crop) on the canal: outside it nothing is seen or labelled.
        RandFieldOfViewd(["image", "label"], "label", smallest, prob=float(settings.field_of_view_probability)),
    ])
