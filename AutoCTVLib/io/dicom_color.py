"""sRGB display colours as the CIE L*a*b* values DICOM records (Recommended Display CIELab Value).

DICOM (PS3.3 C.10.7.1.1) stores colours as CIE L*a*b* under the D65 illuminant. The conversion
here is the standard one: 8-bit sRGB → linear RGB (undo the sRGB transfer curve) → CIE XYZ with
the sRGB primaries, scaled so that white has Y = 100 → L*a*b* relative to the D65 white point.
It is written out here because the highdicom release that still runs on pydicom 2.4 (0.22) has no
RGB conversion of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

#: D65 reference white (X, Y, Z) for Y = 100.
D65_WHITE_XYZ = (95.047, 100.0, 108.883)
#: Linear sRGB → XYZ (rows X, Y, Z; columns R, G, B), IEC 61966-2-1 primaries, D65 white.
_SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_EPSILON = (6.0 / 29.0) ** 3  # where the L*a*b* curve turns from cube root to straight line


def _linear(channel_8bit: float) -> float:
    """One sRGB channel (0–255) as linear light in [0, 1]."""
    v = float(channel_8bit) / 255.0
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _lab_curve(t: float) -> float:
    return t ** (1.0 / 3.0) if t > _EPSILON else t / (3.0 * (6.0 / 29.0) ** 2) + 4.0 / 29.0


def rgb_to_cielab(color_rgb: Sequence[float]) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an 8-bit sRGB colour.

    Args:
        color_rgb: (red, green, blue), each 0–255.

    Returns:
        (L*, a*, b*): L* in [0, 100]; a* and b* roughly in [-128, 127].

    Raises:
        ValueError: not three components, or a component outside 0–255.
    """
    if len(color_rgb) != 3 or not all(0.0 <= float(c) <= 255.0 for c in color_rgb):
        raise ValueError(f"an RGB colour is three values 0–255, got {tuple(color_rgb)}")
    linear = [_linear(c) for c in color_rgb]
    xyz = [100.0 * sum(m * c for m, c in zip(row, linear)) for row in _SRGB_TO_XYZ]
    fx, fy, fz = (_lab_curve(v / w) for v, w in zip(xyz, D65_WHITE_XYZ))
    l_star = min(100.0, max(0.0, 116.0 * fy - 16.0))
    return l_star, 500.0 * (fx - fy), 200.0 * (fy - fz)
