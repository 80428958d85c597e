"""Content-addressed object store on a local directory, with crash-safe atomic writes.

Layout under the storage root::

    objects/<sha256>        the bytes, visible only once complete and fsynced
    meta/<sha256>.json      detected mime type and charset (sidecar, written before the object)
    tmp/                    uploads in progress; emptied at start-up, never read as objects

Every object write goes temp file -> fsync -> rename -> fsync(objects/), so a crash (kill -9,
power loss) leaves either the complete object or nothing under ``objects/``.

The sidecar is a cache of a pure function of the bytes (libmagic's answer): it is written
atomically (temp file, rename) before the object, but not fsynced. If a power loss takes it,
reads detect again from the object. That saves two of four fsyncs per upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

OBJECT_ID = re.compile(r"[0-9a-f]{64}")


class InvalidObjectId(ValueError):
    """An object id that is not 64 lowercase hex characters."""

    def __init__(self, value: str) -> None:
        super().__init__(f"object id must be 64 hex characters (sha256), got {value!r}")
        self.value = value


class ObjectNotFound(KeyError):
    """No object with this id is stored."""

    def __init__(self, object_id: str) -> None:
        super().__init__(object_id)
        self.value = object_id


@dataclass(frozen=True)
class StoredObject:
    """A committed object: where it lives and what was detected about it."""

    id: str
    path: Path
    stat: os.stat_result
    metadata: dict[str, Any]


def validate_id(value: str) -> str:
    """Return the id if it is a sha256 hex digest; raise InvalidObjectId otherwise."""
    lowered = value.lower()
    if not OBJECT_ID.fullmatch(lowered):
        raise InvalidObjectId(value)
    return lowered


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingUpload:
    """An upload being written to a temp file in ``tmp/``, hashed and counted as it streams."""

    def __init__(self, tmp_dir: Path) -> None:
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=tmp_dir)
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the temp file so its bytes are durable before any rename."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        """Drop the temp file (bad input, duplicate content or aborted request)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class ContentStore:
    """Stores bytes under their sha256; the same content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.meta = root / "meta"
        self.tmp = root / "tmp"
        for directory in (self.objects, self.meta, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        # Leftovers of uploads interrupted by a crash: never acknowledged, safe to drop.
        for leftover in self.tmp.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def begin(self) -> PendingUpload:
        """Start a new upload in the temp area."""
        return PendingUpload(self.tmp)

    def _write_metadata(self, object_id: str, metadata: dict[str, Any]) -> None:
        fd, name = tempfile.mkstemp(prefix="meta-", suffix=".part", dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(metadata, sort_keys=True).encode())
            os.replace(name, self.meta / f"{object_id}.json")
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def commit(self, upload: PendingUpload, metadata: dict[str, Any]) -> tuple[str, bool]:
        """Make an upload durable and visible; return (id, created). Blocking: run it in a thread.

        The sidecar goes first, so a visible object always has its metadata.
        """
        upload.finish()
        object_id = upload.sha256
        final = self.objects / object_id
        if final.exists():
            upload.discard()
            if not (self.meta / f"{object_id}.json").exists():
                self._write_metadata(object_id, metadata)
            # A concurrent twin may have renamed without its directory fsync yet.
            _fsync_dir(self.objects)
            return object_id, False
        try:
            self._write_metadata(object_id, metadata)
            os.replace(upload.path, final)
        except BaseException:
            upload.discard()
            raise
        _fsync_dir(self.objects)
        return object_id, True

    def get(self, object_id: str) -> StoredObject:
        """Look up a committed object by id; raise InvalidObjectId or ObjectNotFound."""
        object_id = validate_id(object_id)
        path = self.objects / object_id
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(object_id) from None
        try:
            metadata = json.loads((self.meta / f"{object_id}.json").read_bytes())
        except (FileNotFoundError, ValueError):  # lost or torn by a power cut: callers detect again
            metadata = {}
        return StoredObject(object_id, path, stat, metadata)

    def object_ids(self) -> list[str]:
        """Ids of every visible object (names under objects/ that are sha256 digests)."""
        return sorted(p.name for p in self.objects.iterdir() if OBJECT_ID.fullmatch(p.name))

    def usage(self) -> tuple[int, int]:
        """(object count, total bytes) of the visible objects."""
        count = total = 0
        for entry in os.scandir(self.objects):
            if OBJECT_ID.fullmatch(entry.name):
                count += 1
                total += entry.stat().st_size
        return count, total

    def check_writable(self) -> None:
        """Raise OSError unless a file can be created, fsynced and removed in the temp area."""
        fd, name = tempfile.mkstemp(prefix="ready-", dir=self.tmp)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
