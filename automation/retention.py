"""Retention of backups: keep the newest N, drop those older than D days, never the newest good one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def archive_pattern(name: str) -> re.Pattern[str]:
    """Names written by ``backup --name NAME``: NAME-<UTC stamp>[-n].tar[.gz|.zst]."""
    return re.compile(rf"^{re.escape(name)}-(\d{{8}}T\d{{6}}Z)(?:-(\d+))?\.tar(?:\.gz|\.zst)?$")


@dataclass(frozen=True)
class Backup:
    """One archive found at a destination; ``good`` means its companion digest was written (it completed)."""

    name: str
    created: datetime
    good: bool
    sequence: int = 0


def parse_backups(names: Iterable[str], name: str) -> list[Backup]:
    """Backups among ``names`` (archive and ``.sha256`` files), newest first."""
    names = set(names)
    pattern = archive_pattern(name)
    found = []
    for candidate in names:
        match = pattern.match(candidate)
        if match:
            created = datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=timezone.utc)
            found.append(Backup(candidate, created, candidate + ".sha256" in names, int(match.group(2) or 0)))
    return sorted(found, key=lambda b: (b.created, b.sequence), reverse=True)


def to_delete(
    backups: list[Backup], keep_last: int | None, max_age_days: float | None, now: datetime | None = None
) -> list[Backup]:
    """Backups the policy drops: beyond the newest ``keep_last`` or older than ``max_age_days``.

    Either rule alone deletes; with neither set nothing is deleted. The newest good backup
    always stays, so a run of failed backups can never leave the destination empty.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last is {keep_last}, expected at least 1")
    now = now or datetime.now(timezone.utc)
    ordered = sorted(backups, key=lambda b: (b.created, b.sequence), reverse=True)
    newest_good = next((b for b in ordered if b.good), None)
    doomed = []
    for rank, backup in enumerate(ordered):
        if backup is newest_good:
            continue
        too_many = keep_last is not None and rank >= keep_last
        too_old = max_age_days is not None and now - backup.created > timedelta(days=max_age_days)
        if too_many or too_old:
            doomed.append(backup)
    return doomed
