"""mime-server's ASGI application: upload, detect and serve files by content type."""

from __future__ import annotations

import errno
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mime_server import MIME_SERVICE
from mime_server.detection import Detection, Detector
from mime_server.errors import EXCEPTION_HANDLERS, ApiError
from mime_server.faults import FaultInjector, FaultSpec
from mime_server.limits import UPLOAD_MEMORY_BUDGET_BYTES
from mime_server.logs import JsonLogger
from mime_server.metrics import HttpMetrics, MimeMetrics, metrics_response, new_registry
from mime_server.observe import AccessLog, ObservabilityMiddleware, leaf_span
from mime_server.ranges import (
    ObjectResponse, RangeNotSatisfiable, RemoteObjectResponse, none_match, satisfiable_ranges,
)
from mime_server.storage import (
    ContentStore, InvalidObjectId, ObjectNotFound, ObjectStore, PendingUpload, S3Location, StorageUnavailable,
    StoredObject,
)
from mime_server.tracing import tracer_provider_from_env
from mime_server.uploads import Body, Flush, clean_filename, read_upload

DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
# Uploads held in memory are detected from the buffer, like `file` would from the file, except for
# these answers: libmagic tells a PIE executable from a shared library only through a file descriptor
# (DF_1_PIE), so for them uploads detect again from the temp file and keep agreeing with `file`.
FILE_REFINED_TYPES = frozenset({"application/x-sharedlib"})
# Write failures that mean "the volume is full" (507), not a fault of the service (500).
STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
Endpoint = Callable[[Request], Awaitable[Response]]


# Seconds a client is told to wait after the object store could not be reached.
STORAGE_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class ServerSettings:
    """Everything mime-server needs to start: a storage directory (filesystem backend) or an S3
    location (S3 backend), exactly one of them."""

    storage: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    admin_key: str | None = None
    upload_memory_budget: int = UPLOAD_MEMORY_BUDGET_BYTES
    s3: S3Location | None = None


def open_store(settings: ServerSettings) -> ObjectStore:
    """The storage backend the settings name; boto3 is imported only for the S3 one."""
    if (settings.storage is None) == (settings.s3 is None):
        raise ValueError(f"exactly one of storage (a directory) and s3 (a bucket) must be set, got "
                         f"storage={settings.storage!r}, s3={settings.s3!r}")
    if settings.s3 is not None:
        from mime_server.s3storage import S3ContentStore

        return S3ContentStore(settings.s3, memory_budget=settings.upload_memory_budget)
    assert settings.storage is not None
    return ContentStore(settings.storage, memory_budget=settings.upload_memory_budget)


class MimeServer:
    """The endpoints and their collaborators (store, detector, faults, telemetry)."""

    def __init__(self, settings: ServerSettings, tracer_provider: TracerProvider,
                 registry: CollectorRegistry, logger: JsonLogger) -> None:
        if settings.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {settings.max_upload_bytes}")
        self.settings = settings
        self.store = open_store(settings)
        self.detector = Detector()
        self.faults = FaultInjector()
        self.tracer = tracer_provider.get_tracer("mime_server")
        self.registry = registry
        self.metrics = MimeMetrics(MIME_SERVICE, registry)
        self.logger = logger
        count, total = self.store.usage()
        self.metrics.stored_objects.set(count)
        self.metrics.stored_bytes.set(total)

    # -- fault injection -------------------------------------------------------------------------

    def faulty(self, endpoint: Endpoint) -> Endpoint:
        """Wrap a /v1 endpoint so an active fault can delay it or fail it with 500."""

        async def wrapped(request: Request) -> Response:
            if await self.faults.apply():
                self.metrics.faults.inc()
                raise ApiError(500, "injected_fault", "failure injected by POST /admin/faults",
                               self.faults.state())
            return await endpoint(request)

        return wrapped

    def _check_admin(self, request: Request) -> None:
        expected = self.settings.admin_key
        if not expected:
            raise ApiError(404, "not_found", "fault injection is disabled: no admin key configured", request.url.path)
        supplied = request.headers.get("x-admin-key", "")
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Key", None)

    async def faults_endpoint(self, request: Request) -> Response:
        self._check_admin(request)
        if request.method == "POST":
            try:
                body: Any = json.loads(await request.body(), parse_constant=_no_constant)
            except ValueError as exc:  # also NaN and Infinity, which are not JSON (RFC 8259)
                raise ApiError(400, "invalid_json", f"body is not JSON: {exc}", None) from None
            self.faults.set(FaultSpec.parse(body))
            self.logger.log("warn", "fault injection enabled", **self.faults.state())
        elif request.method == "DELETE":
            self.faults.clear()
            self.logger.log("info", "fault injection cleared")
        return JSONResponse(self.faults.state())

    # -- files -----------------------------------------------------------------------------------

    async def _read(self, request: Request, sink: Callable[[bytes], None],
                    flush: Flush | None = None) -> tuple[Body, str | None]:
        query_name = clean_filename(request.query_params.get("filename"))
        try:
            body = await read_upload(request, sink, self.settings.max_upload_bytes, flush)
        except ClientDisconnect:  # the answer cannot reach the client: 499, the client's doing
            raise ApiError(499, "client_closed_request", "client disconnected before the body was complete") from None
        return body, query_name or clean_filename(body.part_filename)

    def _record(self, endpoint: str, size: int, detection: Detection) -> None:
        self.metrics.upload_bytes.labels(MIME_SERVICE, endpoint).observe(size)
        self.metrics.detections.labels(MIME_SERVICE, detection.mime_type).inc()

    async def detect(self, request: Request) -> Response:
        # Only the prefix libmagic reads is kept: a large detect body is counted, not held. The
        # prefix is an upload's buffer, so it shares the memory budget and spills to tmp/ past it.
        pending = self.store.begin(hashed=False)
        keep = self.detector.bytes_max

        def sink(chunk: bytes) -> None:
            room = keep - pending.size
            if room > 0:
                pending.write(chunk[:room])

        async def spill() -> None:
            if pending.needs_spill:
                await anyio.to_thread.run_sync(pending.spill)

        try:
            body, filename = await self._read(request, sink, spill)
            with leaf_span(self.tracer, "detect") as span:
                detection = await anyio.to_thread.run_sync(self._detect_prefix, pending, filename)
                span.set_attribute("mime.type", detection.mime_type)
        except OSError as exc:
            raise self._storage_failure(exc, request) from None
        finally:
            await self._discard(pending)
        self._record("detect", body.size, detection)
        return JSONResponse({"size": body.size, "mime_type": detection.mime_type, "charset": detection.charset,
                             "extension_mismatch": detection.extension_mismatch, "filename": filename})

    def _detect_prefix(self, pending: PendingUpload, filename: str | None) -> Detection:
        """Detect a detect request's kept prefix, from memory or from its spilled temp file. Blocking."""
        if not pending.on_disk:
            return self.detector.detect_bytes(pending.content(), filename)
        pending.spill()  # the rest of the buffer, so the file holds the whole prefix
        assert pending.path is not None
        return self.detector.detect_file(str(pending.path), filename)

    def _detect_and_commit(self, pending: PendingUpload, filename: str | None) -> tuple[Detection, str, bool]:
        """Detect the type and commit the upload: one worker-thread hop, all the blocking work of an upload."""
        with leaf_span(self.tracer, "detect") as span:
            if pending.on_disk:  # a large body spilled while streaming: complete the file, let libmagic read it
                detection = self.detector.detect_file(str(pending.finish()), filename)
            else:
                detection = self.detector.detect_bytes(pending.content(), filename)
                if detection.mime_type in FILE_REFINED_TYPES:
                    pending.spill()  # the temp file the commit needs anyway, created now (fsynced at commit)
                    detection = self.detector.detect_file(str(pending.path), filename)
            span.set_attribute("mime.type", detection.mime_type)
        with leaf_span(self.tracer, "storage.write") as span:
            object_id, created = self.store.commit(
                pending, {"mime_type": detection.mime_type, "charset": detection.charset, "size": pending.size})
            span.set_attributes({"object.id": object_id, "object.created": created})
        return detection, object_id, created

    def _storage_failure(self, exc: OSError, request: Request) -> Exception:
        """What a failed storage call is answered with: 503 when the object store could not be reached
        (retrying is safe), 507 when the volume is full (the error's text, which names paths and keys,
        only in the log), else the error itself (a 500)."""
        if isinstance(exc, StorageUnavailable):
            self.logger.log("error", "object store unavailable: request refused", error=str(exc),
                            request_id=request.state.request_id)
            return ApiError(503, "storage_unavailable", "the object store could not be reached: retry later "
                            "(a retried upload is stored once)", None, {"retry-after": str(STORAGE_RETRY_AFTER_S)})
        if exc.errno not in STORAGE_FULL:
            return exc
        self.logger.log("error", "storage full: request refused", errno=errno.errorcode.get(exc.errno or 0),
                        error=f"{type(exc).__name__}: {exc}", request_id=request.state.request_id)
        return ApiError(507, "insufficient_storage", "the storage volume is full: nothing was stored; retry later",
                        None, {"retry-after": "60"})

    @staticmethod
    async def _discard(pending: PendingUpload) -> None:
        if not pending.on_disk:
            pending.discard()  # memory only
            return
        with anyio.CancelScope(shield=True):  # also when the request was cancelled: nothing may leak in tmp/
            await anyio.to_thread.run_sync(pending.discard)

    async def upload(self, request: Request) -> Response:
        # The body stays in memory (hashed as it streams) unless it grows past the store's spill
        # threshold; then it goes to a temp file in batches, in a worker thread. No file-system
        # call runs on the event loop; detection and the commit take one more thread hop.
        pending = self.store.begin()

        async def spill() -> None:
            if pending.needs_spill:
                await anyio.to_thread.run_sync(pending.spill)

        try:
            body, filename = await self._read(request, pending.write, spill)
            detection, object_id, created = await anyio.to_thread.run_sync(
                self._detect_and_commit, pending, filename)
        except OSError as exc:
            await self._discard(pending)
            raise self._storage_failure(exc, request) from None
        except BaseException:
            await self._discard(pending)
            raise
        self._record("upload", body.size, detection)
        self.metrics.uploads.labels(MIME_SERVICE, "created" if created else "deduplicated").inc()
        if created:
            self.metrics.stored_objects.inc()
            self.metrics.stored_bytes.inc(body.size)
        return JSONResponse(
            {"id": object_id, "sha256": object_id, "size": body.size, "mime_type": detection.mime_type,
             "charset": detection.charset, "extension_mismatch": detection.extension_mismatch,
             "filename": filename},
            status_code=201, headers={"location": f"/v1/files/{object_id}"})

    async def get_file(self, request: Request) -> Response:
        raw_id = request.path_params["id"]
        with leaf_span(self.tracer, "storage.read") as span:
            try:
                if self.store.remote:
                    stored = await anyio.to_thread.run_sync(self.store.get, raw_id)
                else:  # one stat: cheaper inline than a thread hop
                    stored = self.store.get(raw_id)
            except InvalidObjectId as exc:
                raise ApiError(400, "invalid_id", str(exc), exc.value) from None
            except ObjectNotFound as exc:
                raise ApiError(404, "not_found", "no object with this id", exc.value) from None
            except StorageUnavailable as exc:
                raise self._storage_failure(exc, request) from None
            span.set_attribute("object.id", stored.id)
        mime_type = stored.metadata.get("mime_type")
        charset = stored.metadata.get("charset")
        if mime_type is None:  # metadata lost or never written: detect again rather than serve a wrong type
            try:
                detection = await anyio.to_thread.run_sync(self._detect_stored, stored)
            except StorageUnavailable as exc:
                raise self._storage_failure(exc, request) from None
            mime_type, charset = detection.mime_type, detection.charset
        etag = f'"{stored.id}"'
        if none_match(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"etag": etag})
        content_type = Detection(mime_type, charset, False).content_type
        headers = {"etag": etag, "cache-control": "public, max-age=31536000, immutable"}
        response: ObjectResponse
        if stored.path is not None:
            response = ObjectResponse(stored.path, stat_result=stored.stat, media_type=content_type, headers=headers)
        else:
            assert stored.open_range is not None
            response = RemoteObjectResponse(stored.open_range, stored.stat, media_type=content_type, headers=headers)
        if_range = request.headers.get("if-range")
        if if_range is None or if_range in (etag, response.headers.get("last-modified")):
            try:
                satisfiable_ranges(request.headers.get("range"), stored.stat.st_size)
            except RangeNotSatisfiable as exc:
                raise ApiError(416, "range_not_satisfiable", str(exc), request.headers.get("range"),
                               {"content-range": f"bytes */{exc.size}"}) from None
        return response

    def _detect_stored(self, stored: StoredObject) -> Detection:
        """Detect a stored object's type again: from its file, or from the prefix libmagic reads. Blocking."""
        if stored.path is not None:
            return self.detector.detect_file(str(stored.path), None)
        assert stored.open_range is not None
        reader = stored.open_range(0, min(stored.stat.st_size, self.detector.bytes_max))
        try:
            prefix = reader.read()
        finally:
            reader.close()
        return self.detector.detect_bytes(prefix, None)

    # -- operations ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(self.store.check_ready)
        except OSError as exc:
            detail = str(exc) if isinstance(exc, StorageUnavailable) else f"storage not writable: {exc}"
            return JSONResponse({"status": "unavailable", "detail": detail, "value": self.store.location},
                                status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return metrics_response(request, self.registry)


def create_app(settings: ServerSettings, *, tracer_provider: TracerProvider | None = None,
               registry: CollectorRegistry | None = None, log_stream: TextIO | None = None) -> Starlette:
    """Build mime-server. Tests inject a tracer provider (in-memory exporter), a registry and a log stream."""
    provider = tracer_provider or tracer_provider_from_env(MIME_SERVICE)
    registry = registry or new_registry()
    logger = JsonLogger(MIME_SERVICE, log_stream)
    server = MimeServer(settings, provider, registry, logger)
    routes = [
        Route("/v1/files", server.faulty(server.upload), methods=["POST"]),
        Route("/v1/files/{id}", server.faulty(server.get_file), methods=["GET", "HEAD"]),
        Route("/v1/detect", server.faulty(server.detect), methods=["POST"]),
        Route("/admin/faults", server.faults_endpoint, methods=["GET", "POST", "DELETE"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/metrics", server.metrics_endpoint, methods=["GET"]),
    ]
    access = AccessLog(HttpMetrics(MIME_SERVICE, registry), logger)
    middleware = [Middleware(ObservabilityMiddleware, tracer=server.tracer, access=access)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    app.router.redirect_slashes = False  # a redirect would name this server's address; 404 instead
    app.state.server = server
    app.state.access = access  # the HTTP edge records what it answers itself here
    return app


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
