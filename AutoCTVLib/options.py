"""The choices every front end offers, and the one progress type, without importing torch.

The command line, the Slicer panel and its logic take these names from here, so they offer the
same devices and completion methods by construction. Nothing here imports torch: a GUI can show
its options, and check what the user chose, before PyTorch is installed.
"""

from __future__ import annotations

from collections.abc import Callable

#: Compute devices: "auto" picks CUDA, then Apple MPS, then the CPU ("cuda:N" is accepted too).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: Sparse-slice completion methods (see :func:`AutoCTVLib.completion.complete`).
COMPLETION_METHODS = ("learned", "finetune", "interpolate")
#: The completion methods that run a network (they need torch and a completion model).
NETWORK_COMPLETION_METHODS = ("learned", "finetune")

#: ``progress(stage, fraction, message)``: a stage name ("preprocess", "network", ...), the
#: fraction done (0–1; of the stage or of the whole run, as the caller documents) and a line for
#: the user. The predictor, the child-process protocol and the Slicer logic all use this type.
ProgressCallback = Callable[[str, float, str], None]


def check_device(request: str) -> str:
    """The normalised device name (lower case) of a user's choice.

    Raises:
        ValueError: not one of :data:`DEVICE_CHOICES` or ``cuda:N``.
    """
    name = str(request).strip().lower()
    if name in DEVICE_CHOICES or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    choices = ", ".join(DEVICE_CHOICES)
    raise ValueError(f"device must be one of {choices} (or cuda:N), got {request!r}")


def check_completion_method(method: str) -> str:
    """``method`` if it is one of :data:`COMPLETION_METHODS`.

    Raises:
        ValueError: an unknown method.
    """
    if method not in COMPLETION_METHODS:
        raise ValueError(
            f"completion method must be one of {', '.join(COMPLETION_METHODS)}, got {method!r}"
        )
    return method
