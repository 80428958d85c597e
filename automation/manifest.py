"""The backup manifest: one JSON line per archived entry (path, type, mode, size, sha256), spooled to disk.

Layout (``manifest.jsonl``, the archive's last member): a header line ``{"format": ...}``, one line
per entry in archive order, then a trailer ``{"end": true, "entries": N, "files": N, "bytes": N}``
so a cut manifest is detected. Entries are spooled to a temporary file, so memory stays flat
however many files a volume holds.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from typing import IO, Any, Iterator

from automation.errors import ArchiveInvalid

FORMAT = "automation-backup/1"
MEMBER = "manifest.jsonl"
DATA_ROOT = "data"

FILE, DIR, SYMLINK = "file", "dir", "symlink"


@dataclass(frozen=True)
class Entry:
    """One archived filesystem entry; ``path`` is relative to the backed-up directory ("" is the root)."""

    path: str
    type: str
    mode: int
    size: int = 0
    sha256: str | None = None
    mtime_ns: int = 0
    target: str | None = None

    def key(self) -> tuple[object, ...]:
        """What restore must reproduce exactly (mtime is restored but not part of identity)."""
        return (self.path, self.type, self.mode, self.size, self.sha256, self.target)

    def to_line(self) -> bytes:
        return (json.dumps({k: v for k, v in asdict(self).items() if v is not None}) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Entry":
        try:
            return cls(
                path=str(data["path"]),
                type=str(data["type"]),
                mode=int(data["mode"]),
                size=int(data.get("size", 0)),
                sha256=data.get("sha256"),
                mtime_ns=int(data.get("mtime_ns", 0)),
                target=data.get("target"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveInvalid(f"manifest entry {data!r} is malformed: {exc}") from None


class EntryLog:
    """An append-only list of entries kept in a spooled temporary file (memory bounded)."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 << 20)
        self.entries = 0
        self.files = 0
        self.bytes = 0

    def add(self, entry: Entry) -> None:
        self._file.write(entry.to_line())
        self.entries += 1
        if entry.type == FILE:
            self.files += 1
            self.bytes += entry.size

    def __iter__(self) -> Iterator[Entry]:
        self._file.seek(0)
        for line in self._file:
            yield Entry.from_dict(json.loads(line))
        self._file.seek(0, 2)

    def render(self, header: dict[str, Any]) -> IO[bytes]:
        """Return a file positioned at 0 holding the whole manifest (header, entries, trailer)."""
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 << 20)
        out.write((json.dumps({"format": FORMAT} | header) + "\n").encode())
        self._file.seek(0)
        while chunk := self._file.read(1 << 20):
            out.write(chunk)
        trailer = {"end": True, "entries": self.entries, "files": self.files, "bytes": self.bytes}
        out.write((json.dumps(trailer) + "\n").encode())
        out.seek(0)
        return out

    def close(self) -> None:
        self._file.close()


def read_manifest(stream: IO[bytes]) -> tuple[dict[str, Any], Iterator[Entry], dict[str, Any]]:
    """Parse a manifest: (header, entries, trailer). Reads it fully into a spooled log first."""
    lines = iter(stream)
    try:
        header = json.loads(next(lines))
    except (StopIteration, json.JSONDecodeError):
        raise ArchiveInvalid("manifest is empty or not JSON lines") from None
    if header.get("format") != FORMAT:
        raise ArchiveInvalid(f"manifest format is {header.get('format')!r}, expected {FORMAT!r}")
    log = EntryLog()
    trailer: dict[str, Any] | None = None
    for raw in lines:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ArchiveInvalid(f"manifest line {raw[:80]!r} is not JSON") from None
        if trailer is not None:
            raise ArchiveInvalid("manifest has lines after its trailer")
        if data.get("end") is True:
            trailer = data
        else:
            log.add(Entry.from_dict(data))
    if trailer is None:
        raise ArchiveInvalid("manifest is cut short: no trailer line")
    if trailer.get("entries") != log.entries:
        raise ArchiveInvalid(f"manifest lists {log.entries} entries but its trailer says {trailer.get('entries')}")
    return header, iter(log), trailer
