"""Dependency planning for the Slicer module: what is missing, what pip gets, what is refused.

The planning needs no Slicer: installed versions come from a dictionary, and the user's answer,
pip and the PyTorch installer are plain callables that record what they were asked to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mrml_support import SLICER_MODULE_DIR  # noqa: F401  (puts AutoCTVSlicerLib on sys.path)

from AutoCTVLib.errors import AutoCTVError
from AutoCTVSlicerLib.dependencies import (
    FEATURE_REQUIREMENTS,
    PROTECTED_DISTRIBUTIONS,
    TORCH,
    MissingDependencyError,
    Requirement,
    confirmation_text,
    constraints_text,
    ensure_dependencies,
    installed_version,
    pip_arguments,
    plan_for,
    requirements_for,
    version_at_least,
    version_tuple,
)

# A Slicer 5.8-like installation: its own numpy/SimpleITK/scipy/pydicom/vtk, nothing else.
SLICER_58 = {
    "numpy": "1.26.4",
    "SimpleITK": "2.4.0",
    "scipy": "1.13.1",
    "pydicom": "2.4.4",
    "vtk": "9.3.20240617",
}


class FakeInstallation:
    """Installed versions in a dict; ``pip_install`` and ``install_torch`` add to it."""

    def __init__(self, versions: dict[str, str], pip_provides: dict[str, str] | None = None):
        self.versions = dict(versions)
        self.pip_provides = pip_provides if pip_provides is not None else {}
        self.pip_calls: list[list[str]] = []
        self.constraints_seen: list[str] = []
        self.torch_calls = 0
        self.questions: list[str] = []

    def version_of(self, requirement: Requirement) -> str | None:
        return self.versions.get(requirement.distribution)

    def pip_install(self, arguments: list[str]) -> None:
        self.pip_calls.append(list(arguments))
        if "--constraint" in arguments:
            path = arguments[arguments.index("--constraint") + 1]
            self.constraints_seen.append(Path(path).read_text(encoding="utf-8"))
        for spec in arguments:
            name = spec.split(">=")[0]
            if name in self.pip_provides:
                self.versions[name] = self.pip_provides[name]

    def install_torch(self) -> bool:
        self.torch_calls += 1
        self.versions["torch"] = "2.5.1+cpu"
        return True

    def answer(self, reply: bool):
        def confirm(text: str) -> bool:
            self.questions.append(text)
            return reply

        return confirm


def test_version_parsing_and_comparison():
    assert version_tuple("2.4.1+cpu") == (2, 4, 1)
    assert version_tuple("3.0.0rc1") == (3, 0, 0)
    assert version_tuple("garbage") == ()
    assert version_at_least("3.0.2", "3.0")
    assert version_at_least("2.13.0", "2.2")  # numeric, not string, comparison
    assert not version_at_least("2.4.4", "3.0")
    assert not version_at_least("0.3.9", "0.4")
    assert version_at_least("0", "")


def test_requirements_for_merges_features_and_rejects_unknown():
    names = [r.distribution for r in requirements_for(["auto_contour", "auto_contour"])]
    assert names == ["torch", "safetensors"]
    with pytest.raises(ValueError, match="unknown feature"):
        requirements_for(["teleport"])


def test_plan_lists_missing_packages_and_torch_separately():
    plan = plan_for(["auto_contour", "interpolation"], lambda r: SLICER_58.get(r.distribution))
    assert plan.torch_needed
    assert [r.pip_spec for r in plan.to_install] == [
        "safetensors>=0.4",
        "itk-morphologicalcontourinterpolation>=1.1",
    ]
    assert not plan.blocked
    assert plan.pinned["numpy"] == "1.26.4" and plan.pinned["pydicom"] == "2.4.4"
    assert not plan.satisfied


def test_plan_is_satisfied_when_everything_is_there():
    versions = {**SLICER_58, "torch": "2.5.0", "safetensors": "0.4.5"}
    assert plan_for(["auto_contour"], lambda r: versions.get(r.distribution)).satisfied


def test_too_old_package_is_reinstalled_but_slicer_packages_are_blocked():
    versions = {**SLICER_58, "torch": "1.13.1", "safetensors": "0.3.1", "highdicom": "0.22.0"}
    plan = plan_for(["auto_contour", "dicom_seg_export"], lambda r: versions.get(r.distribution))
    assert plan.torch_needed  # too old
    assert [r.distribution for r in plan.to_install] == ["safetensors"]
    # pydicom 2.4.4 is Slicer's own: never replaced, reported instead.
    assert len(plan.blocked) == 1
    assert "pydicom>=3.0" in plan.blocked[0] and "2.4.4" in plan.blocked[0]
    assert "SlicerRT" in plan.blocked[0]


def test_pip_arguments_use_constraints_and_refuse_slicer_packages():
    arguments = pip_arguments(list(FEATURE_REQUIREMENTS["interpolation"]), "/tmp/c d.txt")
    assert arguments == [
        "--constraint",
        "/tmp/c d.txt",
        "itk-morphologicalcontourinterpolation>=1.1",
    ]
    for name in ("numpy", "SimpleITK", "vtk"):
        assert name.lower() in PROTECTED_DISTRIBUTIONS
        with pytest.raises(ValueError, match="Slicer ships"):
            pip_arguments([Requirement(name, name, "99")], None)


def test_constraints_pin_installed_versions():
    assert constraints_text({"numpy": "1.26.4", "SimpleITK": "2.4.0"}) == (
        "SimpleITK==2.4.0\nnumpy==1.26.4\n"
    )


def test_confirmation_text_names_every_package():
    plan = plan_for(["auto_contour"], lambda r: SLICER_58.get(r.distribution))
    text = confirmation_text(plan)
    assert "torch>=2.2" in text and "PyTorch extension" in text
    assert "safetensors>=0.4" in text
    assert "Install now?" in text


def test_ensure_installs_after_consent_with_pinned_slicer_packages(tmp_path):
    installation = FakeInstallation(SLICER_58, pip_provides={"safetensors": "0.4.5"})
    plan = ensure_dependencies(
        ["auto_contour"],
        confirm=installation.answer(True),
        pip_install=installation.pip_install,
        install_torch=installation.install_torch,
        version_of=installation.version_of,
        constraints_dir=str(tmp_path),
    )
    assert plan.torch_needed and installation.torch_calls == 1
    assert len(installation.questions) == 1
    assert installation.pip_calls[0][-1] == "safetensors>=0.4"
    pinned = installation.constraints_seen[0].splitlines()
    assert (
        "numpy==1.26.4" in pinned and "SimpleITK==2.4.0" in pinned and "vtk==9.3.20240617" in pinned
    )
    assert list(tmp_path.iterdir()) == []  # the constraints file is removed again
    assert plan_for(["auto_contour"], installation.version_of).satisfied


def test_ensure_does_nothing_when_satisfied():
    installation = FakeInstallation({**SLICER_58, "torch": "2.4.0", "safetensors": "0.4.5"})
    plan = ensure_dependencies(
        ["auto_contour"],
        confirm=installation.answer(True),
        pip_install=installation.pip_install,
        install_torch=installation.install_torch,
        version_of=installation.version_of,
    )
    assert plan.satisfied
    assert installation.questions == [] and installation.pip_calls == []


def test_declining_installs_nothing_and_raises_a_plain_error():
    installation = FakeInstallation(SLICER_58, pip_provides={"safetensors": "0.4.5"})
    with pytest.raises(MissingDependencyError, match="nothing was installed") as caught:
        ensure_dependencies(
            ["auto_contour"],
            confirm=installation.answer(False),
            pip_install=installation.pip_install,
            install_torch=installation.install_torch,
            version_of=installation.version_of,
        )
    assert isinstance(caught.value, AutoCTVError)
    assert installation.pip_calls == [] and installation.torch_calls == 0
    assert "\n" not in str(caught.value)


def test_blocked_feature_raises_before_asking():
    installation = FakeInstallation({**SLICER_58, "highdicom": "0.25.0"})
    with pytest.raises(MissingDependencyError, match="pydicom"):
        ensure_dependencies(
            ["dicom_seg_export"],
            confirm=installation.answer(True),
            pip_install=installation.pip_install,
            install_torch=installation.install_torch,
            version_of=installation.version_of,
        )
    assert installation.questions == [] and installation.pip_calls == []


def test_failed_installation_is_reported():
    installation = FakeInstallation({**SLICER_58, "torch": "2.4.0"}, pip_provides={})
    with pytest.raises(MissingDependencyError, match=r"did not provide safetensors>=0\.4"):
        ensure_dependencies(
            ["auto_contour"],
            confirm=installation.answer(True),
            pip_install=installation.pip_install,
            install_torch=installation.install_torch,
            version_of=installation.version_of,
        )


def test_installed_version_reads_real_metadata():
    version = installed_version(Requirement("numpy", "numpy"))
    import numpy

    assert version == numpy.__version__
    assert installed_version(Requirement("no-such-dist-autoctv", "no_such_module_autoctv")) is None
    assert installed_version(TORCH) is not None  # the test environment has torch
