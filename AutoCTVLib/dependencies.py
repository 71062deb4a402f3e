"""Python packages AutoCTV needs beyond the host's own, and installing them with consent.

Pure Python (no Slicer, no torch): the Slicer module's panel and self-test plan with it
(:mod:`AutoCTVSlicerLib.dependencies` supplies Slicer's dialog, pip and PyTorch installer).
3D Slicer ships numpy, SimpleITK, scipy, pydicom and VTK; AutoCTV never replaces them (other
modules rely on the exact builds Slicer ships): pip runs with a constraints file pinning them to
the installed versions. What each feature needs (:data:`FEATURE_REQUIREMENTS`)::

    auto_contour      torch, safetensors   (inference; also the "learned"/"finetune" completion)
    dicom_seg_export  highdicom            (the library's DICOM SEG writer)

"interpolate" completion and RTSTRUCT export need nothing more. Nothing is installed without a
``confirm`` callable that says yes; with ``confirm=None`` (testing mode) a missing package raises.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .compat import version_tuple
from .errors import AutoCTVError

logger = logging.getLogger(__name__)


class MissingDependencyError(AutoCTVError):
    """A package AutoCTV needs is missing or too old, and was not installed."""


@dataclass(frozen=True)
class Requirement:
    """One Python distribution: pip name, top-level module, lowest version, purpose (words)."""

    distribution: str
    import_name: str
    minimum_version: str = ""
    purpose: str = ""

    @property
    def pip_spec(self) -> str:
        """The pip requirement string, e.g. ``"safetensors>=0.4"``."""
        return (
            f"{self.distribution}>={self.minimum_version}"
            if self.minimum_version
            else self.distribution
        )


TORCH = Requirement("torch", "torch", "2.2", "neural network inference")
FEATURE_REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    "auto_contour": (TORCH, Requirement("safetensors", "safetensors", "0.4", "model weights")),
    "dicom_seg_export": (Requirement("highdicom", "highdicom", "0.22", "DICOM SEG export"),),
}
#: Packages Slicer ships: pinned for pip, never installed or upgraded by AutoCTV.
SLICER_PROVIDED = ("numpy", "SimpleITK", "scipy", "pydicom", "vtk")

VersionLookup = Callable[[Requirement], "str | None"]


def version_at_least(found: str, minimum: str) -> bool:
    """True when version ``found`` is ``minimum`` or newer (an empty ``minimum`` accepts any)."""
    have, need = version_tuple(found), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def installed_version(requirement: Requirement) -> str | None:
    """The installed version (from metadata: torch is not imported to check it), ``"0"`` for an
    importable module without metadata, ``None`` when missing."""
    try:
        return importlib.metadata.version(requirement.distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return "0" if importlib.util.find_spec(requirement.import_name) is not None else None
    except (ImportError, ValueError):
        return None


def missing_for(
    features: Iterable[str], version_of: VersionLookup = installed_version
) -> list[Requirement]:
    """The requirements of the named features that are missing or too old.

    Raises:
        ValueError: an unknown feature name.
    """
    missing: list[Requirement] = []
    for feature in features:
        if feature not in FEATURE_REQUIREMENTS:
            raise ValueError(f"unknown feature {feature!r}; known: {sorted(FEATURE_REQUIREMENTS)}")
        for requirement in FEATURE_REQUIREMENTS[feature]:
            version = version_of(requirement)
            if requirement not in missing and (
                version is None or not version_at_least(version, requirement.minimum_version)
            ):
                missing.append(requirement)
    return missing


def pinned_versions(version_of: VersionLookup = installed_version) -> dict[str, str]:
    """Slicer-provided distribution → installed version (for the pip constraints file)."""
    pinned = {}
    for name in SLICER_PROVIDED:
        version = version_of(Requirement(name, name))
        if version not in (None, "0"):
            pinned[name] = str(version)
    return pinned


def constraints_text(pinned: Mapping[str, str]) -> str:
    """A pip constraints file pinning each distribution to its installed version."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))


def confirmation_text(missing: Iterable[Requirement]) -> str:
    """The question shown before installing: what is installed, and why."""
    lines = ["AutoCTV needs Python packages that are not installed in this Slicer yet:", ""]
    for requirement in missing:
        via = ", through the PyTorch extension" if requirement == TORCH else ""
        lines.append(f"  • {requirement.pip_spec} ({requirement.purpose}){via}")
    lines += [
        "",
        "They are downloaded from the Python Package Index into Slicer's own Python; this can "
        "take a few minutes. Slicer's own numpy, SimpleITK, scipy, pydicom and VTK are kept.",
        "",
        "Install now?",
    ]
    return "\n".join(lines)


def ensure_dependencies(
    features: Iterable[str],
    *,
    confirm: Callable[[str], bool] | None,
    pip_install: Callable[[list[str]], None],
    install_torch: Callable[[], bool],
    version_of: VersionLookup = installed_version,
) -> list[Requirement]:
    """Make sure the named features can run, installing what is missing after confirmation.

    Args:
        features: keys of :data:`FEATURE_REQUIREMENTS`.
        confirm: asks the user (gets :func:`confirmation_text`); ``None`` never installs
            (testing mode): anything missing raises at once.
        pip_install: runs ``pip install`` with the given argument list.
        install_torch: installs PyTorch; returns False when that did not happen.
        version_of: installed-version lookup.

    Returns:
        What was installed (empty when nothing was missing).

    Raises:
        MissingDependencyError: something is missing and may not, or could not, be installed.
    """
    features = list(features)
    missing = missing_for(features, version_of)
    if not missing:
        return []
    names = ", ".join(r.pip_spec for r in missing)
    if confirm is None:
        raise MissingDependencyError(f"not installed in this Slicer: {names}")
    if not confirm(confirmation_text(missing)):
        raise MissingDependencyError(
            f"AutoCTV cannot run without {names}; nothing was installed (run again and choose OK)"
        )
    if TORCH in missing and not install_torch():
        raise MissingDependencyError(
            "PyTorch was not installed; install it in the PyTorch module and run again"
        )
    others = [r for r in missing if r != TORCH]
    if others:
        handle, constraints = tempfile.mkstemp(prefix="autoctv-constraints-", suffix=".txt")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(constraints_text(pinned_versions(version_of)))
            logger.info("installing %s", ", ".join(r.pip_spec for r in others))
            pip_install(["--constraint", constraints, *(r.pip_spec for r in others)])
        finally:
            os.remove(constraints)
    importlib.invalidate_caches()
    still = missing_for(features, version_of)
    if still:
        raise MissingDependencyError(
            f"installing did not provide {', '.join(r.pip_spec for r in still)}; see the Python "
            "console for pip's messages"
        )
    return missing
