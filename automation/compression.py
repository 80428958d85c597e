"""Streaming compression for archives: a writer that compresses on its own thread, and a reader for gz, zst or plain tar."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import zlib
from typing import BinaryIO, Callable

import zstandard

from automation.errors import ArchiveInvalid, UsageError

COMPRESSIONS = ("gz", "zst", "none")
SUFFIX = {"gz": ".tar.gz", "zst": ".tar.zst", "none": ".tar"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _compress_function(compression: str, level: int | None) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    if compression == "gz":
        gz = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)  # wbits 31: gzip framing
        return gz.compress, gz.flush
    if compression == "zst":
        zst = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        return zst.compress, zst.flush
    if compression == "none":
        return (lambda data: data), (lambda: b"")
    raise UsageError(f"unknown compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")


class CompressingWriter:
    """A write-only sink: callers hand it tar bytes, a worker thread compresses, hashes and writes them.

    zlib and zstd release the GIL, so compression runs beside the caller's reading and hashing;
    the bounded queue keeps memory flat (at most ``depth`` chunks in flight).
    """

    def __init__(self, out: BinaryIO, compression: str, level: int | None = None, depth: int = 16) -> None:
        self._compress, self._flush = _compress_function(compression, level)
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.sha256 = hashlib.sha256()
        self.bytes_out = 0
        self._thread = threading.Thread(target=self._run, name="compressor", daemon=True)
        self._thread.start()

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self.sha256.update(data)
            self.bytes_out += len(data)

    def _run(self) -> None:
        try:
            while (chunk := self._queue.get()) is not None:
                self._emit(self._compress(chunk))
            self._emit(self._flush())
        except BaseException as exc:  # surfaced to the caller on its next write or close
            self._error = exc
            while self._queue.get() is not None:  # drain so the producer never blocks forever
                pass

    def write(self, data: bytes) -> None:
        if self._error:
            raise self._error
        self._queue.put(bytes(data))

    def close(self) -> None:
        """Flush everything and wait for the worker; re-raises a worker failure."""
        self._queue.put(None)
        self._thread.join()
        if self._error:
            raise self._error


class _HashingReader(io.RawIOBase):
    """Reads a raw file, hashing and counting what passes."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._on_read = on_read
        self.sha256 = hashlib.sha256()
        self.bytes_in = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        self.bytes_in += len(data)
        if self._on_read and data:
            self._on_read(len(data))
        return data


class DecompressingReader(io.RawIOBase):
    """A readable stream of the tar bytes inside a gz (multi-member), zst or plain archive.

    Ends with :class:`ArchiveInvalid` when the compressed stream stops before its end marker.
    """

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None] | None = None, chunk: int = 1 << 20) -> None:
        self.source = _HashingReader(raw, on_read)
        self._chunk = chunk
        head = self.source.read(4)
        self._pending = b""
        if head.startswith(_GZIP_MAGIC):
            self.compression = "gz"
            self._decoder: zlib._Decompress | None = zlib.decompressobj(31)
            self._pending = self._decoder.decompress(head)
        elif head == _ZSTD_MAGIC:
            self.compression = "zst"
            self._zst = zstandard.ZstdDecompressor().decompressobj()
            self._pending = self._zst.decompress(head)
        else:
            self.compression = "none"
            self._pending = head
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bytes:
        data = self.source.read(self._chunk)
        if self.compression == "none":
            if not data:
                self._eof = True
            return data
        if self.compression == "gz":
            return self._fill_gz(data)
        if not data:
            self._eof = True
            if not self._zst.eof:
                raise ArchiveInvalid("archive is truncated: the zstd stream ends before its end marker")
            return b""
        out = self._zst.decompress(data)
        while self._zst.eof and self._zst.unused_data:  # next frame
            rest = self._zst.unused_data
            self._zst = zstandard.ZstdDecompressor().decompressobj()
            out += self._zst.decompress(rest)
        return out

    def _fill_gz(self, data: bytes) -> bytes:
        assert self._decoder is not None
        if not data:
            self._eof = True
            if not self._decoder.eof:
                raise ArchiveInvalid("archive is truncated: the gzip stream ends before its end marker")
            return b""
        try:
            out = self._decoder.decompress(data)
            while self._decoder.eof and self._decoder.unused_data:  # next gzip member
                rest = self._decoder.unused_data
                self._decoder = zlib.decompressobj(31)
                out += self._decoder.decompress(rest)
        except zlib.error as exc:
            raise ArchiveInvalid(f"archive is corrupted: gzip data error ({exc})") from None
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            try:
                self._pending = self._fill()
            except zstandard.ZstdError as exc:
                raise ArchiveInvalid(f"archive is corrupted: zstd data error ({exc})") from None
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
