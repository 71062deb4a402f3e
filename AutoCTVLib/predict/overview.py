"""An overview picture of a prediction for a physician: a few slices of the CT with the predicted
(and, when known, the reference) CTV outlined, and the uncertainty heat map with the CTV outline.

Each panel is one slice of the scan (arrays indexed (z, y, x), the slice being a fixed k) shown
at its physical aspect ratio and cropped to the body (CT above −400 HU, plus a 15 mm margin).
A panel is named by its position in mm as Slicer names a slice: the patient coordinate along the
slice normal's main axis (S for axial, A for coronal, R for sagittal slices; RAS signs, so the
S value equals the LPS z coordinate), with the slice index k beside it. Orientation letters
stand at the panel edges (a head-first supine axial slice shows R on the left and A at the
top, the radiological convention), and a scale bar gives the size. Prediction and reference
use two colours of the Okabe–Ito palette, which people with the common colour-vision
deficiencies can tell apart (orange, solid; sky blue, dashed), named in a legend. With a
reference the title gives the Dice score and both volumes.

matplotlib is imported only here (Agg backend, no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from AutoCTVLib.volume import Geometry, Volume

PREDICTION_COLOUR = "#E69F00"  # Okabe–Ito orange
REFERENCE_COLOUR = "#56B4E9"  # Okabe–Ito sky blue
BODY_HU = -400.0
MARGIN_MM = 15.0
CT_WINDOW_HU = (-250.0, 350.0)

# LPS axis → (letter at the positive end, letter at the negative end)
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))
# RAS name and sign of each LPS axis for slice positions
_RAS_POSITION = (("R", -1.0), ("A", -1.0), ("S", 1.0))


def overview_slices(reference: np.ndarray, review: Sequence[int] = (), count: int = 4) -> list[int]:
    """Slices to draw: the review list first, then the largest CTV slice, then CTV slices spread
    evenly (at most ``count``, sorted). ``reference`` is the mask the slices are chosen by
    (the reference CTV when known, else the prediction), (z, y, x)."""
    chosen: list[int] = [int(k) for k in list(review)[: count - 1]]
    areas = np.asarray(reference).reshape(reference.shape[0], -1).sum(axis=1)
    if areas.any():
        chosen.append(int(np.argmax(areas)))
        present = np.flatnonzero(areas)
        for k in np.linspace(present[0], present[-1], count + 2)[1:-1]:
            chosen.append(int(np.rint(k)))
    else:
        chosen += [int(k) for k in np.linspace(0, reference.shape[0] - 1, count)]
    unique: list[int] = []
    for k in chosen:
        if k not in unique:
            unique.append(k)
    return sorted(unique[:count])


def edge_letters(geometry: Geometry) -> dict[str, str]:
    """Orientation letters at the edges of a displayed slice (columns = i, rows = j, row 0 on
    top): ``{"left", "right", "top", "bottom"}`` → R/L/A/P/S/I of the dominant direction."""

    def letters(column: int) -> tuple[str, str]:
        vector = geometry.direction_matrix[:, column]
        axis = int(np.argmax(np.abs(vector)))
        positive, negative = _LPS_LETTERS[axis]
        return (positive, negative) if vector[axis] > 0 else (negative, positive)

    i_plus, i_minus = letters(0)
    j_plus, j_minus = letters(1)
    return {"right": i_plus, "left": i_minus, "bottom": j_plus, "top": j_minus}


def slice_position(geometry: Geometry, k: int) -> str:
    """``"S 45.0 mm"``: the slice centre's patient coordinate along the slice normal's main
    axis (RAS sign convention, as Slicer's slice offset)."""
    normal = geometry.slice_normal
    axis = int(np.argmax(np.abs(normal)))
    ny, nx = geometry.shape_zyx[1:]
    centre = geometry.index_to_physical(np.array([(nx - 1) / 2, (ny - 1) / 2, k]))
    name, sign = _RAS_POSITION[axis]
    return f"{name} {sign * centre[axis]:.1f} mm"


def body_box(ct_hu: np.ndarray, slices: Sequence[int], geometry: Geometry) -> tuple[slice, slice]:
    """(rows, columns) of the body on the drawn slices (the largest connected region above
    :data:`BODY_HU`, so not the couch), with :data:`MARGIN_MM` around it."""
    from scipy import ndimage

    body = np.zeros(ct_hu.shape[1:], dtype=bool)
    for k in slices:
        body |= np.asarray(ct_hu[k]) > BODY_HU
    components, count = ndimage.label(body)
    if count == 0:
        return slice(0, ct_hu.shape[1]), slice(0, ct_hu.shape[2])
    sizes = np.bincount(components.ravel())[1:]
    body = components == 1 + int(np.argmax(sizes))  # the patient, not the couch
    rows, columns = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    di, dj = geometry.spacing_xyz_mm[:2]
    mi, mj = int(np.ceil(MARGIN_MM / di)), int(np.ceil(MARGIN_MM / dj))
    return (
        slice(max(0, rows[0] - mj), min(ct_hu.shape[1], rows[-1] + mj + 1)),
        slice(max(0, columns[0] - mi), min(ct_hu.shape[2], columns[-1] + mi + 1)),
    )


def _scale_bar_mm(width_mm: float) -> int:
    for length in (100, 50, 20, 10, 5):
        if length <= width_mm / 3:
            return length
    return 5


def draw_overview(
    ct: Volume,
    label: np.ndarray,
    path: str | os.PathLike[str],
    *,
    reference: np.ndarray | None = None,
    entropy: np.ndarray | None = None,
    review_slices: Sequence[int] = (),
    title: str = "AutoCTV",
    count: int = 4,
) -> Path:
    """Draw the overview PNG (written atomically) and return its path.

    Args:
        ct: the CT in HU on the prediction's grid, (z, y, x).
        label: predicted CTV mask on the same grid.
        path: the PNG to write.
        reference: reference CTV mask on the same grid, when known (adds it, a legend entry
            and Dice / volumes in the title).
        entropy: predictive entropy in bits on the same grid (adds a heat-map row).
        review_slices: slices the uncertainty marks for review (shown first, marked).
        title: the picture's first title line.
        count: number of slices (columns).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from AutoCTVLib.io.atomic import atomic_path
    from AutoCTVLib.metrics import dice

    geometry = ct.geometry
    ct_hu = np.asarray(ct.array)
    predicted = np.asarray(label) > 0
    known = None if reference is None else np.asarray(reference) > 0
    slices = overview_slices(known if known is not None else predicted, review_slices, count)
    rows_box, columns_box = body_box(ct_hu, slices, geometry)
    di, dj = geometry.spacing_xyz_mm[:2]
    width_mm = (columns_box.stop - columns_box.start) * di
    height_mm = (rows_box.stop - rows_box.start) * dj
    panel_width = 3.6
    panel_height = panel_width * min(1.4, max(0.5, height_mm / max(width_mm, 1e-6)))
    n_rows = 2 if entropy is not None else 1
    figure, axes = plt.subplots(
        n_rows,
        len(slices),
        figsize=(panel_width * len(slices) + 1.2, panel_height * n_rows + 1.0),
        squeeze=False,
        layout="constrained",
    )
    letters = edge_letters(geometry)
    extent = (-0.5, columns_box.stop - columns_box.start - 0.5)
    extent_rows = (rows_box.stop - rows_box.start - 0.5, -0.5)
    heat = None
    for column, k in enumerate(slices):
        crop = (k, rows_box, columns_box)
        for row in range(n_rows):
            axis = axes[row][column]
            axis.imshow(
                ct_hu[crop],
                cmap="gray",
                vmin=CT_WINDOW_HU[0],
                vmax=CT_WINDOW_HU[1],
                aspect=dj / di,
                interpolation="nearest",
                extent=(*extent, *extent_rows),
            )
            if row == 1 and entropy is not None:
                heat = axis.imshow(
                    np.ma.masked_less(np.asarray(entropy)[crop], 0.02),
                    cmap="inferno",
                    vmin=0.0,
                    vmax=1.0,
                    alpha=0.85,
                    aspect=dj / di,
                    interpolation="bilinear",
                    extent=(*extent, *extent_rows),
                )
            if row == 0 and known is not None and known[crop].any():
                axis.contour(
                    known[crop], levels=[0.5], colors=[REFERENCE_COLOUR], linewidths=1.4,
                    linestyles="dashed",
                )  # fmt: skip
            if predicted[crop].any():
                colour = PREDICTION_COLOUR if row == 0 else "white"
                axis.contour(predicted[crop], levels=[0.5], colors=[colour], linewidths=1.2)
            _decorate(axis, letters, width_mm, di)
        review = " · review" if k in review_slices else ""
        axes[0][column].set_title(f"{slice_position(geometry, k)} (k={k}){review}", fontsize=8)
        if entropy is not None:
            axes[1][column].set_title("uncertainty: entropy", fontsize=8)
    handles = [Line2D([], [], color=PREDICTION_COLOUR, linewidth=1.6, label="AutoCTV CTV")]
    if known is not None:
        handles.append(
            Line2D([], [], color=REFERENCE_COLOUR, linewidth=1.6, linestyle="--",
                   label="reference CTV")
        )  # fmt: skip
    if entropy is not None:
        handles.append(Line2D([], [], color="white", linewidth=1.6, label="CTV over heat map"))
    legend = figure.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
        facecolor="#303030", labelcolor="white", edgecolor="none",
    )  # fmt: skip
    legend.get_frame().set_alpha(1.0)
    if heat is not None:
        figure.colorbar(heat, ax=axes[1][-1], shrink=0.8, label="entropy (bits)")
    voxel_ml = geometry.voxel_volume_ml
    lines = [title]
    if known is not None:
        lines.append(
            f"Dice {dice(predicted, known):.3f} · CTV {predicted.sum() * voxel_ml:.0f} mL "
            f"(reference {known.sum() * voxel_ml:.0f} mL)"
        )
    else:
        lines.append(f"CTV {predicted.sum() * voxel_ml:.0f} mL")
    figure.suptitle("\n".join(lines), fontsize=9)
    target = Path(path)
    with atomic_path(target, overwrite=True) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return target


def _decorate(axis: Any, letters: dict[str, str], width_mm: float, di: float) -> None:
    """Orientation letters on the four edges and a scale bar in the lower left corner."""
    style = {"color": "yellow", "fontsize": 8, "fontweight": "bold"}
    place = {
        "left": (0.02, 0.5, "left", "center"),
        "right": (0.98, 0.5, "right", "center"),
        "top": (0.5, 0.98, "center", "top"),
        "bottom": (0.5, 0.02, "center", "bottom"),
    }
    for edge, (x, y, ha, va) in place.items():
        axis.text(x, y, letters[edge], transform=axis.transAxes, ha=ha, va=va, **style)
    length_mm = _scale_bar_mm(width_mm)
    x0, x1 = axis.get_xlim()
    y_bottom, y_top = axis.get_ylim()
    start = x0 + 0.06 * (x1 - x0)
    y = y_bottom + 0.07 * (y_top - y_bottom)
    axis.plot([start, start + length_mm / di], [y, y], color="white", linewidth=2.5)
    axis.text(
        start + 0.5 * length_mm / di, y + 0.02 * (y_top - y_bottom), f"{length_mm} mm",
        color="white", fontsize=7, ha="center", va="bottom",
    )  # fmt: skip
    axis.set_xticks([])
    axis.set_yticks([])
