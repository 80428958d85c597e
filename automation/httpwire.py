"""A lean asyncio HTTP/1.1 client for load generation: keep-alive protocol connections, no per-request task.

A general-purpose client (httpx, aiohttp, asyncio streams) costs the event loop more per request;
an open-loop generator at 1,000 req/s on two cores needs the event loop free to send on time, so
replay writes requests straight to a transport and parses responses incrementally in
``data_received``. ``bench.replay`` measures this client beside aiohttp in one run.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from automation.errors import ConfigError

_NO_BODY_STATUS = {204, 304}
_BODYLESS_METHODS = ("GET", "HEAD", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of the target, plus the path prefix every request path is appended to."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "Origin":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid target {url!r}: expected http(s)://HOST[:PORT][/prefix]")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"invalid target {url!r}: bad port") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        return host if self.port == default else f"{host}:{self.port}"


def encode_request(origin: Origin, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
    """Serialize one request (with Content-Length whenever the method may carry a body)."""
    lines = [f"{method} {origin.prefix}{path} HTTP/1.1", f"Host: {origin.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method not in _BODYLESS_METHODS:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; ``send`` returns a future of the status."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self.closed = False
        self._future: asyncio.Future[int] | None = None
        self._buffer = bytearray()
        self._method = "GET"
        self._status = 0
        self._remaining: int | None = None  # body bytes still expected; None while reading the head
        self._chunked = False
        self._until_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, method: str) -> "asyncio.Future[int]":
        assert self.transport is not None and self._future is None
        self._future = asyncio.get_running_loop().create_future()
        self._method = method
        self._remaining = None
        self._chunked = self._until_close = False
        self.transport.write(data)
        return self._future

    def _finish(self, status: int) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(status)

    def _fail(self, error: BaseException) -> None:
        self.reusable = False
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))

    def _parse(self) -> None:
        if self._future is None:
            return
        if self._remaining is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._read_head(head)
        if self._until_close:
            self._buffer.clear()
            return
        if self._chunked:
            self._parse_chunks()
            return
        assert self._remaining is not None
        take = min(self._remaining, len(self._buffer))
        del self._buffer[:take]
        self._remaining -= take
        if self._remaining == 0:
            self._finish(self._status)

    def _read_head(self, head: bytes) -> None:
        status_line, _, header_block = head.partition(b"\r\n")
        version, status = status_line.split(b" ", 2)[:2]
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"status line {status_line[:80]!r}")
        self._status = int(status)
        length: int | None = None
        for raw in header_block.split(b"\r\n"):
            name, _, value = raw.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
            elif key == b"connection" and b"close" in value.lower():
                self.reusable = False
        if version == b"HTTP/1.0":
            self.reusable = False
        if self._method == "HEAD" or self._status in _NO_BODY_STATUS or self._status < 200:
            self._remaining = 0
            self._chunked = False
        elif self._chunked:
            self._remaining = 0
        elif length is not None:
            self._remaining = length
        else:
            self._remaining = 0
            self._until_close = True
            self.reusable = False

    def _parse_chunks(self) -> None:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._buffer[:line_end]).split(b";", 1)[0].strip(), 16)
            if size == 0:
                trailer_end = self._buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0 and self._buffer[line_end : line_end + 4] != b"\r\n\r\n":
                    return
                self._buffer.clear()
                self._chunked = False
                self._finish(self._status)
                return
            if len(self._buffer) < line_end + 2 + size + 2:
                return
            del self._buffer[: line_end + 2 + size + 2]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._until_close:
            self._finish(self._status)
        else:
            self._fail(ConnectionError("connection closed before the response was complete"))


class Pool:
    """Idle keep-alive connections to one origin; a new one opens whenever none is idle (open loop)."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._idle: list[HttpConnection] = []
        self._ssl = ssl.create_default_context() if origin.scheme == "https" else None
        self.opened = 0

    def take_idle(self) -> HttpConnection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def open(self) -> HttpConnection:
        _transport, connection = await asyncio.get_running_loop().create_connection(
            HttpConnection, self.origin.host, self.origin.port, ssl=self._ssl
        )
        self.opened += 1
        return connection

    def release(self, connection: HttpConnection) -> None:
        if connection.reusable and not connection.closed:
            self._idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
