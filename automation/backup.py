"""One backup run: archive a directory to a temp name, rename when complete, record its digest, apply retention, upload."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from automation import retention, s3
from automation.archive import scan_totals, write_archive
from automation.compression import SUFFIX, CompressingWriter
from automation.durable import fsync_dir
from automation.errors import BackupError, ConfigError
from automation.output import byte_progress
from automation.restore import companion_path


@dataclass(frozen=True)
class BackupOptions:
    """Everything one backup run needs (the CLI and the scheduler both build one)."""

    source: Path
    dest: Path
    compression: str = "gz"
    level: int | None = None
    name: str = "backup"
    keep_last: int | None = None
    max_age_days: float | None = None
    excludes: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint: str | None = None
    progress: bool = False



def _free_name(options: BackupOptions, now: datetime) -> Path:
    stamp = now.strftime(retention.STAMP_FORMAT)
    suffix = SUFFIX[options.compression]
    candidate = options.dest / f"{options.name}-{stamp}{suffix}"
    sequence = 1
    while candidate.exists():
        candidate = options.dest / f"{options.name}-{stamp}-{sequence}{suffix}"
        sequence += 1
    return candidate


def _write_companion(archive: Path, digest: str) -> None:
    companion = companion_path(archive)
    temporary = companion.with_name("." + companion.name + ".partial")
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(f"{digest}  {archive.name}\n")
        out.flush()
        os.fsync(out.fileno())
    os.rename(temporary, companion)


def _check(options: BackupOptions) -> None:
    if not options.source.is_dir():
        raise ConfigError(f"backup source {str(options.source)!r} is not a directory")
    if options.compression not in SUFFIX:
        raise ConfigError(f"unknown compression {options.compression!r}: expected gz, zst or none")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", options.name):
        raise ConfigError(f"invalid backup name {options.name!r}: expected letters, digits, '.', '_' or '-'")
    try:
        options.dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create backup destination {str(options.dest)!r}: {exc.strerror}") from None
    source, dest = options.source.resolve(), options.dest.resolve()
    if dest == source or source in dest.parents:
        raise ConfigError(f"backup destination {str(dest)!r} is inside the source {str(source)!r}")


def run_backup(options: BackupOptions) -> dict[str, Any]:
    """Make one backup and return its JSON summary (archive, digest, counts, throughput, deletions, upload)."""
    _check(options)
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    archive = _free_name(options, now)
    temporary = archive.with_name("." + archive.name + ".partial")
    _files, total = scan_totals(options.source, options.excludes, options.first) if options.progress else (0, 0)
    with byte_progress(options.progress) as progress:
        task = progress.add_task(f"backup {options.source}", total=total or None)
        try:
            with open(temporary, "wb") as out:
                writer = CompressingWriter(out, options.compression, options.level)
                try:
                    stats = write_archive(
                        options.source, writer, options.excludes, lambda n: progress.advance(task, n), options.first
                    )
                finally:
                    writer.close()
                out.flush()
                os.fsync(out.fileno())
            os.rename(temporary, archive)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    digest = writer.sha256.hexdigest()
    _write_companion(archive, digest)
    fsync_dir(options.dest)
    elapsed = time.monotonic() - started
    summary: dict[str, Any] = {
        "archive": str(archive),
        "sha256": digest,
        "compression": options.compression,
        "archive_bytes": writer.bytes_out,
        "entries": stats.entries,
        "files": stats.files,
        "bytes": stats.bytes,
        "seconds": round(elapsed, 3),
        "mb_per_s": round(stats.bytes / 1e6 / elapsed, 1) if elapsed else None,
        "changed_while_reading": stats.changed,
        "vanished_while_reading": stats.vanished,
        "skipped_special": stats.skipped,
    }
    summary["deleted"] = [str(options.dest / n) for n in apply_local_retention(options)]
    if options.s3_bucket:
        summary["s3"] = upload_and_prune(options, archive)
    return summary


STALE_PARTIAL_S = 86400


def remove_stale_partials(options: BackupOptions, now: float | None = None) -> list[str]:
    """Delete ``.NAME-*.partial`` files left by runs that died more than a day ago (a live run's is newer)."""
    now = time.time() if now is None else now
    removed = []
    for path in options.dest.glob(f".{options.name}-*.partial"):
        try:
            if now - path.stat().st_mtime > STALE_PARTIAL_S:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed


def apply_local_retention(options: BackupOptions) -> list[str]:
    """Delete local archives (and their companions) that the retention policy drops; returns their names."""
    remove_stale_partials(options)
    if options.keep_last is None and options.max_age_days is None:
        return []
    backups = retention.parse_backups(os.listdir(options.dest), options.name)
    doomed = retention.to_delete(backups, options.keep_last, options.max_age_days)
    for backup in doomed:
        (options.dest / backup.name).unlink(missing_ok=True)
        companion_path(options.dest / backup.name).unlink(missing_ok=True)
    return [b.name for b in doomed]


def upload_and_prune(options: BackupOptions, archive: Path) -> dict[str, Any]:
    """Upload the archive and its companion, then apply the same retention to the S3 prefix."""
    assert options.s3_bucket
    client = s3.client(options.s3_endpoint)
    key = s3.object_key(options.s3_prefix, archive.name)
    with byte_progress(options.progress) as progress:
        task = progress.add_task(f"upload s3://{options.s3_bucket}/{key}", total=archive.stat().st_size)
        s3.upload(client, archive, options.s3_bucket, key, lambda n: progress.advance(task, n))
    s3.upload(client, companion_path(archive), options.s3_bucket, key + ".sha256")
    deleted: list[str] = []
    if options.keep_last is not None or options.max_age_days is not None:
        names = s3.list_names(client, options.s3_bucket, options.s3_prefix)
        doomed = retention.to_delete(retention.parse_backups(names, options.name), options.keep_last, options.max_age_days)
        keys = [s3.object_key(options.s3_prefix, b.name) for b in doomed]
        s3.delete(client, options.s3_bucket, keys + [k + ".sha256" for k in keys])
        deleted = [f"s3://{options.s3_bucket}/{k}" for k in keys]
    return {"url": f"s3://{options.s3_bucket}/{key}", "deleted": deleted}


def fetch_from_s3(url: str, directory: Path, endpoint: str | None) -> Path:
    """Download ``s3://bucket/key`` (and its ``.sha256`` companion when present) into ``directory``."""
    bucket, key = s3.parse_url(url)
    client = s3.client(endpoint)
    local = directory / key.rsplit("/", 1)[-1]
    s3.download(client, bucket, key, local)
    s3.download(client, bucket, key + ".sha256", companion_path(local), required=False)
    return local


__all__ = ["BackupError", "BackupOptions", "fetch_from_s3", "run_backup"]
