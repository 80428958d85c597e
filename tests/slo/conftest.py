"""Fixtures of the SLO tests: the pinned Prometheus/Alertmanager tools and the stack settings."""

from __future__ import annotations

import pytest

from config.settings import ALERT_SECRET_KEYS, STACKS, StackSettings, from_values, load_stack, stack_file_values
from tests.tools import require


def stack_settings(stack: str) -> StackSettings:
    """Settings of a stack as deployed: stack file values, alert secrets set where the stack requires them."""
    values, secrets = stack_file_values(stack)
    if stack != "dev":
        secrets = secrets | set(ALERT_SECRET_KEYS)
    return from_values(stack, values, secrets)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool")


@pytest.fixture(scope="session")
def dev() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="session", params=STACKS)
def any_stack(request: pytest.FixtureRequest) -> StackSettings:
    return stack_settings(request.param)
