"""Range and conditional requests on stored objects, as RFC 9110 sections 13 and 14 say.

- ``Range`` with a unit other than ``bytes``, or a syntactically invalid range set (``bytes=5-2``,
  ``bytes=x``), is ignored: the whole object is served (200), never a 400;
- a valid set none of whose ranges is satisfiable is 416 with ``Content-Range: bytes */SIZE``;
- ``If-None-Match`` is compared weakly, and ``*`` matches any existing object (304 for GET/HEAD).

:class:`ObjectResponse` serves a local file (the filesystem backend); :class:`RemoteObjectResponse`
the same way an object read through ranged reads (the S3 backend's GetObject with ``Range``).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from mime_server.storage import RangeReader

_SPEC = re.compile(r"(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """A valid Range header none of whose ranges falls inside the object."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range starts inside the object's {size} bytes")
        self.size = size


def satisfiable_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The ``(start, end_exclusive)`` ranges to serve, merged and sorted; None to ignore the header.

    Raises RangeNotSatisfiable when the header is valid but no range is satisfiable.
    """
    if header is None:
        return None
    unit, equals, spec_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None  # an unknown unit is ignored (RFC 9110 14.2)
    specs = [spec.strip() for spec in spec_set.split(",")]
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        if not spec:
            continue  # empty list elements are allowed by the list syntax
        match = _SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            if last and int(last) < start:
                return None  # first > last makes the whole set invalid: ignored (14.1.1)
            if start < size:
                ranges.append((start, min(size, int(last) + 1) if last else size))
        elif last:
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append((max(0, size - suffix), size))
        else:
            return None  # "-" alone
    if not any(spec for spec in specs):
        return None
    if not ranges:
        raise RangeNotSatisfiable(size)
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` matches ``etag`` (weak comparison; ``*`` matches any current object)."""
    if header is None:
        return False
    opaque = etag.removeprefix("W/")
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == opaque:
            return True
    return False


class ObjectResponse(FileResponse):
    """Starlette's FileResponse with the range rules above (it answers 400 where RFC 9110 says ignore)."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            ranges = satisfiable_ranges(http_range, file_size)
        except RangeNotSatisfiable:
            ranges = None  # the endpoint answered 416 before; never reached
        if ranges is None or len(ranges) > cls.max_ranges:
            return []  # FileResponse then serves the whole file
        return ranges


def _read_exactly(reader: RangeReader, size: int) -> bytes:
    """``size`` bytes from ``reader``, fewer only at its end (a socket may return less per read)."""
    pieces, wanted = [], size
    while wanted > 0:
        piece = reader.read(wanted)
        if not piece:
            break
        pieces.append(piece)
        wanted -= len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _RangeStream:
    """What FileResponse reads as its file: ``seek`` to a range's start, then ``read`` exactly that
    range's bytes, fetched by one ``open_range(start, end)`` (opened at the first read) in a worker thread."""

    def __init__(self, open_range: Callable[[int, int], RangeReader], ends: dict[int, int], size: int) -> None:
        self._open_range = open_range
        self._ends = ends
        self._size = size
        self._position = 0
        self._reader: RangeReader | None = None

    async def seek(self, offset: int) -> None:
        await self.aclose()
        self._position = offset

    async def read(self, size: int) -> bytes:
        if self._reader is None:
            end = self._ends.get(self._position, self._size)
            if self._position >= end:
                return b""
            self._reader = await anyio.to_thread.run_sync(self._open_range, self._position, end)
        chunk = await anyio.to_thread.run_sync(_read_exactly, self._reader, size)
        self._position += len(chunk)
        return chunk

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await anyio.to_thread.run_sync(reader.close)


class RemoteObjectResponse(ObjectResponse):
    """ObjectResponse over a remote object: ``open_range(start, end)`` gives a blocking reader of
    those bytes, ``stat_result`` its size and modification time. Each range served (the whole
    object, one range, or each part of a multipart/byteranges answer) is one ranged read of
    exactly its bytes, streamed in FileResponse's chunks."""

    def __init__(self, open_range: Callable[[int, int], RangeReader], stat_result: os.stat_result,
                 **kwargs: Any) -> None:
        super().__init__("", stat_result=stat_result, **kwargs)
        self._open_range = open_range
        self._range_ends: dict[int, int] = {}

    def _parse_range_header(self, http_range: str, file_size: int) -> list[tuple[int, int]]:  # type: ignore[override]
        ranges = super()._parse_range_header(http_range, file_size)
        self._range_ends = dict(ranges)  # where each range read stops
        return ranges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.get("extensions") or {}
        if "http.response.pathsend" in extensions:  # there is no local path to hand the server
            scope = {**scope, "extensions": {k: v for k, v in extensions.items() if k != "http.response.pathsend"}}
        await super().__call__(scope, receive, send)

    @asynccontextmanager
    async def _open_file(self) -> AsyncIterator[Any]:  # type: ignore[override]
        assert self.stat_result is not None
        stream = _RangeStream(self._open_range, self._range_ends, self.stat_result.st_size)
        try:
            yield stream
        finally:
            with anyio.CancelScope(shield=True):  # closing must finish even when the transfer is cancelled
                await stream.aclose()
