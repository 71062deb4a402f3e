"""The HTTP API (aiohttp): cases in, status and results out. See ``docs/web.md``.

======  ===============================  ==================================================
POST    /api/cases                       multipart ``file`` (+ ``reference``, ``uncertainty``,
                                         ``series_uid``, ``user``) → 201 ``{"id", ...}``
GET     /api/cases                       the list of cases (oldest first)
GET     /api/cases/{id}                  ``{"id", "status", "progress", "error", ...}``
GET     /api/cases/{id}/{kind}           kind: rtstruct, seg, segnrrd, nifti, report; the
                                         edited contour once saved (``?version=model``: the
                                         model's)
GET     /api/cases/{id}/structures       structures completed in the viewer (sparse slices)
GET     /api/cases/{id}/structures/{n}/{kind}   kind: nifti, segnrrd, rtstruct, drawn
POST    /api/cases/{id}/cancel           stop a waiting or running case
DELETE  /api/cases/{id}                  cancel if needed, delete the row and every file
GET     /api/health                      ``{"status": "ok", "version"}``
======  ===============================  ==================================================

Errors are JSON ``{"error": message}`` with 400 (refused upload, bad field), 401 (token),
404 (no such case or file), 409 (result not ready), 413 (too large).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from AutoCTVLib import __version__
from AutoCTVLib.errors import AutoCTVError

from .auth import authorized
from .edited import EDITED_FILES, EDITED_FOLDER
from .store import CaseRecord, CaseStore, is_case_id, new_case_id, now_s
from .structures import STRUCTURE_DOWNLOADS, structure_dir
from .uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    REFERENCE_FILE,
    REFERENCE_FOLDER,
    UNPACK_FACTOR,
    SizeLimitedWriter,
    UploadError,
    check_reference,
    check_upload,
    safe_upload_name,
)
from .worker import DOWNLOADS, OUTPUT_FOLDER, CaseQueue

logger = logging.getLogger(__name__)

MAX_MC_SAMPLES = 50
_CHUNK_BYTES = 1024 * 1024
_FIELD_LIMIT_BYTES = 4096


@dataclass
class WebSettings:
    """What the API needs to know. ``token`` "" means no token (loopback only)."""

    store: CaseStore
    queue: CaseQueue
    token: str = ""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES


SETTINGS_KEY = web.AppKey("autoctv_settings", WebSettings)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def token_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """401 for an ``/api/`` request without the right bearer token (when one is set)."""
    settings = request.app[SETTINGS_KEY]
    if request.path.startswith("/api/") and not authorized(
        request.headers.get("Authorization"), settings.token
    ):
        return web.json_response(
            {"error": "missing or wrong access token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="autoctv"'},
        )
    return await handler(request)


def case_json(record: CaseRecord, queue: CaseQueue) -> dict[str, Any]:
    """The API's case object: the stored record plus its place in the queue."""
    data = record.as_json()
    data["queue_position"] = queue.position(record.id)
    data["downloads"] = _available_downloads(queue.store, record)
    edited_dir = queue.store.case_dir(record.id) / OUTPUT_FOLDER / EDITED_FOLDER
    data["edited"] = (edited_dir / EDITED_FILES["nifti"]).is_file()
    reference = queue.store.case_dir(record.id) / REFERENCE_FOLDER / REFERENCE_FILE
    data["reference"] = reference.is_file()
    data["structures"] = [s.as_json() for s in queue.store.structures(record.id)]
    return data


def _available_downloads(store: CaseStore, record: CaseRecord) -> list[str]:
    if record.status != "done":
        return []
    out_dir = store.case_dir(record.id) / OUTPUT_FOLDER
    return [kind for kind, (name, _) in DOWNLOADS.items() if (out_dir / name).is_file()]


def _record(request: web.Request) -> CaseRecord:
    settings = request.app[SETTINGS_KEY]
    case_id = request.match_info["case_id"]
    record = settings.store.get(case_id) if is_case_id(case_id) else None
    if record is None:
        raise web.HTTPNotFound(text='{"error": "no such case"}', content_type="application/json")
    return record


async def list_cases(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return web.json_response([case_json(r, settings.queue) for r in settings.store.list()])


async def get_case(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    return web.json_response(case_json(_record(request), settings.queue))


async def download(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    record = _record(request)
    kind = request.match_info["kind"]
    if kind not in DOWNLOADS:
        return _error(404, f"no download named {kind}; there are {', '.join(DOWNLOADS)}")
    if record.status != "done":
        return _error(409, f"the case is {record.status}; results exist once it is done")
    version = request.query.get("version", "current")
    if version not in ("current", "model"):
        return _error(400, "version must be 'current' (edited if saved, default) or 'model'")
    name, content_type = DOWNLOADS[kind]
    out_dir = settings.store.case_dir(record.id) / OUTPUT_FOLDER
    path = out_dir / name
    edited = out_dir / EDITED_FOLDER / EDITED_FILES.get(kind, "")
    prefix = ""
    if version == "current" and kind in EDITED_FILES and edited.is_file():
        path, prefix = edited, "edited-"
    if not path.is_file():
        return _error(404, f"this case has no {kind} result")
    filename = f"autoctv-{record.id[:8]}-{prefix}{name}"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


async def list_structures(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    record = _record(request)
    return web.json_response([s.as_json() for s in settings.store.structures(record.id)])


async def download_structure(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    record = _record(request)
    kind = request.match_info["kind"]
    text = request.match_info["number"]
    number = int(text) if text.isdigit() else 0
    structure = settings.store.structure(record.id, number) if number > 0 else None
    if structure is None:
        return _error(404, f"this case has no structure {text}")
    if kind not in STRUCTURE_DOWNLOADS:
        names = ", ".join(STRUCTURE_DOWNLOADS)
        return _error(404, f"no structure download named {kind}; there are {names}")
    name, content_type = STRUCTURE_DOWNLOADS[kind]
    path = structure_dir(settings.store.case_dir(record.id), number) / name
    if kind not in structure.files.split(",") or not path.is_file():
        return _error(404, f"structure {number} has no {kind} file")
    filename = f"autoctv-{record.id[:8]}-structure{number}-{name}"
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


async def cancel_case(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    record = _record(request)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, settings.queue.cancel, record.id)
    updated = settings.store.get(record.id)
    assert updated is not None
    return web.json_response(case_json(updated, settings.queue))


async def delete_case(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    record = _record(request)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, settings.queue.cancel, record.id)
    settings.store.delete(record.id)
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def create_case(request: web.Request) -> web.Response:
    """Receive, unpack and validate an upload; queue it. Refused uploads leave nothing."""
    settings = request.app[SETTINGS_KEY]
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + _CHUNK_BYTES:
        return _error(413, f"the upload is larger than the limit of {limit / 1024**2:.0f} MiB")
    if not request.content_type.startswith("multipart/"):
        return _error(400, "send the CT as multipart/form-data with the field 'file'")
    staging = Path(tempfile.mkdtemp(prefix="upload-", dir=settings.store.incoming_dir))
    try:
        fields, received, reference = await _receive_multipart(request, staging, limit)
        if received is None:
            return _error(400, "the request has no field named 'file'")
        upload_name, writer = received
        mc_samples = _mc_samples(fields.get("uncertainty", "0"))
        loop = asyncio.get_running_loop()
        checked = await loop.run_in_executor(
            None,
            lambda: check_upload(
                staging,
                writer.path,
                upload_name,
                series_uid=fields.get("series_uid") or None,
                max_unpacked_bytes=limit * UNPACK_FACTOR,
            ),
        )
        if reference is not None:
            reference_name, reference_writer = reference
            await loop.run_in_executor(
                None,
                lambda: check_reference(
                    staging, reference_writer.path, reference_name, checked.loaded
                ),
            )
        case_id = new_case_id()
        case_dir = settings.store.case_dir(case_id)
        staging.replace(case_dir)
        identity = checked.loaded.identity
        record = CaseRecord(
            id=case_id,
            status="queued",
            progress=0.0,
            stage="",
            error="",
            upload_name=upload_name,
            input_path=checked.input_path,
            input_sha256=writer.sha256,
            input_kind=checked.kind,
            series_uid=str(getattr(identity, "series_instance_uid", "") or ""),
            size_zyx=",".join(str(n) for n in checked.loaded.volume.array.shape),
            mc_samples=mc_samples,
            submitted_by=fields.get("user") or _client(request),
            model_name="",
            model_version="",
            model_sha256="",
            child_pid=None,
            created_at=now_s(),
            started_at=None,
            finished_at=None,
        )
        settings.store.add(record)
        settings.queue.submit(case_id)
        body = {"id": case_id, "status": "queued", "warnings": list(checked.loaded.warnings)}
        return web.json_response(body, status=201)
    except UploadError as error:
        return _error(error.status, str(error))
    except AutoCTVError as error:
        return _error(400, " ".join(str(error).split()))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _mc_samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UploadError(f"uncertainty must be a whole number of samples, not {text!r}") from None
    if not 0 <= value <= MAX_MC_SAMPLES:
        raise UploadError(f"uncertainty must be between 0 and {MAX_MC_SAMPLES} samples")
    return value


def _client(request: web.Request) -> str:
    return f"client {request.remote or 'unknown'}"


Received = tuple[str, SizeLimitedWriter]


async def _receive_multipart(
    request: web.Request, staging: Path, limit: int
) -> tuple[dict[str, str], Received | None, Received | None]:
    """Stream ``file`` (and ``reference``) to ``staging``; read the small text fields."""
    reader = await request.multipart()
    fields: dict[str, str] = {}
    received: Received | None = None
    reference: Received | None = None
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        name = getattr(part, "name", None)
        if (name == "file" and received is None) or (name == "reference" and reference is None):
            upload_name = safe_upload_name(getattr(part, "filename", None) or "upload")
            writer = SizeLimitedWriter(staging / f"received-{name}", limit)
            try:
                while True:
                    chunk = await part.read_chunk(_CHUNK_BYTES)
                    if not chunk:
                        break
                    writer.write(chunk)
            finally:
                writer.close()
            if writer.size_bytes == 0:
                if name == "reference":
                    writer.path.unlink()
                    continue  # an empty file input of the page: no reference
                raise UploadError(f"{upload_name} is empty (0 bytes)")
            if name == "file":
                received = (upload_name, writer)
            else:
                reference = (upload_name, writer)
        elif name in ("uncertainty", "series_uid", "user"):
            data = await part.read(decode=True)
            if len(data) > _FIELD_LIMIT_BYTES:
                raise UploadError(f"the field {name} is too long")
            fields[name] = data.decode("utf-8", errors="replace").strip()
        else:
            await part.release()
    return fields, received, reference


def add_api_routes(app: web.Application) -> None:
    """Register the API's routes on ``app`` (which must hold :data:`SETTINGS_KEY`)."""
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/cases", list_cases)
    app.router.add_post("/api/cases", create_case)
    app.router.add_get("/api/cases/{case_id}", get_case)
    app.router.add_delete("/api/cases/{case_id}", delete_case)
    app.router.add_post("/api/cases/{case_id}/cancel", cancel_case)
    # before /{kind}: aiohttp tries the routes in the order they were added
    app.router.add_get("/api/cases/{case_id}/structures", list_structures)
    app.router.add_get("/api/cases/{case_id}/structures/{number}/{kind}", download_structure)
    app.router.add_get("/api/cases/{case_id}/{kind}", download)
