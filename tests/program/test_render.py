"""`python -m config.render` writes every file of a stack; promtool and amtool accept them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.render import render_stack, settings_for_render
from config.settings import PROJECT_DIR, STACKS
from tests.tools import check_rendered_alertmanager, check_rendered_prometheus


@pytest.fixture(scope="module", params=STACKS)
def rendered(request, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"render-{request.param}")
    result = subprocess.run([sys.executable, "-m", "config.render", "--stack", request.param, "--out", str(out)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return request.param, out


def test_render_writes_one_folder_per_service(rendered):
    _, out = rendered
    folders = {p.name for p in out.iterdir() if p.is_dir()}
    assert folders == {"prometheus", "grafana", "alertmanager", "jaeger", "loki", "alloy"}
    assert (out / "prometheus" / "prometheus.yml").is_file()
    assert list((out / "prometheus" / "rules").glob("*.yml"))
    assert (out / "alertmanager" / "alertmanager.yml").is_file()


def test_render_writes_no_secret_value(rendered):
    stack, out = rendered
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "hooks.slack.com/services/" not in text, path
    if stack != "dev":
        am = (out / "alertmanager" / "alertmanager.yml").read_text()
        assert "api_url_file" in am and "routing_key_file" in am


def test_promtool_accepts_the_prometheus_config_and_rules(rendered, tmp_path):
    _, out = rendered
    result = check_rendered_prometheus(out / "prometheus", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "rules found" in result.stdout


def test_amtool_accepts_the_alertmanager_config(rendered, tmp_path):
    _, out = rendered
    result = check_rendered_alertmanager(out / "alertmanager")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_scrapes_every_service_of_the_stack():
    settings = settings_for_render("dev")
    config = yaml.safe_load(render_stack(settings)["prometheus/prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "grafana", "alertmanager", "loki", "alloy", "jaeger", "mime-server",
                         "mockup-gateway"}
    assert jobs["jaeger"]["static_configs"][0]["targets"] == ["jaeger:8888"]
    for name, job in jobs.items():
        assert job["static_configs"][0]["labels"] == {"service": name, "env": "dev"}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_jaeger_listens_for_otlp_and_the_legacy_agent_on_every_interface():
    settings = settings_for_render("dev")
    config = yaml.safe_load(render_stack(settings)["jaeger/config.yaml"])
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert config["receivers"]["jaeger"]["protocols"]["thrift_compact"]["endpoint"] == "0.0.0.0:6831"
    assert config["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]["max_traces"] == \
        settings.jaeger_max_traces
    assert config["extensions"]["healthcheckv2"]["http"]["endpoint"] == "0.0.0.0:13133"
    # every listener explicit, none left at an upstream default (tests/tracing rewrites each one)
    assert config["extensions"]["jaeger_query"]["http"]["endpoint"] == "0.0.0.0:16686"
    assert config["extensions"]["jaeger_query"]["grpc"]["endpoint"] == "0.0.0.0:16685"


def test_render_refuses_an_unknown_stack(tmp_path):
    result = subprocess.run([sys.executable, "-m", "config.render", "--stack", "qa", "--out", str(tmp_path)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Pulumi.qa.yaml" in result.stderr


def test_disabled_extensions_render_no_files():
    from config.settings import from_values
    settings = from_values("dev", {"alertSecretsRequired": False, "tracingEnabled": False, "logsEnabled": False,
                                   "alertingEnabled": False})
    folders = {rel.split("/")[0] for rel in render_stack(settings)}
    assert folders == {"prometheus", "grafana"}
