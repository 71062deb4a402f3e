"""The synthetic pelvic phantom: determinism, anatomy, HU, CTV rules, grids, annotator styles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from AutoCTVLib.phantom import (
    STRUCTURES,
    TISSUE_HU_RANGES,
    PhantomConfig,
    PhantomConfigError,
    generate_phantom,
    raster,
)
from AutoCTVLib.phantom.frame import DEFAULT_SIZE_XYZ, build_geometry, sample_frame
from AutoCTVLib.phantom.generate import stream_rng
from AutoCTVLib.phantom.labels import LABEL_BY_NAME, values_of_kind
from AutoCTVLib.phantom.tissues import sample_tissue_hu
from AutoCTVLib.volume import Geometry

# Small grids keep the suite fast: 4.2 mm voxels over 400 × 400 × 280 mm.
SMALL = {"size_xyz": (96, 96, 56), "spacing_xyz_mm": (4.2, 4.2, 5.0)}
# Finer grid over the pelvis only, for edge and margin measurements.
FINE = {"size_xyz": (160, 160, 70), "spacing_xyz_mm": (1.5, 1.5, 3.0)}


def _mask(phantom, *names: str) -> np.ndarray:
    values = [LABEL_BY_NAME[name].value for name in names]
    return np.isin(phantom.structures.array, values)


def _ml(mask: np.ndarray, geometry: Geometry) -> float:
    return float(mask.sum()) * geometry.voxel_volume_ml


@pytest.fixture(scope="module")
def small() -> object:
    return generate_phantom(PhantomConfig(seed=11, noise_hu=10.0, **SMALL))


@pytest.fixture(scope="module")
def fine() -> object:
    return generate_phantom(PhantomConfig(seed=12, noise_hu=15.0, **FINE))


def test_same_seed_gives_identical_phantom() -> None:
    config = PhantomConfig(seed=5, size_xyz=(48, 48, 24), spacing_xyz_mm=(8.0, 8.0, 10.0))
    first, second = generate_phantom(config), generate_phantom(config)
    np.testing.assert_array_equal(first.ct.array, second.ct.array)
    np.testing.assert_array_equal(first.ctv.array, second.ctv.array)
    np.testing.assert_array_equal(first.structures.array, second.structures.array)
    assert first.ct.geometry == second.ct.geometry
    assert first.anatomy == second.anatomy


def test_different_seeds_give_different_anatomy(small) -> None:
    other = generate_phantom(PhantomConfig(seed=12, noise_hu=10.0, **SMALL))
    geometry = small.ct.geometry
    bladder = (_ml(_mask(small, "bladder"), geometry), _ml(_mask(other, "bladder"), geometry))
    ctv = (_ml(small.ctv.array > 0, geometry), _ml(other.ctv.array > 0, geometry))
    assert abs(bladder[0] - bladder[1]) > 0.05 * max(bladder)
    assert abs(ctv[0] - ctv[1]) > 0.01 * max(ctv)
    assert small.anatomy["parameters"] != other.anatomy["parameters"]


def test_arrays_types_and_shared_grid(small) -> None:
    geometry = small.ct.geometry
    assert geometry.size_xyz == SMALL["size_xyz"]
    assert small.ct.array.dtype == np.float32
    assert np.array_equal(small.ct.array, np.round(small.ct.array))
    assert small.ct.array.min() >= -1024 and small.ct.array.max() <= 3071
    for volume in (small.ctv, small.ctv_reference, small.structures):
        assert volume.array.dtype == np.uint8
        assert volume.geometry == geometry
    assert set(np.unique(small.ctv.array)) == {0, 1}


def test_every_label_has_a_unique_name(small) -> None:
    names = small.structure_names
    assert len(set(names.values())) == len(names)
    present = set(np.unique(small.structures.array)) - {0}
    assert present <= set(names)
    # The main structures are all there.
    for name in (
        "bladder",
        "rectum",
        "uterus",
        "cervix",
        "vagina",
        "sacrum",
        "hip_left",
        "femur_right",
        "psoas_left",
        "iliacus_right",
        "obturator_internus_left",
        "external_iliac_artery_left",
        "internal_iliac_vein_right",
        "common_iliac_artery_right",
        "nodes_external_iliac",
        "small_bowel",
    ):
        assert LABEL_BY_NAME[name].value in present, name


def test_documented_hu_ranges_hold_for_drawn_values() -> None:
    for seed in range(20):
        values = sample_tissue_hu(stream_rng(seed, "tissue"))
        for tissue, (low, high) in TISSUE_HU_RANGES.items():
            assert low <= values[tissue] <= high, (tissue, values[tissue])


@pytest.mark.parametrize(
    ("structure", "tissue", "erosions"),
    [
        ("body", "fat", 1),
        ("other_muscles", "muscle", 2),
        ("bladder", "urine", 2),
        ("uterus", "uterus", 1),
        ("sacrum", "marrow", 1),
    ],
)
def test_tissue_hu_inside_structures(small, structure: str, tissue: str, erosions: int) -> None:
    inner = ndimage.binary_erosion(_mask(small, structure), iterations=erosions)
    assert inner.sum() >= 20
    median = float(np.median(small.ct.array[inner]))
    low, high = TISSUE_HU_RANGES[tissue]
    assert low <= median <= high
    assert abs(median - small.anatomy["tissue_hu"][tissue]) <= 8.0


def test_gas_only_in_bowel(small) -> None:
    body = small.structures.array > 0
    gas = (small.ct.array < -800) & ndimage.binary_erosion(body, iterations=2)
    assert gas.sum() > 0
    bowel = np.isin(small.structures.array, values_of_kind("bowel"))
    assert (gas & ~ndimage.binary_dilation(bowel)).sum() == 0


def test_image_noise_matches_setting(small) -> None:
    muscle = ndimage.binary_erosion(_mask(small, "other_muscles"), iterations=2)
    assert float(np.std(small.ct.array[muscle])) == pytest.approx(10.0, rel=0.2)


def test_bone_cortex_and_marrow_on_a_fine_grid(small) -> None:
    head = np.asarray(small.anatomy["landmarks_lps_mm"]["femoral_head_left"])
    spacing = (0.6, 0.6, 1.0)
    size = np.array([80, 80, 30])
    origin = head - np.asarray(spacing) * (size - 1) / 2.0
    grid = Geometry((30, 80, 80), spacing, tuple(origin))
    near = generate_phantom(PhantomConfig(seed=11, noise_hu=10.0, grid=grid))
    femur = _mask(near, "femur_left")
    assert femur.sum() > 1000
    cortex_low, cortex_high = TISSUE_HU_RANGES["cortex"]
    assert cortex_low <= np.percentile(near.ct.array[femur], 95) <= cortex_high
    marrow = ndimage.binary_erosion(femur, iterations=6)
    marrow_low, marrow_high = TISSUE_HU_RANGES["marrow"]
    assert marrow_low <= np.median(near.ct.array[marrow]) <= marrow_high


def test_ctv_contains_uterus_and_cervix_and_avoids_organs(small) -> None:
    ctv = small.ctv_reference.array > 0
    gyn = _mask(small, "uterus", "cervix")
    assert gyn.sum() > 0 and np.all(ctv[gyn])
    for kinds in (("bone",), ("muscle",), ("bladder",), ("bowel",)):
        assert not np.any(ctv & np.isin(small.structures.array, values_of_kind(*kinds))), kinds
    assert not np.any(ctv & (small.structures.array == 0))


def test_ctv_includes_tissue_near_the_iliac_vessels(fine) -> None:
    geometry = fine.ct.geometry
    vessels = _mask(
        fine,
        *(
            f"{level}_iliac_{kind}_{side}"
            for level in ("common", "external", "internal")
            for kind in ("artery", "vein")
            for side in ("left", "right")
        ),
    )
    sampling = geometry.spacing_xyz_mm[::-1]
    distance = ndimage.distance_transform_edt(~vessels, sampling=sampling)
    allowed = ~np.isin(
        fine.structures.array, (0, *values_of_kind("bone", "muscle", "bladder", "bowel"))
    )
    # Stay between the femoral heads' tops and the aortic bifurcation (nodal extent rules).
    z_lps = geometry.index_to_physical(
        np.stack(np.meshgrid([0], [0], np.arange(geometry.shape_zyx[0]), indexing="ij"), -1)
    ).reshape(-1, 3)[:, 2]
    landmarks = fine.anatomy["landmarks_lps_mm"]
    z_low = landmarks["femoral_head_left"][2] + 35.0
    z_high = landmarks["aortic_bifurcation"][2] - 5.0
    in_range = ((z_lps > z_low) & (z_lps < z_high))[:, None, None]
    near = (distance <= 7.0) & ~vessels & allowed & in_range
    assert near.sum() > 500
    covered = float(np.mean(fine.ctv_reference.array[near] > 0))
    assert covered > 0.95
    # ... and not far beyond: tissue 15 mm or more from every vessel, outside the primary,
    # parametria and presacral parts, is rarely in the nodal CTV.
    far = (distance >= 15.0) & in_range & allowed & ~_mask(fine, "uterus", "cervix", "vagina")
    assert np.mean(fine.ctv_reference.array[far] > 0) < 0.2


def test_guideline_margins_are_not_intensity_edges(fine) -> None:
    """Where the CTV border is set by a margin (not by cropping at an organ), the image shows
    no edge: its gradient there is far below that on the bladder surface. About half of the
    border is such margin; the rest follows bone, muscle, bowel or bladder by the guideline's
    cropping rule, as in clinical CTVs."""
    ct = ndimage.gaussian_filter(fine.ct.array, (0.5, 1.0, 1.0))
    spacing_zyx = fine.ct.geometry.spacing_xyz_mm[::-1]
    gradient = np.sqrt(sum(np.square(g) for g in np.gradient(ct, *spacing_zyx)))
    ctv = fine.ctv_reference.array > 0
    surface = ctv & ~ndimage.binary_erosion(ctv)
    fat_like = np.isin(fine.structures.array, (1, *values_of_kind("nodes")))
    cropping = ndimage.binary_dilation(~ctv & ~fat_like, iterations=2)
    margin_surface = surface & ~cropping
    bladder = _mask(fine, "bladder")
    bladder_surface = bladder & ~ndimage.binary_erosion(bladder)
    assert margin_surface.sum() > 0.3 * surface.sum()
    assert np.median(gradient[margin_surface]) < 0.3 * np.median(gradient[bladder_surface])
    assert np.mean(gradient[margin_surface]) < 0.5 * np.mean(gradient[bladder_surface])


GRID_4MM = {"size_xyz": (100, 100, 60), "spacing_xyz_mm": (4.0, 4.0, 5.0), "noise_hu": 0.0}


@pytest.fixture(scope="module")
def axial_4mm() -> object:
    return generate_phantom(PhantomConfig(seed=21, **GRID_4MM))


def test_flipped_grid_is_the_axial_grid_in_reverse_order(axial_4mm) -> None:
    flipped = generate_phantom(PhantomConfig(seed=21, flip=True, **GRID_4MM))
    direction = np.reshape(flipped.ct.geometry.direction, (3, 3))
    np.testing.assert_allclose(direction, np.diag([-1.0, 1.0, -1.0]))
    # The grids share their centre, so the flipped one samples the same points backwards.
    np.testing.assert_array_equal(
        flipped.structures.array, axial_4mm.structures.array[::-1, :, ::-1]
    )
    np.testing.assert_array_equal(flipped.ctv.array, axial_4mm.ctv.array[::-1, :, ::-1])


def test_oblique_grid_holds_the_same_anatomy(axial_4mm) -> None:
    oblique = generate_phantom(PhantomConfig(seed=21, oblique_deg=20.0, **GRID_4MM))
    direction = np.reshape(oblique.ct.geometry.direction, (3, 3))
    assert np.degrees(np.arccos(direction[2, 2])) > 5.0
    for names in (("bladder",), ("uterus", "cervix"), ("sacrum",)):
        volumes = [_ml(_mask(p, *names), p.ct.geometry) for p in (axial_4mm, oblique)]
        assert volumes[1] == pytest.approx(volumes[0], rel=0.03), names
    ctv = [_ml(p.ctv.array > 0, p.ct.geometry) for p in (axial_4mm, oblique)]
    assert ctv[1] == pytest.approx(ctv[0], rel=0.03)
    assert axial_4mm.anatomy["landmarks_lps_mm"] == oblique.anatomy["landmarks_lps_mm"]


def test_coarse_to_fine_rasterising_matches_exact_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Big shapes are rasterised coarse-to-fine; the result equals evaluating every voxel."""
    config = PhantomConfig(
        seed=9, size_xyz=(128, 128, 30), spacing_xyz_mm=(3.2, 3.2, 9.0), oblique_deg=25.0
    )
    fast = generate_phantom(config)
    monkeypatch.setattr(raster, "COARSE_STEP", 10**6)  # disables the coarse pass
    exact = generate_phantom(config)
    np.testing.assert_array_equal(fast.structures.array, exact.structures.array)
    np.testing.assert_array_equal(fast.ctv.array, exact.ctv.array)
    np.testing.assert_array_equal(fast.ct.array, exact.ct.array)


def test_anatomy_does_not_depend_on_the_grid() -> None:
    coarse = generate_phantom(
        PhantomConfig(seed=3, size_xyz=(32, 32, 16), spacing_xyz_mm=(12, 12, 18))
    )
    finer = generate_phantom(
        PhantomConfig(seed=3, size_xyz=(48, 40, 20), spacing_xyz_mm=(9, 9, 14))
    )
    assert coarse.anatomy["parameters"] == finer.anatomy["parameters"]
    assert coarse.anatomy["landmarks_lps_mm"] == finer.anatomy["landmarks_lps_mm"]


def test_annotator_styles_order_the_ctv_volume() -> None:
    grid = {"size_xyz": (64, 64, 40), "spacing_xyz_mm": (6.0, 6.0, 7.0), "noise_hu": 0.0}
    volumes = {}
    references = []
    for style in ("tight", "standard", "wide"):
        phantom = generate_phantom(PhantomConfig(seed=8, annotator_style=style, **grid))
        volumes[style] = int(phantom.ctv.array.sum())
        references.append(phantom.ctv_reference.array)
        assert phantom.anatomy["annotator_style"] == style
    assert volumes["wide"] > 1.05 * volumes["standard"]
    assert volumes["standard"] > 1.05 * volumes["tight"]
    for reference in references[1:]:
        np.testing.assert_array_equal(reference, references[0])
    random_style = generate_phantom(PhantomConfig(seed=8, annotator_style="random", **grid))
    assert random_style.anatomy["annotator_rules"] != random_style.anatomy["reference_rules"]


def test_default_and_varied_grids() -> None:
    frame = sample_frame(stream_rng(4, "frame"))
    default = build_geometry(PhantomConfig(seed=4), frame, stream_rng(4, "grid"))
    assert default.size_xyz == DEFAULT_SIZE_XYZ
    assert default.spacing_xyz_mm == pytest.approx((500 / 512, 500 / 512, 3.0))
    thicknesses = set()
    for seed in range(12):
        varied = build_geometry(
            PhantomConfig(seed=seed, vary_grid=True), frame, stream_rng(seed, "grid")
        )
        pixel, _, thickness = varied.spacing_xyz_mm
        assert 0.7 <= pixel <= 1.2 and 1.25 <= thickness <= 5.0
        assert 240 <= varied.size_xyz[2] * thickness <= 360
        thicknesses.add(thickness)
    assert len(thicknesses) > 2
    thin = build_geometry(
        PhantomConfig(seed=4, slice_thickness_mm=1.5), frame, stream_rng(4, "grid")
    )
    assert thin.spacing_xyz_mm[2] == 1.5 and thin.size_xyz[2] == 200


@pytest.mark.parametrize(
    "settings",
    [
        {"size_xyz": (0, 10, 10)},
        {"size_xyz": (10, 10)},
        {"spacing_xyz_mm": (1.0, -1.0, 1.0)},
        {"slice_thickness_mm": 0.0},
        {"oblique_deg": 90.0},
        {"noise_hu": -1.0},
        {"annotator_style": "sloppy"},
        {"seed": -3},
        {"size_xyz": (4096, 4096, 4096)},
    ],
)
def test_bad_settings_raise_a_phantom_config_error(settings: dict) -> None:
    with pytest.raises(PhantomConfigError):
        PhantomConfig(**settings)


def test_structure_table_is_consistent() -> None:
    values = [s.value for s in STRUCTURES]
    assert values == sorted(set(values)) and values[0] == 1 and values[-1] < 256
    assert all(
        len(s.color_rgb) == 3 and all(0 <= c <= 255 for c in s.color_rgb) for s in STRUCTURES
    )
