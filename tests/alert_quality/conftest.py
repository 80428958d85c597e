"""Fixtures of the alert-quality tests: the dev stack's settings and the pinned promtool."""

from __future__ import annotations

import pytest

from config.settings import StackSettings, load_stack
from tests.tools import pinned


@pytest.fixture(scope="session")
def dev() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool at the version the stack deploys (scripts/tools.sh), never a distribution's older one."""
    return pinned("promtool")
