"""Streaming a directory tree into a tar archive with `tarfile`, hashing every file on the way (constant memory).

Members are ``data`` (the source directory itself) and ``data/<relative path>``; the manifest
(see :mod:`automation.manifest`) is the last member. Files that shrink, grow or vanish while
being read are handled like GNU tar does (archive what was read, pad, warn), and reported:
`tarfile` copies exactly the size in the header, from a reader that hashes and pads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from automation.manifest import DATA_ROOT, DIR, FILE, MEMBER, SYMLINK, Entry, EntryLog

CHUNK = 1 << 20


class Sink(Protocol):
    def write(self, data: bytes) -> object: ...


@dataclass
class ArchiveStats:
    """What went into an archive, and what changed under our feet while it was written."""

    entries: int = 0
    files: int = 0
    bytes: int = 0
    changed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _member_name(relative: str) -> str:
    return f"{DATA_ROOT}/{relative}" if relative else DATA_ROOT


def _info(name: str, kind: bytes, st: os.stat_result, size: int = 0, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.size = size
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.linkname = target
    return info


class _HashingReader:
    """The file's bytes for `tarfile`, hashed on the way; zeros where it shrank while being read."""

    def __init__(self, fd: int, on_bytes: Callable[[int], None]) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.shrank = False
        self._on_bytes = on_bytes

    def read(self, size: int = CHUNK) -> bytes:
        chunk = os.read(self.fd, size)
        if not chunk and size:  # shrank while reading: pad like GNU tar so the stream stays valid
            chunk = b"\0" * size
            self.shrank = True
        self.digest.update(chunk)
        self._on_bytes(len(chunk))
        return chunk


def scan_totals(source: Path, excludes: list[str], first: list[str] | None = None) -> tuple[int, int]:
    """Count regular files and their bytes (for the progress bar); cheap, metadata only."""
    files = total = 0
    for _relative, entry_stat in walk(source, excludes, first):
        if stat.S_ISREG(entry_stat.st_mode):
            files += 1
            total += entry_stat.st_size
    return files, total


def _excluded(relative: str, excludes: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relative, p) for p in excludes)


def walk(source: Path, excludes: list[str], first: list[str] | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative posix path, lstat) depth-first in sorted order, the root first as ""; links not followed.

    Subtrees named in ``first`` come right after the root. For a store that writes A before
    making B visible (mime-server writes the ``meta/`` sidecar, then renames the object into
    ``objects/``), archiving B first means every B in the archive has its A, without a snapshot.
    """
    yield "", os.lstat(source)
    ordered = [p.strip("/") for p in first or [] if p.strip("/")]
    for relative in ordered:
        if _excluded(relative, excludes):
            continue
        try:
            entry_stat = os.lstat(source / relative)
        except FileNotFoundError:
            continue
        yield relative, entry_stat
        if stat.S_ISDIR(entry_stat.st_mode):
            yield from _walk_below(source, relative, excludes, set())
    yield from _walk_below(source, "", excludes, set(ordered))


def _walk_below(source: Path, top: str, excludes: list[str], skip: set[str]) -> Iterator[tuple[str, os.stat_result]]:
    stack: list[str] = [top]
    while stack:
        relative_dir = stack.pop()
        directory = source / relative_dir if relative_dir else source
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        subdirs: list[str] = []
        for child in children:
            relative = f"{relative_dir}/{child.name}" if relative_dir else child.name
            if relative in skip or _excluded(relative, excludes):
                continue
            try:
                child_stat = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield relative, child_stat
            if stat.S_ISDIR(child_stat.st_mode):
                subdirs.append(relative)
        stack.extend(reversed(subdirs))


def _copy_file(
    path: Path, relative: str, tar: tarfile.TarFile, stats: ArchiveStats, on_bytes: Callable[[int], None]
) -> Entry | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, OSError):
        stats.vanished.append(relative)
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            stats.skipped.append(relative)
            return None
        reader = _HashingReader(fd, on_bytes)
        tar.addfile(_info(_member_name(relative), tarfile.REGTYPE, before, before.st_size), reader)
        after = os.fstat(fd)
        if reader.shrank or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            stats.changed.append(relative)
    finally:
        os.close(fd)
    return Entry(relative, FILE, stat.S_IMODE(before.st_mode), before.st_size, reader.digest.hexdigest(),
                 before.st_mtime_ns)


def write_archive(
    source: Path,
    sink: Sink,
    excludes: list[str] | None = None,
    on_bytes: Callable[[int], None] = lambda n: None,
    first: list[str] | None = None,
) -> ArchiveStats:
    """Write a complete tar stream of ``source`` (members, manifest, end-of-archive blocks) into ``sink``."""
    excludes = excludes or []
    stats = ArchiveStats()
    log = EntryLog()
    # stream mode: no seeking, records of RECORDSIZE, end-of-archive blocks written on close
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",  # type: ignore[call-overload]
                       errors="surrogateescape", bufsize=CHUNK)
    tar.copybufsize = CHUNK
    try:
        for relative, entry_stat in walk(source, excludes, first):
            mode = entry_stat.st_mode
            name = _member_name(relative)
            entry: Entry | None
            if stat.S_ISDIR(mode):
                tar.addfile(_info(name, tarfile.DIRTYPE, entry_stat))
                entry = Entry(relative, DIR, stat.S_IMODE(mode), mtime_ns=entry_stat.st_mtime_ns)
            elif stat.S_ISLNK(mode):
                try:
                    target = os.readlink(source / relative)
                except FileNotFoundError:
                    stats.vanished.append(relative)
                    continue
                tar.addfile(_info(name, tarfile.SYMTYPE, entry_stat, target=target))
                entry = Entry(relative, SYMLINK, stat.S_IMODE(mode), mtime_ns=entry_stat.st_mtime_ns, target=target)
            elif stat.S_ISREG(mode):
                entry = _copy_file(source / relative, relative, tar, stats, on_bytes)
            else:  # sockets, fifos, devices: not data a volume backup should carry
                stats.skipped.append(relative)
                entry = None
            if entry is not None:
                log.add(entry)
        header = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": str(source)}
        manifest = log.render(header)
        manifest.seek(0, 2)
        info = tarfile.TarInfo(MEMBER)
        info.size, info.mode, info.mtime = manifest.tell(), 0o644, int(time.time())
        manifest.seek(0)
        tar.addfile(info, manifest)
        tar.close()  # end-of-archive blocks, padded to a whole record
        stats.entries, stats.files, stats.bytes = log.entries, log.files, log.bytes
    finally:
        log.close()
    return stats
