"""What real archives hold is contoured like the plain series, by the bundled model.

A small phantom (the demo's seed 2026 on 128×128×40 voxels at 3.9×3.9×6 mm, 2–6 s a prediction
on two CPU cores) is written as a plain DICOM series and as each variant of
:data:`dicom_variants.VARIANTS`; the bundled model contours each. The contours must agree with
the plain series' contour: Dice ≥ 0.99 for every variant that holds the same voxels.

Two variants change the voxels, and on this coarse grid the model's contour moves more than on
the demo's 0.98 mm grid. With the bundled cascade (0.4.0): lossy JPEG 2000 (8:1) measured 0.992
here, 0.998 on the full demo phantom; the 15° gantry tilt (images interpolated when written and
again when read, in physical space) 0.952 here, 0.987 on the full demo phantom (the 6 mm model
gave 0.988 / 0.941 here). Their floors here are 0.98 and 0.92; the issue's targets (≥ 0.99 and
≥ 0.95) are measured on the full-size demo phantom by ``benchmarks/dicom_archive_variants.py``
(docs/dicom_variants.md), which takes minutes.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="predicting needs torch (not on the I/O-only stacks)")
pytest.importorskip("gdcm", reason="python-gdcm (a test dependency) encodes JPEG 2000")

from dicom_variants import VARIANTS, dice_in_physical_space  # noqa: E402

from AutoCTVLib.io.ct_reader import read_ct  # noqa: E402
from AutoCTVLib.io.dicom_ct_write import write_ct_series  # noqa: E402
from AutoCTVLib.models import load_model  # noqa: E402
from AutoCTVLib.models.bundled import find_bundled_model  # noqa: E402
from AutoCTVLib.phantom import PhantomConfig, generate_phantom  # noqa: E402
from AutoCTVLib.predict import Predictor  # noqa: E402

MIN_DICE = {"gantry tilt 15°": 0.92, "JPEG 2000 lossy (8:1)": 0.98}
DEFAULT_MIN_DICE = 0.99


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(2)
    model, card = load_model(find_bundled_model())
    predictor = Predictor(model, card, device="cpu")
    phantom = generate_phantom(
        PhantomConfig(seed=2026, size_xyz=(128, 128, 40), spacing_xyz_mm=(3.9, 3.9, 6.0))
    )
    root = tmp_path_factory.mktemp("variants")
    write_ct_series(phantom.ct, root / "plain", uid_seed="variants")
    loaded = read_ct(root / "plain")
    label = predictor.predict(loaded.volume).label
    assert label.array.sum() > 1000  # a real contour to compare against
    return {"root": root, "ct": phantom.ct, "predictor": predictor, "label": label}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_is_contoured_like_the_plain_series(plain: dict, name: str) -> None:
    folder = VARIANTS[name](plain["root"] / "plain", plain["root"] / name, plain["ct"])
    loaded = read_ct(folder)
    label = plain["predictor"].predict(loaded.volume).label
    assert label.geometry.is_close(loaded.volume.geometry)  # contoured on its own grid
    measured = dice_in_physical_space(label, plain["label"])
    print(f"{name}: Dice {measured:.4f} against the plain series")
    assert measured >= MIN_DICE.get(name, DEFAULT_MIN_DICE)
