"""Paint the anatomy onto the CT grid: structure labels, Hounsfield units, table, blur, noise.

Painting follows :attr:`Anatomy.parts` (later parts win). Each tissue gets the case's HU value
(:mod:`AutoCTVLib.phantom.tissues`); bone gets a cortex layer, hollow organs a wall, faeces a
mottled texture with gas bubbles. Then the CT table is added under the patient, the image is
blurred with the scanner's point-spread function (in-plane σ 0.7 mm, along z 0.5 slice — this
gives the partial-volume look) and Gaussian noise is added so that its standard deviation after
the blur equals the requested ``noise_hu``. Arrays are (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from AutoCTVLib.phantom.frame import PatientFrame
from AutoCTVLib.phantom.labels import label_value
from AutoCTVLib.phantom.parts import Anatomy, Part
from AutoCTVLib.phantom.raster import Rasteriser
from AutoCTVLib.phantom.regions import nodal_distances, presacral_shape
from AutoCTVLib.phantom.shapes import Box

#: Scanner blur: in-plane σ (mm) and along-slice σ (in slices).
PSF_SIGMA_INPLANE_MM = 0.7
PSF_SIGMA_SLICES = 0.5

#: Nodal-region labels use the guideline margin around the vessels.
NODE_REGION_MARGIN_MM = 7.0
NODE_REGION_PRESACRAL_DEPTH_MM = 17.5

_BODY = label_value("body")


@dataclass(frozen=True, eq=False)
class Texture:
    """A smooth random texture: the sum of a few plane waves in canonical coordinates."""

    waves: np.ndarray  # (n, 3) wave vectors, rad/mm
    phases: np.ndarray  # (n,)

    @classmethod
    def random(
        cls, rng: np.random.Generator, wavelength_mm: float = 11.0, count: int = 5
    ) -> Texture:
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength_mm * rng.uniform(0.7, 1.4, size=(count, 1))
        return cls(2.0 * np.pi * directions / lengths, rng.uniform(0, 2 * np.pi, count))

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Values with mean 0 and standard deviation about 1."""
        total = np.zeros_like(x)
        for (kx, ky, kz), phase in zip(self.waves, self.phases):
            total += np.sin(x * float(kx) + y * float(ky) + z * float(kz) + float(phase))
        return total * np.float32(np.sqrt(2.0 / len(self.phases)))


class Painter:
    """Holds the label and HU arrays of one case while the parts are painted."""

    def __init__(self, raster: Rasteriser, tissue_hu: dict[str, float], texture: Texture) -> None:
        self.raster = raster
        self.tissue_hu = tissue_hu
        self.texture = texture
        shape = raster.geometry.shape_zyx
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.hu = np.full(shape, np.float32(tissue_hu["air"]), dtype=np.float32)

    @staticmethod
    def _allowed(names: tuple[str, ...], labels: np.ndarray) -> np.ndarray:
        """Which of ``labels`` carry one of the structure ``names`` (bool, same shape)."""
        lut = np.zeros(256, dtype=bool)
        lut[[label_value(name) for name in names]] = True
        return lut[labels]

    def paint(self, part: Part) -> None:
        """Paint one part (label and HU) where its shape covers voxels (and, with
        ``part.only_on``, only over voxels that carry one of those labels)."""
        band = (0.0, 0.0) if part.style == "solid" else (-float(part.wall_mm), 0.0)
        result = self.raster.distance(part.shape, pad_mm=1.0, band=band)
        if result is None:
            return
        box, sd = result
        labels = self.labels[box.slices]
        hu = self.hu[box.slices]
        inside = sd < 0
        if part.only_on:
            inside &= self._allowed(part.only_on, labels)
        labels[inside] = label_value(part.label)
        value = np.float32(self.tissue_hu[part.tissue])
        if part.style == "solid":
            hu[inside] = value
            return
        wall = inside & (sd > -float(part.wall_mm))
        core = inside & ~wall
        hu[wall] = np.float32(self.tissue_hu[part.wall_tissue])
        if part.style == "bone":
            hu[core] = value
            return
        if part.mottled and core.any():
            x, y, z = self.raster.coords_at(box, np.nonzero(core))
            pattern = self.texture(x, y, z)
            content = value + np.float32(45.0) * pattern
            content[pattern > 1.5] = np.float32(self.tissue_hu["gas"])
            hu[core] = content
        else:
            hu[core] = value
        for pocket in part.gas:
            pocket_result = self.raster.distance(pocket, pad_mm=1.0, within=box, band=(0.0, 0.0))
            if pocket_result is None:
                continue
            pocket_box, pocket_sd = pocket_result
            sub = pocket_box.relative_to(box)
            gas = core[sub] & (pocket_sd < 0)
            hu[sub][gas] = np.float32(self.tissue_hu["gas"])

    def paint_node_regions(self, anatomy: Anatomy) -> None:
        """Label the fat around the nodal vessels (guideline margin) and the presacral band by
        nodal group; then add the visible lymph nodes there."""
        scale = self.raster.mm_per_unit
        for group, (box, distance) in nodal_distances(
            self.raster, anatomy, NODE_REGION_MARGIN_MM
        ).items():
            labels = self.labels[box.slices]
            region = (distance <= NODE_REGION_MARGIN_MM) & (labels == _BODY)
            if anatomy.nodal_top_z is not None:
                z = self.raster.coords(box)[2]
                region &= z <= np.float32(anatomy.nodal_top_z)
            labels[region] = label_value(f"nodes_{group}")
        band = presacral_shape(anatomy, NODE_REGION_PRESACRAL_DEPTH_MM / scale)
        result = self.raster.distance(band, pad_mm=1.0, band=(0.0, 0.0))
        if result is not None:
            box, sd = result
            labels = self.labels[box.slices]
            labels[(sd < 0) & (labels == _BODY)] = label_value("nodes_presacral")
        node_labels = (
            "body",
            *(
                f"nodes_{g}"
                for g in ("common_iliac", "external_iliac", "internal_iliac", "obturator")
            ),
        )
        for group, shape in anatomy.visible_nodes:
            self.paint(Part(f"nodes_{group}", shape, "lymph_node", only_on=node_labels))

    def paint_table(self, frame: PatientFrame, back_points: np.ndarray) -> None:
        """The CT table: a carbon-fibre shell with foam core under the patient (LPS frame)."""
        back_lps = frame.to_lps(back_points)
        top_y = float(np.max(back_lps[:, 1])) + 2.0
        centre_x = float(frame.centre_lps_mm[0])
        world = Rasteriser(self.raster.geometry, PatientFrame(np.zeros(3), np.eye(3), 1.0))
        table = Box(
            np.array([centre_x, top_y + 25.0, float(frame.centre_lps_mm[2])]),
            np.array([230.0, 25.0, 5000.0]),
            rounding=8.0,
        )
        result = world.distance(table, pad_mm=1.0)
        if result is None:
            return
        box, sd = result
        labels = self.labels[box.slices]
        hu = self.hu[box.slices]
        outside_body = labels == 0
        hu[(sd < 0) & (sd > -3.0) & outside_body] = np.float32(self.tissue_hu["table_shell"])
        hu[(sd <= -3.0) & outside_body] = np.float32(self.tissue_hu["table_core"])


def blur_and_noise(
    hu: np.ndarray,
    spacing_xyz_mm: tuple[float, float, float],
    noise_hu: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Scanner blur plus noise of standard deviation ``noise_hu`` (after the blur); rounded to
    whole HU and clipped to the 16-bit CT range [-1024, 3071]. ``hu`` is modified in place.

    The noise is added before the blur, so it is spatially correlated like CT noise; its
    amplitude is raised by the blur's noise gain so the final standard deviation is right.
    """
    in_plane = (PSF_SIGMA_INPLANE_MM / spacing_xyz_mm[1], PSF_SIGMA_INPLANE_MM / spacing_xyz_mm[0])
    in_plane = tuple(s if s >= 0.2 else 0.0 for s in in_plane)
    slice_weights = _three_tap(PSF_SIGMA_SLICES)
    if noise_hu > 0:
        gain = float(np.sqrt(np.sum(slice_weights**2)))
        for sigma in in_plane:
            gain *= _noise_gain(sigma)
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise *= np.float32(noise_hu / gain)
        hu += noise
        del noise
    for axis, sigma in zip((1, 2), in_plane):
        if sigma > 0:
            ndimage.gaussian_filter1d(hu, sigma, axis=axis, output=hu, truncate=3.0)
    if hu.shape[0] > 1:
        _smooth_slices(hu, slice_weights)
    np.rint(hu, out=hu)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return hu


def _three_tap(sigma: float) -> np.ndarray:
    """Normalised Gaussian weights at offsets -1, 0, +1 (σ in voxels)."""
    weights = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) / sigma) ** 2)
    return weights / weights.sum()


def _smooth_slices(hu: np.ndarray, weights: np.ndarray) -> None:
    """In-place 3-tap blur along axis 0 (slices), edges mirrored."""
    side, centre = np.float32(weights[0]), np.float32(weights[1])
    previous = hu[0].copy()
    for k in range(hu.shape[0]):
        current = hu[k].copy()
        following = hu[k + 1] if k + 1 < hu.shape[0] else current
        hu[k] *= centre
        hu[k] += side * (previous + following)
        previous = current


def _noise_gain(sigma: float) -> float:
    """How much a 1-D Gaussian blur of ``sigma`` voxels scales white noise's standard deviation."""
    if sigma <= 0:
        return 1.0
    delta = np.zeros(64)
    delta[32] = 1.0
    kernel = ndimage.gaussian_filter1d(delta, sigma, truncate=3.0)
    return float(np.sqrt(np.sum(kernel**2)))
