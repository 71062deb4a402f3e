"""Python packages AutoCTV needs inside 3D Slicer, and installing them with the user's consent.

Slicer ships its own Python with numpy, SimpleITK, scipy, pydicom and VTK. AutoCTV never
replaces those (other modules rely on the exact builds Slicer ships): they are *checked* and, when
too old, reported with a plain message. Everything else is installed on first use, after the user
has agreed, with ``slicer.util.pip_install`` and a pip constraints file that pins the packages
Slicer ships to the versions installed, so pip cannot upgrade them as a side effect. PyTorch
comes from the PyTorch extension (``PyTorchUtils``), which picks the CPU or CUDA build that suits
the computer.

What each feature needs (:data:`FEATURE_REQUIREMENTS`)::

    auto_contour      torch, safetensors   (network inference; also the "learned" and
                                            "finetune" completion methods)
    rtstruct_export   pydicom >= 3         (the library's RTSTRUCT writer; pydicom is Slicer's)
    dicom_seg_export  pydicom >= 3, highdicom              (the library's DICOM SEG writer)
    interpolation     itk-morphologicalcontourinterpolation (the "interpolate" completion)
    datasets          h5py                 (reading HDF5 training datasets)

The planning part (:func:`plan_for`, :func:`pip_arguments`, :func:`constraints_text`,
:func:`confirmation_text`) needs neither Slicer nor Qt and is tested stand-alone;
:func:`ensure_dependencies` takes the user-facing actions as callables, and
:func:`ensure_in_slicer` wires them to Slicer's dialogs, ``pip_install`` and ``PyTorchUtils``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from AutoCTVLib.errors import AutoCTVError

logger = logging.getLogger(__name__)


class MissingDependencyError(AutoCTVError):
    """A package AutoCTV needs is missing or too old, and was not (or cannot be) installed."""


@dataclass(frozen=True)
class Requirement:
    """One Python distribution AutoCTV needs.

    Attributes:
        distribution: the name pip installs and ``importlib.metadata`` knows (e.g.
            ``"itk-morphologicalcontourinterpolation"``).
        import_name: the top-level module it provides (e.g. ``"itk"``).
        minimum_version: lowest acceptable version (``""``: any).
        purpose: what it is for, in words shown to the user.
    """

    distribution: str
    import_name: str
    minimum_version: str = ""
    purpose: str = ""

    @property
    def pip_spec(self) -> str:
        """The pip requirement string, e.g. ``"safetensors>=0.4"``."""
        if self.minimum_version:
            return f"{self.distribution}>={self.minimum_version}"
        return self.distribution


TORCH = Requirement("torch", "torch", "2.2", "neural network inference")

#: Packages that Slicer itself ships: checked, never installed or upgraded by AutoCTV.
SLICER_PROVIDED: dict[str, Requirement] = {
    "numpy": Requirement("numpy", "numpy", "1.24", "array computing"),
    "SimpleITK": Requirement("SimpleITK", "SimpleITK", "2.3", "image resampling and files"),
    "scipy": Requirement("scipy", "scipy", "1.10", "image morphology"),
    "pydicom": Requirement("pydicom", "pydicom", "", "DICOM files"),
    "vtk": Requirement("vtk", "vtk", "", "visualisation"),
}

#: Packages that must never be (re)installed by AutoCTV, even if a feature asks for them.
PROTECTED_DISTRIBUTIONS = frozenset(name.lower() for name in SLICER_PROVIDED)

SAFETENSORS = Requirement("safetensors", "safetensors", "0.4", "reading model weights")
HIGHDICOM = Requirement("highdicom", "highdicom", "0.22", "DICOM SEG export")
PYDICOM_3 = Requirement("pydicom", "pydicom", "3.0", "writing DICOM RTSTRUCT and SEG files")
CONTOUR_INTERPOLATION = Requirement(
    "itk-morphologicalcontourinterpolation",
    "itk",
    "1.1",
    "morphological contour interpolation",
)
H5PY = Requirement("h5py", "h5py", "3.8", "HDF5 training datasets")

#: Feature name → the packages it needs (torch is listed like any other; see ``plan_for``).
FEATURE_REQUIREMENTS: dict[str, tuple[Requirement, ...]] = {
    "auto_contour": (TORCH, SAFETENSORS),
    "rtstruct_export": (PYDICOM_3,),
    "dicom_seg_export": (PYDICOM_3, HIGHDICOM),
    "interpolation": (CONTOUR_INTERPOLATION,),
    "datasets": (H5PY,),
}

VersionLookup = Callable[[Requirement], "str | None"]


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release parts of a version string: ``"2.4.1+cpu"`` → ``(2, 4, 1)``.

    Pre-release and local suffixes are ignored (``"3.0.0rc1"`` → ``(3, 0, 0)``).
    """
    parts: list[int] = []
    for piece in str(version).strip().split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def version_at_least(found: str, minimum: str) -> bool:
    """True when version ``found`` is ``minimum`` or newer (an empty ``minimum`` accepts any)."""
    if not minimum:
        return True
    have, need = version_tuple(found), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def installed_version(requirement: Requirement) -> str | None:
    """The installed version of a requirement, or ``None`` when it cannot be imported.

    Uses the package metadata (no import, so torch is not loaded into the GUI process just to
    check it); a module that is importable but has no metadata counts as version ``"0"``.
    """
    try:
        return importlib.metadata.version(requirement.distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec(requirement.import_name)
    except (ImportError, ValueError):
        spec = None
    return "0" if spec is not None else None


@dataclass(frozen=True)
class DependencyPlan:
    """What has to happen before a feature can run.

    Attributes:
        to_install: packages pip must install (missing, or older than needed), never a
            Slicer-provided one.
        torch_needed: PyTorch is missing or too old (installed through the PyTorch extension).
        blocked: one message per Slicer-provided package that is missing or too old; AutoCTV
            will not replace it, so the feature cannot run in this Slicer.
        pinned: Slicer-provided distribution → installed version, written to the constraints
            file so that pip keeps them.
    """

    to_install: tuple[Requirement, ...] = ()
    torch_needed: bool = False
    blocked: tuple[str, ...] = ()
    pinned: Mapping[str, str] = field(default_factory=dict)

    @property
    def satisfied(self) -> bool:
        """Nothing to install and nothing blocked."""
        return not self.to_install and not self.torch_needed and not self.blocked


def requirements_for(features: Iterable[str]) -> list[Requirement]:
    """The requirements of the named features, each distribution once (first mention wins).

    Raises:
        ValueError: an unknown feature name.
    """
    chosen: dict[str, Requirement] = {}
    for feature in features:
        if feature not in FEATURE_REQUIREMENTS:
            known = ", ".join(sorted(FEATURE_REQUIREMENTS))
            raise ValueError(f"unknown feature {feature!r}; known: {known}")
        for requirement in FEATURE_REQUIREMENTS[feature]:
            key = requirement.distribution.lower()
            previous = chosen.get(key)
            if previous is None or version_tuple(requirement.minimum_version) > version_tuple(
                previous.minimum_version
            ):
                chosen[key] = requirement
    return list(chosen.values())


def plan_for(
    features: Iterable[str], version_of: VersionLookup = installed_version
) -> DependencyPlan:
    """Work out what the named features still need on this Python installation.

    Args:
        features: keys of :data:`FEATURE_REQUIREMENTS`.
        version_of: returns the installed version of a requirement or ``None`` (default: the
            real installation; tests pass a dictionary lookup).
    """
    to_install: list[Requirement] = []
    blocked: list[str] = []
    torch_needed = False
    for requirement in requirements_for(features):
        version = version_of(requirement)
        present = version is not None and version_at_least(version, requirement.minimum_version)
        if present:
            continue
        if requirement.distribution.lower() == TORCH.distribution:
            torch_needed = True
        elif requirement.distribution.lower() in PROTECTED_DISTRIBUTIONS:
            blocked.append(_blocked_message(requirement, version))
        else:
            to_install.append(requirement)
    pinned: dict[str, str] = {}
    for requirement in SLICER_PROVIDED.values():
        version = version_of(requirement)
        if version is not None and version != "0":
            pinned[requirement.distribution] = version
    return DependencyPlan(tuple(to_install), torch_needed, tuple(blocked), pinned)


#: What to do instead when a Slicer-provided package is too old for a feature.
_BLOCKED_HINTS = {
    "pydicom": (
        "export RTSTRUCT through the SlicerRT extension instead, or use a Slicer release that "
        "ships pydicom 3"
    ),
}


def _blocked_message(requirement: Requirement, version: str | None) -> str:
    have = "is not installed" if version is None else f"is version {version}"
    message = (
        f"{requirement.purpose or requirement.distribution} needs {requirement.pip_spec}, but "
        f"the {requirement.distribution} that comes with this Slicer {have}; AutoCTV does not "
        "replace packages that Slicer ships"
    )
    hint = _BLOCKED_HINTS.get(requirement.distribution.lower())
    return f"{message} ({hint})" if hint else message


def constraints_text(pinned: Mapping[str, str]) -> str:
    """A pip constraints file pinning each distribution to its installed version."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))


def pip_arguments(requirements: Sequence[Requirement], constraints_path: str | None) -> list[str]:
    """Arguments for ``slicer.util.pip_install`` (a list: paths may contain spaces).

    Raises:
        ValueError: a Slicer-provided package is among ``requirements`` (never installed).
    """
    protected = [
        r.distribution for r in requirements if r.distribution.lower() in PROTECTED_DISTRIBUTIONS
    ]
    if protected:
        raise ValueError(f"refusing to install packages that Slicer ships: {', '.join(protected)}")
    arguments: list[str] = []
    if constraints_path:
        arguments += ["--constraint", str(constraints_path)]
    arguments += [requirement.pip_spec for requirement in requirements]
    return arguments


def confirmation_text(plan: DependencyPlan) -> str:
    """The question shown before installing: what is installed, and why."""
    lines = ["AutoCTV needs Python packages that are not installed in this Slicer yet:", ""]
    if plan.torch_needed:
        lines.append(f"  • {TORCH.pip_spec} ({TORCH.purpose}), through the PyTorch extension")
    for requirement in plan.to_install:
        lines.append(f"  • {requirement.pip_spec} ({requirement.purpose})")
    lines += [
        "",
        "They are downloaded from the Python Package Index into Slicer's own Python; "
        "this can take a few minutes. Slicer's own numpy, SimpleITK, scipy, pydicom and VTK "
        "are kept as they are.",
        "",
        "Install now?",
    ]
    return "\n".join(lines)


def ensure_dependencies(
    features: Iterable[str],
    *,
    confirm: Callable[[str], bool],
    pip_install: Callable[[list[str]], None],
    install_torch: Callable[[], bool],
    version_of: VersionLookup = installed_version,
    constraints_dir: str | None = None,
) -> DependencyPlan:
    """Make sure the named features can run, installing what is missing after confirmation.

    Args:
        features: keys of :data:`FEATURE_REQUIREMENTS`.
        confirm: asks the user (gets :func:`confirmation_text`); returns True to go ahead.
        pip_install: runs ``pip install`` with the given argument list.
        install_torch: installs PyTorch; returns False when that did not happen.
        version_of: installed-version lookup (see :func:`plan_for`).
        constraints_dir: folder for the temporary constraints file (default: system temp).

    Returns:
        The plan that was carried out (``satisfied`` when nothing had to be done).

    Raises:
        MissingDependencyError: a Slicer-provided package is too old, the user declined, or
            the installation did not produce the packages.
    """
    features = list(features)
    plan = plan_for(features, version_of)
    if plan.blocked:
        raise MissingDependencyError("; ".join(plan.blocked))
    if plan.satisfied:
        return plan
    if not confirm(confirmation_text(plan)):
        names = [r.distribution for r in plan.to_install] + (["torch"] if plan.torch_needed else [])
        raise MissingDependencyError(
            f"AutoCTV cannot run without {', '.join(names)}; nothing was installed "
            "(run again and choose OK to install them)"
        )
    if plan.torch_needed and not install_torch():
        raise MissingDependencyError(
            "PyTorch was not installed; install it from the PyTorch module (PyTorch extension) "
            "and run again"
        )
    if plan.to_install:
        handle, constraints_path = tempfile.mkstemp(
            prefix="autoctv-constraints-", suffix=".txt", dir=constraints_dir
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(constraints_text(plan.pinned))
            logger.info("installing %s", ", ".join(r.pip_spec for r in plan.to_install))
            pip_install(pip_arguments(plan.to_install, constraints_path))
        finally:
            os.remove(constraints_path)
    importlib.invalidate_caches()
    still_missing = plan_for(features, version_of)
    if not still_missing.satisfied:
        names = [r.pip_spec for r in still_missing.to_install]
        if still_missing.torch_needed:
            names.append(TORCH.pip_spec)
        raise MissingDependencyError(
            f"installing did not provide {', '.join(names)}; see the Python console for pip's "
            "messages"
        )
    return plan


# --------------------------------------------------------------------------- inside Slicer


def _install_torch_in_slicer() -> bool:
    """Install PyTorch through the PyTorch extension (asks the user itself)."""
    try:
        import PyTorchUtils
    except ImportError as error:
        raise MissingDependencyError(
            "AutoCTV needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
            "restart Slicer and run again"
        ) from error
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if torch_logic.torchInstalled():
        installed = installed_version(TORCH) or "0"
        if version_at_least(installed, TORCH.minimum_version):
            return True
        raise MissingDependencyError(
            f"AutoCTV needs PyTorch {TORCH.minimum_version} or newer, this Slicer has {installed}; "
            "update it in the PyTorch module (uninstall, restart Slicer, install)"
        )
    # The user has already agreed in AutoCTV's own dialog, which lists PyTorch.
    torch = torch_logic.installTorch(
        askConfirmation=False, torchVersionRequirement=f">={TORCH.minimum_version}"
    )
    return torch is not None


def ensure_in_slicer(features: Iterable[str]) -> DependencyPlan:
    """:func:`ensure_dependencies` with Slicer's confirmation dialog, pip and PyTorchUtils.

    Raises:
        MissingDependencyError: see :func:`ensure_dependencies`.
    """
    import slicer

    def confirm(text: str) -> bool:
        return bool(slicer.util.confirmOkCancelDisplay(text, "AutoCTV: install Python packages"))

    def pip_install(arguments: list[str]) -> None:
        slicer.util.pip_install(arguments)

    return ensure_dependencies(
        features, confirm=confirm, pip_install=pip_install, install_torch=_install_torch_in_slicer
    )
