"""Acquisition: sites and scanners, and how each modality turns the phantom into pixels.

Sites differ the way real ones do: voxel size, stored orientation, intensity
scale, T2 contrast, noise and bias field (MRI); exposure and noise (X-ray).
The renderers here return arrays and affines; writing files is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spineage.synth.anatomy import SACRUM_LENGTH, SpineAnatomy
from spineage.synth.phantom import rasterize


@dataclass(frozen=True)
class Site:
    """An imaging site with its MRI scanner.

    Args:
        name: site id written to sessions.csv.
        scanner: maker, model and field strength.
        spacing_scale: multiplies the profile's native (slice, AP, SI) spacing.
        axis_codes: how the NIfTI array is stored (the affine always says where it is).
        intensity: stored value of full-scale signal.
        contrast_gamma: signal ** gamma, a scanner's T2 weighting.
        noise: Rician noise SD relative to full scale.
        bias: strength of the receive-coil bias field.
        weight: share of scans.
    """

    name: str
    scanner: str
    spacing_scale: tuple[float, float, float]
    axis_codes: str
    intensity: float
    contrast_gamma: float
    noise: float
    bias: float
    weight: float


SITES: tuple[Site, ...] = (
    Site("site-a", "Siemens Avanto 1.5T", (1.0, 1.0, 1.0), "RAS", 1200.0, 1.0, 0.025, 0.35, 0.35),
    Site("site-b", "GE Signa HDxt 3.0T", (1.0, 0.9, 0.9), "LPS", 3000.0, 0.85, 0.035, 0.55, 0.25),
    Site("site-c", "Philips Ingenia 1.5T", (0.85, 1.1, 1.1), "PSR", 700.0, 1.15, 0.04, 0.45, 0.25),
    Site("site-d", "Siemens Skyra 3.0T", (1.0, 0.95, 0.95), "RAS", 1800.0, 0.95, 0.03, 0.5, 0.15),
)

MRI_FOV_MM = (52.0, 240.0, 840.0)
"""Field of view (left-right slab, anterior-posterior, superior-inferior): skull base to sacrum."""
MRI_TOP_MM = 100.0
"""Top of the field of view above the tip of the dens (the brain is in view)."""
MRI_POSTERIOR_MM = -110.0
"""Posterior edge of the field of view relative to the posterior wall of the C2 body."""


VFA_FULL_SCALE = 2.5
"""Log-attenuation shown as full white in DXA VFA images (a fixed calibration)."""


def site_by_name(name: str) -> Site:
    """The :class:`Site` called ``name``."""
    for site in SITES:
        if site.name == name:
            return site
    raise ValueError(f"Expected a site among {[s.name for s in SITES]}, found {name!r}")


def mri_grid(spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm, RAS, ascending) of the MRI field of view at ``spacing``."""
    axes = []
    starts = (-MRI_FOV_MM[0] / 2, MRI_POSTERIOR_MM, MRI_TOP_MM - MRI_FOV_MM[2])
    for fov, start, step in zip(MRI_FOV_MM, starts, spacing):
        n = max(4, int(round(fov / step)))
        axis = start + step * (np.arange(n) + 0.5)
        if start == starts[0]:
            axis = axis - axis.mean()  # the slab is centred on the midline
        axes.append(axis.astype(np.float32))
    return axes[0], axes[1], axes[2]


def _bias_field(shape: tuple[int, int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field: a posterior spine coil, falling off anteriorly, varying along z."""
    nx, ny, nz = shape
    y = np.linspace(0.0, 1.0, ny, dtype=np.float32)[None, :, None]
    z = np.linspace(0.0, 1.0, nz, dtype=np.float32)[None, None, :]
    x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi)
    log_field = strength * (-0.9 * y + 0.2 * np.sin(2 * np.pi * 1.5 * z + phase) - 0.15 * x**2)
    return np.exp(log_field - log_field.mean())


def acquire_mri(anatomy: SpineAnatomy, site: Site, native_spacing: tuple[float, float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image the phantom with a site's MRI scanner.

    Args:
        anatomy: the spine.
        site: where it is scanned.
        native_spacing: the profile's reference (slice, AP, SI) spacing in mm.
        rng: the scan's noise and bias-field source.

    Returns:
        (image int16, labels uint8, affine 4x4), both arrays in RAS order.
    """
    spacing = tuple(float(s * k) for s, k in zip(native_spacing, site.spacing_scale))
    x, y, z = mri_grid(spacing)
    rendered = rasterize(anatomy, x, y, z, properties=("t2",))
    signal = np.clip(rendered.t2, 0.0, None) ** site.contrast_gamma
    signal *= _bias_field(signal.shape, site.bias, rng)
    # Rician noise: the magnitude of a complex signal with Gaussian noise in both channels.
    real = signal + rng.normal(0.0, site.noise, signal.shape).astype(np.float32)
    imaginary = rng.normal(0.0, site.noise, signal.shape).astype(np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    image = np.clip(np.rint(magnitude * site.intensity), 0, 32767).astype(np.int16)
    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [x[0], y[0], z[0]]
    return image, rendered.labels, affine


def _projection(anatomy: SpineAnatomy, z_top: float, z_bottom: float, y_back: float, y_front: float, shape: tuple[int, int], half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Line integrals along left-right on a (rows=z, cols=y) detector grid: all tissue, and bone alone.

    Bone alone is the attenuation above that of soft tissue, what dual-energy subtraction keeps.
    """
    rows, cols = shape
    z = np.linspace(z_top, z_bottom, rows, dtype=np.float32)
    y = np.linspace(y_back, y_front, cols, dtype=np.float32)
    n_x = 12  # 3 cm apart across the body: the projection is smooth along this axis
    x = np.linspace(-half_width, half_width, n_x, dtype=np.float32)
    rendered = rasterize(anatomy, x, y, z, properties=("mu",))
    step = float(x[1] - x[0])
    path = rendered.mu.sum(axis=0) * step  # (y, z)
    bone = np.clip(rendered.mu - 1.2, 0.0, None).sum(axis=0) * step
    return path.T, bone.T


def _detector(path: np.ndarray, out_shape: tuple[int, int], exposure: float, noise: float, rng: np.random.Generator, calibrated_max: float | None = None) -> np.ndarray:
    """Log-transmission with quantum noise, upsampled to the detector and stored as 12 bits in uint16.

    Args:
        path: line integrals of attenuation on a coarse (rows, cols) grid.
        out_shape: the detector's (rows, cols).
        exposure: attenuation per unit of path.
        noise: SD of electronic noise after the log.
        rng: the noise source.
        calibrated_max: DXA is quantitative: a fixed log-attenuation maps to full scale, so
            bone density shows in the values. Without it, radiograph processing equalises
            large-scale thickness (unsharp masking) and windows each image on its percentiles.
    """
    from scipy.ndimage import gaussian_filter, zoom

    transmitted = np.exp(-path * exposure)
    counts = rng.poisson(transmitted * 4000.0).astype(np.float32) + 1.0
    log_signal = -np.log(counts / 4001.0)  # bright where attenuation is high, as radiographs are shown
    if calibrated_max is None:
        log_signal = log_signal - 0.6 * gaussian_filter(log_signal, sigma=max(path.shape) / 24)
    factors = (out_shape[0] / path.shape[0], out_shape[1] / path.shape[1])
    image = zoom(log_signal, factors, order=1)[: out_shape[0], : out_shape[1]]
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    if calibrated_max is None:
        low, high = np.percentile(image, [0.5, 99.8])
    else:
        low, high = 0.0, calibrated_max
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    return np.rint(scaled * 4095).astype(np.uint16)


def acquire_radiograph(anatomy: SpineAnatomy, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A lateral whole-spine radiograph: portrait, anterior to the right, 12-bit values in uint16."""
    length = anatomy.sacrum_top + SACRUM_LENGTH
    z_top, z_bottom = 60.0, -length - 60.0
    height = z_top - z_bottom
    width = height * shape[1] / shape[0]
    half = (shape[0] // 2, shape[1] // 2)
    path, _ = _projection(anatomy, z_top, z_bottom, -0.42 * width, 0.58 * width, half, 170.0 * anatomy.scale)
    return _detector(path, shape, exposure=0.0045, noise=0.02, rng=rng)


def acquire_vfa(anatomy: SpineAnatomy, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A DXA vertebral fracture assessment image: thoracolumbar (T4 to the sacrum), narrow, bone contrast.

    Dual-energy subtraction removes most soft tissue: what remains is bone above
    the soft-tissue baseline, so bone density shows directly.
    """
    body_tops, _ = anatomy.segment_bounds()
    z_top = -float(body_tops[anatomy.levels.index("T4")]) + 15.0
    z_bottom = -anatomy.sacrum_top - 25.0
    height = z_top - z_bottom
    width = height * shape[1] / shape[0]
    half = (shape[0] // 2, shape[1] // 2)
    path, bone = _projection(anatomy, z_top, z_bottom, -0.45 * width, 0.55 * width, half, 160.0 * anatomy.scale)
    residual_soft_tissue = 0.03 * path
    return _detector(bone + residual_soft_tissue, shape, exposure=0.01, noise=0.01, rng=rng, calibrated_max=VFA_FULL_SCALE)
