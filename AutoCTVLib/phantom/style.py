"""Annotator styles: the CTV as a particular physician would draw it.

Physicians follow the same guideline but draw systematically wider or tighter. A style is a set
of :class:`~AutoCTVLib.phantom.ctv.CTVRules`, drawn from the case's seed:

==========  ============  ===============  ==============  ================  ==============
style       nodal margin  vagina below os  presacral depth  upper nodal edge  whole CTV
==========  ============  ===============  ==============  ================  ==============
standard    7 mm          20 mm            17.5 mm          bifurcation       as drawn
wide        9–10 mm       25–30 mm         20–22 mm         +5 to +15 mm      grown 2–4 mm
tight       5–6 mm        12–16 mm         12–15 mm         −15 to −5 mm      shrunk 1.5–3 mm
random      5–10 mm       12–30 mm         12–22 mm         −15 to +15 mm     −3 to +4 mm
==========  ============  ===============  ==============  ================  ==============

Every "wide" parameter is at least the standard one and every "tight" one at most, so the
volumes order wide > standard > tight for any seed.
"""

from __future__ import annotations

import numpy as np

from AutoCTVLib.phantom.ctv import CTVRules

_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "wide": {
        "nodal_margin_mm": (9.0, 10.0),
        "vagina_below_os_mm": (25.0, 30.0),
        "presacral_depth_mm": (20.0, 22.0),
        "nodal_top_shift_mm": (5.0, 15.0),
        "offset_mm": (2.0, 4.0),
    },
    "tight": {
        "nodal_margin_mm": (5.0, 6.0),
        "vagina_below_os_mm": (12.0, 16.0),
        "presacral_depth_mm": (12.0, 15.0),
        "nodal_top_shift_mm": (-15.0, -5.0),
        "offset_mm": (-3.0, -1.5),
    },
    "random": {
        "nodal_margin_mm": (5.0, 10.0),
        "vagina_below_os_mm": (12.0, 30.0),
        "presacral_depth_mm": (12.0, 22.0),
        "nodal_top_shift_mm": (-15.0, 15.0),
        "offset_mm": (-3.0, 4.0),
    },
}


def annotator_rules(style: str, rng: np.random.Generator) -> CTVRules:
    """The CTV rules of an annotator of ``style`` ("standard", "wide", "tight", "random")."""
    if style == "standard":
        return CTVRules()
    if style not in _RANGES:
        raise ValueError(f"unknown annotator style {style!r}")
    values = {
        name: round(float(rng.uniform(low, high)), 2)
        for name, (low, high) in _RANGES[style].items()
    }
    return CTVRules(**values)
