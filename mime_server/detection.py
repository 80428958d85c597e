"""Content type detection with libmagic: MIME type, charset, and filename-extension disagreement."""

from __future__ import annotations

import mimetypes
import threading
from dataclasses import dataclass
from pathlib import PurePosixPath

import magic

# libmagic and Python's mimetypes name some types differently; these pairs mean the same thing.
_ALIASES: dict[str, str] = {
    "text/x-script.python": "text/x-python",
    "application/x-javascript": "text/javascript",
    "application/javascript": "text/javascript",
    "text/xml": "application/xml",
    "application/x-gzip": "application/gzip",
    "image/x-ms-bmp": "image/bmp",
    "application/x-zip-compressed": "application/zip",
    "audio/x-wav": "audio/wav",
    "audio/x-wave": "audio/wav",
    "text/x-shellscript": "application/x-sh",
    "application/x-bzip2": "application/x-bzip2",
    "application/x-xz": "application/x-xz",
    "image/svg": "image/svg+xml",
}

# Detected types that are containers or plain text: many extensions legitimately map onto them.
_GENERIC_TEXT = "text/plain"
_ZIP_BASED = {"application/zip", "application/java-archive", "application/epub+zip"}


@dataclass(frozen=True)
class Detection:
    """What libmagic says about some bytes, plus whether a filename's extension agrees."""

    mime_type: str
    charset: str | None
    extension_mismatch: bool

    @property
    def content_type(self) -> str:
        """The Content-Type header value to serve these bytes with."""
        if self.charset and self.charset not in ("binary", "unknown-8bit") and self.mime_type.startswith("text/"):
            return f"{self.mime_type}; charset={self.charset}"
        return self.mime_type


def _canonical(mime_type: str) -> str:
    return _ALIASES.get(mime_type, mime_type)


def extension_mismatch(filename: str | None, mime_type: str) -> bool:
    """True when the filename's extension names a known type that differs from the detected one.

    Unknown or absent extensions never count as a mismatch: there is nothing to disagree with.
    """
    if not filename:
        return False
    suffix = PurePosixPath(filename).suffix.lower()
    if not suffix:
        return False
    guessed, _encoding = mimetypes.guess_type("x" + suffix, strict=False)
    if guessed is None:
        return False
    detected = _canonical(mime_type)
    expected = _canonical(guessed)
    if detected == expected:
        return False
    # libmagic reports most text formats (csv, json, source code) as text/plain.
    if detected == _GENERIC_TEXT and (expected.startswith("text/") or expected.endswith(("+xml", "/json", "/xml"))):
        return False
    if detected in _ZIP_BASED and expected in _ZIP_BASED | {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
    }:
        return False
    return True


class Detector:
    """Thread-safe libmagic wrapper (one magic cookie per thread: cookies are not thread-safe)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _cookie(self) -> magic.Magic:
        cookie = getattr(self._local, "cookie", None)
        if cookie is None:
            cookie = magic.Magic(mime=True, mime_encoding=True)
            self._local.cookie = cookie
        return cookie

    @staticmethod
    def _parse(raw: str, filename: str | None) -> Detection:
        # libmagic answers "type/subtype; charset=xyz" with MAGIC_MIME.
        mime_type, _, rest = raw.partition(";")
        charset = rest.strip().removeprefix("charset=") or None
        mime_type = mime_type.strip() or "application/octet-stream"
        return Detection(mime_type, charset, extension_mismatch(filename, mime_type))

    def detect_bytes(self, data: bytes, filename: str | None = None) -> Detection:
        """Detect the type of an in-memory buffer."""
        return self._parse(self._cookie().from_buffer(data), filename)

    def detect_file(self, path: str, filename: str | None = None) -> Detection:
        """Detect the type of a file on disk (libmagic reads as much of it as `file` would)."""
        return self._parse(self._cookie().from_file(path), filename)
