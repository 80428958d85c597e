"""The rendered rule files: accepted by promtool for every stack, stable (golden files), complete.

Regenerate the golden files after an intended change with:

    python -m tests.slo.test_rule_files

and review the diff of tests/slo/golden/ like any other code change.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import slo
from config.rules import RuleTimings, render_rule_files
from config.settings import PROJECT_DIR, SettingsError, StackSettings, from_values, load_stack
from mime_server.buckets import LATENCY_BUCKETS

GOLDEN = Path(__file__).parent / "golden" / "dev"
DEV = {"alertSecretsRequired": False}


def test_every_stack_renders_rules_promtool_accepts(promtool: str, any_stack: StackSettings, tmp_path: Path) -> None:
    files = render_rule_files(any_stack)
    assert set(files) >= {"slo-recording.yml", "slo-alerts.yml", "stack-alerts.yml"}
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    proc = subprocess.run([promtool, "check", "rules", "--lint=all", "--lint-fatal", *paths], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(paths)


def test_dev_rules_match_golden_files(dev: StackSettings) -> None:
    files = render_rule_files(dev)
    assert sorted(files) == sorted(p.name for p in GOLDEN.glob("*.yml")), "regen: python -m tests.slo.test_rule_files"
    for name, text in files.items():
        assert text == (GOLDEN / name).read_text(), f"{name} differs; regen: python -m tests.slo.test_rule_files"


def _rules(settings: StackSettings) -> list[dict]:
    return [r for text in render_rule_files(settings).values()
            for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_every_alert_has_service_severity_and_runbook(any_stack: StackSettings) -> None:
    alerts = [r for r in _rules(any_stack) if "alert" in r]
    assert alerts
    for rule in alerts:
        labels, notes = rule["labels"], rule["annotations"]
        assert labels["severity"] in ("critical", "warning"), rule["alert"]
        # service is explicit, or every recorded series the alert reads carries it (by-service aggregation)
        assert "service" in labels or "slo:" in rule["expr"] or "sla:" in rule["expr"] or rule["expr"] == "up == 0"
        assert notes["summary"] and notes["description"], rule["alert"]
        grafana = "http://127.0.0.1:3000"
        assert notes["runbook_url"] == f"{grafana}/d/runbook-{rule['alert'].lower()}"
        assert notes["dashboard_url"].startswith(f"{grafana}/d/"), rule["alert"]


def test_a_runbook_base_url_replaces_the_runbook_dashboards() -> None:
    wiki = from_values("dev", {**DEV, "runbookBaseUrl": "https://wiki.example.org/observability/alerts",
                               "grafanaExternalUrl": "https://grafana.example.org/"})
    notes = {r["alert"]: r["annotations"] for r in _rules(wiki) if "alert" in r}
    assert notes["MimeServerDown"]["runbook_url"] == "https://wiki.example.org/observability/alerts#alert-mimeserverdown"
    assert notes["MimeServerDown"]["dashboard_url"] == \
        "https://grafana.example.org/d/service-overview?var-service={{ $labels.service }}"
    from config.grafana import dashboards
    assert not [uid for uid in dashboards(wiki) if uid.startswith("runbook-")]


def test_every_alert_has_a_runbook_and_every_runbook_an_alert(dev: StackSettings) -> None:
    from config.grafana import dashboards, runbooks
    from config.rules import alert_names

    everything = from_values("dev", {**DEV, "logShipper": "promtail"})  # the only alert name promtail changes is shared
    assert set(runbooks.runbooks()) == set(alert_names(dev)) | set(alert_names(everything))
    assert {uid for uid in dashboards(dev) if uid.startswith("runbook-")} == {
        runbooks.uid(name) for name in alert_names(dev)}


def test_error_logs_link_opens_explore_on_the_service_s_error_lines(dev: StackSettings) -> None:
    notes = {r["alert"]: r["annotations"] for r in _rules(dev) if "alert" in r}
    assert "logs_url" in notes["MimeServerDown"] and "logs_url" in notes["ErrorRateBudgetBurn"]
    assert "logs_url" not in notes["TargetDown"]  # the stack's own components: no request logs to filter
    no_logs = from_values("dev", {**DEV, "logsEnabled": False})
    assert all("logs_url" not in r["annotations"] for r in _rules(no_logs) if "alert" in r)


def test_recording_rules_cover_every_sli_window_and_carry_service_and_sli(dev: StackSettings) -> None:
    recorded = {(r["record"], r["labels"]["sli"]) for r in _rules(dev) if "record" in r and "labels" in r}
    for sli in slo.SLIS:
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
            assert (slo.error_ratio_record(window), sli.name) in recorded
            assert (slo.burn_rate_record(window), sli.name) in recorded
        assert (slo.sla_compliance_record(dev), sli.name) in recorded
    aggregations = [r["expr"] for r in _rules(dev) if r.get("record", "").startswith("slo:sli_error")]
    assert all("by (service)" in e for e in aggregations)


def test_targets_come_from_stack_config(dev: StackSettings) -> None:
    changed = from_values("dev", {"sloErrorRate": "0.0002", "sloLatencySeconds": "0.25", "alertSecretsRequired": False})
    text = render_rule_files(changed)["slo-recording.yml"]
    assert 'slo:sli_error:ratio_rate1h{sli="errors"} / 0.0002' in text
    assert 'le="0.25"' in text and 'le="0.5"' not in text
    assert render_rule_files(dev)["slo-recording.yml"] != text


def test_latency_threshold_must_be_a_service_bucket() -> None:
    with pytest.raises(SettingsError, match=r"observability:sloLatencySeconds = 0.3: expected a latency bucket"):
        from_values("dev", {"sloLatencySeconds": "0.3", "alertSecretsRequired": False})


def test_the_services_expose_the_buckets_the_settings_allow() -> None:
    from mime_server.metrics import HttpMetrics
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    HttpMetrics("mime-server", registry).duration.labels(service="mime-server", method="GET", route="/x").observe(0.1)
    exposed = {s.labels["le"] for m in registry.collect() for s in m.samples if "le" in s.labels}
    assert exposed == {slo.le_label(b) for b in LATENCY_BUCKETS} | {"+Inf"}


def test_sla_compliance_is_named_after_the_configured_window() -> None:
    four_weeks = from_values("dev", {"sloWindowDays": 28, "alertSecretsRequired": False})
    text = render_rule_files(four_weeks)["slo-recording.yml"]
    assert "record: sla:compliance:ratio28d" in text and "ratio30d" not in text
    assert "record: slo:sli_error:ratio_rate28d" in text


def test_metadata_series_give_dashboards_the_objective_and_period(dev: StackSettings) -> None:
    meta = [r for r in _rules(dev) if r.get("record") in (slo.OBJECTIVE, slo.TIME_PERIOD_DAYS)]
    objectives = {(r["labels"]["service"], r["labels"]["sli"]): r["expr"] for r in meta if r["record"] == slo.OBJECTIVE}
    assert objectives[("mime-server", "errors")] == f"vector({1 - dev.slo_error_rate:.10g})"
    assert len(objectives) == sum(len(s.services) for s in slo.SLIS)
    assert [r["expr"] for r in meta if r["record"] == slo.TIME_PERIOD_DAYS] == [f"vector({dev.slo_window_days})"]


def test_record_windows_derive_from_the_burn_windows(dev: StackSettings) -> None:
    burn = {w for bw in slo.BURN_WINDOWS for w in (bw.long, bw.short)}
    assert slo.record_windows(dev) == (*sorted(burn, key=slo.duration_seconds), "30d")


def test_no_slo_number_is_written_in_code() -> None:
    """The targets live in stack config only: no renderer repeats one as a literal."""
    dev = load_stack("dev")
    numbers = {dev.sla_availability, dev.slo_availability, dev.sla_error_rate, dev.slo_error_rate,
               dev.sla_latency_percentile, dev.error_budget_alert_consumed}
    for module in ("slo.py", "rules.py", "alertmanager.py"):
        tree = ast.parse((PROJECT_DIR / "config" / module).read_text())
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, float)}
        assert not literals & numbers, f"config/{module} repeats a stack target: {literals & numbers}"


def test_timings_keep_mime_server_down_the_fastest_alert() -> None:
    with pytest.raises(ValueError, match="at least alertDownFor"):
        RuleTimings(down_for="2m", page_for="1m", ticket_for="15m", stack_for="5m")
    scaled = RuleTimings(down_for="1m", page_for="2m", ticket_for="15m", stack_for="5m", window_scale=1 / 60)
    assert scaled.window("1h") == "1m" and scaled.window("5m") == "5s"


def regenerate() -> None:
    """Rewrite the golden files from the current renderer and dev stack config."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for old in GOLDEN.glob("*.yml"):
        old.unlink()
    for name, text in render_rule_files(load_stack("dev")).items():
        (GOLDEN / name).write_text(text)
        print(f"wrote {GOLDEN / name}", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
