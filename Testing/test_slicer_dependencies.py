"""Installing dependencies inside Slicer: never in testing mode (a fake ``slicer`` module)."""

from __future__ import annotations

import sys
import types

import pytest
from mrml_support import SLICER_MODULE_DIR  # noqa: F401  (puts AutoCTVSlicerLib on sys.path)

from AutoCTVSlicerLib import dependencies
from AutoCTVSlicerLib.dependencies import MissingDependencyError


def test_ensure_in_slicer_never_installs_in_testing_mode(monkeypatch):
    asked = []
    fake_slicer = types.SimpleNamespace(
        app=types.SimpleNamespace(testingEnabled=lambda: True),
        util=types.SimpleNamespace(
            confirmOkCancelDisplay=lambda *a: asked.append(a) or True,
            pip_install=lambda *a: asked.append(a),
        ),
    )
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    monkeypatch.setattr(dependencies, "installed_version", lambda requirement: None)
    with pytest.raises(MissingDependencyError, match="not installed in this Slicer"):
        dependencies.ensure_in_slicer(["auto_contour"])
    assert asked == []
