"""Request bodies of uploads: raw bytes or multipart/form-data, streamed into a sink under a size limit."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from mime_server.errors import ApiError

Sink = Callable[[bytes], None]
# Awaited after each received chunk has gone to the sink: lets a sink that buffers in memory move
# data to disk off the event loop (in a worker thread) while the body is still streaming in.
Flush = Callable[[], Awaitable[None]]
MAX_FILENAME_BYTES = 255
# RFC 2046 5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY = 70
# Bidirectional formatting characters (Unicode TR 9): they make a name display other than it is
# ("report\u202etxt.exe" shows as "reportexe.txt"). Refused, like control characters, rather than
# stripped: a silently changed name would be stored under a name the client never sent.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Room for boundaries and part headers around the file in a multipart body.
MULTIPART_OVERHEAD = 16 * 1024


@dataclass(frozen=True)
class Body:
    """What was read: the payload size and the filename a multipart part carried, if any."""

    size: int
    part_filename: str | None


def too_large(limit: int, seen: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"upload exceeds the limit of {limit} bytes", seen)


def clean_filename(value: str | None) -> str | None:
    """Reduce a client filename to its last path segment; refuse control and bidirectional
    formatting characters and overlong names."""
    if value is None:
        return None
    for index, char in enumerate(value):
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS:
            kind = "control" if unicodedata.category(char) == "Cc" else "bidirectional formatting"
            raise ApiError(400, "invalid_filename",
                           f"filename contains {kind} character U+{ord(char):04X} at index {index}", value)
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return None
    if len(name.encode()) > MAX_FILENAME_BYTES:
        raise ApiError(400, "invalid_filename", f"filename is longer than {MAX_FILENAME_BYTES} bytes", value)
    return name


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, "invalid_content_length", "Content-Length must be a non-negative integer", raw)
    return int(raw)


class _MultipartFile:
    """Callbacks for python-multipart that forward the first part named ``file`` to the sink."""

    def __init__(self, sink: Sink, limit: int) -> None:
        self.sink = sink
        self.limit = limit
        self.size = 0
        self.filename: str | None = None
        self.found = False
        self.ended = False
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or params.get(b"name") != b"file" or self.found:
            return
        self.found = self._in_file = True
        raw_name = params.get(b"filename")
        if raw_name is not None:
            try:
                self.filename = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "invalid_filename", "multipart filename is not valid UTF-8",
                               raw_name.decode("latin-1")) from None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.size += end - start
            if self.size > self.limit:
                raise too_large(self.limit, self.size)
            self.sink(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True


async def _read_multipart(request: Request, content_type: str, sink: Sink, limit: int,
                          flush: Flush | None) -> Body:
    _ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "multipart/form-data without a boundary parameter", content_type)
    if len(boundary) > MAX_BOUNDARY:
        raise ApiError(400, "malformed_multipart", f"multipart boundary is longer than {MAX_BOUNDARY} characters "
                       f"(RFC 2046)", len(boundary))
    collector = _MultipartFile(sink, limit)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        wire = 0
        async for chunk in request.stream():
            wire += len(chunk)
            if wire > limit + MULTIPART_OVERHEAD:
                raise too_large(limit, wire)
            parser.write(chunk)
            if flush is not None:
                await flush()
        parser.finalize()
    except FormParserError as exc:  # every error of the parser, its constructor's included
        raise ApiError(400, "malformed_multipart", f"multipart body does not parse: {exc}", content_type) from None
    if not collector.ended:
        raise ApiError(400, "malformed_multipart", "multipart body ends before its closing boundary", content_type)
    if not collector.found:
        raise ApiError(400, "malformed_multipart", "multipart body has no part named 'file'", content_type)
    return Body(collector.size, collector.filename)


async def read_upload(request: Request, sink: Sink, limit: int, flush: Flush | None = None) -> Body:
    """Stream the request body (raw, or the ``file`` part of multipart) into ``sink``.

    ``sink`` is called on the event loop and must not block; ``flush``, if given, is awaited
    after each received chunk (see ``Flush``).

    The size limit is enforced while streaming: the request is refused with 413 as soon as
    the declared or received length passes it, before the rest is read.
    """
    content_type = request.headers.get("content-type", "")
    is_multipart = content_type.lower().startswith("multipart/form-data")
    declared = _declared_length(request)
    if declared is not None and declared > limit + (MULTIPART_OVERHEAD if is_multipart else 0):
        raise too_large(limit, declared)
    if is_multipart:
        body = await _read_multipart(request, content_type, sink, limit, flush)
    else:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit, size)
            if chunk:
                sink(chunk)
                if flush is not None:
                    await flush()
        body = Body(size, None)
    if body.size == 0:
        raise ApiError(400, "empty_body", "the upload is empty: send the file bytes as the request body", 0)
    return body
