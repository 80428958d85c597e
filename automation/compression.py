"""Streaming compression for archives: a parallel block compressor (gz, zst) and a reader for gz, zst or plain tar."""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

import zstandard

from automation.errors import ArchiveInvalid, UsageError

COMPRESSIONS = ("gz", "zst", "none")
SUFFIX = {"gz": ".tar.gz", "zst": ".tar.zst", "none": ".tar"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compress_block(compression: str, level: int | None, data: bytes) -> bytes:
    """Compress ``data`` as one self-contained gzip member or zstd frame (concatenations stay valid)."""
    if compression == "gz":
        gz = zlib.compressobj(6 if level is None else level, zlib.DEFLATED, 31)  # wbits 31: gzip framing
        return gz.compress(data) + gz.flush()
    if compression == "zst":
        return zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
    if compression == "none":
        return data
    raise UsageError(f"unknown compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")


class CompressingWriter:
    """A write-only sink: tar bytes in, compressed blocks out, in order, hashed as they are written.

    Input is cut into ``block_size`` blocks, each compressed as an independent gzip member or
    zstd frame on a pool of threads (zlib and zstd release the GIL), like pigz: gzip and zstd
    decoders read concatenated members as one stream. At most ``2 x workers`` blocks are in
    flight, so memory stays flat whatever the archive's size.
    """

    def __init__(
        self,
        out: BinaryIO,
        compression: str,
        level: int | None = None,
        workers: int | None = None,
        block_size: int = 4 << 20,
    ) -> None:
        compress_block(compression, level, b"")  # validates the compression name up front
        self._compression, self._level = compression, level
        self._out = out
        self._block_size = block_size
        self._buffer = bytearray()
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="compress")
        self._inflight: deque[Future[bytes]] = deque()
        self.sha256 = hashlib.sha256()
        self.bytes_out = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self.sha256.update(data)
            self.bytes_out += len(data)

    def _submit(self, block: bytes) -> None:
        self._inflight.append(self._pool.submit(compress_block, self._compression, self._level, block))
        while len(self._inflight) > 2 * self._workers:
            self._emit(self._inflight.popleft().result())

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._block_size:
            self._submit(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        """Compress what is buffered and write every pending block; re-raises a worker failure."""
        try:
            if self._buffer or not self.bytes_out and not self._inflight:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._inflight:
                self._emit(self._inflight.popleft().result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


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
