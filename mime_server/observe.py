"""ASGI middleware giving every request a request id, a server span, RED metrics and one JSON access log line."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mime_server.logs import JsonLogger
from mime_server.metrics import HttpMetrics

REQUEST_ID_HEADER = "x-request-id"
UNMATCHED_ROUTE = "unmatched"
# Client-supplied ids are echoed and logged: keep them short and printable.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PROPAGATOR: TextMapPropagator = TraceContextTextMapPropagator()


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/files/{id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def request_id_of(scope: Scope) -> str:
    """The request id the middleware assigned to this request."""
    return str(scope.get("state", {}).get("request_id", ""))


class leaf_span:  # noqa: N801 - used like the tracer's own context managers
    """``with leaf_span(tracer, "detect") as span:`` a span with no in-process children around a block.

    Like ``tracer.start_as_current_span`` (exception recorded, status ERROR) but the span is not
    made current, so no context is attached or detached, and a plain class costs less than a
    generator-based context manager: child spans are paid for on every request.
    """

    __slots__ = ("attributes", "kind", "name", "span", "tracer")

    def __init__(self, tracer: trace.Tracer, name: str, kind: SpanKind = SpanKind.INTERNAL,
                 attributes: dict[str, Any] | None = None) -> None:
        self.tracer = tracer
        self.name = name
        self.kind = kind
        self.attributes = attributes

    def __enter__(self) -> trace.Span:
        self.span = self.tracer.start_span(self.name, kind=self.kind, attributes=self.attributes)
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        if kind is not None and error is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {error}"))
        self.span.end()


def level_for(status: int) -> str:
    return "error" if status >= 500 else "warn" if status >= 400 else "info"


# Query parameters that carry credentials: never written to a log line or a span.
SECRET_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key",
                               "authorization", "password", "secret"})
REDACTED = "REDACTED"
_PARAMETER = re.compile(r"([^&=;]*)=([^&;]*)")


def redact_query(query: str) -> str:
    """The query string with the value of every credential parameter (``api_key=...``) replaced."""
    def scrub(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if unquote_plus(name).strip().lower() in SECRET_PARAMETERS else match.group(0)

    return _PARAMETER.sub(scrub, query)


def logged_target(path: str, query: str) -> str:
    """Path and query as logs and spans show them: credentials redacted."""
    return path + (f"?{redact_query(query)}" if query else "")


class AccessLog:
    """One access-log line and one ``http_requests_total``/latency observation per answered request.

    Used by the middleware for what the application answers and by the HTTP edge
    (:mod:`mime_server.edge`) for what it answers itself, so both are counted alike.
    """

    def __init__(self, metrics: HttpMetrics, logger: JsonLogger) -> None:
        self.metrics = metrics
        self.logger = logger

    def record(self, method: str, route: str, path: str, status: int, duration: float, request_id: str,
               bytes_in: int, bytes_out: int, trace_id: str | None = None, span_id: str | None = None,
               sampled: bool = False, error: str | None = None) -> None:
        self.metrics.observe(method, route, status, duration, trace_id if sampled else None)
        fields: dict[str, Any] = {
            "method": method, "route": route, "path": path, "http_status": status,
            "status": "error" if status >= 500 else "ok", "duration_ms": round(duration * 1000, 3),
            "trace_id": trace_id, "span_id": span_id, "request_id": request_id,
            "bytes_in": bytes_in, "bytes_out": bytes_out,
        }
        if error is not None:
            fields["error"] = error
        self.logger.log(level_for(status), f"{method} {path} {status}", **fields)

    def rejected(self, method: str, target: str, status: int, code: str, *, request_id: str,
                 duration: float, bytes_in: int) -> None:
        """A request the HTTP edge answered itself (unparsable, over a limit, timed out, over capacity)."""
        path, _, query = target[:MAX_LOGGED_TARGET].partition("?")
        self.record(method, UNMATCHED_ROUTE, logged_target(path, query), status, duration, request_id,
                    bytes_in, 0, error=code)


# A refused request target can be as long as the head limit: logs keep its start.
MAX_LOGGED_TARGET = 2048


class ObservabilityMiddleware:
    """Wraps an ASGI app; the answer to every HTTP request is traced, counted, timed and logged."""

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer, access: AccessLog) -> None:
        self.app = app
        self.tracer = tracer
        self.access = access
        self.in_flight = access.metrics.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        supplied = headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _VALID_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        method: str = scope["method"]
        path = logged_target(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        counts = {"in": 0, "out": 0, "status": 0}
        rid_header = (b"x-request-id", request_id.encode())

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        error: BaseException | None = None
        # start_span + attach instead of start_as_current_span: the same span and context, without
        # two generator-based context managers per request (tracing's cost is paid on every request).
        parent = PROPAGATOR.extract(headers)
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER,
                                      # request.id: a request's trace is found by its id (Jaeger tag search)
                                      attributes={"http.request.method": method, "url.path": scope["path"],
                                                  "request.id": request_id},
                                      record_exception=False, set_status_on_exception=False)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self.in_flight.inc()
        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception as exc:  # noqa: BLE001 - every unhandled exception becomes a logged 500
            error = exc
            span.record_exception(exc)
            if counts["status"] == 0:
                # The exception's text stays in the log: it can carry paths and addresses.
                body = json.dumps({"error": "internal_error", "detail": f"unexpected {type(exc).__name__}; the "
                                   "request id finds it in the service's log", "value": request_id}).encode()
                await tagging_send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await tagging_send({"type": "http.response.body", "body": body})
            else:
                counts["status"] = 500  # headers already went out: record the failure anyway
        finally:
            self.in_flight.dec()
            otel_context.detach(token)
            status = counts["status"] or 500
            route = route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attributes({"http.route": route, "http.response.status_code": status})
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            span.end()
        span_context = span.get_span_context()
        valid = span_context.is_valid
        self.access.record(method, route, path, status, time.perf_counter() - started, request_id,
                           counts["in"], counts["out"], format(span_context.trace_id, "032x") if valid else None,
                           format(span_context.span_id, "016x") if valid else None,
                           bool(span_context.trace_flags.sampled),
                           None if error is None else f"{type(error).__name__}: {error}")
