"""The program under Pulumi mocks: resources, hardening, deployment order, secrets, additive extensions."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from config.settings import STACKS
from tests.program import harness
from tests.slo.conftest import stack_settings as settings_of
from tests.program.harness import CONTAINER, SECRET_SIG, container_graph, critical_path, run_stack, topological_order

VOLUME = "docker:index/volume:Volume"
DATA_VOLUMES = {"prometheus-data", "grafana-data", "loki-data", "alertmanager-data", "mime-storage",
                "mime-storage-backups"}


@lru_cache(maxsize=None)
def run(stack: str) -> harness.ProgramRun:
    return run_stack(stack)


@pytest.mark.parametrize("stack", STACKS)
def test_resource_set(stack):
    r = run(stack)
    containers = set(r.containers)
    expected = {"prometheus", "grafana", "alertmanager", "loki", "alloy", "jaeger", "mime-server",
                "mockup-gateway", "backup"}
    if stack == "dev":
        expected.add("webhook-receiver")  # dev has no Slack/PagerDuty secrets
    assert containers == expected
    assert {v.name for v in r.by_type(VOLUME)} == DATA_VOLUMES
    assert len(r.by_type("docker:index/network:Network")) == 1
    built = {i.name for i in r.by_type("docker:index/image:Image")}
    assert built == {"mime-server-image", "ops-image"}
    components = {c.type for c in r.resources if c.type.startswith("observability:")}
    assert components == {"observability:stack:ObservabilityStack", "observability:network:StackNetwork",
                          "observability:docker:Service"}
    services = {c.name for c in r.by_type("observability:docker:Service")}
    assert services == containers == set(settings_of(stack).enabled_services)


@pytest.mark.parametrize("stack", STACKS)
def test_each_service_component_holds_its_own_children_named_after_it(stack):
    r = run(stack)
    by_urn = r.by_urn()
    for res in r.resources:
        parent = by_urn.get(res.parent or "")
        if parent is None or parent.type != "observability:docker:Service":
            continue
        assert res.name == parent.name or res.name.startswith(parent.name + "-") or \
            res.type in (VOLUME, "random:index/randomPassword:RandomPassword"), (parent.name, res.type, res.name)
    for name, c in r.containers.items():
        assert by_urn[c.parent].name == name


LEGACY = json.loads((Path(__file__).parent / "legacy_urns.json").read_text())
LEGACY_CASES = {"dev": ("dev", None), "staging": ("staging", None), "prod": ("prod", None),
                "dev-promtail": ("dev", {"logShipper": "promtail"}), "prod-s3": ("prod", {"backupS3Bucket": "my-backups"})}


@pytest.mark.parametrize("case", sorted(LEGACY_CASES))
def test_every_resource_of_the_previous_release_keeps_its_identity(case):
    """An upgrade moves nothing: every resource deployed before the registry has its old URN, or an alias
    to it (components aside: they hold no state). Without it `pulumi up` would recreate every container,
    regenerate the API keys and stop at the protected volumes."""
    stack, overrides = LEGACY_CASES[case]
    r = harness.run_stack(stack, overrides)
    known = {harness.engine_urn(r, res) for res in r.resources} | {a for res in r.resources for a in res.aliases}
    stateful = [u for u in LEGACY[case] if not u.rsplit("::", 2)[-2].rsplit("$", 1)[-1].startswith("observability:")]
    assert len(stateful) >= 25
    assert [u for u in stateful if u not in known] == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_is_hardened(stack):
    r = run(stack)
    for name, c in r.containers.items():
        i = c.inputs
        assert i["name"] == f"{stack}-{name}"
        assert i["capabilities"]["drops"] == ["ALL"], name
        assert not i["capabilities"].get("adds"), name
        assert i["securityOpts"] == ["no-new-privileges:true"], name
        assert i["memory"] > 0, name
        assert i["restart"] == "unless-stopped", name
        assert i["logDriver"] == "json-file" and i["logOpts"]["max-size"] and i["logOpts"]["max-file"], name
        labels = {lab["label"]: lab["value"] for lab in i["labels"]}
        assert labels == {"service": name, "env": stack, "stack": stack}
        assert i["networksAdvanced"][0]["aliases"] == [name]
        for port in i.get("ports") or []:
            assert port["ip"] == "127.0.0.1", name
        if i.get("healthcheck"):
            assert i["wait"] is True, name
        assert c.parent and "observability:" in c.parent, name


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned_remote_or_built_with_a_source_hash(stack):
    r = run(stack)
    for img in r.by_type("docker:index/remoteImage:RemoteImage"):
        ref = img.inputs["name"]
        assert ":" in ref.rsplit("/", 1)[-1] and not ref.endswith(":latest"), ref
    for img in r.by_type("docker:index/image:Image"):
        assert img.inputs["imageName"].rsplit(":", 1)[1] != "latest"
        assert img.inputs["skipPush"] is True


def test_non_root_users_where_the_image_allows():
    r = run("dev")
    # Images whose default user is already non-root keep it (user unset); the project's images
    # run as uid 10001 from their Dockerfiles; only the log shipper needs uid 0 for the socket.
    users = {name: c.inputs.get("user") for name, c in r.containers.items()}
    assert users["alloy"] == "0:0"
    assert all(u is None for n, u in users.items() if n != "alloy")


@pytest.mark.parametrize("stack", STACKS)
def test_data_volumes_are_protected(stack):
    for v in run(stack).by_type(VOLUME):
        assert v.protect, v.name


@pytest.mark.parametrize("stack", STACKS)
def test_dependency_graph_has_no_cycle_and_follows_data_flow(stack):
    graph = container_graph(run(stack))
    topological_order(graph)  # raises on a cycle
    assert "loki" in graph["alloy"]
    assert {"prometheus", "loki", "jaeger"} <= graph["grafana"]
    assert "mime-server" in graph["mockup-gateway"]
    assert "jaeger" in graph["mime-server"]
    assert "alertmanager" in graph["prometheus"]
    assert {"mime-server", "mockup-gateway"} <= graph["prometheus"]  # no up=0 scrape before they answer


def test_cycle_detection_names_the_containers():
    with pytest.raises(ValueError, match="cycle among"):
        topological_order({"a": {"b"}, "b": {"a"}, "c": set()})


@pytest.mark.parametrize("stack", STACKS)
def test_critical_path_is_the_workload_then_prometheus_then_grafana(stack):
    path = critical_path(run(stack))
    assert path == ["jaeger", "mime-server", "mockup-gateway", "prometheus", "grafana"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_no_secret_appears_in_plaintext_in_any_registered_input(stack):
    r = run(stack)
    secrets = list(harness.STAGING_SECRETS.values())
    generated = [f"generated-{n}-0123456789abcdef" for n in ("grafana-admin-password", "gateway-api-key",
                                                            "fault-admin-key")]
    wrapped_somewhere = harness.wrapped_secrets(r, secrets + generated)
    # The secrets did reach the containers (as secret uploads), so the scan was not vacuous.
    assert set(secrets) <= wrapped_somewhere
    assert f"generated-grafana-admin-password-0123456789abcdef" in wrapped_somewhere


def test_secret_scan_detects_a_plain_value():
    raw = {"envs": ["TOKEN=abc"], "uploads": [{"content": {SECRET_SIG: harness.SECRET_VALUE_SIG,
                                                            "value": "hidden"}}]}
    plain = list(harness.plain_strings(raw))
    assert "TOKEN=abc" in plain and "hidden" not in plain


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_alert_secrets_reach_alertmanager_as_secret_files_not_env(stack):
    am = run(stack).containers["alertmanager"]
    files = {u["file"] for u in am.inputs["uploads"]}
    assert {"/etc/alertmanager/secrets/slack-alerts-url", "/etc/alertmanager/secrets/slack-ops-critical-url",
            "/etc/alertmanager/secrets/pagerduty-routing-key"} <= files
    assert not am.inputs.get("envs")


@pytest.mark.parametrize("extension,services", [
    ("tracingEnabled", {"jaeger"}),
    ("logsEnabled", {"loki", "alloy"}),
    ("alertingEnabled", {"alertmanager", "webhook-receiver"}),
])
def test_turning_an_extension_on_only_adds_resources_and_keeps_volumes(extension, services):
    off = harness.run_program("dev", {extension: False})
    on = harness.run_program("dev", {extension: True})
    assert services.isdisjoint(off.containers)
    assert services <= set(on.containers)
    assert {"prometheus", "grafana", "mime-server", "mockup-gateway"} <= set(off.containers)
    off_urns = {r.urn for r in off.resources}
    on_urns = {r.urn for r in on.resources}
    assert off_urns <= on_urns, f"resources disappear when {extension} turns on: {off_urns - on_urns}"
    off_volumes = {v.urn: v.inputs for v in off.by_type(VOLUME)}
    on_volumes = {v.urn: v.inputs for v in on.by_type(VOLUME)}
    for urn, inputs in off_volumes.items():
        assert on_volumes[urn] == inputs, "a data volume would be replaced"


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_give_urls_health_endpoints_containers_and_a_secret_password(stack):
    r = run(stack)
    urls = r.outputs["urls"]
    assert urls["grafana"] == "http://127.0.0.1:3000"
    assert urls["prometheus"] == "http://127.0.0.1:9090"
    assert set(urls) >= {"alertmanager", "jaeger", "loki", "mime-server", "mockup-gateway", "alloy"}
    assert r.outputs["health_endpoints"]["mime-server"] == "http://127.0.0.1:8080/healthz"
    assert r.outputs["containers"]["mime-server"] == f"{stack}-mime-server"
    assert {"grafana_admin_password", "gateway_api_key"} <= r.secret_outputs
    assert "urls" not in r.secret_outputs


def test_promtail_is_selectable():
    r = harness.run_program("dev", {"logShipper": "promtail"})
    assert "promtail" in r.containers and "alloy" not in r.containers
    assert "loki" in container_graph(r)["promtail"]


def test_tracing_off_turns_the_exporter_off_in_both_services():
    r = harness.run_program("dev", {"tracingEnabled": False})
    for name in ("mime-server", "mockup-gateway"):
        assert "OTEL_TRACES_EXPORTER=none" in r.containers[name].inputs["envs"]


def test_services_send_otlp_to_jaeger_when_tracing_is_on():
    envs = run("dev").containers["mime-server"].inputs["envs"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in envs
    assert "OTEL_SERVICE_NAME=mime-server" in envs
