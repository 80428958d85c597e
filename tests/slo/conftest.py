"""Fixtures of the SLO tests: the real Prometheus/Alertmanager tools and the stack settings."""

from __future__ import annotations

import shutil

import pytest

from config.settings import ALERT_SECRET_KEYS, STACKS, StackSettings, from_values, load_stack, stack_file_values


def require_binary(name: str) -> str:
    """Path of a required tool; fail (never skip) with the install command when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install the Debian packages with "
                    "`apt-get install prometheus prometheus-alertmanager` (.ci/run does)", pytrace=False)
    return path


def stack_settings(stack: str) -> StackSettings:
    """Settings of a stack as deployed: stack file values, alert secrets set where the stack requires them."""
    values, secrets = stack_file_values(stack)
    if stack != "dev":
        secrets = secrets | set(ALERT_SECRET_KEYS)
    return from_values(stack, values, secrets)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_binary("amtool")


@pytest.fixture(scope="session")
def dev() -> StackSettings:
    return load_stack("dev")


@pytest.fixture(scope="session", params=STACKS)
def any_stack(request: pytest.FixtureRequest) -> StackSettings:
    return stack_settings(request.param)
