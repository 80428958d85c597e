"""Stack settings: Pulumi.yaml declares exactly what the model reads; bad config fails clearly."""

from __future__ import annotations

import re

import pulumi
import pytest
import yaml

from config.settings import (
    ALERT_SECRET_KEYS, PROJECT_DIR, STACKS, SettingsError, declared_config, from_values, load_stack, model_keys,
    secret_keys,
)
from tests.program import harness

DEV = {"alertSecretsRequired": False}


def test_pulumi_yaml_declares_exactly_the_settings_model_keys():
    assert set(declared_config()) == model_keys()


def test_every_declared_key_has_type_description_and_default():
    for key, decl in declared_config().items():
        assert decl["type"] in {"string", "integer", "boolean"}, key
        assert decl.get("description"), key
        assert "default" in decl, f"{key} has no default: Pulumi would require it in every stack"


def test_secret_keys_are_marked_secret_and_others_are_not():
    declared = declared_config()
    assert {k for k, d in declared.items() if d.get("secret")} == set(secret_keys())


def test_project_uses_python_runtime_with_venv_and_pip():
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == "observability"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_hold_no_plaintext_secret(stack):
    data = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text()) or {}
    for full, value in (data.get("config") or {}).items():
        key = full.split(":", 1)[1]
        if key in secret_keys():
            assert isinstance(value, dict) and "secure" in value, f"{full} must be set with --secret"
    text = (PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text()
    assert "hooks.slack.com/services/T" not in text


def test_images_are_pinned_and_never_latest():
    dev = load_stack("dev")
    for svc in dev.services.values():
        if svc.image is not None:
            assert re.search(r":[\w][\w.-]*$", svc.image), svc.image
            assert not svc.image.endswith(":latest")


def test_dev_defaults_match_the_runbook():
    dev = load_stack("dev")
    assert (dev.sla.availability, dev.sla.error_rate, dev.sla.latency_seconds) == (0.999, 0.001, 1.0)
    assert (dev.slo.availability, dev.slo.error_rate, dev.slo.latency_seconds) == (0.9995, 0.0001, 0.5)
    assert dev.loki_retention_days == 7
    assert dev.log_shipper == "alloy"
    assert dev.bind_address == "127.0.0.1"


@pytest.mark.parametrize(("override", "key", "fragment"), [
    ({"sloAvailability": "1.5"}, "sloAvailability", "strictly between 0 and 1"),
    ({"sloAvailability": "0"}, "sloAvailability", "strictly between 0 and 1"),
    ({"sloAvailability": "0.99"}, "sloAvailability", "looser than its SLA"),
    ({"sloErrorRate": "0.01"}, "sloErrorRate", "looser than its SLA"),
    ({"sloLatencySeconds": "2"}, "sloLatencySeconds", "looser than its SLA"),
    ({"logShipper": "fluentd"}, "logShipper", "'alloy' or 'promtail'"),
    ({"grafanaPort": 9090}, "grafanaPort", "not already used by prometheus"),
    ({"bindAddress": "0.0.0.0"}, "bindAddress", "allowPublicPorts true"),
    ({"grafanaBindAddress": "0.0.0.0"}, "grafanaBindAddress", "allowPublicPorts true"),
    ({"lokiRetentionDays": -1}, "lokiRetentionDays", "greater than 0"),
    ({"prometheusRetentionDays": 0}, "prometheusRetentionDays", "greater than 0"),
    ({"backupKeepLast": -3}, "backupKeepLast", "greater than or equal to 1"),
    ({"prometheusImage": "prom/prometheus:latest"}, "prometheusImage", "never `latest`"),
    ({"lokiImage": "grafana/loki"}, "lokiImage", "pinned by tag or digest"),
    ({"scrapeInterval": "often"}, "scrapeInterval", "a duration such as 30s"),
    ({"bindAddress": "localhost:80"}, "bindAddress", "an IP address"),
    ({"sloPageFor": "30s"}, "sloPageFor", "at least alertDownFor (1m)"),
    ({"alertGroupWait": "soon"}, "alertGroupWait", "a duration such as 30s"),
])
def test_bad_configuration_names_key_value_and_expectation(override, key, fragment):
    with pytest.raises(SettingsError) as err:
        from_values("dev", DEV | override)
    message = str(err.value)
    assert f"observability:{key}" in message
    assert repr(next(iter(override.values()))).strip("'") in message
    assert fragment in message


def test_public_bind_is_allowed_when_the_stack_opts_in():
    settings = from_values("dev", DEV | {"bindAddress": "0.0.0.0", "allowPublicPorts": True})
    assert settings.bind_address == "0.0.0.0"


def test_port_collision_only_counts_deployed_services():
    # promtail is not deployed with the alloy shipper, so its port may repeat another's.
    settings = from_values("dev", DEV | {"promtailPort": 3000})
    assert "promtail" not in settings.enabled_services


def test_unknown_key_is_refused():
    with pytest.raises(SettingsError, match="observability:grafanaPassword is not a setting"):
        from_values("dev", {"grafanaPassword": "x"})


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_without_alert_secrets_say_which_command_to_run(stack):
    with pytest.raises(SettingsError) as err:
        load_stack(stack)
    for key in ALERT_SECRET_KEYS:
        assert f"pulumi config set --secret {key} <value> --stack {stack}" in str(err.value)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_bad_configuration_fails_before_any_resource_is_registered(stack):
    # pulumi.RunError: the engine prints the message alone, without a Python traceback
    with pytest.raises(pulumi.RunError, match="requires the alert secrets"):
        harness.run_program(stack)
    assert harness.last_monitor is not None
    assert harness.last_monitor.registrations == []


def test_bad_value_through_the_program_fails_before_any_resource():
    with pytest.raises(pulumi.RunError, match="observability:logShipper = 'vector'"):
        harness.run_program("dev", {"logShipper": "vector"})
    assert harness.last_monitor.registrations == []


def test_a_notification_timeout_of_a_whole_group_interval_is_refused():
    with pytest.raises(SettingsError, match=r"observability:alertNotificationTimeout = '5m': expected less than "
                                            r"alertGroupInterval \(5m\)"):
        from_values("dev", {**DEV, "alertNotificationTimeout": "5m"})


def test_the_stack_s_edge_limits_default_to_the_services_own_defaults():
    """Pulumi.yaml deploys the limits the services default to when run by hand (mime_server/limits.py)."""
    from mime_server.gateway import GatewaySettings
    from mime_server.limits import GATEWAY_LIMITS, MIME_LIMITS, UPLOAD_MEMORY_BUDGET_BYTES

    dev = load_stack("dev")
    for prefix, limits in (("mime_server", MIME_LIMITS), ("gateway", GATEWAY_LIMITS)):
        assert (getattr(dev, f"{prefix}_max_header_bytes"), getattr(dev, f"{prefix}_max_headers"),
                getattr(dev, f"{prefix}_header_timeout_seconds"), getattr(dev, f"{prefix}_body_timeout_seconds"),
                getattr(dev, f"{prefix}_keepalive_timeout_seconds"), getattr(dev, f"{prefix}_max_connections")) == (
            limits.max_header_bytes, limits.max_headers, limits.header_timeout, limits.body_timeout,
            limits.keepalive_timeout, limits.max_connections), prefix
    assert dev.mime_server_upload_memory_budget_bytes == UPLOAD_MEMORY_BUDGET_BYTES
    defaults = GatewaySettings(upstream="http://x", api_keys=frozenset())
    assert (dev.gateway_auth_failure_burst, dev.gateway_auth_failure_rate) == (
        defaults.auth_failure_burst, defaults.auth_failure_rate)


@pytest.mark.parametrize("values,key,expected", [
    ({"gatewayMaxHeaderBytes": "20000"}, "mimeServerMaxHeaderBytes", "at least gatewayMaxHeaderBytes + 1024 (21024)"),
    ({"mimeServerMaxHeaders": "101"}, "mimeServerMaxHeaders", "at least gatewayMaxHeaders + 5 (105)"),
    ({"mimeServerKeepaliveTimeoutSeconds": "3"}, "mimeServerKeepaliveTimeoutSeconds", "pooled-connection idle time (4 s)"),
    ({"mimeServerMaxConnections": "64"}, "mimeServerMaxConnections", "upstream pool (64)"),
    ({"gatewayBodyTimeoutSeconds": "60"}, "gatewayBodyTimeoutSeconds", "at most mimeServerBodyTimeoutSeconds (30)"),
])
def test_edge_limits_that_contradict_each_other_are_refused(values, key, expected):
    with pytest.raises(SettingsError) as err:
        from_values("dev", {**DEV, **values})
    assert str(err.value).startswith(f"observability:{key} = ") and expected in str(err.value)


@pytest.mark.parametrize("key", ["gatewayAuthFailureRate", "mimeServerHeaderTimeoutSeconds", "gatewayRateLimit"])
def test_an_infinite_or_nan_number_is_refused_before_any_service_is(key):
    """The services refuse anything but a positive finite number at start; the settings say so first."""
    for bad in ("inf", "nan"):
        with pytest.raises(SettingsError, match=rf"observability:{key} = '{bad}': expected a finite number"):
            from_values("dev", {**DEV, key: bad})
