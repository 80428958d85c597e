"""Output helpers shared by the commands: JSON for machines on stdout, rich tables and progress for people."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

stderr = Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """Write ``document`` as one JSON line on stdout."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> Table:
    """Build a rich table (cells rendered with ``str``; None shows as an empty cell)."""
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*("" if cell is None else str(cell) for cell in row))
    return result


def byte_progress(enabled: bool) -> Progress:
    """A progress bar of bytes on stderr; ``enabled=False`` keeps it silent (e.g. not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not enabled,
        transient=False,
    )
