"""Fixtures for the Grafana tests: the dev stack's settings, rendered files and one live stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.grafana import dashboards
from config.settings import StackSettings, load_stack
from tests.grafana.live import LiveStack, live_stack


@pytest.fixture(scope="session")
def settings() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="session")
def boards(settings: StackSettings) -> dict[str, dict[str, Any]]:
    return dashboards(settings)


@pytest.fixture(scope="session")
def live(settings: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    workdir: Path = tmp_path_factory.mktemp("live-stack")
    with live_stack(settings, workdir) as stack:
        yield stack
