"""Rasterise a :class:`~spineage.synth.anatomy.SpineAnatomy` and its body onto a voxel grid.

One pass paints every tissue with two physical properties at once, its T2
signal (for MRI) and its X-ray attenuation (for radiographs and DXA), plus
the label map. Structures are painted from the outside in, each with a soft
edge one voxel wide so that partial volume looks like partial volume.

The world frame is RAS millimetres: +x to the subject's right, +y anterior,
+z superior; the tip of the dens sits at the origin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import expit

from spineage.labels import CANAL_LABEL, SACRUM_LABEL, disc_label, vertebra_label
from spineage.synth.anatomy import SACRUM_LENGTH, SpineAnatomy

# T2 signal (0-1, relative) and X-ray attenuation (relative to water) of each tissue.
T2 = {
    "fat": 0.78, "muscle": 0.2, "soft": 0.3, "lung": 0.03, "blood": 0.06, "heart": 0.16,
    "liver": 0.2, "bowel": 0.4, "air": 0.0, "brain": 0.42, "csf": 1.0, "cord": 0.42,
    "cortex": 0.05, "annulus": 0.17, "nucleus": 0.92, "edema": 0.72, "cyst": 1.0,
}
MARROW_T2_LEAN = 0.25
"""T2 signal of marrow without fat (relative to CSF = 1)."""

MARROW_T2_PER_FAT = 0.6
"""Rise of marrow T2 signal from no fat to all fat."""

MARROW_TEXTURE = 0.03
"""Relative amplitude of the smooth trabecular texture of the marrow signal."""

MU = {
    "fat": 0.9, "muscle": 1.05, "soft": 1.0, "lung": 0.25, "blood": 1.05, "heart": 1.05,
    "liver": 1.06, "bowel": 0.8, "air": 0.0, "brain": 1.03, "csf": 1.0, "cord": 1.03,
    "cortex": 5.0, "marrow": 2.3, "annulus": 1.15, "nucleus": 1.1, "edema": 1.0, "cyst": 1.0,
}


@dataclass
class Rendered:
    """What the rasteriser paints: T2 signal, attenuation and labels, shaped (nx, ny, nz)."""

    t2: np.ndarray
    mu: np.ndarray
    labels: np.ndarray


def _max(arrays: list) -> np.ndarray:
    """Elementwise maximum of broadcastable arrays (the intersection of regions)."""
    return functools.reduce(np.maximum, arrays)


def _min(arrays: list) -> np.ndarray:
    """Elementwise minimum of broadcastable arrays (the union of regions)."""
    return functools.reduce(np.minimum, arrays)


def _soft(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """Membership from a signed distance (negative inside), with a linear edge ``softness`` wide."""
    return np.clip(0.5 - signed_distance / softness, 0.0, 1.0)


def _theta_profile(anatomy: SpineAnatomy, s: np.ndarray) -> np.ndarray:
    """Tangent angle of the posterior body line (radians, positive heading anterior going down)."""
    body_tops, disc_tops = anatomy.segment_bounds()
    levels = anatomy.levels
    first_t = levels.index("T1")
    first_l = next(i for i, level in enumerate(levels) if level.startswith("L"))
    sacrum = anatomy.sacrum_top
    regions = [
        (body_tops[0], body_tops[first_t], -np.radians(anatomy.cervical_lordosis_deg)),
        (body_tops[first_t], body_tops[first_l], np.radians(anatomy.thoracic_kyphosis_deg)),
        (body_tops[first_l], sacrum, -np.radians(anatomy.lumbar_lordosis_deg)),
        (sacrum, sacrum + SACRUM_LENGTH, np.radians(55.0)),
    ]
    curvature = np.zeros_like(s)
    for start, stop, angle in regions:
        length = stop - start
        inside = (s >= start) & (s < stop)
        curvature[inside] = angle * np.pi / (2 * length) * np.sin(np.pi * (s[inside] - start) / length)
    ds = s[1] - s[0]
    theta = np.cumsum(curvature) * ds
    return theta + np.radians(anatomy.cervical_lordosis_deg) / 2


def _resample_2d(values: np.ndarray, y0: np.ndarray, z0: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a (y0, z0) grid onto (y, z) (axes may ascend or descend)."""
    from scipy.interpolate import RegularGridInterpolator

    flip_y, flip_z = y0[0] > y0[-1], z0[0] > z0[-1]
    grid_y, grid_z, table = y0, z0, values
    if flip_y:
        grid_y, table = grid_y[::-1], table[::-1]
    if flip_z:
        grid_z, table = grid_z[::-1], table[:, ::-1]
    interpolator = RegularGridInterpolator((grid_y, grid_z), table, bounds_error=False, fill_value=None)
    yy, zz = np.meshgrid(y, z, indexing="ij")
    return interpolator((yy, zz)).astype(np.float32)


ALL = slice(None)
Box = tuple[slice, slice]
"""A (y, z) index box of the grid; painting covers every x of it."""
SPINE_BAND_MM = (100.0, 80.0)
"""How far behind and in front of the posterior body wall spine structures can reach."""


class SpineFrame:
    """Maps world voxels to the spine frame (s, d, x) of one anatomy on one grid.

    Args:
        anatomy: the spine.
        x, y, z: world coordinates (mm) of the grid's voxel centres along each axis.
    """

    def __init__(self, anatomy: SpineAnatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        self.anatomy = anatomy
        self.x, self.y, self.z = x, y, z
        s = np.arange(-150.0, anatomy.sacrum_top + SACRUM_LENGTH + 60.0, 0.5)
        theta = _theta_profile(anatomy, s)
        dy = np.sin(theta) * 0.5
        dz = -np.cos(theta) * 0.5
        cy, cz = np.cumsum(dy), np.cumsum(dz)
        origin = np.searchsorted(s, 0.0)
        cy, cz = cy - cy[origin], cz - cz[origin]
        # Stand the spine up: the dens above the top of the sacrum, as in a balanced posture.
        end = np.searchsorted(s, anatomy.sacrum_top)
        tilt = np.arctan2(cy[end], -cz[end])
        cos_t, sin_t = np.cos(tilt), np.sin(tilt)
        cy, cz = cy * cos_t + cz * sin_t, -cy * sin_t + cz * cos_t
        theta = theta - tilt
        self.centre_s, self.centre_y, self.centre_z = s, cy, cz
        # Nearest centre-line point of every (y, z) pixel, found on a grid twice as coarse
        # and interpolated: s and d vary smoothly near the spine, and it is 4x less work.
        coarse_y, coarse_z = y[::2], z[::2]
        if coarse_y[-1] != y[-1]:
            coarse_y = np.append(coarse_y, y[-1])
        if coarse_z[-1] != z[-1]:
            coarse_z = np.append(coarse_z, z[-1])
        yy, zz = np.meshgrid(coarse_y, coarse_z, indexing="ij")
        _, nearest = cKDTree(np.column_stack([cy, cz])).query(np.column_stack([yy.ravel(), zz.ravel()]))
        nearest = nearest.reshape(yy.shape)
        normal_y, normal_z = np.cos(theta[nearest]), np.sin(theta[nearest])
        coarse_s = s[nearest]
        coarse_d = (yy - cy[nearest]) * normal_y + (zz - cz[nearest]) * normal_z
        self.S = _resample_2d(coarse_s, coarse_y, coarse_z, y, z)
        self.D = _resample_2d(coarse_d, coarse_y, coarse_z, y, z)
        # Spondylolisthesis: everything above the slipped level moves forward (smoothly over the disc).
        for vertebra in anatomy.vertebrae:
            if vertebra.listhesis:
                below = anatomy.level_centre(vertebra.level, disc=True)
                self.D -= (vertebra.listhesis * expit((below - self.S) / 1.5)).astype(np.float32)
        band = np.abs(self.D) < 160
        self.row_smin = np.where(band, self.S, np.inf).min(axis=0)
        self.row_smax = np.where(band, self.S, -np.inf).max(axis=0)
        order = np.argsort(cz)
        self._z_sorted, self._y_at_z = cz[order], cy[order]

    def spine_y_at(self, z: np.ndarray) -> np.ndarray:
        """World y of the posterior body line at height z (extrapolated flat beyond the ends)."""
        return np.interp(z, self._z_sorted, self._y_at_z)

    def rows(self, s0: float, s1: float, d0: float = -SPINE_BAND_MM[0], d1: float = SPINE_BAND_MM[1]) -> Box:
        """The (y, z) box holding every voxel with s in [s0, s1] and d in [d0, d1].

        Painting a structure only inside its own box saves most of the work.
        """
        hit = np.nonzero((self.row_smax >= s0) & (self.row_smin <= s1))[0]
        if hit.size == 0:
            return (slice(0, 0), slice(0, 0))
        zs = slice(int(hit.min()), int(hit.max()) + 1)
        inside_s = (self.S[:, zs] >= s0) & (self.S[:, zs] <= s1)
        band = np.nonzero((inside_s & (self.D[:, zs] > d0) & (self.D[:, zs] < d1)).any(axis=1))[0]
        if band.size == 0:
            return (slice(0, 0), zs)
        return (slice(int(band.min()), int(band.max()) + 1), zs)

    def local(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spine-frame coordinates (S, D, X) of a box, broadcastable to (nx, ny_box, nz_box)."""
        S = self.S[None, box[0], box[1]]
        D = self.D[None, box[0], box[1]]
        X = self.x[:, None, None].astype(np.float32)
        anatomy = self.anatomy
        if anatomy.scoliosis_mm:
            X = X - anatomy.scoliosis_mm * np.exp(-(((S - anatomy.scoliosis_apex) / 110.0) ** 2))
        return S, D, X


class Painter:
    """Accumulates T2, attenuation and labels; paints soft-edged structures in order."""

    def __init__(self, shape: tuple[int, int, int], softness: float, properties: tuple[str, ...] = ("t2", "mu")) -> None:
        self.t2 = np.zeros(shape, np.float32)
        self.mu = np.zeros(shape, np.float32)
        self.properties = properties
        self.labels = np.zeros(shape, np.uint8)
        self.softness = softness

    def paint(self, box: Box, membership: np.ndarray, t2: float | np.ndarray, mu: float | np.ndarray, label: int | None = None) -> None:
        """Blend a tissue into the (y, z) ``box`` where ``membership`` (0-1) says it is."""
        index = (ALL,) + tuple(box)
        shape = self.t2[index].shape
        m = np.broadcast_to(membership, shape)
        for name, target, value in (("t2", self.t2, t2), ("mu", self.mu, mu)):
            if name not in self.properties:
                continue
            view = target[index]
            change = np.subtract(value, view, dtype=np.float32)
            change *= m
            view += change
        if label is not None:
            self.labels[index][m > 0.5] = label

    def region(self, box: Box, signed_distance: np.ndarray) -> np.ndarray:
        """Soft membership of a region from its signed distance."""
        return _soft(signed_distance, self.softness)


def _superellipse(d: np.ndarray, x: np.ndarray, dc: float, half_d: float, half_w: float, power: float = 4.0) -> np.ndarray:
    """Approximate signed distance (mm) to a rounded rectangle in the (d, x) plane."""
    r = (np.abs((d - dc) / half_d) ** power + np.abs(x / half_w) ** power) ** (1.0 / power)
    return (r - 1.0) * np.minimum(half_d, half_w)


def _ellipsoid(s: np.ndarray, d: np.ndarray, x: np.ndarray, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
    r = np.sqrt(((s - centre[0]) / radii[0]) ** 2 + ((d - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2)
    return (r - 1.0) * min(radii)


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """Low-frequency noise, roughly in [-1, 1], for tissue texture.

    A sum of two products of smooth 1-D profiles: separable, so it costs one
    multiply-add per voxel instead of a 3-D interpolation.
    """
    total = np.zeros(shape, np.float32)
    for _ in range(2):
        term = np.ones(shape, np.float32)
        for axis, n in enumerate(shape):
            knots = rng.uniform(-1.0, 1.0, size=max(2, min(cells, n)))
            profile = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots).astype(np.float32)
            term = term * profile.reshape([-1 if a == axis else 1 for a in range(len(shape))])
        total += term
    return total


def rasterize(
    anatomy: SpineAnatomy,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    properties: tuple[str, ...] = ("t2", "mu"),
) -> Rendered:
    """Paint the phantom (body and spine) on the grid given by world coordinates x, y, z (mm).

    Args:
        anatomy: the spine to draw.
        x, y, z: voxel-centre coordinates (mm, RAS) along each axis.
        properties: which of "t2" (MRI signal) and "mu" (X-ray attenuation) to paint;
            the other stays zero, which halves the work for one modality.
    """
    frame = SpineFrame(anatomy, x, y, z)
    spacing = [float(abs(a[1] - a[0])) if len(a) > 1 else 4.0 for a in (x, y, z)]
    painter = Painter((len(x), len(y), len(z)), softness=float(np.mean(spacing[1:])), properties=properties)
    rng = np.random.default_rng(anatomy.texture_seed)
    _paint_body(painter, frame, rng)
    _paint_spine(painter, frame, rng)
    return Rendered(painter.t2, painter.mu, painter.labels)


def _paint_body(painter: Painter, frame: SpineFrame, rng: np.random.Generator) -> None:
    """Head, neck and torso: skin fat, muscle, organs; none of it is spine, so masking matters."""
    anatomy = frame.anatomy
    sc = anatomy.scale
    everything = (ALL, slice(0, len(frame.z)))
    X = frame.x[:, None, None].astype(np.float32)
    Y = frame.y[None, :, None].astype(np.float32)
    Z = frame.z[None, None, :].astype(np.float32)
    spine_y = frame.spine_y_at(frame.z)[None, None, :].astype(np.float32)
    sacrum_end = -(anatomy.sacrum_top + SACRUM_LENGTH) * 0.93
    body_tops, _ = anatomy.segment_bounds()
    z_t1 = -body_tops[anatomy.levels.index("T1")] * 0.98
    z_l1 = -body_tops[next(i for i, lv in enumerate(anatomy.levels) if lv.startswith("L"))] * 0.96

    # Anterior and posterior skin lines relative to the spine, by height.
    zs = np.array([60.0, 0.0, z_t1 + 20, z_t1 - 40, z_l1, sacrum_end, sacrum_end - 200])
    anterior = np.array([150.0, 70.0, 75.0, 165.0, 170.0, 150.0, 150.0]) * sc
    half_width = np.array([80.0, 60.0, 65.0, 160.0, 155.0, 170.0, 170.0]) * sc
    posterior = np.array([40.0, 55.0, 60.0, 55.0, 65.0, 60.0, 60.0]) * sc + anatomy.fat_mm
    order = np.argsort(zs)
    zf = frame.z
    front = (spine_y + np.interp(zf, zs[order], anterior[order])[None, None, :]).astype(np.float32)
    back = (spine_y - np.interp(zf, zs[order], posterior[order])[None, None, :]).astype(np.float32)
    half_w = np.interp(zf, zs[order], half_width[order])[None, None, :].astype(np.float32)
    centre = (front + back) / 2
    half_ap = (front - back) / 2
    ry = (Y - centre) / half_ap
    rx = X / half_w
    r = np.sqrt(ry**2 + rx**2)
    body_sd = (r - 1.0) * half_ap
    head_top = 95.0 * sc
    body_sd = np.maximum(body_sd, Z - head_top)
    inner_sd = body_sd + anatomy.fat_mm * (0.6 + 0.4 * (Y > centre))
    texture = 1.0 + 0.08 * _smooth_noise(painter.t2.shape, rng)
    painter.paint(everything, painter.region(everything, body_sd), T2["fat"] * texture, MU["fat"])
    # Everything deeper than the fat layer is muscle and soft tissue.
    painter.paint(everything, painter.region(everything, inner_sd), T2["muscle"] * texture, MU["muscle"])

    def within(z_low: float, z_high: float) -> slice:
        """The z rows between two heights: organs are painted only where they can be."""
        hit = np.nonzero((frame.z >= z_low - 4.0) & (frame.z <= z_high + 4.0))[0]
        return slice(int(hit.min()), int(hit.max()) + 1) if hit.size else slice(0, 0)

    ahead = Y - spine_y  # distance anterior of the posterior body line

    # Head: brain inside a dark skull, above the skull base.
    zs = within(5.0 * sc, head_top)
    brain_centre_z = 62.0 * sc
    Zr, ahead_r = Z[:, :, zs], ahead[:, :, zs]
    head_r = np.sqrt(((ahead_r - 25 * sc) / (88 * sc)) ** 2 + ((Zr - brain_centre_z) / (75 * sc)) ** 2 + (X / (70 * sc)) ** 2)
    skull_sd = np.maximum((head_r - 1.0) * 70 * sc, 5.0 * sc - Zr)
    painter.paint((ALL, zs), painter.region((ALL, zs), skull_sd), T2["cortex"], MU["cortex"])
    painter.paint((ALL, zs), painter.region((ALL, zs), skull_sd + 6 * sc), T2["csf"], MU["csf"])
    brain = T2["brain"] * (1.0 + 0.12 * _smooth_noise(painter.t2[:, :, zs].shape, rng, cells=12))
    painter.paint((ALL, zs), painter.region((ALL, zs), skull_sd + 9 * sc), brain, MU["brain"])

    # Airway in the neck, lungs and heart in the thorax, liver and bowel in the abdomen.
    zs = within(z_t1 - 50, -20 * sc)
    Zr, ahead_r = Z[:, :, zs], ahead[:, :, zs]
    airway_sd = _max([np.abs(ahead_r - 30 * sc) - 6 * sc, np.abs(X) - 8 * sc, Zr - (-20 * sc), (z_t1 - 50) - Zr])
    painter.paint((ALL, zs), painter.region((ALL, zs), airway_sd), T2["air"], MU["air"])
    organs = (
        ("lung", (z_t1 - 105 * sc, 70 * sc, -85 * sc), (125 * sc, 85 * sc, 68 * sc)),
        ("lung", (z_t1 - 105 * sc, 70 * sc, 85 * sc), (125 * sc, 85 * sc, 68 * sc)),
        ("heart", (z_t1 - 140 * sc, 90 * sc, -15 * sc), (55 * sc, 50 * sc, 60 * sc)),
        ("liver", (z_l1 + 5 * sc, 95 * sc, -55 * sc), (75 * sc, 70 * sc, 95 * sc)),
    )
    for tissue, centre, radii in organs:
        zs = within(centre[0] - radii[0], centre[0] + radii[0])
        organ_sd = _ellipsoid(Z[:, :, zs], ahead[:, :, zs], X, centre, radii)
        value = T2[tissue] * texture[:, :, zs] if tissue == "heart" else T2[tissue]
        painter.paint((ALL, zs), painter.region((ALL, zs), organ_sd), value, MU[tissue])
    zs = within(sacrum_end + 40, z_l1 - 70 * sc)
    Zr, ahead_r = Z[:, :, zs], ahead[:, :, zs]
    bowel = T2["bowel"] * (1.0 + 0.6 * _smooth_noise(painter.t2[:, :, zs].shape, rng, cells=24))
    bowel_sd = _max([55 * sc - ahead_r, inner_sd[:, :, zs] + 8, Zr - (z_l1 - 70 * sc), (sacrum_end + 40) - Zr])
    painter.paint((ALL, zs), painter.region((ALL, zs), bowel_sd), bowel, MU["bowel"])
    # The aorta runs left-anterior of the spine from the arch to its bifurcation; blood is a flow void.
    zs = within(z_l1 - 120 * sc, z_t1 - 60)
    aorta_sd = np.sqrt((ahead[:, :, zs] - 45 * sc) ** 2 + (X + 18 * sc) ** 2) - 11 * sc
    painter.paint((ALL, zs), painter.region((ALL, zs), aorta_sd), T2["blood"], MU["blood"])


def _paint_spine(painter: Painter, frame: SpineFrame, rng: np.random.Generator) -> None:
    """Canal and cord, posterior elements, discs, vertebral bodies, sacrum, in that order."""
    anatomy = frame.anatomy
    sc = anatomy.scale
    body_tops, disc_tops = anatomy.segment_bounds()
    sacrum_top = anatomy.sacrum_top
    # Fatty marrow is T2-bright on fast spin echo: the clearest image ageing signal of the phantom.
    marrow_t2 = MARROW_T2_LEAN + MARROW_T2_PER_FAT * anatomy.marrow_fat
    bone_mu = MU["marrow"] * anatomy.bone_density
    cortex_mu = MU["cortex"] * anatomy.bone_density
    marrow_texture = 1.0 + MARROW_TEXTURE * _smooth_noise((1, len(frame.y), len(frame.z)), rng, cells=40)
    conus = body_tops[next(i for i, lv in enumerate(anatomy.levels) if lv.startswith("L"))] + 20 * sc

    # Canal: CSF from the foramen magnum to S2, narrowed by stenosis and congenital narrowing.
    canal_ap = np.array([v.canal_ap for v in anatomy.vertebrae]) * anatomy.canal_factor
    canal_centres = body_tops + np.array([v.height for v in anatomy.vertebrae]) / 2
    rows = frame.rows(-40.0, sacrum_top + 40.0, -float(canal_ap.max()) - 8.0, 6.0)
    S, D, X = frame.local(rows)
    ap = np.interp(S, canal_centres, canal_ap).astype(np.float32)
    posterior_wall = -ap
    for disc, top in zip(anatomy.discs, disc_tops):
        if disc.stenosis:
            centre = top + disc.height / 2
            posterior_wall = posterior_wall + disc.stenosis * np.exp(-(((S - centre) / (6.0 * sc)) ** 2))
    canal_half_width = 10.0 * sc
    canal_sd = _max([posterior_wall - D, D - 0.0, np.abs(X) - canal_half_width])
    canal_sd = np.maximum(canal_sd, S - (sacrum_top + 35 * sc))
    # Above the dens the canal opens into the cisterns around the brainstem.
    canal_sd = np.maximum(canal_sd, -40.0 - S)
    painter.paint(rows, painter.region(rows, canal_sd), T2["csf"], MU["csf"], label=60)
    cord_centre = (posterior_wall + 0.0) / 2
    cord_half_ap = np.where(S < 120 * sc, 4.0, 3.2) * sc
    cord_sd = np.maximum(np.sqrt(((D - cord_centre) / cord_half_ap) ** 2 + (X / (6.0 * sc)) ** 2) * cord_half_ap - cord_half_ap, S - conus)
    painter.paint(rows, painter.region(rows, cord_sd), T2["cord"], MU["cord"], label=61)
    for vertebra, top in zip(anatomy.vertebrae, body_tops):
        if vertebra.cord_lesion:
            centre = top + vertebra.height / 2
            r = np.sqrt(((S - centre) / (7 * sc)) ** 2 + ((D - cord_centre) / (2.2 * sc)) ** 2 + (X / (2.5 * sc)) ** 2)
            painter.paint(rows, painter.region(rows, (r - 1) * 2.2 * sc), 0.85, MU["cord"], label=61)

    for index, (vertebra, disc) in enumerate(zip(anatomy.vertebrae, anatomy.discs)):
        top, disc_top = body_tops[index], disc_tops[index]
        bottom = disc_top
        disc_bottom = disc_top + disc.height
        ap = vertebra.canal_ap * anatomy.canal_factor
        label = vertebra_label(vertebra.level)
        # Posterior elements: lamina and spinous process, sloping down in the thorax.
        slope = 0.9 if vertebra.level.startswith("T") else 0.25
        length = (22.0 if vertebra.level.startswith("C") else 30.0) * sc * (1.4 if vertebra.level == "C7" else 1.0)
        rows = frame.rows(top - 10, bottom + 35, -(ap + length + 10.0), 6.0)
        S, D, X = frame.local(rows)
        behind = -ap - D  # depth behind the canal
        s_shifted = S - slope * np.clip(behind, 0, None)
        process_sd = _max([
            top + 0.2 * vertebra.height - s_shifted,
            s_shifted - (bottom - 0.15 * vertebra.height),
            -behind,
            behind - length,
            np.abs(X) - 3.5 * sc,
        ])
        lamina_sd = _max([
            top + 0.15 * vertebra.height - s_shifted,
            s_shifted - bottom,
            -behind,
            behind - 6.0 * sc,
            np.abs(X) - (10.0 * sc + 5.0 * sc),
        ])
        pedicle_sd = _max([
            top + 0.25 * vertebra.height - S,
            S - (bottom - 0.35 * vertebra.height),
            D,
            -ap - D,
            np.abs(np.abs(X) - 12.5 * sc) - 3.0 * sc,
        ])
        element_sd = _min([process_sd, lamina_sd, pedicle_sd])
        painter.paint(rows, painter.region(rows, element_sd), T2["cortex"], cortex_mu, label=label)
        painter.paint(rows, painter.region(rows, element_sd + 1.5), marrow_t2, bone_mu, label=label)
        if vertebra.edema:  # interspinous / prevertebral soft-tissue oedema
            r = np.sqrt(((S - (top + vertebra.height)) / (12 * sc)) ** 2 + ((behind - length * 0.6) / (6 * sc)) ** 2 + (X / (12 * sc)) ** 2)
            painter.paint(rows, painter.region(rows, (r - 1) * 6 * sc), T2["edema"], MU["edema"])

        # The disc below this vertebra, with its contour, hydration and fissures.
        next_depth = anatomy.vertebrae[index + 1].depth if index + 1 < len(anatomy.vertebrae) else vertebra.depth
        next_width = anatomy.vertebrae[index + 1].width if index + 1 < len(anatomy.vertebrae) else vertebra.width
        depth = (vertebra.depth + next_depth) / 2
        width = (vertebra.width + next_width) / 2
        reach = disc.bulge + 1.6 * disc.focal + disc.osteophyte + disc.uncovertebral + 10.0
        rows = frame.rows(disc_top - 12, disc_bottom + 12, -reach, depth + disc.bulge + disc.osteophyte + 8.0)
        S, D, X = frame.local(rows)
        lateral = np.clip(1.0 - (2 * X / width) ** 2, 0.0, 1.0)
        posterior = -disc.bulge * np.sqrt(lateral) - disc.focal * np.exp(-((X - disc.focal_x) ** 2) / (2 * (6.0 * sc) ** 2))
        anterior = depth + 0.5 * disc.bulge
        s_centre = (disc_top + disc_bottom) / 2
        disc_sd = _max([
            disc_top - S,
            S - disc_bottom,
            posterior - D,
            D - anterior,
            _superellipse(D, X, depth / 2, depth / 2 + disc.bulge + disc.focal, width / 2),
        ])
        disc_lbl = disc_label(vertebra.level)
        painter.paint(rows, painter.region(rows, disc_sd), T2["annulus"], MU["annulus"], label=disc_lbl)
        nucleus_sd = _ellipsoid(S, D, X, (s_centre, 0.52 * depth, 0.0), (0.36 * disc.height, 0.3 * depth, 0.3 * width))
        painter.paint(rows, painter.region(rows, nucleus_sd), T2["nucleus"] * disc.hydration, MU["nucleus"], label=disc_lbl)
        if disc.extruded:
            fragment = _ellipsoid(S, D, X, (s_centre + 0.6 * disc.height + 3 * sc, -0.6 * disc.focal, disc.focal_x), (6.0 * sc, 0.45 * disc.focal, 5.0 * sc))
            painter.paint(rows, painter.region(rows, fragment), T2["nucleus"] * disc.hydration * 0.8, MU["nucleus"], label=disc_lbl)
        if disc.annular_fissure:
            fissure = _ellipsoid(S, D, X, (s_centre, 1.5 * sc, disc.focal_x), (1.5 * sc, 1.5 * sc, 3.0 * sc))
            painter.paint(rows, painter.region(rows, fissure), 0.95, MU["annulus"], label=disc_lbl)
        if disc.osteophyte:
            ridge = _max([
                disc_top - 3 * sc - S, S - disc_bottom - 3 * sc,
                -disc.osteophyte - D, D, np.abs(X) - 0.4 * width,
            ])
            spur = _max([
                disc_top - 3 * sc - S, S - disc_bottom - 3 * sc,
                D - (depth + disc.osteophyte), depth - D, np.abs(X) - 0.4 * width,
            ])
            painter.paint(rows, painter.region(rows, np.minimum(ridge, spur)), T2["cortex"], cortex_mu, label=label)
        if disc.uncovertebral:
            unco = _max([
                disc_top - 2 * sc - S, S - disc_bottom - 2 * sc,
                -disc.uncovertebral - D, D - 0.3 * depth,
                np.abs(np.abs(X) - 0.42 * width) - disc.uncovertebral,
            ])
            painter.paint(rows, painter.region(rows, unco), T2["cortex"], cortex_mu, label=label)

    # Vertebral bodies last: the dark cortex and endplates, marrow whose fat rises with age.
    for index, vertebra in enumerate(anatomy.vertebrae):
        top = body_tops[index]
        bottom = top + vertebra.height
        label = vertebra_label(vertebra.level)
        depth, width = vertebra.depth, vertebra.width
        rows = frame.rows(top - 8, bottom + 8, -8.0, depth + 8.0)
        S, D, X = frame.local(rows)
        # A wedge fracture lowers the anterior part of the superior endplate.
        top_line = top + vertebra.wedge * vertebra.height * 1.6 * np.clip(D / depth, 0, 1)
        narrowing = 1.0 if vertebra.level != "C2" else np.clip((S - top) / (0.4 * vertebra.height), 0.45, 1.0)
        body_sd = _max([
            top_line - S,
            S - bottom,
            _superellipse(D, X, depth / 2, depth / 2 * narrowing, width / 2),
        ])
        painter.paint(rows, painter.region(rows, body_sd), T2["cortex"], cortex_mu, label=label)
        marrow = marrow_t2 * marrow_texture[(ALL,) + rows]
        painter.paint(rows, painter.region(rows, body_sd + 1.2 * sc), marrow, bone_mu, label=label)
        below = anatomy.discs[index]
        above = anatomy.discs[index - 1] if index > 0 else None
        for disc, edge in ((below, bottom), (above, top)):
            if disc is not None and disc.endplate_change:
                band = np.maximum(np.abs(S - edge) - 5.0 * sc, body_sd + 1.2 * sc)
                painter.paint(rows, painter.region(rows, band), 0.66, bone_mu * 0.9, label=label)
        if vertebra.wedge:
            oedema = np.maximum(top_line + 0.4 * vertebra.height - S, body_sd + 1.2 * sc)
            painter.paint(rows, painter.region(rows, oedema), T2["edema"], bone_mu * 0.9, label=label)
        if vertebra.lesion:
            lesion = _ellipsoid(S, D, X, ((top + bottom) / 2, 0.55 * depth, 0.0), (0.22 * vertebra.height, 0.2 * depth, 0.2 * width))
            painter.paint(rows, painter.region(rows, lesion), 0.8, bone_mu * 0.7, label=label)

    # Sacrum: a tapering, posteriorly curving block of fused segments with its canal.
    rows = frame.rows(sacrum_top - 5, sacrum_top + SACRUM_LENGTH + 5, -30.0, anatomy.vertebrae[-1].depth + 10.0)
    S, D, X = frame.local(rows)
    t = np.clip((S - sacrum_top) / SACRUM_LENGTH, 0, 1)
    depth = anatomy.vertebrae[-1].depth * (1.0 - 0.7 * t)
    width = 90.0 * sc * (1.0 - 0.75 * t)
    sacrum_sd = _max([sacrum_top - S, S - (sacrum_top + SACRUM_LENGTH), _superellipse(D, X, depth / 2, depth / 2, width / 2)])
    painter.paint(rows, painter.region(rows, sacrum_sd), T2["cortex"], cortex_mu, label=SACRUM_LABEL)
    painter.paint(rows, painter.region(rows, sacrum_sd + 1.5), marrow_t2, bone_mu, label=SACRUM_LABEL)
    for k in range(1, 5):  # the remnant discs between fused sacral segments
        remnant = np.maximum(np.abs(S - (sacrum_top + k * SACRUM_LENGTH / 5)) - 1.0, sacrum_sd + 3.0)
        painter.paint(rows, painter.region(rows, remnant), T2["annulus"], MU["annulus"], label=SACRUM_LABEL)
    if anatomy.tarlov_cyst:
        cyst = _ellipsoid(S, D, X, (sacrum_top + 25 * sc, -6 * sc, 0.0), (7 * sc, 5 * sc, 6 * sc))
        painter.paint(rows, painter.region(rows, cyst), T2["cyst"], MU["cyst"], label=CANAL_LABEL)
