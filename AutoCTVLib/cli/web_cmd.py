"""``autoctv web``: the browser app and its HTTP API (needs the ``web`` extra).

Example::

    autoctv web                                   # http://127.0.0.1:8080/, data in ./autoctv-web
    AUTOCTV_WEB_TOKEN=... autoctv web --host 0.0.0.0 --data /srv/autoctv

The app lives in the ``AutoCTVWeb`` package, imported only when this command runs, so the
library and the other commands never import aiohttp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from AutoCTVLib.errors import InputError

ORDER = 15

_DESCRIPTION = """\
Serve the AutoCTV browser app and its HTTP API (docs/web.md): upload a zipped DICOM CT folder
or a NIfTI/NRRD/MHA file, contour it in a child process (one case at a time, in upload order),
follow progress, cancel, and download RTSTRUCT, DICOM SEG, .seg.nrrd, NIfTI and report.json.
Cases and their history are kept in DATA (SQLite and one folder per case). On 127.0.0.1 no
token is needed; any other address needs AUTOCTV_WEB_TOKEN or --token-file, and every API
request then needs "Authorization: Bearer TOKEN". Not for clinical use.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the browser app and its HTTP API (needs the web extra)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (8080)")
    parser.add_argument(
        "--data", type=Path, default=Path("autoctv-web"), help="data folder (./autoctv-web)"
    )
    parser.add_argument("--token-file", type=Path, help="file holding the access token")
    parser.add_argument(
        "--max-upload-mb", type=float, default=2048.0, help="largest upload in MiB (2048)"
    )
    parser.add_argument("--model", type=Path, help="model .safetensors (default: the bundled one)")
    parser.add_argument("--device", default="auto", help="device of the contouring child (auto)")
    parser.add_argument(
        "--threads", type=int, help="CPU threads of the contouring child (default: torch's)"
    )
    parser.add_argument(
        "--no-viewer",
        action="store_true",
        help="serve only the API and the cases page (no trame-slicer views; starts faster)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1–65535, not {args.port}")
    if args.max_upload_mb <= 0:
        raise InputError("--max-upload-mb must be positive")
    try:
        from AutoCTVWeb.auth import resolve_token
        from AutoCTVWeb.server import run_server
    except ImportError as error:
        raise InputError(
            f"the browser app needs the web extra ({error.name or error} is missing): "
            "pip install 'autoctv[web]'"
        ) from error
    extra = ["--threads", str(args.threads)] if args.threads else []

    def announce(url: str) -> None:
        print(f"AutoCTV web: serving {url} (data: {args.data})", flush=True)

    try:
        run_server(
            host=args.host,
            port=args.port,
            data_dir=args.data,
            token=resolve_token(args.token_file),
            max_upload_bytes=int(args.max_upload_mb * 1024**2),
            model=args.model,
            device=args.device,
            extra_arguments=extra,
            on_ready=announce,
            viewer=not args.no_viewer,
        )
    except OSError as error:
        raise InputError(f"cannot serve on {args.host}:{args.port}: {error}") from error
    print("AutoCTV web: stopped", file=sys.stderr)
    return 0
