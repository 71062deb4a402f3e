"""Start ``autoctv web`` in a subprocess on a free 127.0.0.1 port, and talk to its HTTP API.

The client uses only the standard library (``urllib``), so the API tests check exactly what a
department's script with any HTTP client would see.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

try:
    import aiohttp  # noqa: F401

    WEB_MISSING = ""
except ImportError:
    WEB_MISSING = "the web extra (aiohttp, trame-slicer) is not installed: pip install '.[web]'"

needs_web = pytest.mark.skipif(bool(WEB_MISSING), reason=WEB_MISSING or "web extra present")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Response:
    """Status, headers and body of one HTTP answer."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class WebServer:
    """One ``autoctv web`` process and a small HTTP client for it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        arguments: Sequence[str] = (),
        token: str = "",
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = token
        env = dict(os.environ if environment is None else environment)
        env.pop("AUTOCTV_WEB_TOKEN", None)
        if token:
            env["AUTOCTV_WEB_TOKEN"] = token
        command = [sys.executable, "-m", "AutoCTVLib.cli.main", "web", "--port", str(self.port)]
        command += ["--data", str(data_dir), *arguments]
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.started_s = time.monotonic()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(REPOSITORY)
        )

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until ``/api/health`` answers; returns seconds since the process started."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited early:\n{self.log()}")
            try:
                if self.request("GET", "/api/health").status == 200:
                    return time.monotonic() - self.started_s
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not answer within {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``kill``) and wait for the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        timeout_s: float = 60.0,
    ) -> Response:
        """One request; ``token`` None uses the server's token, "" sends none."""
        all_headers = dict(headers or {})
        use = self.token if token is None else token
        if use:
            all_headers["Authorization"] = f"Bearer {use}"
        request = urllib.request.Request(
            self.base + path, data=body, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers, error.read())

    def upload(
        self, path: Path, fields: Mapping[str, str] | None = None, token: str | None = None
    ) -> Response:
        """POST ``/api/cases`` with ``path`` as the multipart field ``file``."""
        body, content_type = multipart_body(path.name, path.read_bytes(), fields or {})
        return self.request(
            "POST", "/api/cases", body=body, headers={"Content-Type": content_type}, token=token
        )

    def upload_files(self, files: Mapping[str, Path], token: str | None = None) -> Response:
        """POST ``/api/cases`` with several file fields (e.g. ``file`` and ``reference``)."""
        boundary = uuid.uuid4().hex
        parts = []
        for field, path in files.items():
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            parts.append(head.encode() + path.read_bytes() + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self.request(
            "POST", "/api/cases", body=b"".join(parts), headers=headers, token=token
        )

    def wait_status(
        self, case_id: str, wanted: Sequence[str], timeout_s: float = 180.0
    ) -> dict[str, Any]:
        """Poll the case until its status is one of ``wanted``; returns the case."""
        deadline = time.monotonic() + timeout_s
        case: dict[str, Any] = {}
        while time.monotonic() < deadline:
            case = self.request("GET", f"/api/cases/{case_id}").json()
            if case["status"] in wanted:
                return case
            time.sleep(0.2)
        raise AssertionError(f"case still {case.get('status')} after {timeout_s} s:\n{self.log()}")


def multipart_body(file_name: str, content: bytes, fields: Mapping[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body with ``fields`` and the file as ``file``."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{header}{value}\r\n".encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Zip every file below ``folder`` (names relative to it, under ``prefix``)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def leftovers(data_dir: Path) -> list[str]:
    """Files in the data folder's ``incoming`` area (must be none between requests)."""
    incoming = data_dir / "incoming"
    return (
        sorted(str(p.relative_to(data_dir)) for p in incoming.rglob("*"))
        if incoming.exists()
        else []
    )
