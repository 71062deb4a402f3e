"""Sparse-slice completion: the three methods behind ``complete()``, their contract and errors.

The ``learned`` method is checked for its plumbing with a tiny untrained network, and for its
quality with the bundled completion model (``Resources/Models/completion_phantom``, which the
repository ships: its absence is a failure, not a skip).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import make_geometry

from AutoCTVLib.completion import Annotation, FinetuneConfig, complete
from AutoCTVLib.completion import model as completion_model
from AutoCTVLib.completion.interpolate import interpolate_completion
from AutoCTVLib.completion.model import bundled_model_available, untrained_model
from AutoCTVLib.completion.sampling import evenly_spread_slices, every_nth_slice
from AutoCTVLib.errors import CancelledError, GeometryError, InputError, ModelFileError
from AutoCTVLib.metrics import dice
from AutoCTVLib.volume import Volume

# ITK's SWIG wrappers warn about their own types on import; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")

SHAPE = (18, 40, 44)
SPACING = (1.5, 1.5, 3.0)
TINY = {"channels": (8, 16)}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest single-threaded (and leave the other core to other work)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cone(kind: str = "axial") -> tuple[Volume, np.ndarray]:
    """A cone-like structure whose radius grows along z, brighter than its surroundings."""
    z, y, x = np.indices(SHAPE, dtype=float)
    radius = 5.0 + 0.6 * z
    mask = ((y - 19.5) ** 2 + (x - 21.0) ** 2 <= radius**2) & (z >= 2) & (z <= 15)
    ct = np.where(mask, 45.0, -90.0).astype(np.float32)
    return Volume(ct, make_geometry(kind, shape_zyx=SHAPE, spacing_xyz_mm=SPACING)), mask


def network_kwargs(method: str) -> dict:
    if method == "interpolate":
        return {}
    return {
        "model": untrained_model(seed=0, **TINY),
        "finetune": FinetuneConfig(max_steps=2, learning_rate=1e-2),
    }


@pytest.mark.parametrize("method", ["learned", "finetune", "interpolate"])
def test_annotated_slices_come_back_exactly_as_drawn(method: str, grid_kind: str) -> None:
    ct, mask = cone(grid_kind)
    annotation = Annotation(z=(1, 2, 6, 10, 15), y=(19,))  # slice 1: annotated, left empty
    sparse = mask & annotation.known_mask(SHAPE)
    result = complete(
        ct,
        Volume(sparse.astype(np.uint8) * 4, ct.geometry),
        method=method,
        annotation=annotation,
        **network_kwargs(method),
    )
    known = annotation.known_mask(SHAPE)
    assert result.mask.geometry == ct.geometry
    assert result.mask.array.dtype == np.uint8 and result.label == 4
    np.testing.assert_array_equal(result.mask.array[known], sparse[known])
    if result.probability is not None:
        np.testing.assert_array_equal(result.probability.array[known], sparse[known])
    assert result.mask.metadata["completion_method"] == method


def everywhere_model():
    """A completion network that calls every voxel inside the structure (last conv: bias +10)."""
    model = untrained_model(seed=0, **TINY)
    last = [m for m in model.network.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(10.0)
    return model


def test_network_results_stay_between_the_first_and_last_drawn_axial_slice() -> None:
    ct, mask = cone()
    annotation = Annotation(z=(4, 8, 12))
    sparse = Volume((mask & annotation.known_mask(SHAPE)).astype(np.uint8), ct.geometry)
    drawn = complete(ct, sparse, method="learned", annotation=annotation, model=everywhere_model())
    filled = drawn.mask.array.any(axis=(1, 2))
    assert np.flatnonzero(filled).tolist() == list(range(4, 13))
    assert drawn.details["extent"] == "drawn"
    free = complete(
        ct, sparse, method="learned", annotation=annotation, model=everywhere_model(), extent="free"
    )
    assert free.mask.array.any(axis=(1, 2)).all()  # the network's own answer, everywhere
    np.testing.assert_array_equal(free.mask.array[4:13], drawn.mask.array[4:13])


def test_orthogonal_drawings_may_reach_beyond_their_slices_unless_told_otherwise() -> None:
    ct, mask = cone()
    annotation = Annotation(z=(8,), y=(19,))
    sparse = Volume((mask & annotation.known_mask(SHAPE)).astype(np.uint8), ct.geometry)
    result = complete(ct, sparse, method="learned", annotation=annotation, model=everywhere_model())
    assert result.details["extent"] == "free"
    assert result.mask.array[:8].any() and result.mask.array[9:].any()
    with pytest.raises(InputError, match="one axis only"):
        complete(ct, sparse, annotation=annotation, model=everywhere_model(), extent="drawn")
    with pytest.raises(ValueError, match="extent"):
        complete(ct, sparse, annotation=annotation, extent="beyond")


def test_interpolation_of_a_cone_from_its_own_slices_is_near_perfect() -> None:
    ct, mask = cone()
    annotation = every_nth_slice(mask, "z", 3)
    sparse = mask & annotation.known_mask(SHAPE)
    result = complete(ct, Volume(sparse.astype(np.uint8), ct.geometry), method="interpolate")
    assert result.annotation == annotation
    assert sparse.sum() < 0.5 * mask.sum()  # most of it really had to be filled in
    assert dice(result.mask.array, mask) > 0.95


def test_interpolation_unites_the_axes_and_needs_two_slices_on_one() -> None:
    _, mask = cone()
    both = Annotation(z=(2, 8, 15), y=(12, 19, 27))
    sparse = mask & both.known_mask(SHAPE)
    z_only = interpolate_completion(sparse & Annotation(z=both.z).known_mask(SHAPE), both)
    united = interpolate_completion(sparse, both)
    assert (united >= z_only).all() and united.sum() > z_only.sum()
    one_each = evenly_spread_slices(mask, (1, 1, 1))
    with pytest.raises(InputError, match="two annotated slices along one axis"):
        interpolate_completion(mask & one_each.known_mask(SHAPE), one_each)


@pytest.mark.parametrize("method", ["learned", "finetune", "interpolate"])
def test_empty_and_single_slice_drawings_are_refused_clearly(method: str) -> None:
    ct, mask = cone()
    empty = Volume(np.zeros(SHAPE, dtype=np.uint8), ct.geometry)
    with pytest.raises(InputError, match="no drawn voxels"):
        complete(ct, empty, method=method, **network_kwargs(method))
    single = Volume((mask & Annotation(z=(8,)).known_mask(SHAPE)).astype(np.uint8), ct.geometry)
    with pytest.raises(InputError, match="at least two slices"):
        complete(ct, single, method=method, **network_kwargs(method))


def test_sparse_label_on_another_grid_is_a_geometry_error() -> None:
    ct, mask = cone()
    shifted = make_geometry(
        "axial", shape_zyx=SHAPE, spacing_xyz_mm=SPACING, origin_xyz_mm=(0.0, 0.0, 0.0)
    )
    with pytest.raises(GeometryError, match="does not lie on the CT grid"):
        complete(ct, Volume(mask.astype(np.uint8), shifted), method="interpolate")


def test_learned_without_any_model_says_what_to_do(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(
        completion_model, "bundled_model_path", lambda: tmp_path / "absent.safetensors"
    )
    ct, mask = cone()
    sparse = Volume((mask & Annotation(z=(3, 9)).known_mask(SHAPE)).astype(np.uint8), ct.geometry)
    with pytest.raises(ModelFileError, match="interpolate"):
        complete(ct, sparse, method="learned")
    # "finetune" falls back to a fresh network when no model is installed.
    result = complete(ct, sparse, method="finetune", finetune=FinetuneConfig(max_steps=1))
    assert result.details["model_name"] == "(untrained network)"


def test_progress_reaches_the_end_and_cancel_stops() -> None:
    ct, mask = cone()
    sparse = Volume(
        (mask & Annotation(z=(3, 9, 14)).known_mask(SHAPE)).astype(np.uint8), ct.geometry
    )
    fractions: list[float] = []
    complete(
        ct,
        sparse,
        method="finetune",
        progress=lambda fraction, message: fractions.append(fraction),
        **network_kwargs("finetune"),
    )
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        complete(ct, sparse, method="learned", cancel=cancel, **network_kwargs("learned"))


def test_the_completion_model_is_bundled() -> None:
    assert bundled_model_available()


@pytest.mark.parametrize(
    "schedule", [("z", 3), ("z", 4), (3, 3, 2)], ids=["axial-3", "axial-4", "orthogonal-332"]
)
def test_bundled_model_completes_a_cone_from_its_own_slices_near_perfectly(schedule) -> None:
    ct, mask = cone()
    if len(schedule) == 2:
        annotation = every_nth_slice(mask, *schedule)
    else:
        annotation = evenly_spread_slices(mask, schedule)
    sparse = Volume((mask & annotation.known_mask(mask.shape)).astype(np.uint8), ct.geometry)
    for method in ("learned", "finetune"):
        result = complete(
            ct, sparse, method=method, annotation=annotation, finetune=FinetuneConfig(max_steps=3)
        )
        assert dice(result.mask.array, mask) > 0.95, method


def test_bundled_model_completes_a_phantom_ctv_at_least_as_well_as_interpolation() -> None:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    phantom = generate_phantom(
        PhantomConfig(seed=424242, size_xyz=(192, 192, 80), spacing_xyz_mm=(2.0, 2.0, 3.0))
    )
    reference = phantom.ctv.array > 0
    annotation = every_nth_slice(reference, "z", 6)
    sparse = Volume(
        (reference & annotation.known_mask(reference.shape)).astype(np.uint8), phantom.ct.geometry
    )
    learned = complete(phantom.ct, sparse, method="learned")
    interpolated = complete(phantom.ct, sparse, method="interpolate")
    learned_dice = dice(learned.mask.array, reference)
    assert learned_dice > 0.8
    assert learned_dice >= dice(interpolated.mask.array, reference) - 0.01
