"""Who may use the server: loopback without a token, any other address only with one.

Bound to a loopback address (127.0.0.1, ::1, localhost) the server runs as is. Bound to any
other address it refuses to start unless a token is set (``AUTOCTV_WEB_TOKEN`` or
``--token-file``). With a token set, every ``/api/`` request must carry
``Authorization: Bearer <token>``; anything else is answered 401 before it reaches a case.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from AutoCTVLib.errors import InputError

TOKEN_ENVIRONMENT_VARIABLE = "AUTOCTV_WEB_TOKEN"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token_file: Path | None, environment: dict[str, str] | None = None) -> str:
    """The token from ``--token-file`` (first), else ``AUTOCTV_WEB_TOKEN``; "" if neither.

    Raises:
        InputError: the token file cannot be read, or the token is shorter than 16 characters.
    """
    values = os.environ if environment is None else environment
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise InputError(f"the token file {token_file} cannot be read: {error}") from error
        if not token:
            raise InputError(f"the token file {token_file} is empty")
    else:
        token = values.get(TOKEN_ENVIRONMENT_VARIABLE, "").strip()
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise InputError(f"the access token must have at least {MIN_TOKEN_LENGTH} characters")
    return token


def check_bind_address(host: str, token: str) -> None:
    """Refuse a non-loopback address without a token.

    Raises:
        InputError: ``host`` is not a loopback address and ``token`` is empty.
    """
    if not token and not is_loopback(host):
        raise InputError(
            f"refusing to listen on {host} without an access token: set "
            f"{TOKEN_ENVIRONMENT_VARIABLE} or pass --token-file (only 127.0.0.1 runs without one)"
        )


def authorized(header: str | None, token: str) -> bool:
    """True if no token is set, or ``header`` is ``Bearer <token>`` (constant-time compare)."""
    if not token:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())
