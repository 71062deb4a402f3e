"""Entry point of the ``autoctv`` command.

Each sub-command lives in its own module ``AutoCTVLib/cli/<name>_cmd.py`` and exposes
``ORDER`` (an int: position in ``autoctv --help``) and ``register(subparsers)``, which adds its
parser and sets ``handler`` to a function taking the parsed arguments and returning an exit
code. Modules are discovered, so adding a command touches no other file.

User errors (:class:`AutoCTVError`) become one line on stderr and a non-zero exit; nothing else
is caught, so programming errors keep their traceback. A reader that closes the pipe early
(``autoctv demo | head -3``) ends the command quietly with exit code 141 (128 + SIGPIPE, what a
shell reports for a program stopped by a closed pipe).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from AutoCTVLib import __version__
from AutoCTVLib.errors import AutoCTVError, CancelledError


def command_modules() -> list[ModuleType]:
    """Every ``*_cmd`` module of this package, sorted by its ``ORDER``."""
    package = importlib.import_module("AutoCTVLib.cli")
    modules = [
        importlib.import_module(f"AutoCTVLib.cli.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith("_cmd")
    ]
    return sorted(modules, key=lambda module: (getattr(module, "ORDER", 100), module.__name__))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="autoctv",
        description=(
            "AutoCTV: CTV auto-contouring, uncertainty and sparse-slice completion for "
            "radiotherapy planning CT. The bundled model was trained on synthetic phantoms "
            "only and is not for clinical use."
        ),
    )
    parser.add_argument("--version", action="version", version=f"autoctv {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.register(subparsers)
    return parser


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


BROKEN_PIPE_EXIT_CODE = 141


def _silence_stdout() -> None:
    """Point stdout at the null device so that Python's final flush cannot raise again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # stdout replaced by a non-file (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here when stdout is block-buffered
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT_CODE
    except KeyboardInterrupt:
        print("autoctv: cancelled; no partial outputs were left", file=sys.stderr)
        return CancelledError.exit_code
    except AutoCTVError as error:
        message = " ".join(str(error).split())
        print(f"autoctv: error: {message}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
