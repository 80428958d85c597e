"""The gateway's httpx transport to a plain-HTTP upstream: fewer syscalls, no per-request socket lookups.

httpcore's connection pool and HTTP/1.1 state machine are used as they are; only the network
backend underneath is replaced by one on the event loop's own ``sock_*`` calls. Two costs
showed up when profiling the gateway under 16 concurrent requests (py-spy):
- httpcore's pool asks every pooled connection ``get_extra_info("is_readable")`` each time it
  assigns a request, and the anyio backend answers by rebuilding a dict of socket attributes
  on every call: the streams here look the socket up once, at connect time;
- socket sends were the largest self time: httpcore writes the request head and each body
  chunk separately. The streams here buffer writes (up to FLUSH_BYTES) and flush before the
  first read, so a small request leaves in one send. HTTP/1.1 without pipelining sends the whole
  request before reading the answer, so deferring the flush to the read changes no semantics.
Everything else is httpcore's own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import typing
from collections.abc import Iterable

import httpcore
import httpx
from httpcore._utils import is_socket_readable

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


FLUSH_BYTES = 64 * 1024


class _SocketStream(httpcore.AsyncNetworkStream):
    """A plain-TCP httpcore stream on the running asyncio loop's socket calls, with coalesced writes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._pending = bytearray()
        self._write_timeout: float | None = None

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._loop.sock_sendall(self._sock, data)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"write to upstream timed out after {self._write_timeout}s") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush()
        try:
            async with asyncio.timeout(timeout):
                return await self._loop.sock_recv(self._sock, max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"upstream sent nothing for {timeout}s") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending += buffer
        self._write_timeout = timeout
        if len(self._pending) >= FLUSH_BYTES:
            await self._flush()

    async def aclose(self) -> None:
        self._pending.clear()
        self._sock.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("this transport speaks plain HTTP only; use https upstreams via httpx defaults")

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":
            return is_socket_readable(self._sock)
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        return None


class AsyncioSocketBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend using the loop's sock_* calls directly (no anyio stream layers)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                last_error: OSError | None = None
                for family, kind, proto, _name, address in infos:
                    sock = socket.socket(family, kind, proto)
                    try:
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        for option in socket_options or ():
                            sock.setsockopt(*option)  # type: ignore[arg-type]
                        if local_address:
                            sock.bind((local_address, 0))
                        await loop.sock_connect(sock, address)
                        return _SocketStream(sock)
                    except OSError as exc:
                        sock.close()
                        last_error = exc
                raise last_error or OSError(f"no address for {host}:{port}")
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out after {timeout}s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}:{port}: {exc}") from exc

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"unix sockets are not supported by this transport: {path!r}")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def upstream_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport (HTTP/1.1, no retries) whose pool uses AsyncioSocketBackend."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    # httpx 0.28 has no network_backend parameter; its pool is replaced with an identical one
    # built with ours (same limits). tests/service/test_gateway.py exercises this path.
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry, http1=True, http2=False, retries=0,
        network_backend=AsyncioSocketBackend())
    return transport
