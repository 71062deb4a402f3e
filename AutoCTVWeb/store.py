"""Cases and their history in SQLite, and the case folders, under the web app's data folder.

Layout of the data folder::

    <data>/autoctv-web.sqlite3        the case table (WAL journal; every change is committed)
    <data>/cases/<id>/input/          the validated upload (a DICOM folder or one image file)
    <data>/cases/<id>/out/            the outputs of ``autoctv predict`` for this case
    <data>/cases/<id>/out/structures/<n>/   structure n completed in the viewer
    <data>/incoming/                  uploads being received and checked (emptied at start)

A row is written only after its upload has been validated, so a refused upload leaves no row
and no folder. Each change is committed at once, so the list survives a restart and a kill -9;
cases that were queued or running when the server stopped are queued again at the next start.
A second table, ``structures``, records every structure completed from sparse slices in the
viewer (its case, number, method, drawn slices, size and time); deleting a case deletes them.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DATABASE_NAME = "autoctv-web.sqlite3"
CASES_FOLDER = "cases"
INCOMING_FOLDER = "incoming"
STATUSES = ("queued", "running", "done", "failed", "cancelled")

_COLUMNS = (
    ("id", "TEXT PRIMARY KEY"),
    ("status", "TEXT NOT NULL"),
    ("progress", "REAL NOT NULL DEFAULT 0"),
    ("stage", "TEXT NOT NULL DEFAULT ''"),
    ("error", "TEXT NOT NULL DEFAULT ''"),
    ("upload_name", "TEXT NOT NULL"),
    ("input_path", "TEXT NOT NULL"),
    ("input_sha256", "TEXT NOT NULL"),
    ("input_kind", "TEXT NOT NULL"),
    ("series_uid", "TEXT NOT NULL DEFAULT ''"),
    ("size_zyx", "TEXT NOT NULL DEFAULT ''"),
    ("mc_samples", "INTEGER NOT NULL DEFAULT 0"),
    ("submitted_by", "TEXT NOT NULL DEFAULT ''"),
    ("model_name", "TEXT NOT NULL DEFAULT ''"),
    ("model_version", "TEXT NOT NULL DEFAULT ''"),
    ("model_sha256", "TEXT NOT NULL DEFAULT ''"),
    ("child_pid", "INTEGER"),
    ("created_at", "REAL NOT NULL"),
    ("started_at", "REAL"),
    ("finished_at", "REAL"),
)


_STRUCTURE_COLUMNS = (
    ("case_id", "TEXT NOT NULL"),
    ("number", "INTEGER NOT NULL"),
    ("name", "TEXT NOT NULL"),
    ("method", "TEXT NOT NULL"),
    ("drawn", "TEXT NOT NULL DEFAULT ''"),
    ("drawn_slices", "INTEGER NOT NULL DEFAULT 0"),
    ("voxels", "INTEGER NOT NULL DEFAULT 0"),
    ("volume_ml", "REAL NOT NULL DEFAULT 0"),
    ("seconds", "REAL NOT NULL DEFAULT 0"),
    ("model", "TEXT NOT NULL DEFAULT ''"),
    ("files", "TEXT NOT NULL DEFAULT ''"),
    ("created_at", "REAL NOT NULL"),
)


@dataclass(frozen=True)
class StructureRecord:
    """A structure completed from a few drawn slices in the viewer, stored with its case.

    ``number`` counts from 1 within the case (its folder is ``out/structures/<number>``);
    ``method`` is the completion method ("learned" or "interpolate"); ``drawn`` says which
    slices were drawn (e.g. "2 axial (z) slices: 20, 24") and ``drawn_slices`` how many;
    ``volume_ml`` is the completed volume in mL; ``seconds`` the completion's wall time;
    ``model`` the completion model ("name version sha256", "" for interpolation); ``files``
    the download kinds written, comma-separated; ``created_at`` seconds since the epoch.
    """

    case_id: str
    number: int
    name: str
    method: str
    drawn: str
    drawn_slices: int
    voxels: int
    volume_ml: float
    seconds: float
    model: str
    files: str
    created_at: float

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (``files`` as a list: the downloads)."""
        data = asdict(self)
        data["downloads"] = [kind for kind in self.files.split(",") if kind]
        del data["files"]
        return data


@dataclass(frozen=True)
class CaseRecord:
    """One case as stored. Times are seconds since the epoch (UTC); ``progress`` is 0–1.

    ``input_path`` is relative to the case folder; ``size_zyx`` is "Z,Y,X" voxels;
    ``input_kind`` is ``dicom`` or the image file format; ``child_pid`` is the process (and
    process group) ID of the ``autoctv predict`` child while the case runs.
    """

    id: str
    status: str
    progress: float
    stage: str
    error: str
    upload_name: str
    input_path: str
    input_sha256: str
    input_kind: str
    series_uid: str
    size_zyx: str
    mc_samples: int
    submitted_by: str
    model_name: str
    model_version: str
    model_sha256: str
    child_pid: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (the API's case object)."""
        return asdict(self)


def new_case_id() -> str:
    """A fresh case ID: 32 lowercase hex digits (also a safe folder name)."""
    return uuid.uuid4().hex


def is_case_id(text: str) -> bool:
    """True if ``text`` has the form of a case ID (so it can be used as a folder name)."""
    return len(text) == 32 and all(char in "0123456789abcdef" for char in text)


class CaseStore:
    """The case table and case folders of one data folder; safe to use from several threads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.cases_dir = self.data_dir / CASES_FOLDER
        self.incoming_dir = self.data_dir / INCOMING_FOLDER
        self.cases_dir.mkdir(parents=True, exist_ok=True)
        if self.incoming_dir.exists():
            shutil.rmtree(self.incoming_dir, ignore_errors=True)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            str(self.data_dir / DATABASE_NAME), check_same_thread=False, isolation_level=None
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
        self._connection.execute(f"CREATE TABLE IF NOT EXISTS cases ({columns})")
        columns = ", ".join(f"{name} {kind}" for name, kind in _STRUCTURE_COLUMNS)
        self._connection.execute(
            f"CREATE TABLE IF NOT EXISTS structures ({columns}, PRIMARY KEY (case_id, number))"
        )

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def case_dir(self, case_id: str) -> Path:
        """The folder of a case (``<data>/cases/<id>``)."""
        if not is_case_id(case_id):
            raise ValueError(f"not a case ID: {case_id!r}")
        return self.cases_dir / case_id

    def add(self, record: CaseRecord) -> None:
        """Insert a new case (its folder must already hold the validated input)."""
        values = asdict(record)
        names = [name for name, _ in _COLUMNS]
        placeholders = ", ".join("?" for _ in names)
        with self._cursor() as cursor:
            cursor.execute(
                f"INSERT INTO cases ({', '.join(names)}) VALUES ({placeholders})",
                [values[name] for name in names],
            )

    def get(self, case_id: str) -> CaseRecord | None:
        """The case, or None if there is none with this ID."""
        with self._cursor() as cursor:
            row = cursor.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        return None if row is None else CaseRecord(*row)

    def list(self) -> list[CaseRecord]:
        """Every case, oldest first."""
        with self._cursor() as cursor:
            rows = cursor.execute("SELECT * FROM cases ORDER BY created_at, id").fetchall()
        return [CaseRecord(*row) for row in rows]

    def update(self, case_id: str, **changes: Any) -> None:
        """Change some columns of a case (committed at once)."""
        allowed = {name for name, _ in _COLUMNS} - {"id"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown case fields: {sorted(unknown)}")
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown status {changes['status']!r}")
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._cursor() as cursor:
            cursor.execute(
                f"UPDATE cases SET {assignments} WHERE id = ?", [*changes.values(), case_id]
            )

    def add_structure(self, record: StructureRecord) -> None:
        """Record a completed structure (its files must already be in its folder)."""
        values = asdict(record)
        names = [name for name, _ in _STRUCTURE_COLUMNS]
        placeholders = ", ".join("?" for _ in names)
        with self._cursor() as cursor:
            cursor.execute(
                f"INSERT OR REPLACE INTO structures ({', '.join(names)}) VALUES ({placeholders})",
                [values[name] for name in names],
            )

    def structures(self, case_id: str) -> list[StructureRecord]:
        """The structures completed for a case, in the order they were made."""
        with self._cursor() as cursor:
            rows = cursor.execute(
                "SELECT * FROM structures WHERE case_id = ? ORDER BY number", (case_id,)
            ).fetchall()
        return [StructureRecord(*row) for row in rows]

    def structure(self, case_id: str, number: int) -> StructureRecord | None:
        """One completed structure of a case, or None."""
        with self._cursor() as cursor:
            row = cursor.execute(
                "SELECT * FROM structures WHERE case_id = ? AND number = ?", (case_id, number)
            ).fetchone()
        return None if row is None else StructureRecord(*row)

    def next_structure_number(self, case_id: str) -> int:
        """The number the next structure of this case gets (1 for the first)."""
        with self._cursor() as cursor:
            row = cursor.execute(
                "SELECT MAX(number) FROM structures WHERE case_id = ?", (case_id,)
            ).fetchone()
        return 1 if row is None or row[0] is None else int(row[0]) + 1

    def delete(self, case_id: str) -> bool:
        """Remove a case's row, its structures and its folder; False if there was no such case."""
        with self._cursor() as cursor:
            cursor.execute("DELETE FROM cases WHERE id = ?", (case_id,))
            existed = cursor.rowcount > 0
            cursor.execute("DELETE FROM structures WHERE case_id = ?", (case_id,))
        folder = self.case_dir(case_id)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        return existed

    def interrupted(self) -> list[CaseRecord]:
        """Cases left queued or running by a server that stopped; they are reset to queued."""
        records = [record for record in self.list() if record.status in ("queued", "running")]
        for record in records:
            self.update(record.id, status="queued", progress=0.0, stage="", started_at=None)
        return records


def now_s() -> float:
    """The current time, seconds since the epoch."""
    return time.time()
