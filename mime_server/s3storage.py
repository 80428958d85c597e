"""Content-addressed object store on an S3-compatible bucket (boto3): the filesystem store's guarantees, for replicas.

Imported only when ``--storage-backend s3`` is chosen, so the filesystem default never loads boto3.

Layout under the prefix (``--s3-prefix``, e.g. ``mime-storage/``)::

    <prefix>objects/<sha256>    the bytes; the detected type, charset and size in its own metadata

Metadata. It travels on the object itself (user metadata ``x-amz-meta-mime-metadata``: the same
JSON the filesystem sidecar holds, read back through the same :func:`valid_metadata`), so it
becomes visible in the same atomic step as the bytes: there is no sidecar to order or to tear.
A visible object without valid metadata (put there by something else) is detected again on read.

Receiving. As on the filesystem: in memory up to the spill threshold, then spilled to a temp file
in this process's spill directory on local disk (under the system temp directory, ``TMPDIR``,
e.g. the container's ``/tmp``), within the same shared memory budget. Spilled files are not
fsynced: nothing is renamed into place from them, they are only read back for the upload.

Committing. A HeadObject first: content already stored is acknowledged without sending it again.
Otherwise one PutObject (bodies up to ``multipart_threshold``) or a multipart upload (larger
bodies, parts of ``part_size`` streamed from the spilled file). S3 makes an object visible only
when its PutObject or CompleteMultipartUpload succeeds, and answers only once it is durably
stored, so the 201 that follows is never early and a partial object is never visible; a failed
multipart upload is aborted (a process killed mid-upload leaves an incomplete upload, invisible,
that the bucket's lifecycle rule ``AbortIncompleteMultipartUpload`` removes). The PutObject
carries ``x-amz-checksum-sha256`` of the content, the object's own key: the store refuses bytes
that do not hash to it.

Idempotence. Both writes are conditional (``If-None-Match: *``): a twin upload of the same
content by another replica gets 412, which means "stored already" (created=False); a 409
(a concurrent conditional write still in flight) is retried. Twins within one process are
serialised by an id lock, so the second sees the first's object at its HeadObject. A store that
ignores ``If-None-Match`` overwrites the object with identical bytes and metadata, which is
harmless: only the created/deduplicated count can then be off.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from s3transfer.utils import ReadFileChunk

from mime_server.limits import UPLOAD_MEMORY_BUDGET_BYTES
from mime_server.storage import (
    OBJECT_ID, SPILL_THRESHOLD, IdLocks, MemoryBudget, ObjectNotFound, PendingUpload, RangeReader, S3Location,
    StorageConfigError, StorageUnavailable, StoredObject, valid_metadata, validate_id,
)

# Bodies above this go as a multipart upload of parts this size (s3transfer's own defaults): a
# failed part is resent alone, not the whole body. S3's minimum part size is 5 MiB.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
METADATA_KEY = "mime-metadata"  # sent as the header x-amz-meta-mime-metadata
# Attempts of a conditional write answered 409 (another conditional write of the key in flight).
CONFLICT_ATTEMPTS = 3
# Uploads and reads run in the server's worker threads (anyio's default: 40): one pooled connection each.
POOL_CONNECTIONS = 40
SPILL_DIR_PREFIX = "mime-server-uploads-"
_CLAIMING_PREFIX = ".claiming-"
_LOCK_NAME = ".lock"


def s3_client(location: S3Location) -> Any:
    """A boto3 S3 client for ``location``: path-style addressing on a custom endpoint (what
    S3-compatible stores serve), standard retries (3 attempts; env AWS_MAX_ATTEMPTS), credentials
    from boto3's usual chain (``AWS_SHARED_CREDENTIALS_FILE`` on the cluster)."""
    config = Config(retries={"mode": "standard"}, connect_timeout=5, read_timeout=60,
                    max_pool_connections=POOL_CONNECTIONS,
                    s3={"addressing_style": "path"} if location.endpoint else None)
    return boto3.session.Session().client("s3", region_name=location.region, endpoint_url=location.endpoint,
                                          config=config)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(action: str, where: str, exc: Exception) -> StorageUnavailable:
    """The error a failed S3 call becomes: what was asked, of which key, and what came back."""
    if isinstance(exc, ClientError):
        return StorageUnavailable(f"{action} {where}: the object store answered {_status(exc)} {_code(exc)}")
    return StorageUnavailable(f"{action} {where}: {type(exc).__name__}: {exc}")


def object_stat(size: int, mtime: float) -> os.stat_result:
    """A stat result carrying a remote object's size and modification time (what responses read of it)."""
    return os.stat_result((stat.S_IFREG | 0o444, 0, 0, 1, 0, 0, size, int(mtime), int(mtime), int(mtime)))


class SpillDirectory:
    """This process's directory for spilled uploads, under a temp root shared with other processes.

    Each directory holds an flock on its ``.lock`` for as long as its process lives (the kernel
    drops it at any exit, kill -9 included), so a starting process removes exactly the directories
    of processes that are gone: the spilled files a crash left behind. A directory is locked
    before it gets its final name, so none is ever seen unlocked while in use.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for entry in root.glob(SPILL_DIR_PREFIX + "*"):
            self._remove_if_abandoned(entry)
        claiming = Path(tempfile.mkdtemp(prefix=_CLAIMING_PREFIX, dir=root))
        self._lock = os.open(claiming / _LOCK_NAME, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.path = root / (SPILL_DIR_PREFIX + claiming.name.removeprefix(_CLAIMING_PREFIX))
        os.rename(claiming, self.path)

    @staticmethod
    def _remove_if_abandoned(entry: Path) -> None:
        try:
            fd = os.open(entry / _LOCK_NAME, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return  # not a spill directory, or removed meanwhile by another starting process
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its process is alive
        finally:
            os.close(fd)
        shutil.rmtree(entry, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Temp files of uploads in progress in this directory."""
        return [entry for entry in self.path.iterdir() if entry.name != _LOCK_NAME]

    def check_writable(self) -> None:
        """Raise OSError unless a file can be created and removed here."""
        fd, name = tempfile.mkstemp(prefix="ready-", dir=self.path)
        os.close(fd)
        os.unlink(name)

    def close(self) -> None:
        """Remove the directory and release its lock (the process is done with it)."""
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)


class S3ContentStore:
    """Stores bytes under their sha256 as objects of an S3-compatible bucket; the same content is stored once.

    ``client`` is a boto3 S3 client (injectable for tests); ``spill_root`` the local directory
    under which spilled uploads go (default: the system temp directory).

    Raises StorageConfigError when the bucket does not exist or the credentials are refused or
    missing (a setting that cannot work); an unreachable store only fails :meth:`check_ready`.
    """

    remote = True

    def __init__(self, location: S3Location, *, client: Any = None, spill_root: Path | None = None,
                 spill_threshold: int = SPILL_THRESHOLD, memory_budget: int = UPLOAD_MEMORY_BUDGET_BYTES,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE) -> None:
        self.s3 = location
        self.memory = MemoryBudget(memory_budget)
        self.spill_threshold = spill_threshold
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.client = client if client is not None else s3_client(location)
        self._objects = f"{location.prefix}objects/"
        self._id_locks = IdLocks()
        self._refuse_unusable_bucket()
        self.spill = SpillDirectory(spill_root or Path(tempfile.gettempdir()))

    @property
    def location(self) -> str:
        return str(self.s3)

    def key(self, object_id: str) -> str:
        """The object key of an id: ``<prefix>objects/<sha256>``."""
        return self._objects + object_id

    def close(self) -> None:
        """Release the spill directory (tests; a server process keeps its store until it exits)."""
        self.spill.close()

    def _refuse_unusable_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.s3.bucket)
        except NoCredentialsError:
            raise StorageConfigError("no credentials for --storage-backend s3: set AWS_SHARED_CREDENTIALS_FILE "
                                     "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
        except ClientError as exc:
            if _status(exc) == 404:
                raise StorageConfigError(f"--s3-bucket {self.s3.bucket!r}: no such bucket at "
                                         f"{self.s3.endpoint or 'AWS S3'}") from None
            if _status(exc) == 403:
                raise StorageConfigError(f"--s3-bucket {self.s3.bucket!r}: access denied to the configured "
                                         f"credentials at {self.s3.endpoint or 'AWS S3'}") from None
            # Anything else (5xx, throttling) may pass: /readyz reports it until it does.
        except BotoCoreError:
            pass  # unreachable for now: /readyz reports it, the process need not restart for it

    def begin(self, hashed: bool = True) -> PendingUpload:
        """Start a new upload (in memory; spilled to this process's spill directory past the threshold)."""
        return PendingUpload(self.spill.path, self.spill_threshold, self.memory, hashed, fsync=False)

    # -- committing ------------------------------------------------------------------------------

    def commit(self, upload: PendingUpload, metadata: dict[str, Any]) -> tuple[str, bool]:
        """Store an upload under its sha256 with its metadata; return (id, created) once S3 has
        acknowledged the object (or already had it). Blocking. The upload is discarded in every case.

        Raises StorageUnavailable when the store cannot be reached or refuses the write.
        """
        object_id = upload.sha256
        key = self.key(object_id)
        try:
            with self._id_locks.hold(object_id):
                if self._exists(key):
                    return object_id, False
                return object_id, self._put(upload, key, metadata)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable("storing", key, exc) from exc
        finally:
            upload.discard()

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.s3.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    def _put(self, upload: PendingUpload, key: str, metadata: dict[str, Any]) -> bool:
        """Write the object if absent; True if this call created it, False if a twin did first."""
        headers = {"Metadata": {METADATA_KEY: json.dumps(metadata, sort_keys=True)},
                   "ContentType": str(metadata.get("mime_type") or "application/octet-stream")}
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                if upload.size > self.multipart_threshold:
                    self._put_multipart(upload.finish(), upload.size, key, headers)
                else:
                    self._put_single(upload, key, headers)
                return True
            except ClientError as exc:
                if _status(exc) == 412:  # If-None-Match: * failed: the object exists, stored by a twin
                    return False
                if _status(exc) != 409 or attempt == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)  # a concurrent conditional write of this key is in flight
        raise AssertionError("unreachable")

    def _put_single(self, upload: PendingUpload, key: str, headers: dict[str, Any]) -> None:
        checksum = base64.b64encode(bytes.fromhex(upload.sha256)).decode()
        put = partial(self.client.put_object, Bucket=self.s3.bucket, Key=key, IfNoneMatch="*",
                      ChecksumSHA256=checksum, **headers)
        if upload.on_disk:
            with open(upload.finish(), "rb") as body:
                put(Body=body)
        else:
            put(Body=upload.content())

    def _put_multipart(self, path: Path, size: int, key: str, headers: dict[str, Any]) -> None:
        bucket = self.s3.bucket
        upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32",
                                                        **headers)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.part_size), start=1):
                length = min(self.part_size, size - start)
                # Streamed from the spilled file: a part is never held in memory whole.
                with ReadFileChunk.from_filename(str(path), start, length, enable_callbacks=False) as body:
                    answer = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                                     Body=body, ContentLength=length, ChecksumAlgorithm="CRC32")
                part = {"PartNumber": number, "ETag": answer["ETag"]}
                if "ChecksumCRC32" in answer:
                    part["ChecksumCRC32"] = answer["ChecksumCRC32"]
                parts.append(part)
            self.client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts}, IfNoneMatch="*")
        except BaseException:
            # Also after a 412 at completion: the parts of a twin's object are not needed.
            with contextlib.suppress(BotoCoreError, ClientError):
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    # -- reading ---------------------------------------------------------------------------------

    def get(self, object_id: str) -> StoredObject:
        """Look up a committed object (one HeadObject); raise InvalidObjectId, ObjectNotFound or
        StorageUnavailable. Its bytes are read through ``open_range`` (GetObject with a Range).

        The metadata is {} when the object carries none that is valid for its size: callers then
        detect again.
        """
        object_id = validate_id(object_id)
        key = self.key(object_id)
        try:
            head = self.client.head_object(Bucket=self.s3.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                raise ObjectNotFound(object_id) from None
            raise _unavailable("reading", key, exc) from exc
        except BotoCoreError as exc:
            raise _unavailable("reading", key, exc) from exc
        size = int(head["ContentLength"])
        raw = head.get("Metadata", {}).get(METADATA_KEY, "")
        metadata = valid_metadata(raw.encode(), size) or {}
        return StoredObject(object_id, None, object_stat(size, head["LastModified"].timestamp()), metadata,
                            partial(self._open_range, key))

    def _open_range(self, key: str, start: int, end: int) -> RangeReader:
        """Bytes ``start`` to ``end - 1`` of an object, streamed from one GetObject. Blocking."""
        try:
            answer = self.client.get_object(Bucket=self.s3.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable("reading", key, exc) from exc
        body: RangeReader = answer["Body"]
        return body

    def object_ids(self) -> list[str]:
        """Ids of every visible object (a listing of the prefix: for tests and tools, O(objects) requests/1000)."""
        ids = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.s3.bucket, Prefix=self._objects):
            for entry in page.get("Contents", []):
                name = entry["Key"].removeprefix(self._objects)
                if OBJECT_ID.fullmatch(name):
                    ids.append(name)
        return sorted(ids)

    def usage(self) -> tuple[int, int]:
        """(0, 0): on S3 the stored-objects gauges count what this replica created since it started.

        Counting the bucket would cost a listing request per 1000 objects, per replica, per count,
        and the replicas' gauges (summed by the dashboards) would count every object once per replica.
        """
        return 0, 0

    def check_ready(self) -> None:
        """Raise OSError unless the bucket answers HeadBucket and the spill directory is writable. Blocking."""
        try:
            self.client.head_bucket(Bucket=self.s3.bucket)
        except ClientError as exc:
            if _status(exc) == 404:
                raise StorageUnavailable(f"bucket {self.s3.bucket!r} does not exist at "
                                         f"{self.s3.endpoint or 'AWS S3'}") from None
            raise _unavailable("HeadBucket", repr(self.s3.bucket), exc) from exc
        except BotoCoreError as exc:
            raise _unavailable("HeadBucket", repr(self.s3.bucket), exc) from exc
        try:
            self.spill.check_writable()
        except OSError as exc:
            raise OSError(exc.errno or errno.EIO, f"spill directory {self.spill.path} not writable: {exc}") from exc
