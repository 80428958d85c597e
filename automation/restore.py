"""Verifying an archive against its manifest and restoring it safely (temp dir beside the target, then rename).

Nothing reaches the target until every member has been checked: names must stay under ``data/``
(no absolute paths, no ``..``), only files, directories and symlinks that stay inside are
accepted, and each entry must equal the manifest line written when the backup was made.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from automation.compression import DecompressingReader
from automation.durable import fsync_dir
from automation.errors import ArchiveInvalid, ConfigError
from automation.manifest import DATA_ROOT, DIR, FILE, MEMBER, SYMLINK, Entry, EntryLog, read_manifest

CHUNK = 1 << 20


@dataclass(frozen=True)
class VerifyResult:
    """What an archive held, once verified."""

    archive: str
    compression: str
    sha256: str
    entries: int
    files: int
    bytes: int
    created: str | None


def companion_path(archive: Path) -> Path:
    """The ``sha256sum``-format file written next to each archive."""
    return archive.with_name(archive.name + ".sha256")


def read_companion(archive: Path) -> str | None:
    """The archive digest recorded in its companion file, or None when there is none."""
    try:
        text = companion_path(archive).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    if not text or len(text[0]) != 64:
        raise ArchiveInvalid(f"{companion_path(archive)} is not in sha256sum format")
    return text[0].lower()


def _relative(member: tarfile.TarInfo) -> str:
    """Map a member name to a path relative to the restored root, refusing anything that could escape."""
    name = member.name
    if name.startswith("/"):
        raise ArchiveInvalid(f"unsafe member {name!r}: absolute path")
    parts = name.rstrip("/").split("/")
    if parts[0] != DATA_ROOT:
        raise ArchiveInvalid(f"unexpected member {name!r}: expected names under {DATA_ROOT}/")
    rest = [p for p in parts[1:] if p not in ("", ".")]
    if ".." in rest:
        raise ArchiveInvalid(f"unsafe member {name!r}: '..' would leave the restore directory")
    return "/".join(rest)


def _check_link(relative: str, target: str) -> None:
    if not target or target.startswith("/"):
        raise ArchiveInvalid(f"unsafe symlink {relative!r} -> {target!r}: absolute or empty target")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveInvalid(f"unsafe symlink {relative!r} -> {target!r}: points outside the restore directory")


class _Extractor:
    """Writes verified-so-far members under ``root`` (None: verify only, write nothing)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.dirs: list[Entry] = []
        self.links: list[Entry] = []

    def file(self, entry: Entry, data: IO[bytes] | None) -> str:
        digest = hashlib.sha256()
        fd = None
        if self.root is not None:
            path = self.root / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            remaining = entry.size
            while remaining and data is not None:
                chunk = data.read(min(CHUNK, remaining))
                if not chunk:
                    raise ArchiveInvalid(f"archive is truncated inside {entry.path!r}")
                digest.update(chunk)
                if fd is not None:
                    os.write(fd, chunk)
                remaining -= len(chunk)
            if fd is not None:
                os.fchmod(fd, entry.mode)
        finally:
            if fd is not None:
                os.close(fd)
        return digest.hexdigest()

    def directory(self, entry: Entry) -> None:
        if self.root is not None:
            (self.root / entry.path).mkdir(parents=True, exist_ok=True)
        self.dirs.append(entry)

    def finish(self, manifest: dict[str, Entry]) -> None:
        """Create symlinks last and set directory modes and times deepest first (so writes inside succeed)."""
        if self.root is None:
            return
        for link in self.links:
            path = self.root / link.path
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link.target or "", path)
        for path_entry in manifest.values():
            if path_entry.type == FILE:
                os.utime(self.root / path_entry.path, ns=(path_entry.mtime_ns, path_entry.mtime_ns))
        for entry in sorted(self.dirs, key=lambda e: e.path.count("/") + (1 if e.path else 0), reverse=True):
            path = self.root / entry.path if entry.path else self.root
            os.chmod(path, entry.mode)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _read(archive: Path, extractor: _Extractor, on_read: Callable[[int], None] | None) -> VerifyResult:
    seen = EntryLog()
    try:
        with open(archive, "rb") as raw:
            reader = DecompressingReader(raw, on_read)
            stream = io.BufferedReader(reader, CHUNK)
            manifest_data: bytes | None = None
            try:
                tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
                for member in tar:
                    if manifest_data is not None:
                        raise ArchiveInvalid(f"unexpected member {member.name!r} after the manifest")
                    if member.name == MEMBER and member.isreg():
                        handle = tar.extractfile(member)
                        manifest_data = handle.read() if handle else b""
                        if len(manifest_data) != member.size:
                            raise ArchiveInvalid("archive is truncated inside the manifest")
                        continue
                    relative = _relative(member)
                    mode = member.mode & 0o7777
                    if member.isreg():
                        entry = Entry(relative, FILE, mode, member.size)
                        digest = extractor.file(entry, tar.extractfile(member))
                        seen.add(Entry(relative, FILE, mode, member.size, digest))
                    elif member.isdir():
                        entry = Entry(relative, DIR, mode)
                        extractor.directory(entry)
                        seen.add(entry)
                    elif member.issym():
                        _check_link(relative, member.linkname)
                        entry = Entry(relative, SYMLINK, mode, target=member.linkname)
                        extractor.links.append(entry)
                        seen.add(entry)
                    else:
                        raise ArchiveInvalid(
                            f"unsafe member {member.name!r}: type {member.type!r}, expected file, directory or symlink"
                        )
                # Drain the compressed stream to its end so truncation and the whole-file digest are checked.
                while stream.read(CHUNK):
                    pass
            except (tarfile.TarError, EOFError) as exc:
                raise ArchiveInvalid(f"archive {str(archive)!r} is corrupted or truncated: {exc}") from None
            if manifest_data is None:
                raise ArchiveInvalid(
                    f"archive {str(archive)!r} is truncated or not made by `automation backup`: no manifest at its end"
                )
            header, expected, trailer = read_manifest(io.BytesIO(manifest_data))
            by_path = _compare(expected, iter(seen))
            extractor.links = [e for e in by_path.values() if e.type == SYMLINK]
            extractor.dirs = [e for e in by_path.values() if e.type == DIR]
            extractor.finish(by_path)
            return VerifyResult(
                archive=str(archive),
                compression=reader.compression,
                sha256=reader.source.sha256.hexdigest(),
                entries=int(trailer["entries"]),
                files=int(trailer["files"]),
                bytes=int(trailer["bytes"]),
                created=header.get("created"),
            )
    finally:
        seen.close()


def _compare(expected: Iterator[Entry], seen: Iterator[Entry]) -> dict[str, Entry]:
    """Both lists are in archive order, so they are compared in lockstep; returns manifest entries by path."""
    by_path: dict[str, Entry] = {}
    for want in expected:
        got = next(seen, None)
        if got is None:
            raise ArchiveInvalid(f"archive lacks {want.path!r}, listed in its manifest")
        if got.key() != want.key():
            what = "content (sha256)" if got.path == want.path and got.sha256 != want.sha256 else "entry"
            raise ArchiveInvalid(f"{what} of {got.path!r} does not match the manifest: got {got.key()}, expected {want.key()}")
        by_path[want.path] = want
    extra = next(seen, None)
    if extra is not None:
        raise ArchiveInvalid(f"archive holds {extra.path!r}, which its manifest does not list")
    return by_path


def verify_archive(archive: Path, on_read: Callable[[int], None] | None = None) -> VerifyResult:
    """Check every member of ``archive`` against its manifest (and companion digest) without writing anything."""
    if not archive.is_file():
        raise ConfigError(f"archive {str(archive)!r} does not exist or is not a file")
    result = _read(archive, _Extractor(None), on_read)
    _check_companion(archive, result)
    return result


def _check_companion(archive: Path, result: VerifyResult) -> None:
    recorded = read_companion(archive)
    if recorded is not None and recorded != result.sha256:
        raise ArchiveInvalid(
            f"archive {str(archive)!r} has sha256 {result.sha256}, but {companion_path(archive).name} records {recorded}"
        )


def restore_archive(
    archive: Path, target: Path, force: bool = False, on_read: Callable[[int], None] | None = None
) -> VerifyResult:
    """Restore ``archive`` into ``target``: extract beside it, verify, then rename into place.

    ``target`` must be missing or empty unless ``force``; with ``force`` its old contents are
    swapped out and removed only once the new tree is in place.
    """
    if not archive.is_file():
        raise ConfigError(f"archive {str(archive)!r} does not exist or is not a file")
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"restore target {str(target)!r} exists and is not a directory")
    occupied = target.exists() and any(target.iterdir())
    if occupied and not force:
        raise ConfigError(f"restore target {str(target)!r} is not empty; pass --force to replace its contents")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
    try:
        root = staging / "tree"
        root.mkdir()
        result = _read(archive, _Extractor(root), on_read)
        _check_companion(archive, result)
        old = staging / "previous"
        if target.exists():
            os.rename(target, old)
        try:
            os.rename(root, target)
        except OSError:
            if old.exists():
                os.rename(old, target)
            raise
        fsync_dir(target.parent)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)




