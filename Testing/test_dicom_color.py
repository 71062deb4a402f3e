"""sRGB → CIE L*a*b* (D65) for DICOM's Recommended Display CIELab Value."""

from __future__ import annotations

import pytest

from AutoCTVLib.io.dicom_color import rgb_to_cielab

# Reference L*a*b* (D65) of the sRGB primaries and greys, as published for the sRGB standard.
REFERENCE_LAB = {
    (0, 0, 0): (0.0, 0.0, 0.0),
    (255, 255, 255): (100.0, 0.0, 0.0),
    (255, 0, 0): (53.2408, 80.0925, 67.2032),
    (0, 255, 0): (87.7347, -86.1827, 83.1793),
    (0, 0, 255): (32.2970, 79.1875, -107.8602),
    (128, 128, 128): (53.5850, 0.0, 0.0),
}


@pytest.mark.parametrize(("rgb", "lab"), sorted(REFERENCE_LAB.items()))
def test_reference_colours(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> None:
    assert rgb_to_cielab(rgb) == pytest.approx(lab, abs=0.02)


def test_matches_highdicom_where_it_converts() -> None:
    color = pytest.importorskip("highdicom.color", reason="highdicom is not installed")
    if not hasattr(color.CIELabColor, "from_rgb"):
        pytest.skip("this highdicom (before 0.23) has no RGB conversion to compare with")
    for rgb in [(255, 128, 0), (12, 200, 90), (1, 2, 3), *REFERENCE_LAB]:
        ours = color.CIELabColor(*rgb_to_cielab(rgb)).value
        theirs = color.CIELabColor.from_rgb(*rgb).value
        # highdicom rounds its conversion constants: up to ~0.02 L*a*b* units (5 of 65535) apart.
        assert max(abs(a - b) for a, b in zip(ours, theirs)) <= 8, rgb


@pytest.mark.parametrize("bad", [(256, 0, 0), (-1, 0, 0), (1, 2), (1, 2, 3, 4)])
def test_rejects_bad_colours(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_cielab(bad)
