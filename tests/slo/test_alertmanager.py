"""alertmanager.yml: accepted by amtool for every stack, routes every runbook case to the right receivers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from config.alertmanager import LOCAL_RECEIVER_URL, SECRET_FILES, render_alertmanager
from config.settings import StackSettings
from tests.slo.conftest import stack_settings

ROUTING_CASES = [
    ({"alertname": "MimeServerDown", "severity": "critical", "service": "mime-server"},
     "slack-ops-critical,pagerduty"),
    ({"alertname": "ErrorRateBudgetBurn", "severity": "critical", "service": "mockup-gateway"}, "pagerduty"),
    ({"alertname": "SLAViolation", "severity": "critical", "service": "mime-server"}, "pagerduty"),
    ({"alertname": "TargetDown", "severity": "warning", "service": "loki"}, "slack-alerts"),
    ({"alertname": "ErrorBudgetHalfConsumed", "severity": "warning", "service": "mime-server"}, "slack-alerts"),
]


def _write(settings: StackSettings, tmp: Path) -> Path:
    path = tmp / "alertmanager.yml"
    path.write_text(render_alertmanager(settings, secrets_dir=tmp))
    return path


def _route(amtool: str, config: Path, labels: dict[str, str], expected: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                           f"--verify.receivers={expected}", *(f"{k}={v}" for k, v in labels.items())],
                          capture_output=True, text=True, timeout=30)


def test_every_stack_config_passes_amtool_check_config(amtool: str, any_stack: StackSettings, tmp_path: Path) -> None:
    proc = subprocess.run([amtool, "check-config", str(_write(any_stack, tmp_path))],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "3 inhibit rules" in proc.stdout


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize(("labels", "receivers"), ROUTING_CASES, ids=[c[0]["alertname"] + "-" + c[1]
                                                                      for c in ROUTING_CASES])
def test_alert_routes_to_the_runbook_receivers(amtool: str, stack: str, labels: dict[str, str], receivers: str,
                                               tmp_path: Path) -> None:
    proc = _route(amtool, _write(stack_settings(stack), tmp_path), labels, receivers)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_route_verification_fails_for_a_wrong_receiver(amtool: str, dev: StackSettings, tmp_path: Path) -> None:
    proc = _route(amtool, _write(dev, tmp_path), ROUTING_CASES[0][0], "slack-ops-critical")
    assert proc.returncode != 0


def test_dev_without_secrets_sends_everything_to_the_local_receiver(dev: StackSettings) -> None:
    assert not dev.alert_receivers_external
    doc = yaml.safe_load(render_alertmanager(dev))
    urls = {r["name"]: [c["url"] for c in r["webhook_configs"]] for r in doc["receivers"]}
    assert urls == {n: [f"{LOCAL_RECEIVER_URL}/{n}"] for n in ("slack-ops-critical", "pagerduty", "slack-alerts")}
    assert all(c["send_resolved"] for r in doc["receivers"] for c in r["webhook_configs"])


def test_external_receivers_read_secrets_from_files_and_channels_from_settings() -> None:
    prod = stack_settings("prod")
    text = render_alertmanager(prod)
    doc = yaml.safe_load(text)
    by_name = {r["name"]: r for r in doc["receivers"]}
    ops = by_name["slack-ops-critical"]["slack_configs"][0]
    assert ops["api_url_file"] == SECRET_FILES["slackWebhookOpsCritical"]
    assert ops["channel"] == prod.slack_channel_ops_critical and ops["send_resolved"] is True
    assert by_name["slack-alerts"]["slack_configs"][0]["channel"] == prod.slack_channel_alerts
    pd = by_name["pagerduty"]["pagerduty_configs"][0]
    assert pd == {**pd, "routing_key_file": SECRET_FILES["pagerdutyRoutingKey"], "url": prod.pagerduty_url,
                  "send_resolved": True}
    assert "hooks.slack.com" not in text and "api_url:" not in text and "routing_key:" not in text


def test_timings_come_from_settings_unless_overridden(dev: StackSettings) -> None:
    route = yaml.safe_load(render_alertmanager(dev))["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        dev.alert_group_wait, dev.alert_group_interval, dev.alert_repeat_interval)
    fast = yaml.safe_load(render_alertmanager(dev, group_wait="1s", group_interval="2s"))["route"]
    assert (fast["group_wait"], fast["group_interval"]) == ("1s", "2s")
    assert route["group_by"] == ["alertname", "service"]


def test_mime_server_down_inhibits_its_slo_alerts_and_gateway_upstream_errors(dev: StackSettings) -> None:
    rules = yaml.safe_load(render_alertmanager(dev))["inhibit_rules"]
    assert {"name": "page-silences-its-ticket", "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'], "equal": ["alertname", "service"]} in rules
    down = [r for r in rules if r["source_matchers"] == ['alertname="MimeServerDown"']]
    targets = " ".join(m for r in down for m in r["target_matchers"])
    for name in ("AvailabilityBudgetBurn", "ErrorRateBudgetBurn", "LatencyBudgetBurn", "GatewayUpstreamErrors"):
        assert name in targets


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_notifier_gives_up_after_the_notification_timeout(stack: str) -> None:
    settings = stack_settings(stack)
    receivers = yaml.safe_load(render_alertmanager(settings))["receivers"]
    configs = [c for r in receivers for kind, cs in r.items() if kind.endswith("_configs") for c in cs]
    assert len(configs) == 3 and {c["timeout"] for c in configs} == {settings.alert_notification_timeout}


def test_every_inhibit_rule_has_a_unique_name(dev: StackSettings) -> None:
    names = [r["name"] for r in yaml.safe_load(render_alertmanager(dev))["inhibit_rules"]]
    assert len(names) == len(set(names)) == 3 and all(names)
