"""Installing AutoCTV's Python packages inside 3D Slicer, only with the user's consent.

The plan (what each feature needs, pip constraints pinning Slicer's own numpy, SimpleITK, scipy,
pydicom and VTK) is :mod:`AutoCTVLib.dependencies`; this module supplies Slicer's dialog,
``slicer.util.pip_install`` and the PyTorch extension's installer (``PyTorchUtils``, which picks
the CPU or CUDA build that suits the computer). Nothing is installed in testing mode
(:func:`ensure_in_slicer`), so a self-test on a fresh or offline Slicer reports missing packages
instead of downloading them.
"""

from __future__ import annotations

from collections.abc import Iterable

from AutoCTVLib.dependencies import (
    TORCH,
    MissingDependencyError,
    Requirement,
    ensure_dependencies,
    installed_version,
)

__all__ = ["MissingDependencyError", "ensure_in_slicer"]


def _install_torch_in_slicer() -> bool:
    """Install PyTorch through the PyTorch extension (the user agreed in AutoCTV's dialog)."""
    try:
        import PyTorchUtils
    except ImportError as error:
        raise MissingDependencyError(
            "AutoCTV needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
            "restart Slicer and run again"
        ) from error
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=f">={TORCH.minimum_version}"
    )
    return torch is not None


def ensure_in_slicer(features: Iterable[str]) -> list[Requirement]:
    """:func:`ensure_dependencies` with Slicer's dialog, ``pip_install`` and PyTorchUtils.

    In testing mode (``slicer.app.testingEnabled()``) nothing is installed: a missing package
    raises :class:`MissingDependencyError` (the self-test reports it as a skip).
    """
    import slicer

    def confirm(text: str) -> bool:
        return bool(slicer.util.confirmOkCancelDisplay(text, "AutoCTV: install Python packages"))

    testing = bool(getattr(slicer.app, "testingEnabled", lambda: False)())
    return ensure_dependencies(
        features,
        confirm=None if testing else confirm,
        pip_install=slicer.util.pip_install,
        install_torch=_install_torch_in_slicer,
        version_of=installed_version,
    )
