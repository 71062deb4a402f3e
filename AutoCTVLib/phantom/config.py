"""Settings of one synthetic pelvic phantom (all of them, including the seed)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from AutoCTVLib.errors import AutoCTVError
from AutoCTVLib.volume import Geometry

#: Annotator styles (see :mod:`AutoCTVLib.phantom.style`).
ANNOTATOR_STYLES = ("standard", "wide", "tight", "random")

#: Largest grid the generator accepts (voxels); about 1.6 GB of float32 working memory.
MAX_VOXELS = 400_000_000


class PhantomConfigError(AutoCTVError):
    """A phantom setting is out of range (grid size, spacing, angle, noise, style)."""


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that defines a phantom; the same config always gives the same phantom.

    Attributes:
        seed: seeds anatomy, grid placement, tissue HU, image noise and annotator style (each
            from its own stream, so changing the grid does not change the anatomy).
        size_xyz: grid size in voxels (i, j, k); default 512×512×100 (or varied, see
            ``vary_grid``).
        spacing_xyz_mm: voxel spacing (mm) along i, j, k; default 0.977×0.977×3.
        slice_thickness_mm: overrides the k spacing (and, with no explicit size, keeps the
            default 300 mm coverage).
        vary_grid: draw pixel spacing 0.7–1.2 mm, slice thickness 1.25–5 mm and coverage
            260–340 mm from the seed (explicit size/spacing still win).
        flip: feet-first style grid (i and k axes reversed).
        oblique_deg: tilt the grid by this angle (degrees) about a mostly left-right axis.
        grid: use exactly this grid (overrides every other grid option).
        noise_hu: standard deviation of the image noise (HU); None draws 10–25 from the seed.
        contrast: intravenous contrast (arteries 150–250 HU, veins 120–180 HU) instead of
            plain blood (35–45 HU).
        annotator_style: how the delivered CTV is drawn: "standard" (the guideline CTV),
            "wide" (systematic over-contouring), "tight" (under-contouring) or "random"
            (margins drawn anywhere between tight and wide).
    """

    seed: int = 0
    size_xyz: tuple[int, int, int] | None = None
    spacing_xyz_mm: tuple[float, float, float] | None = None
    slice_thickness_mm: float | None = None
    vary_grid: bool = False
    flip: bool = False
    oblique_deg: float = 0.0
    grid: Geometry | None = None
    noise_hu: float | None = None
    contrast: bool = False
    annotator_style: str = "standard"

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise PhantomConfigError(f"the seed must be a whole number, got {self.seed!r}")
        if not 0 <= int(self.seed) < 2**63:
            raise PhantomConfigError(f"the seed must be between 0 and 2^63-1, got {self.seed}")
        if self.size_xyz is not None:
            size = _triple(self.size_xyz, "size")
            if any(s != int(s) or s < 8 or s > 4096 for s in size):
                raise PhantomConfigError(
                    f"grid size must be three whole numbers from 8 to 4096, got {self.size_xyz}"
                )
            if math.prod(int(s) for s in size) > MAX_VOXELS:
                raise PhantomConfigError(
                    f"a {size[0]:.0f}×{size[1]:.0f}×{size[2]:.0f} grid is too large "
                    f"(at most {MAX_VOXELS:,} voxels)"
                )
            object.__setattr__(self, "size_xyz", tuple(int(s) for s in size))
        if self.spacing_xyz_mm is not None:
            spacing = _triple(self.spacing_xyz_mm, "spacing")
            if any(not 0.1 <= s <= 20.0 for s in spacing):
                raise PhantomConfigError(
                    f"voxel spacing must be 0.1–20 mm, got {self.spacing_xyz_mm}"
                )
            object.__setattr__(self, "spacing_xyz_mm", spacing)
        if self.slice_thickness_mm is not None and not (
            _finite(self.slice_thickness_mm) and 0.1 <= float(self.slice_thickness_mm) <= 20.0
        ):
            raise PhantomConfigError(
                f"slice thickness must be 0.1–20 mm, got {self.slice_thickness_mm}"
            )
        if not (_finite(self.oblique_deg) and abs(float(self.oblique_deg)) <= 45.0):
            raise PhantomConfigError(f"oblique angle must be within ±45°, got {self.oblique_deg}")
        if self.noise_hu is not None and not (
            _finite(self.noise_hu) and 0.0 <= float(self.noise_hu) <= 500.0
        ):
            raise PhantomConfigError(f"noise must be 0–500 HU, got {self.noise_hu}")
        if self.annotator_style not in ANNOTATOR_STYLES:
            raise PhantomConfigError(
                f"unknown annotator style {self.annotator_style!r}; "
                f"choose one of {', '.join(ANNOTATOR_STYLES)}"
            )
        if self.grid is not None and math.prod(self.grid.shape_zyx) > MAX_VOXELS:
            raise PhantomConfigError(f"the grid {self.grid.describe()} is too large")

    def summary(self) -> dict[str, object]:
        """JSON-friendly settings (for provenance files)."""
        data = asdict(self)
        data["grid"] = None if self.grid is None else asdict(self.grid)
        return data


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _triple(values: object, what: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise PhantomConfigError(f"{what} must be three numbers, got {values!r}") from None
    if len(triple) != 3 or not all(math.isfinite(v) for v in triple):
        raise PhantomConfigError(f"{what} must be three finite numbers, got {values!r}")
    return triple  # type: ignore[return-value]
