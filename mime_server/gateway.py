"""mockup-gateway: API-key auth, per-key rate limiting and a streaming reverse proxy in front of mime-server.

Run with ``python -m mime_server.gateway --host H --port P --upstream URL --api-keys-file F``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import math
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import aiohttp
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider, set_span_in_context
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from yarl import URL

from mime_server import GATEWAY_SERVICE
from mime_server.errors import EXCEPTION_HANDLERS, ApiError, error_response
from mime_server.limits import GATEWAY_LIMITS, KEEPALIVE_S, POOL_CONNECTIONS, add_limit_arguments, limits_from_args
from mime_server.logs import JsonLogger
from mime_server.metrics import GatewayMetrics, HttpMetrics, metrics_response, new_registry
from mime_server.observe import (
    PROPAGATOR,
    SECRET_PARAMETERS,
    AccessLog,
    ObservabilityMiddleware,
    leaf_span,
    logged_target,
    request_id_of,
)
from mime_server.options import env_default, parse_float, parse_int
from mime_server.ratelimit import TokenBuckets
from mime_server.serve import run
from mime_server.tracing import tracer_provider_from_env

# Connection-level headers (RFC 9110 7.6.1) are never forwarded; credentials stop at the gateway.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host"})
CREDENTIALS = frozenset({"x-api-key", "authorization"})
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Upstream answers up to this size (with a Content-Length) are relayed whole; larger ones stream.
BUFFERED_RESPONSE_BYTES = 64 * 1024
# The gateway's server (uvicorn) dates every answer itself: relaying the upstream's Date too would
# send two. The request id is the gateway's own.
RESPONSE_HEADERS_DROPPED = frozenset(name.encode() for name in HOP_BY_HOP | {"x-request-id", "date"})
# Answer headers holding a URL: an absolute one would name the upstream's address, so only its
# path, query and fragment are relayed (resolved by the client against the gateway).
URL_HEADERS = frozenset({b"location", b"content-location"})
# Headers aiohttp would otherwise add on its own: the upstream sees only what the client sent.
NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
READY_TIMEOUT_S = 2.0
# Client addresses whose failed authentications are remembered at once (see TokenBuckets).
AUTH_FAILURE_ADDRESSES = 10_000


@dataclass(frozen=True)
class GatewaySettings:
    """Everything mockup-gateway needs to start."""

    upstream: str
    api_keys: frozenset[str]
    rate_limit: float = 50.0
    rate_burst: int = 100
    upstream_timeout: float = 30.0
    auth_failure_rate: float = 0.2   # failed authentications per second per client address, sustained
    auth_failure_burst: int = 10     # failed authentications per client address before 429s start


def load_api_keys(path: str | Path) -> frozenset[str]:
    """Read the API keys file: one key per line, blank lines and ``#`` comments ignored."""
    keys = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key = line.strip()
        if key and not key.startswith("#"):
            keys.add(key)
    if not keys:
        raise ValueError(f"API keys file {str(path)!r} holds no key")
    return frozenset(keys)


def presented_key(request: Request) -> str | None:
    """The API key from ``X-API-Key`` or ``Authorization: Bearer KEY``."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class UpstreamRequest(aiohttp.ClientRequest):
    """aiohttp's request, except that one without a body is sent without one: no ``Content-Length: 0``.

    aiohttp adds that header to a bodiless request unless its method is in GET_METHODS (it is not
    for DELETE); the gateway forwards only the headers the client sent.
    """

    GET_METHODS = aiohttp.ClientRequest.ALL_METHODS


class ClientBody:
    """The client's request body for aiohttp: passed on chunk by chunk as it arrives, never buffered whole.

    aiohttp reports a failure of the body as an upstream connection error; ``error`` keeps what
    went wrong on the client's side (a disconnect) so the gateway does not blame the upstream.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.error: ApiError | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.request.stream():
                if chunk:
                    yield chunk
        except ClientDisconnect:
            self.error = ApiError(499, "client_closed_request", "client disconnected before the body was complete")
            raise self.error from None
        except ApiError as exc:  # the edge gave up on the body: stalled or malformed (408, 400)
            self.error = exc
            raise


def relative_url(value: bytes) -> bytes:
    """A URL header of the upstream's answer without scheme and authority (``http://10.0.0.5:8080/x`` -> ``/x``)."""
    text = value.decode("latin-1")
    parts = urlsplit(text)
    if not parts.scheme and not parts.netloc:
        return value
    return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment)).encode("latin-1")


def without_credentials(query: str) -> str:
    """The query string without credential parameters (``api_key=...``): credentials stop at the gateway."""
    kept = [part for part in query.split("&")
            if unquote_plus(part.partition("=")[0]).strip().lower() not in SECRET_PARAMETERS]
    return "&".join(kept)


class Gateway:
    """The proxy endpoint and its collaborators."""

    def __init__(self, settings: GatewaySettings, tracer_provider: TracerProvider, registry: CollectorRegistry,
                 logger: JsonLogger) -> None:
        if not settings.api_keys:
            raise ValueError("the gateway needs at least one API key")
        self.settings = settings
        self.upstream = settings.upstream.rstrip("/")
        self.tracer = tracer_provider.get_tracer("mime_server.gateway")
        self.registry = registry
        self.logger = logger
        self.metrics = GatewayMetrics(GATEWAY_SERVICE, registry)
        self.buckets = TokenBuckets(settings.rate_limit, settings.rate_burst)
        self.auth_failures = TokenBuckets(settings.auth_failure_rate, settings.auth_failure_burst,
                                          max_keys=AUTH_FAILURE_ADDRESSES)
        # Connecting (including the wait for a pooled connection) and every read of the answer are
        # bounded; the time the client takes to send its body is not.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=settings.upstream_timeout,
                                             sock_read=settings.upstream_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        """The upstream client of the running event loop, created on first use (a session belongs to one loop).

        It adds no header of its own (no User-Agent, Accept, Accept-Encoding, Content-Type, cookies),
        relays bodies as they are (no decompression), ignores proxy and netrc environment settings
        and keeps up to POOL_CONNECTIONS keep-alive connections (aiohttp sets TCP_NODELAY on each).
        Every call passes ``allow_redirects=False``: redirects go back to the client.
        """
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._session_loop is not loop:
            connector = aiohttp.TCPConnector(limit=POOL_CONNECTIONS, limit_per_host=0,
                                             keepalive_timeout=KEEPALIVE_S)
            session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=False,
                                            cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=NO_AUTO_HEADERS,
                                            trust_env=False, request_class=UpstreamRequest)
            self._session, self._session_loop = session, loop
        return session

    async def aclose(self) -> None:
        """Close the upstream connections (at lifespan shutdown)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _authorise(self, request: Request) -> str:
        # An address that failed too often is refused before its key is even compared, so that
        # guessing gets no answer at all while it is limited. Logs name the address, never the key.
        address = request.client.host if request.client else ""
        wait = self.auth_failures.wait(address)
        if wait > 0:
            self.metrics.auth_limited.inc()
            self.logger.log("warn", "authentication refused: too many failures from this address",
                            client=address, retry_after_s=round(wait, 3), request_id=request_id_of(request.scope))
            raise ApiError(429, "too_many_failed_authentications",
                           f"more than {self.settings.auth_failure_burst} failed authentications from this address; "
                           f"wait before retrying", round(wait, 3), {"retry-after": str(max(1, math.ceil(wait)))})
        key = presented_key(request)
        if key is not None:
            for known in self.settings.api_keys:
                if hmac.compare_digest(key.encode(), known.encode()):
                    return known
        self.metrics.unauthorized.inc()
        self.auth_failures.take(address)
        reason = "missing" if key is None else "unknown"
        self.logger.log("warn", f"authentication failed: {reason} API key", client=address,
                        request_id=request_id_of(request.scope))
        detail = "missing API key: send X-API-Key or Authorization: Bearer" if key is None else "unknown API key"
        raise ApiError(401, "unauthorized", detail, None)

    def _upstream_headers(self, request: Request, span: Span) -> dict[str, str]:
        incoming = {k: v for k, v in request.headers.items()
                    if k not in HOP_BY_HOP and k not in CREDENTIALS and k not in TRACE_HEADERS}
        incoming["x-request-id"] = request_id_of(request.scope)
        client = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-for")
        incoming["x-forwarded-for"] = f"{forwarded}, {client}" if forwarded else client
        PROPAGATOR.inject(incoming, context=set_span_in_context(span))  # the upstream's parent: this span
        if "traceparent" not in incoming:  # tracing off here: keep the caller's trace intact
            for name in TRACE_HEADERS:
                if name in request.headers:
                    incoming[name] = request.headers[name]
        return incoming

    def _failure(self, reason: str, status: int, detail: str, error: BaseException | None = None) -> Response:
        # The client learns what failed, not where: the upstream's address and the error's text
        # (which names it) go to the log only.
        self.metrics.upstream_errors.labels(GATEWAY_SERVICE, reason).inc()
        if error is not None:
            self.logger.log("error", f"upstream {reason} failure", upstream=self.upstream,
                            error=f"{type(error).__name__}: {error}")
        return error_response(status, f"upstream_{reason}", detail)

    async def _relay(self, upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        except aiohttp.ClientError:
            self.metrics.upstream_errors.labels(GATEWAY_SERVICE, "body").inc()
            raise
        finally:  # also when the client went away and the iterator is discarded
            upstream.release()

    async def proxy(self, request: Request) -> Response:
        key = self._authorise(request)
        wait = self.buckets.take(key)
        if wait > 0:
            self.metrics.rate_limited.inc()
            return error_response(429, "rate_limited", f"rate limit of {self.settings.rate_limit:g}/s "
                                  f"(burst {self.settings.rate_burst}) exceeded for this key", round(wait, 3),
                                  headers={"retry-after": str(max(1, math.ceil(wait)))})
        # The raw path, as the client encoded it: decoding and re-encoding could change what it names.
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        query = without_credentials(request.scope.get("query_string", b"").decode("latin-1"))
        url = self.upstream + raw_path + (f"?{query}" if query else "")
        has_body = request.method in BODY_METHODS or "content-length" in request.headers \
            or "transfer-encoding" in request.headers
        with leaf_span(self.tracer, f"{request.method} upstream", SpanKind.CLIENT,
                       {"http.request.method": request.method,
                        "url.full": self.upstream + logged_target(raw_path, query)}) as span:
            body = ClientBody(request) if has_body else None
            try:
                # With the client's Content-Length the body goes out with it, otherwise chunked.
                upstream = await self.session().request(
                    request.method, URL(url, encoded=True), headers=self._upstream_headers(request, span), data=body,
                    allow_redirects=False)
            except Exception as exc:
                if body is not None and body.error is not None:
                    raise body.error from exc  # the client failed (went away, stalled, malformed), not the upstream
                if isinstance(exc, TimeoutError):
                    span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
                    return self._failure("timeout", 504, f"upstream did not answer within "
                                         f"{self.settings.upstream_timeout:g}s", exc)
                if isinstance(exc, aiohttp.ClientConnectorError):
                    span.set_status(Status(StatusCode.ERROR, "upstream refused"))
                    return self._failure("connect", 502, "upstream refused the connection", exc)
                if isinstance(exc, aiohttp.ClientError):
                    span.set_status(Status(StatusCode.ERROR, "upstream protocol error"))
                    return self._failure("protocol", 502, f"upstream failed ({type(exc).__name__})", exc)
                raise
            span.set_attribute("http.response.status_code", upstream.status)
        # Raw header bytes, repeated headers (Set-Cookie) kept apart, names lowercased as ASGI wants.
        headers = [(name.lower(), relative_url(value) if name.lower() in URL_HEADERS else value)
                   for name, value in upstream.raw_headers if name.lower() not in RESPONSE_HEADERS_DROPPED]
        length = upstream.headers.get("content-length", "")
        response: Response
        if length.isdigit() and int(length) <= BUFFERED_RESPONSE_BYTES:
            # Small answers (JSON, errors) go out in one piece: cheaper than a streaming response.
            try:
                content = await upstream.read()
            except TimeoutError as exc:
                return self._failure("timeout", 504, f"upstream body stalled past {self.settings.upstream_timeout:g}s",
                                     exc)
            except aiohttp.ClientError as exc:
                return self._failure("body", 502, f"upstream body failed ({type(exc).__name__})", exc)
            finally:
                upstream.release()
            response = Response(content, status_code=upstream.status)
        else:
            response = StreamingResponse(self._relay(upstream), status_code=upstream.status)
        response.raw_headers = headers  # exactly the upstream's (Content-Length included), none added
        return response

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        cap = aiohttp.ClientTimeout(total=min(READY_TIMEOUT_S, self.settings.upstream_timeout))
        try:
            async with self.session().get(f"{self.upstream}/readyz", timeout=cap, allow_redirects=False) as answer:
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return JSONResponse({"status": "unavailable", "detail": f"upstream unreachable: {type(exc).__name__}"},
                                status_code=503)
        if answer.status != 200:
            return JSONResponse({"status": "unavailable", "detail": f"upstream /readyz answered {answer.status}"},
                                status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(self, request: Request) -> Response:
        return metrics_response(request, self.registry)


def create_gateway(settings: GatewaySettings, *, tracer_provider: TracerProvider | None = None,
                   registry: CollectorRegistry | None = None, log_stream: TextIO | None = None) -> Starlette:
    """Build the gateway app. Tests inject tracing, registry and log stream."""
    provider = tracer_provider or tracer_provider_from_env(GATEWAY_SERVICE)
    registry = registry or new_registry()
    logger = JsonLogger(GATEWAY_SERVICE, log_stream)
    gateway = Gateway(settings, provider, registry, logger)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes = [
        Route("/v1/{path:path}", gateway.proxy, methods=methods),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics_endpoint, methods=["GET"]),
    ]
    access = AccessLog(HttpMetrics(GATEWAY_SERVICE, registry), logger)
    middleware = [Middleware(ObservabilityMiddleware, tracer=gateway.tracer, access=access)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.router.redirect_slashes = False  # a redirect would be built from the Host header; 404 instead
    app.state.gateway = gateway
    app.state.access = access  # the HTTP edge records what it answers itself here
    return app


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mime_server.gateway", description="API gateway for mime-server.")
    parser.add_argument("--host", default=env_default(environ, "GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=parse_int("--port"), default=env_default(environ, "GATEWAY_PORT", "8000"))
    upstream = env_default(environ, "GATEWAY_UPSTREAM", None)
    parser.add_argument("--upstream", required=upstream is None, default=upstream,
                        help="base URL of mime-server (env GATEWAY_UPSTREAM)")
    keys = env_default(environ, "GATEWAY_API_KEYS_FILE", None)
    parser.add_argument("--api-keys-file", required=keys is None, default=keys,
                        help="one API key per line (env GATEWAY_API_KEYS_FILE)")
    parser.add_argument("--rate-limit", type=parse_float("--rate-limit"),
                        default=env_default(environ, "GATEWAY_RATE_LIMIT", "50"), help="requests/second per key")
    parser.add_argument("--rate-burst", type=parse_int("--rate-burst"),
                        default=env_default(environ, "GATEWAY_RATE_BURST", "100"))
    parser.add_argument("--upstream-timeout", type=parse_float("--upstream-timeout"),
                        default=env_default(environ, "GATEWAY_UPSTREAM_TIMEOUT", "30"), help="seconds")
    defaults = GatewaySettings(upstream="", api_keys=frozenset())
    parser.add_argument("--auth-failure-rate", type=parse_float("--auth-failure-rate"),
                        default=env_default(environ, "GATEWAY_AUTH_FAILURE_RATE", str(defaults.auth_failure_rate)),
                        help="failed authentications/second per client address, sustained (env GATEWAY_AUTH_FAILURE_RATE)")
    parser.add_argument("--auth-failure-burst", type=parse_int("--auth-failure-burst"),
                        default=env_default(environ, "GATEWAY_AUTH_FAILURE_BURST", str(defaults.auth_failure_burst)),
                        help="failed authentications per client address before 429 (env GATEWAY_AUTH_FAILURE_BURST)")
    add_limit_arguments(parser, environ, "GATEWAY", GATEWAY_LIMITS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    settings = GatewaySettings(upstream=args.upstream, api_keys=load_api_keys(args.api_keys_file),
                               rate_limit=args.rate_limit, rate_burst=args.rate_burst,
                               upstream_timeout=args.upstream_timeout, auth_failure_rate=args.auth_failure_rate,
                               auth_failure_burst=args.auth_failure_burst)
    provider = tracer_provider_from_env(GATEWAY_SERVICE)
    app = create_gateway(settings, tracer_provider=provider)
    run(app, args.host, args.port, GATEWAY_SERVICE, provider, limits_from_args(args), app.state.access)


if __name__ == "__main__":
    main()
