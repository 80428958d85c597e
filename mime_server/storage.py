"""Content-addressed object store on a local directory, with crash-safe atomic writes; the storage
interface both backends implement (:class:`ObjectStore`) and the upload buffer they share.

mime-server keeps its files here (``--storage-backend filesystem``, the default) or in an
S3-compatible bucket (``--storage-backend s3``, :mod:`mime_server.s3storage`, which alone imports
boto3). Both give the same guarantees: an upload is acknowledged only once its object is durable,
an object is stored under the sha256 of its bytes (so a retry or a twin upload stores nothing new),
and no partial object is ever visible.

Layout under the storage root::

    objects/<sha256>        the bytes, visible only once complete and fsynced
    meta/<sha256>.json      detected mime type, charset and size (sidecar, written before the object)
    tmp/                    uploads in progress; emptied at start-up, never read as objects

Receiving. An upload is held in memory (hashed and counted as it streams) up to
``SPILL_THRESHOLD`` bytes; only a body that grows past it is spilled to a temp file in
``tmp/``, by :meth:`PendingUpload.spill`, which the server runs in a worker thread. Typical
uploads (tens of KiB) therefore touch the file system only once, at commit, off the event loop.

Committing. Every object write goes temp file -> fsync -> rename -> fsync(objects/), so a crash
(kill -9, power loss) leaves either the complete object or nothing under ``objects/``. An
upload whose content is already stored creates no file at all. The fsync of ``objects/`` is
shared (:class:`GroupSync`): a commit is acknowledged only after an fsync of the directory
that *started* after its rename, and commits waiting at the same time share one.

The sidecar. It is a cache of a pure function of the bytes (libmagic's answer), written
before the object is renamed into ``objects/`` (so a visible object has its metadata) but not
fsynced: if a power loss takes it, reads detect again from the object. It is created directly
in ``meta/`` with O_CREAT|O_EXCL (one directory operation instead of a temp file in ``tmp/``
plus a rename), which is safe because:

- a torn sidecar (a crash between create and write, or a power loss before writeback) is
  never served: :meth:`ContentStore.get` accepts a sidecar only if it parses as a JSON object
  with a ``mime_type`` and the object's exact ``size``; any strict prefix of the JSON we write
  is invalid JSON, so a partial one reads as missing and the server detects again;
- a sidecar found already present is checked the same way before it is relied on; a torn one
  is then replaced atomically (temp file in ``tmp/``, rename: the costlier way, kept for this
  rare case);
- commits of the same id are serialised in-process (one writer process owns the store), so no
  commit renames an object while a twin is still writing the sidecar it relies on.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mime_server.limits import UPLOAD_MEMORY_BUDGET_BYTES

OBJECT_ID = re.compile(r"[0-9a-f]{64}")
# Uploads up to this size stay in memory until commit; a larger body is written to tmp/ in batches
# of about this size (by a worker thread), so an upload never holds much more than this in memory
# (and all uploads together by the memory budget).
SPILL_THRESHOLD = 1024 * 1024
# The memory budget (UPLOAD_MEMORY_BUDGET_BYTES, a setting): all uploads together hold at most about
# this much in memory; past it, every upload still in memory spills at its next chunk, so a burst of
# concurrent uploads degrades to disk instead of growing the process towards its container memory
# limit (mime-server: 256 MB).
_FILE_MODE = 0o600  # as tempfile.mkstemp creates them
IOV_MAX = 1024  # buffers per writev (Linux's limit)


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


class StorageUnavailable(OSError):
    """The object store could not be reached or refused the request: nothing is known to be stored,
    and a retry is safe (content addressing makes it idempotent)."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EIO, detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class StorageConfigError(ValueError):
    """A storage setting that cannot work (a bucket that does not exist, credentials it refuses);
    the message names the option."""


class RangeReader(Protocol):
    """Bytes of one range of a stored object, read in order (a file, or an object store's response body)."""

    def read(self, size: int = -1) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    """A committed object: what was detected about it, its size and modification time (``stat``), and
    where its bytes are: a local file (``path``, filesystem backend) or a remote object read through
    ``open_range(start, end)``, a blocking reader of bytes ``start`` to ``end - 1``."""

    id: str
    path: Path | None
    stat: os.stat_result
    metadata: dict[str, Any]
    open_range: Callable[[int, int], RangeReader] | None = None


@dataclass(frozen=True)
class S3Location:
    """Where the S3 backend keeps objects: a bucket, a key prefix (empty or ending in ``/``), the
    endpoint of an S3-compatible store (None: AWS) and the region (None: botocore's own lookup)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket:
            raise StorageConfigError("--s3-bucket must name a bucket, got ''")
        if self.prefix and (not self.prefix.endswith("/") or self.prefix.startswith("/")):
            raise StorageConfigError(f"--s3-prefix must be empty or end with '/' and not start with it, "
                                     f"got {self.prefix!r}")
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise StorageConfigError(f"--s3-endpoint must be an http:// or https:// URL, got {self.endpoint!r}")

    def __str__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_chunks(fd: int, chunks: list[bytes]) -> None:
    """Write the chunks in order with writev: no joined copy of them is ever made."""
    pending = [memoryview(chunk) for chunk in chunks if chunk]
    while pending:
        written = os.writev(fd, pending[:IOV_MAX])
        while written:
            if written >= len(pending[0]):
                written -= len(pending.pop(0))
            else:
                pending[0] = pending[0][written:]
                written = 0


def valid_metadata(raw: bytes, size: int | None = None) -> dict[str, Any] | None:
    """The sidecar's metadata if it is complete: a JSON object with a ``mime_type`` (and, when
    both are known, the object's size); None for a torn, truncated or foreign sidecar."""
    try:
        metadata = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("mime_type"), str):
        return None
    if size is not None and "size" in metadata and metadata["size"] != size:
        return None
    return metadata


class GroupSync:
    """Group commit of one directory fsync, shared by the commits that wait at the same time.

    Rule: :meth:`sync` returns only after an fsync that *started* after :meth:`sync` was
    called has completed successfully (so it covers every rename done before the call). An
    fsync already in flight may have started before the caller's rename, so it does not
    count: the caller waits for the next one, which one of the waiting threads runs for all
    of them. At most one fsync runs at a time. Thread-safe.
    """

    def __init__(self, fsync: Callable[[], None]) -> None:
        self._fsync = fsync
        self._cond = threading.Condition()
        self._started = 0    # generation of the last fsync started
        self._finished = 0   # generation of the last fsync finished (successfully or not)
        self._running = False
        self._error: OSError | None = None  # outcome of generation _finished
        self.fsyncs = 0      # fsyncs run so far (for metrics and tests)

    def sync(self) -> None:
        """Block until a directory fsync that started after this call has completed; raise its error."""
        with self._cond:
            # Whether or not an fsync is running, the first one that starts after now is the next.
            target = self._started + 1
            while self._finished < target:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                self._cond.release()
                # Every waiter of this generation gets its outcome; anything but success is a failure.
                error: OSError | None = OSError(errno.EIO, "directory fsync did not complete")
                try:
                    self._fsync()
                    error = None
                except OSError as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    self.fsyncs += 1
                    self._running = False
                    self._finished = generation
                    self._error = error
                    self._cond.notify_all()
            # The latest finished generation started after this call (target <= it); it is the
            # one that decides, so a failure is never hidden by an older success.
            if self._error is not None:  # a fresh exception per caller: they raise it in parallel
                raise OSError(self._error.errno, self._error.strerror) from self._error


class IdLocks:
    """One lock per object id while in use: serialises commits of the same content."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._mutex:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._mutex:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class MemoryBudget:
    """Bytes of upload bodies held in memory by all uploads of a store together (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        with self._lock:
            self.used += size

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size

    @property
    def exhausted(self) -> bool:
        return self.used > self.limit


class PendingUpload:
    """An upload being received: hashed and counted as it streams, held in memory until it
    grows past ``spill_threshold`` bytes, then spilled to a temp file in ``tmp/``.

    :meth:`write` never touches the file system (it runs on the event loop). :meth:`spill`,
    :meth:`finish` and, once spilled, :meth:`discard` are blocking: run them in a worker thread.
    """

    def __init__(self, tmp_dir: Path, spill_threshold: int = SPILL_THRESHOLD,
                 budget: MemoryBudget | None = None, hashed: bool = True, fsync: bool = True) -> None:
        self._tmp_dir = tmp_dir
        # The filesystem store renames the temp file into objects/, so it must be durable first; the
        # S3 store only reads it back to upload it, and a crash loses it either way.
        self._fsync = fsync
        self._threshold = spill_threshold
        self._budget = budget
        self._chunks: list[bytes] = []
        self._buffered = 0
        # A body that is never stored (a detect request's prefix) is not hashed: sha256 is a good
        # part of what a small request costs.
        self._hash = hashlib.sha256() if hashed else None
        self._fd: int | None = None
        self._durable = False  # finish() completed: the temp file is written, fsynced and closed
        self.path: Path | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Take the next piece of the body (in memory; hashed now)."""
        if self._hash is not None:
            self._hash.update(chunk)
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._budget is not None:
            self._budget.take(len(chunk))

    def _drop_buffer(self) -> None:
        if self._budget is not None and self._buffered:
            self._budget.give(self._buffered)
        self._chunks, self._buffered = [], 0

    @property
    def sha256(self) -> str:
        if self._hash is None:
            raise RuntimeError("this upload was begun unhashed: it cannot be committed")
        return self._hash.hexdigest()

    @property
    def on_disk(self) -> bool:
        """True once a temp file exists for this upload."""
        return self.path is not None

    @property
    def needs_spill(self) -> bool:
        """True when the memory buffer has grown past the threshold, or all uploads together hold
        more than the store's memory budget: call :meth:`spill` (in a thread)."""
        return self._buffered > self._threshold or (
            self._buffered > 0 and self._budget is not None and self._budget.exhausted)

    def content(self) -> bytes:
        """The whole body, for an upload still in memory (one copy, kept for the commit)."""
        if self.on_disk:
            raise RuntimeError("the upload was spilled to disk: read it from its path")
        if len(self._chunks) != 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def spill(self) -> None:
        """Move the buffered bytes to the temp file, creating it on the first call. Blocking."""
        self._write_buffer()

    def _write_buffer(self) -> None:
        if self._fd is None:
            fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self._tmp_dir)
            self._fd, self.path = fd, Path(name)
        chunks = self._chunks
        self._drop_buffer()
        _write_chunks(self._fd, chunks)

    def finish(self) -> Path:
        """Write everything to the temp file (creating it if the upload was in memory), fsync (unless
        begun with ``fsync=False``) and close it, so its bytes are durable before any rename; return
        its path. Blocking."""
        if self._durable:
            assert self.path is not None
            return self.path
        self._write_buffer()
        assert self._fd is not None and self.path is not None
        fd, self._fd = self._fd, None
        try:
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._durable = True
        return self.path

    def renamed(self) -> None:
        """Record that the finished temp file was renamed into place: nothing is left to discard."""
        self.path = None

    def discard(self) -> None:
        """Drop the upload (bad input, duplicate content, aborted request or failure); idempotent.

        Blocking only if a temp file exists (``on_disk``)."""
        self._drop_buffer()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class ObjectStore(Protocol):
    """What mime-server needs of a storage backend (:class:`ContentStore`, ``S3ContentStore``)."""

    memory: MemoryBudget
    # True when get() goes over the network: the server then runs it in a thread (the filesystem
    # store's get() is one stat, cheaper inline than a thread hop).
    remote: bool

    @property
    def location(self) -> str:
        """Where the objects are, for operators (a directory, or s3://bucket/prefix)."""
        ...

    def begin(self, hashed: bool = True) -> PendingUpload:
        """Start receiving an upload (in memory, spilled to local disk past the threshold)."""
        ...

    def commit(self, upload: PendingUpload, metadata: dict[str, Any]) -> tuple[str, bool]:
        """Make an upload durable and visible under its sha256, with its metadata; return (id, created).
        Blocking. The upload is discarded in every case."""
        ...

    def get(self, object_id: str) -> StoredObject:
        """A committed object by id; raise InvalidObjectId or ObjectNotFound (or StorageUnavailable)."""
        ...

    def object_ids(self) -> list[str]:
        """Ids of every visible object (a full listing: for tests and tools, not for requests)."""
        ...

    def usage(self) -> tuple[int, int]:
        """(objects, bytes) the stored-objects gauges start from."""
        ...

    def check_ready(self) -> None:
        """Raise OSError unless the store can take an upload now. Blocking."""
        ...


class ContentStore:
    """Stores bytes under their sha256 in a local directory; the same content is stored once.

    ``fsync_dir`` is the directory fsync (injectable for tests); commits share it through a
    :class:`GroupSync` on ``objects/``. Uploads stay in memory up to ``spill_threshold`` bytes.
    """

    remote = False

    def __init__(self, root: Path, fsync_dir: Callable[[Path], None] = _fsync_dir,
                 spill_threshold: int = SPILL_THRESHOLD, memory_budget: int = UPLOAD_MEMORY_BUDGET_BYTES) -> None:
        self.root = root
        self.memory = MemoryBudget(memory_budget)
        self.spill_threshold = spill_threshold
        self.objects = root / "objects"
        self.meta = root / "meta"
        self.tmp = root / "tmp"
        for directory in (self.objects, self.meta, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._clean_tmp()
        self.objects_sync = GroupSync(lambda: fsync_dir(self.objects))
        self._id_locks = IdLocks()

    @property
    def location(self) -> str:
        return str(self.root)

    def _clean_tmp(self) -> None:
        # Leftovers of uploads interrupted by a crash: never acknowledged, safe to drop.
        for leftover in self.tmp.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def begin(self, hashed: bool = True) -> PendingUpload:
        """Start a new upload (in memory; no file-system call); ``hashed=False`` for a body that is
        only looked at, never committed."""
        return PendingUpload(self.tmp, self.spill_threshold, self.memory, hashed)

    def _sidecar(self, object_id: str) -> Path:
        return self.meta / f"{object_id}.json"

    def _read_metadata(self, object_id: str, size: int | None = None) -> dict[str, Any] | None:
        try:
            return valid_metadata(self._sidecar(object_id).read_bytes(), size)
        except FileNotFoundError:
            return None

    def _replace_metadata(self, object_id: str, data: bytes) -> None:
        fd, name = tempfile.mkstemp(prefix="meta-", suffix=".part", dir=self.tmp)
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            os.replace(name, self._sidecar(object_id))
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    def _write_metadata(self, object_id: str, metadata: dict[str, Any]) -> None:
        """Make sure ``meta/<id>.json`` holds complete metadata (see the module docstring).

        Callers hold the id's lock, so no other thread writes this sidecar meanwhile.
        """
        data = json.dumps(metadata, sort_keys=True).encode()
        path = self._sidecar(object_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        except FileExistsError:
            if self._read_metadata(object_id, metadata.get("size")) is None:  # torn by a crash
                self._replace_metadata(object_id, data)
            return
        try:
            _write_all(fd, data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def commit(self, upload: PendingUpload, metadata: dict[str, Any]) -> tuple[str, bool]:
        """Make an upload durable and visible; return (id, created). Blocking: run it in a thread.

        The sidecar goes first, so a visible object always has its metadata. The upload is
        discarded in every case (its temp file renamed away or removed).
        """
        object_id = upload.sha256
        final = self.objects / object_id
        try:
            with self._id_locks.hold(object_id):
                created = not final.exists()
                if created:
                    temp = upload.finish()
                    self._write_metadata(object_id, metadata)
                    os.replace(temp, final)
                    upload.renamed()
                else:  # stored already; make sure its sidecar is complete too
                    self._write_metadata(object_id, metadata)
        finally:
            upload.discard()
        # Created or not: a concurrent twin may have renamed without its directory fsync yet.
        self.objects_sync.sync()
        return object_id, created

    def get(self, object_id: str) -> StoredObject:
        """Look up a committed object by id; raise InvalidObjectId or ObjectNotFound.

        The metadata is {} when the sidecar is missing, torn or does not match the object:
        callers then detect again.
        """
        object_id = validate_id(object_id)
        path = self.objects / object_id
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(object_id) from None
        return StoredObject(object_id, path, stat, self._read_metadata(object_id, stat.st_size) or {})

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

    def check_ready(self) -> None:
        """Raise OSError unless a file can be created, fsynced and removed in the temp area."""
        fd, name = tempfile.mkstemp(prefix="ready-", dir=self.tmp)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
