"""Content type detection with libmagic: MIME type, charset, and filename-extension disagreement."""

from __future__ import annotations

import mimetypes
import queue
import threading
from dataclasses import dataclass
from pathlib import PurePosixPath

import magic

# libmagic and Python's mimetypes name some types differently; each pair means the same thing.
_ALIASES: dict[str, str] = {
    "text/x-script.python": "text/x-python",
    "application/x-javascript": "text/javascript",
    "application/javascript": "text/javascript",
    "text/xml": "application/xml",
    "application/x-gzip": "application/gzip",
    "image/x-ms-bmp": "image/bmp",
    "application/x-zip-compressed": "application/zip",
    "audio/x-wav": "audio/wav",
    "text/x-shellscript": "text/x-sh",
    "application/x-sh": "text/x-sh",
    "application/x-bytecode.python": "application/x-python-code",
    "text/rtf": "application/rtf",
    "font/sfnt": "font/ttf",  # libmagic names both TrueType and OpenType "sfnt"
    "font/otf": "font/ttf",
    "image/x-icon": "image/vnd.microsoft.icon",
}
# mimetypes reports .gz/.bz2/.xz as an encoding, not a type: the bytes are then the compressor's format.
_COMPRESSION = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz",
                "compress": "application/x-compress", "br": "application/x-brotli"}
# Types that are text on disk: libmagic calls them text/plain (or guesses another text/* subtype).
_TEXTUAL = {"application/json", "application/xml", "text/javascript", "application/x-x509-ca-cert",
            "application/pem-certificate-chain", "application/x-pem-file", "application/x-tex",
            "application/x-latex", "application/x-yaml", "application/toml", "application/sql"}
_ZIP_BASED = {"application/zip", "application/java-archive", "application/epub+zip",
              "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
              "application/vnd.openxmlformats-officedocument.presentationml.presentation",
              "application/vnd.oasis.opendocument.text", "application/vnd.android.package-archive"}
_UNINFORMATIVE = {"application/octet-stream"}


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


def _textual(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in _TEXTUAL or mime_type.endswith(("+xml", "+json"))


def expected_type(filename: str) -> str | None:
    """The type a filename's extension promises (by Python's mimetypes), or None if it promises nothing."""
    suffix = PurePosixPath(filename).suffix.lower()
    if not suffix:
        return None
    guessed, encoding = mimetypes.guess_type("x" + suffix, strict=False)
    if encoding is not None:
        guessed = _COMPRESSION.get(encoding)
    if guessed is None or guessed in _UNINFORMATIVE:
        return None
    return _canonical(guessed)


def extension_mismatch(filename: str | None, mime_type: str) -> bool:
    """True when the filename's extension promises a type the content is not.

    No extension, an unknown one, or one that only says "binary" never counts as a mismatch.
    libmagic's text subtypes are heuristics (a sentence with commas may come out as text/csv),
    so detected text is never said to disagree with a textual extension.
    """
    if not filename:
        return False
    expected = expected_type(filename)
    if expected is None:
        return False
    detected = _canonical(mime_type)
    if detected == expected:
        return False
    if detected.startswith("text/") and _textual(expected):
        return False
    return not (detected in _ZIP_BASED and expected in _ZIP_BASED)


# Detections running at once, each with its own libmagic cookie. A cookie holds its own copy of the
# compiled magic database (megabytes each); one per worker thread, as there were, made 50
# concurrent uploads (40 threads) take mime-server past its 256 MB limit (bench.edge). libmagic also
# reads up to bytes_max (7 MiB) of a file into a buffer per call. Detection takes milliseconds, so a
# few cookies cost no throughput.
DETECTION_SLOTS = 4


class Detector:
    """Thread-safe libmagic wrapper: a pool of DETECTION_SLOTS cookies (a cookie is not thread-safe),
    each lent to one thread at a time, so at most that many detections run at once."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[magic.Magic] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._created = 0
        cookie = self._borrow()
        # libmagic looks at no more than this many bytes of a file (what `file` reads): a detect
        # request needs to keep only this prefix of its body, however large the body is.
        self.bytes_max: int = cookie.getparam(magic.MAGIC_PARAM_BYTES_MAX)
        self._idle.put(cookie)

    @property
    def cookies(self) -> int:
        """libmagic cookies made so far (never more than DETECTION_SLOTS)."""
        return self._created

    def _borrow(self) -> magic.Magic:
        """An idle cookie, a new one while fewer than DETECTION_SLOTS exist, else the next one given
        back. Whoever borrows puts it back in ``self._idle`` (try/finally: this runs per detection)."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                create = self._created < DETECTION_SLOTS
                self._created += create
            return magic.Magic(mime=True, mime_encoding=True) if create else self._idle.get()

    @staticmethod
    def _parse(raw: str, filename: str | None) -> Detection:
        # libmagic answers "type/subtype; charset=xyz" with MAGIC_MIME.
        mime_type, _, rest = raw.partition(";")
        charset = rest.strip().removeprefix("charset=") or None
        mime_type = mime_type.strip() or "application/octet-stream"
        return Detection(mime_type, charset, extension_mismatch(filename, mime_type))

    def detect_bytes(self, data: bytes, filename: str | None = None) -> Detection:
        """Detect the type of an in-memory buffer."""
        cookie = self._borrow()
        try:
            raw = cookie.from_buffer(data)
        finally:
            self._idle.put(cookie)
        return self._parse(raw, filename)

    def detect_file(self, path: str, filename: str | None = None) -> Detection:
        """Detect the type of a file on disk (libmagic reads as much of it as `file` would)."""
        cookie = self._borrow()
        try:
            raw = cookie.from_file(path)
        finally:
            self._idle.put(cookie)
        return self._parse(raw, filename)
