"""The service registry: each service defined once, and everything that lists services derived from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import registry
from config.jaeger import AGENT_COMPACT_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT, QUERY_GRPC_PORT
from config.prometheus import scrape_targets
from config.render import render_stack
from config.settings import PROJECT_DIR, STACKS, declared_config, from_values, load_stack, service_keys
from tests.slo.conftest import stack_settings

SOURCES = [p for d in ("config", "components") for p in (PROJECT_DIR / d).rglob("*.py")]


def _ports() -> set[int]:
    ports = {OTLP_GRPC_PORT, OTLP_HTTP_PORT, AGENT_COMPACT_PORT, QUERY_GRPC_PORT}
    for s in registry.SERVICES:
        ports |= {p for p in (s.port, s.health and s.health.port, s.metrics and s.metrics.port) if p}
    return ports


@pytest.mark.parametrize("port", sorted(_ports()))
def test_each_port_is_written_once_in_config_and_components(port: int) -> None:
    """`grep -rn PORT --include=*.py config components` finds one line: the service's definition."""
    found = [f"{p.relative_to(PROJECT_DIR)}:{n}" for p in SOURCES
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(rf"(?<![\w.]){port}(?![\w.])", line)]
    assert len(found) == 1, found


def test_names_and_settings_prefixes_are_unique() -> None:
    assert len({s.name for s in registry.SERVICES}) == len({s.key for s in registry.SERVICES}) == len(registry.SERVICES)


def test_pulumi_yaml_declares_every_per_service_key_the_registry_needs() -> None:
    assert service_keys() <= set(declared_config())


def test_every_after_names_a_service_and_the_order_respects_it() -> None:
    for s in registry.SERVICES:
        assert set(s.after) <= set(registry.BY_NAME), s.name
    order = [s.name for s in registry.deploy_order(load_stack("dev"))]
    for s in registry.SERVICES:
        for dep in s.after:
            if s.name in order and dep in order:
                assert order.index(dep) < order.index(s.name), (dep, s.name)


def test_a_cycle_is_refused_with_the_services_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace
    loop = (replace(registry.BY_NAME["prometheus"], after=("grafana",)),
            *(s for s in registry.SERVICES if s.name != "prometheus"))
    monkeypatch.setattr(registry, "SERVICES", loop)
    with pytest.raises(ValueError, match=r"dependency cycle among services \['grafana', 'prometheus'\]"):
        registry.deploy_order(load_stack("dev"))


@pytest.mark.parametrize("stack", STACKS)
def test_scrape_jobs_and_health_endpoints_come_from_the_registry(stack: str) -> None:
    settings = stack_settings(stack)
    enabled = registry.enabled_services(settings)
    assert [t.service for t in scrape_targets(settings)] == [s.name for s in enabled if s.metrics]
    assert set(registry.health_endpoints(settings)) == {s.name for s in enabled if s.port and s.health}


def test_every_writable_volume_has_one_owner() -> None:
    settings = from_values("prod", {"backupS3Bucket": "my-backups"},
                           {"slackWebhookAlerts", "slackWebhookOpsCritical", "pagerdutyRoutingKey"})
    owners: dict[str, list[str]] = {}
    for s in registry.enabled_services(settings):
        for v in s.container(settings).volumes:
            if not v.read_only:
                owners.setdefault(v.name, []).append(s.name)
    assert all(len(o) == 1 for o in owners.values()), owners


def test_render_writes_each_service_s_files_under_its_own_folder() -> None:
    settings = load_stack("dev")
    folders = {rel.split("/")[0] for rel in render_stack(settings)}
    assert folders == {s.name for s in registry.enabled_services(settings) if s.config_root}


def test_the_readme_service_table_is_the_registry() -> None:
    """`python -m config.registry` prints the table; the README carries it unchanged."""
    assert registry.markdown_table() in (PROJECT_DIR / "README.md").read_text()
