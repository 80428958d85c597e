"""The HTTP edge of both services: uvicorn's httptools protocol with bounded heads, timeouts and connections.

uvicorn with httptools bounds none of these (measured in bench.edge): a request head of any size
or field count is buffered, a connection that sends nothing or sends slowly is never closed, and
``limit_concurrency`` only answers 503 after reading a head it does not bound. ``EdgeProtocol``
adds, per connection, for the limits of :class:`~mime_server.limits.EdgeLimits`:

- the head (request target + header fields) is counted as it is parsed, and the raw bytes of an
  unfinished head as they arrive: past ``max_header_bytes`` or ``max_headers`` the request is
  answered 431 before the rest is read, so a header bomb costs at most one socket read;
- a head must be complete ``header_timeout`` seconds after the connection opened (or after the
  first byte of a kept-alive connection's next request): then 408, or a silent close when not
  one byte came; a body must not stall ``body_timeout`` seconds while the server waits for it:
  then the application's ``receive()`` raises a 408 ApiError, answered by the app as JSON;
- past ``max_connections`` open connections, the one that has waited longest without being served
  (idle, or still sending its head: a slow client) is closed (408 if it had begun a request), so
  slow or idle clients cannot lock others out; only when every connection is busy with a request is
  the new one answered 503 with Retry-After, at once;
- a request the parser rejects (bad syntax, two Content-Length, bad chunk) is answered 400 JSON
  if its head was not complete yet, or through the application as a 400 ApiError from
  ``receive()`` if it was.

Every request answered here (the application never ran) goes to the service's access log and
``http_requests_total`` through an :class:`EdgeRecorder`, like those the application answers.
The answer is written, the sending side shut, and what the client still sends is read and
dropped for a moment before closing ("lingering close"): closing with unread input would reset
the connection and the client could lose the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any, ClassVar, Protocol

import httptools
from uvicorn._types import ASGI3Application, ASGIReceiveEvent
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from mime_server.errors import ApiError
from mime_server.limits import EdgeLimits

# Room for the request line's method and version, separators and optional whitespace, which the
# exact count (target + field names and values) leaves out, before the raw-bytes guard refuses.
RAW_HEAD_SLACK = 1024
# Seconds an answered-and-refused connection is drained before it is closed.
LINGER_S = 2.0
RETRY_AFTER_S = 1
UNKNOWN_METHOD = "_OTHER"  # OpenTelemetry's name for a method that is not known
_CLOSE = {"connection": "close"}
# Where the connection is in the current request.
IDLE, HEAD, BODY, DONE = range(4)
_TURNS = itertools.count(1)  # the order in which connections began to wait (see EdgeProtocol._turn)


class EdgeRecorder(Protocol):
    """Records a request answered by the edge itself: the access-log line and ``http_requests_total``."""

    def rejected(self, method: str, target: str, status: int, code: str, *, request_id: str,
                 duration: float, bytes_in: int) -> None: ...


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a head over the limits."""


class EdgeCycle(RequestResponseCycle):
    """uvicorn's request/response cycle whose ``receive()`` raises the ApiError the edge set when it
    gave up on the body (stalled: 408, malformed: 400), for the app to answer like its own errors."""

    edge_error: ApiError | None = None

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if self.edge_error is not None and not self.response_started:
            raise self.edge_error
        return message


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`EdgeLimits` (see the module docstring).

    Subclassed per service by :func:`edge_protocol`, which sets ``limits`` and ``recorder``.
    """

    limits: ClassVar[EdgeLimits]
    recorder: ClassVar[EdgeRecorder]

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = IDLE
        self._head_raw = 0        # bytes received while the head was unfinished
        self._head_bytes = 0      # target + completed header fields, exactly
        self._fields = 0
        self._refusal: tuple[int, str, str] | None = None
        self._started = 0.0       # when the connection came, the current head began, or (idle) the last answer went
        self._turn = 0            # the same moments numbered: the loop's clock ticks in milliseconds under
                                  # uvloop, so two connections can share a _started and only this orders them
        self._last_body = 0.0     # when the last body byte came
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._done = False        # answered by the edge or broken: input is dropped

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._started, self._turn = self.loop.time(), next(_TURNS)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._answer(503, "too_many_connections",
                         f"the service holds its limit of {self.limits.max_connections} connections, all "
                         "busy with requests; retry", {"retry-after": str(RETRY_AFTER_S)})
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return  # answered already: drained while lingering
        phase = self._phase
        if phase == BODY:
            self._last_body = self.loop.time()
        if self.timeout_keep_alive_task is not None:
            self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._no_upgrade()
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        # A read that began in a body may end with the start of a pipelined head: not counted, so an
        # unfinished head is undercounted by at most one read, never a legitimate one overcounted.
        if self._phase == HEAD and phase != BODY:
            self._head_raw += len(data)
            if self._head_raw > self.limits.max_header_bytes + RAW_HEAD_SLACK:
                self._refuse_head()
        elif self._phase == BODY and self._body_timer is None:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_expired)

    # -- parser callbacks ------------------------------------------------------------------------

    # The timers are not set and cancelled per request (that is most of what a limit would cost on
    # a cheap request): each connection has at most one of each, and when it fires it looks at the
    # request in progress and sets itself again for what is left of that request's time.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.cycle is not None:  # a kept-alive connection's next request: its head's time starts now
            self._started, self._turn = self.loop.time(), next(_TURNS)
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_expired)
        self._phase = HEAD
        self._head_raw = self._head_bytes = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (431, "header_too_large", f"request target over {self.limits.max_header_bytes} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_bytes += len(name) + len(value) + 4  # "name: value\r\n"
        if self._fields > self.limits.max_headers:
            self._refusal = (431, "too_many_headers", f"more than {self.limits.max_headers} header fields")
            raise _Refused
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = (431, "header_too_large",
                             f"request head over {self.limits.max_header_bytes} bytes (target and header fields)")
            raise _Refused
        name = name.lower()  # as uvicorn's on_header, inline: it runs for every header of every request
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._last_body = self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = IDLE if self.cycle.response_complete else DONE  # IDLE: answered early, e.g. 413
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._phase == DONE:
            self._phase = IDLE
            self._started, self._turn = self.loop.time(), next(_TURNS)  # idle since: the cap closes the oldest
        super().on_response_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn builds its own cycle object; giving it the edge's class (same state, one method
        # more) costs an attribute store, where wrapping its receive would cost a closure per request.
        cycle.__class__ = EdgeCycle
        super()._start_asgi_task(cycle, app)

    # -- refusals --------------------------------------------------------------------------------

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._done:
            return
        fresh = self.cycle is None  # no request served yet: the time counts from the connection
        if self._phase == HEAD or (self._phase == IDLE and fresh):
            left = self._started + self.limits.header_timeout - self.loop.time()
            if left <= 0:
                if self._phase == IDLE:  # not one byte of a request: nothing to answer
                    self.transport.close()
                else:
                    self._answer(408, "header_timeout",
                                 f"the request head was not complete within {self.limits.header_timeout:g}s")
                return
        else:  # being served, or idle on keep-alive (uvicorn's own timer): look again later
            left = self.limits.header_timeout
        self._head_timer = self.loop.call_later(left, self._head_expired)

    def _body_expired(self) -> None:
        self._body_timer = None
        if self._done or self._phase != BODY:
            return
        now = self.loop.time()
        idle = now - self._last_body
        waiting_on_us = self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue)
        if waiting_on_us or idle < self.limits.body_timeout:
            # Paused reading is the app's pace, and a client that expects 100-continue waits for the
            # app's first receive(): neither is the client stalling. Wait again.
            wait = self.limits.body_timeout - (0.0 if waiting_on_us else idle)
            self._body_timer = self.loop.call_later(wait, self._body_expired)
            return
        self._fail_body(ApiError(408, "body_timeout", f"no byte of the request body for "
                                 f"{self.limits.body_timeout:g}s", None, _CLOSE))

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            self._answer(*refusal)
        elif self._phase in (IDLE, HEAD):
            self._answer(400, "malformed_request", f"the request does not parse as HTTP/1.1: {exc}")
        elif self._phase == DONE:  # garbage after a complete request: answer that one, then close
            self._done = True
            self._cancel_timers()
            self.cycle.keep_alive = False
        else:
            self._fail_body(ApiError(400, "malformed_body", f"the request body does not parse: {exc}", None, _CLOSE))

    def _make_room(self) -> bool:
        """At the connection cap: close the longest-waiting connection that is not being served (idle,
        or still sending its head), so that slow or idle clients cannot keep new ones out; False
        when every other connection is busy with a request (then this one is refused: a real overload).
        """
        live = 0
        victim: EdgeProtocol | None = None
        for other in self.connections:
            if other is self or not isinstance(other, EdgeProtocol) or other._done:
                continue  # lingering after an answer: on its way out
            live += 1
            if other._phase in (IDLE, HEAD) and (victim is None or other._turn < victim._turn):
                victim = other
        if live < self.limits.max_connections:
            return True
        if victim is None:
            return False
        victim._evict()
        return True

    def _evict(self) -> None:
        if self._phase == HEAD:  # a request was on its way, too slowly: it is answered
            self._answer(408, "header_timeout", "the request head was still incomplete when the server needed "
                         "its connection for another client")
        else:  # idle: closed as the keep-alive timeout would
            self._done = True
            self._cancel_timers()
            self.transport.close()

    def _no_upgrade(self) -> None:
        # No protocol upgrade is served here (no WebSockets): the request is answered as a plain one
        # and the connection ends with it, since what follows the head is the other protocol's.
        self._done = True
        self._cancel_timers()
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    def _refuse_head(self) -> None:
        self._answer(431, "header_too_large", f"request head over {self.limits.max_header_bytes} bytes "
                     "(target and header fields)")

    def _fail_body(self, error: ApiError) -> None:
        """Give up on the current request's body: the app's next ``receive()`` raises ``error``."""
        self._done = True
        self._cancel_timers()
        cycle = self.cycle
        if cycle is None or cycle.response_started or cycle.disconnected:
            self.transport.close()  # answered (or answering) already: only the connection is left
            return
        if isinstance(cycle, EdgeCycle):
            cycle.edge_error = error
        cycle.keep_alive = False
        cycle.more_body = False
        cycle.message_event.set()

    def _answer(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        """Answer the current request here (the app never saw it), record it, then linger and close."""
        self._done = True
        self._cancel_timers()
        request_id = uuid.uuid4().hex
        body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        extra = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
                 "x-request-id": request_id, **(headers or {})}
        for name_text, value_text in extra.items():
            head += [name_text.encode(), b": ", value_text.encode(), b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
        url: bytes = getattr(self, "url", b"")  # unset before the first request began
        # llhttp knows the method once the target has started; before that it is not known.
        method = self.parser.get_method().decode("ascii", "replace") if url and self.parser else UNKNOWN_METHOD
        self.recorder.rejected(method, url.decode("latin-1"), status, code, request_id=request_id,
                               duration=max(0.0, self.loop.time() - self._started), bytes_in=self._head_raw)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def edge_protocol(limits: EdgeLimits, recorder: EdgeRecorder) -> type[EdgeProtocol]:
    """An :class:`EdgeProtocol` class bound to one service's limits and recorder (uvicorn's ``http=``)."""
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits, "recorder": recorder})

