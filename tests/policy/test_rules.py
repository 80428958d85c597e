"""Each policy of the pack, called directly with the SDK's argument objects: one pass, one violation (at least)."""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pytest

from policy import rules
from tests.policy.conftest import secret
from tests.policy.crossguard import Res, resource_args, stack_args, violations

C = rules.CONTAINER


def check(validate: Any, props: dict[str, Any], type_: str = C, **kw: Any) -> list[str]:
    return violations(validate, resource_args(type_, props, **kw))


# --- hardening -----------------------------------------------------------------------------------


def test_container_with_memory_limit_passes(container: dict) -> None:
    assert check(rules.memory_limit, container) == []


@pytest.mark.parametrize("memory", [None, 0.0])
def test_container_without_memory_limit_is_a_violation(container: dict, memory: float | None) -> None:
    if memory is None:
        del container["memory"]
    else:
        container["memory"] = memory
    [message] = check(rules.memory_limit, container)
    assert "svc has no memory limit" in message


def test_container_dropping_all_capabilities_passes(container: dict) -> None:
    assert check(rules.drops_all_capabilities, container) == []


def test_container_dropping_only_some_capabilities_is_a_violation(container: dict) -> None:
    container["capabilities"] = {"drops": ["NET_RAW"]}
    [message] = check(rules.drops_all_capabilities, container)
    assert "does not drop all capabilities" in message and "NET_RAW" in message


def test_container_without_capabilities_is_a_violation(container: dict) -> None:
    del container["capabilities"]
    assert len(check(rules.drops_all_capabilities, container)) == 1


def test_container_with_no_new_privileges_passes(container: dict) -> None:
    assert check(rules.no_new_privileges, container) == []


def test_container_without_no_new_privileges_is_a_violation(container: dict) -> None:
    container["securityOpts"] = ["seccomp=unconfined"]
    [message] = check(rules.no_new_privileges, container)
    assert "no-new-privileges" in message


def test_snake_case_property_names_are_read_too(container: dict) -> None:
    container["security_opts"] = container.pop("securityOpts")
    assert check(rules.no_new_privileges, container) == []


def test_unknown_memory_during_preview_is_not_reported_as_passing(container: dict) -> None:
    from pulumi_policy.proxy import UnknownValueError

    container["memory"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # Pulumi's unknown sentinel
    with pytest.raises(UnknownValueError):
        check(rules.memory_limit, container)


# --- public ports ----------------------------------------------------------------------------------


def test_loopback_port_passes(container: dict) -> None:
    assert check(rules.no_public_ports, container) == []


@pytest.mark.parametrize("ip", ["0.0.0.0", "", "::", "[::]", None])
def test_port_on_every_interface_is_a_violation(container: dict, ip: str | None) -> None:
    port = container["ports"][0]
    if ip is None:
        del port["ip"]  # Docker's default is 0.0.0.0
    else:
        port["ip"] = ip
    [message] = check(rules.no_public_ports, container)
    assert "publishes port 9090 -> 9090 on every interface" in message
    assert "allowPublicPorts" in message


def test_publish_all_ports_and_host_network_are_violations(container: dict) -> None:
    container["publishAllPorts"] = True
    container["networkMode"] = "host"
    assert len(check(rules.no_public_ports, container)) == 2


def test_stack_config_opt_in_allows_every_interface(container: dict) -> None:
    container["ports"][0]["ip"] = "0.0.0.0"
    pulumi.runtime.set_config("observability:allowPublicPorts", "true")
    assert check(rules.no_public_ports, container) == []
    pulumi.runtime.set_config("observability:allowPublicPorts", "false")
    assert len(check(rules.no_public_ports, container)) == 1


def test_policy_config_overrides_the_stack_opt_in(container: dict) -> None:
    container["ports"][0]["ip"] = "0.0.0.0"
    pulumi.runtime.set_config("observability:allowPublicPorts", "true")
    assert len(check(rules.no_public_ports, container, config={"allowPublicPorts": False})) == 1
    pulumi.runtime.set_config("observability:allowPublicPorts", "false")
    assert check(rules.no_public_ports, container, config={"allowPublicPorts": True}) == []


# --- images ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_,field,ref", [
    (rules.REMOTE_IMAGE, "name", "prom/prometheus:v3.16.0"),
    (rules.REMOTE_IMAGE, "name", "cr.jaegertracing.io/jaegertracing/jaeger:2.12.0"),
    (rules.REMOTE_IMAGE, "name", "grafana/grafana@sha256:" + "0f" * 32),
    (rules.BUILT_IMAGE, "imageName", "localhost:5000/mime-server:1.4.2"),
    (rules.CONTAINER, "image", "sha256:" + "ab" * 32),
    (rules.CONTAINER, "image", "prom/prometheus:v3.16.0@sha256:" + "ab" * 32),
])
def test_pinned_images_pass(type_: str, field: str, ref: str) -> None:
    assert check(rules.pinned_images, {field: ref}, type_) == []


@pytest.mark.parametrize("type_,field,ref,why", [
    (rules.REMOTE_IMAGE, "name", "prom/prometheus:latest", "latest"),
    (rules.REMOTE_IMAGE, "name", "prom/prometheus", "untagged"),
    (rules.BUILT_IMAGE, "imageName", "localhost:5000/mime-server", "untagged"),
    (rules.CONTAINER, "image", "grafana/grafana", "untagged"),
    (rules.REMOTE_IMAGE, "name", "x@sha256:abc", "malformed digest"),
])
def test_unpinned_images_are_violations(type_: str, field: str, ref: str, why: str) -> None:
    [message] = check(rules.pinned_images, {field: ref}, type_)
    assert why in message and ref in message


def test_container_image_not_known_in_preview_is_left_to_its_image_resource() -> None:
    assert check(rules.pinned_images, {"image": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}) == []


# --- secrets -----------------------------------------------------------------------------------------

SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
PD_KEY = "0123456789abcdef0123456789abcdef"


def test_plain_config_and_file_pointing_env_pass(container: dict) -> None:
    assert check(rules.no_plain_secrets, container) == []


@pytest.mark.parametrize("entry,kind", [
    (f"SLACK_WEBHOOK_URL={SLACK}", "Slack webhook URL"),
    (f"PAGERDUTY_KEY={PD_KEY}", "PagerDuty routing key"),
    ("GF_SECURITY_ADMIN_PASSWORD=hunter2", "GF_SECURITY_ADMIN_PASSWORD"),
    ("GATEWAY_API_KEYS=k-123", "GATEWAY_API_KEYS"),
])
def test_secret_in_plain_env_is_a_violation(container: dict, entry: str, kind: str) -> None:
    container["envs"].append(entry)
    [message] = check(rules.no_plain_secrets, container)
    assert kind in message and entry.split("=")[1] not in message  # never echo the secret


@pytest.mark.parametrize("content,kind", [
    (f"receivers:\n- name: slack\n  slack_configs:\n  - api_url: {SLACK}\n", "Slack webhook URL"),
    (f"pagerduty_configs:\n- routing_key: {PD_KEY}\n", "PagerDuty routing key"),
    ("[security]\nadmin_password = hunter2\n", "password"),
    ("api_key: abcdef\n", "api_key"),
    (f"{PD_KEY}\n", "PagerDuty routing key"),
])
def test_secret_in_plain_upload_is_a_violation(container: dict, content: str, kind: str) -> None:
    container["uploads"].append({"file": "/etc/alertmanager/alertmanager.yml", "content": content})
    [message] = check(rules.no_plain_secrets, container)
    assert kind in message and "/etc/alertmanager/alertmanager.yml" in message


def test_secret_in_plain_base64_upload_is_a_violation(container: dict) -> None:
    encoded = base64.b64encode(f"url: {SLACK}".encode()).decode()
    container["uploads"].append({"file": "/run/secrets/slack", "contentBase64": encoded})
    [message] = check(rules.no_plain_secrets, container)
    assert "content_base64" in message


def test_secret_upload_passes(container: dict) -> None:
    container["uploads"].append({"file": "/run/secrets/slack", "content": secret(SLACK), "permissions": "0440"})
    assert check(rules.no_plain_secrets, container) == []


def test_uploads_list_made_secret_by_one_secret_file_passes(container: dict) -> None:
    # What the Python SDK actually sends: one secret element makes the whole list secret.
    uploads = container["uploads"] + [{"file": "/run/secrets/pd", "content": f"routing_key: {PD_KEY}"}]
    container["uploads"] = secret(uploads)
    assert check(rules.no_plain_secrets, container) == []


def test_secret_env_entry_passes(container: dict) -> None:
    container["envs"].append(secret(f"SLACK_WEBHOOK_URL={SLACK}"))
    assert check(rules.no_plain_secrets, container) == []


def test_file_references_are_not_secrets(container: dict) -> None:
    container["uploads"].append({"file": "/etc/grafana/grafana.ini",
                                 "content": "admin_password = $__file{/run/secrets/pw}\n"})
    container["uploads"].append({"file": "/etc/alertmanager/alertmanager.yml",
                                 "content": "routing_key_file: /run/secrets/pd\napi_url_file: /run/secrets/slack\n"})
    assert check(rules.no_plain_secrets, container) == []


# --- volumes -------------------------------------------------------------------------------------------

DATA = {"name": "dev_prometheus_data", "labels": [{"label": "data", "value": "true"}]}


def test_protected_data_volume_passes() -> None:
    assert check(rules.data_volumes_protected, DATA, rules.VOLUME, protect=True) == []


def test_unprotected_data_volume_is_a_violation() -> None:
    [message] = check(rules.data_volumes_protected, DATA, rules.VOLUME, protect=False)
    assert "not protected" in message


def test_volume_without_data_label_needs_no_protection() -> None:
    scratch = {"name": "tmp", "labels": [{"label": "data", "value": "false"}]}
    assert check(rules.data_volumes_protected, scratch, rules.VOLUME) == []


# --- advisory ------------------------------------------------------------------------------------------


def test_container_with_healthcheck_passes(container: dict) -> None:
    assert check(rules.healthcheck, container) == []


@pytest.mark.parametrize("healthcheck", [None, {"tests": ["NONE"]}])
def test_container_without_healthcheck_is_flagged(container: dict, healthcheck: dict | None) -> None:
    container["healthcheck"] = healthcheck
    assert check(rules.healthcheck, container) == ["container svc has no healthcheck"]


def test_restart_unless_stopped_passes(container: dict) -> None:
    assert check(rules.restart_policy, container) == []


@pytest.mark.parametrize("restart", ["no", None])
def test_no_restart_policy_is_flagged(container: dict, restart: str | None) -> None:
    container["restart"] = restart
    assert len(check(rules.restart_policy, container)) == 1


def test_rotated_json_file_logs_pass(container: dict) -> None:
    assert check(rules.log_rotation, container) == []


def test_local_log_driver_rotates_by_itself(container: dict) -> None:
    container["logDriver"] = "local"
    del container["logOpts"]
    assert check(rules.log_rotation, container) == []


def test_unrotated_logs_are_flagged(container: dict) -> None:
    del container["logDriver"], container["logOpts"]
    [message] = check(rules.log_rotation, container)
    assert "without rotation" in message


# --- stack ----------------------------------------------------------------------------------------------


def _stack(parent_type: str | None, container: dict) -> list[str]:
    component = Res("observability:monitoring:Monitoring", "monitoring", {}) if parent_type else None
    if component is not None and parent_type != component.type:
        component = Res(parent_type, "loose", {})
    resources = [r for r in (component,) if r is not None]
    resources.append(Res(C, "prometheus", container, parent=component.urn if component else None))
    return violations(rules.containers_in_components, stack_args(resources))


def test_container_inside_an_observability_component_passes(container: dict) -> None:
    assert _stack("observability:monitoring:Monitoring", container) == []


@pytest.mark.parametrize("parent_type", [None, "pulumi:pulumi:Stack", "custom:misc:Group"])
def test_container_outside_a_component_is_a_violation(container: dict, parent_type: str | None) -> None:
    [message] = _stack(parent_type, container)
    assert "container prometheus is parented to" in message


def test_policies_have_the_intended_enforcement_levels() -> None:
    levels = {p.name: p.enforcement_level.value for p in rules.POLICIES}
    assert {n for n, level in levels.items() if level == "advisory"} == {
        "container-healthcheck", "container-restart-policy", "container-log-rotation"}
    assert len([n for n, level in levels.items() if level == "mandatory"]) == 8


def test_secret_wrapped_port_is_still_checked(container: dict) -> None:
    container["ports"] = [secret({"internal": 3000.0, "external": 3000.0, "ip": "0.0.0.0"})]
    [message] = check(rules.no_public_ports, container)
    assert "publishes port 3000 -> 3000" in message
