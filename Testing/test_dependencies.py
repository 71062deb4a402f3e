"""The dependency plan of the Slicer module (:mod:`AutoCTVLib.dependencies`): what is missing,
what pip gets, and never installing without consent.

The planning needs no Slicer: installed versions come from a dictionary, and the user's answer,
pip and the PyTorch installer are plain callables that record what they were asked to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from AutoCTVLib.compat import version_tuple
from AutoCTVLib.dependencies import (
    FEATURE_REQUIREMENTS,
    SLICER_PROVIDED,
    TORCH,
    MissingDependencyError,
    Requirement,
    confirmation_text,
    constraints_text,
    ensure_dependencies,
    installed_version,
    missing_for,
    pinned_versions,
    version_at_least,
)
from AutoCTVLib.errors import AutoCTVError

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
    assert version_at_least("2.4.4", "2.4") and version_at_least("3", "2.9.9")
    assert not version_at_least("0.21.1", "0.22")
    assert version_at_least("0", "")


def test_only_torch_safetensors_and_highdicom_are_ever_needed():
    """Interpolation uses Slicer's vtkITK and RTSTRUCT export Slicer's pydicom: nothing else."""
    names = {r.distribution for needs in FEATURE_REQUIREMENTS.values() for r in needs}
    assert names == {"torch", "safetensors", "highdicom"}
    assert not names & {name.lower() for name in SLICER_PROVIDED}
    with pytest.raises(ValueError, match="unknown feature"):
        missing_for(["interpolation"])


def test_missing_and_too_old_packages_are_found():
    fake = FakeInstallation({**SLICER_58, "safetensors": "0.3"})
    missing = missing_for(["auto_contour", "dicom_seg_export"], fake.version_of)
    assert [r.distribution for r in missing] == ["torch", "safetensors", "highdicom"]
    fake.versions.update(torch="2.5.1", safetensors="0.4.5", highdicom="0.23.1")
    assert missing_for(["auto_contour", "dicom_seg_export"], fake.version_of) == []


def test_install_after_consent_keeps_slicers_packages_pinned():
    fake = FakeInstallation(dict(SLICER_58), pip_provides={"safetensors": "0.4.5"})
    installed = ensure_dependencies(
        ["auto_contour"],
        confirm=fake.answer(True),
        pip_install=fake.pip_install,
        install_torch=fake.install_torch,
        version_of=fake.version_of,
    )
    assert [r.distribution for r in installed] == ["torch", "safetensors"]
    assert fake.torch_calls == 1  # torch through the PyTorch extension, not pip
    (call,) = fake.pip_calls
    assert call[0] == "--constraint" and call[2:] == ["safetensors>=0.4"]
    assert fake.constraints_seen == [constraints_text(SLICER_58)]
    assert "pydicom==2.4.4\n" in fake.constraints_seen[0]
    assert "torch>=2.2" in fake.questions[0] and "safetensors>=0.4" in fake.questions[0]


def test_nothing_is_installed_when_declined_or_in_testing_mode():
    for confirm in (FakeInstallation({}).answer(False), None):
        fake = FakeInstallation(dict(SLICER_58))
        with pytest.raises(MissingDependencyError, match=r"torch>=2\.2"):
            ensure_dependencies(
                ["auto_contour"],
                confirm=confirm,
                pip_install=fake.pip_install,
                install_torch=fake.install_torch,
                version_of=fake.version_of,
            )
        assert fake.pip_calls == [] and fake.torch_calls == 0
    assert issubclass(MissingDependencyError, AutoCTVError)


def test_satisfied_features_ask_nothing():
    fake = FakeInstallation({**SLICER_58, "torch": "2.5.1", "safetensors": "0.4.5"})
    assert (
        ensure_dependencies(
            ["auto_contour"],
            confirm=fake.answer(False),
            pip_install=fake.pip_install,
            install_torch=fake.install_torch,
            version_of=fake.version_of,
        )
        == []
    )
    assert fake.questions == [] and fake.pip_calls == []


def test_failed_installation_is_reported():
    fake = FakeInstallation({**SLICER_58, "torch": "2.5.1"}, pip_provides={})
    with pytest.raises(MissingDependencyError, match=r"did not provide safetensors>=0\.4"):
        ensure_dependencies(
            ["auto_contour"],
            confirm=fake.answer(True),
            pip_install=fake.pip_install,
            install_torch=fake.install_torch,
            version_of=fake.version_of,
        )


def test_confirmation_text_and_pins():
    text = confirmation_text([TORCH])
    assert "torch>=2.2" in text and "PyTorch extension" in text and text.endswith("Install now?")
    fake = FakeInstallation(dict(SLICER_58))
    assert pinned_versions(fake.version_of) == SLICER_58


def test_installed_version_reads_real_metadata():
    assert installed_version(Requirement("pytest", "pytest")) is not None
    assert installed_version(Requirement("surely-not-installed-xyz", "surely_not_xyz")) is None
