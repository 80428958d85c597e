"""`automation promote` on copies of the project's stack files: what moves, what stays, what is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from automation.promote import PromotionError, default_keys, promote, register
from config.settings import PROJECT_DIR, declared_config

SECURE = "v1:abc123SECRET=="


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    return tmp_path


def _set(project: Path, stack: str, key: str, value: str) -> None:
    """Edit a stack file like a person would: append one line under config:."""
    path = project / f"Pulumi.{stack}.yaml"
    path.write_text(path.read_text() + f"  observability:{key}: {value}\n")


def _config(project: Path, stack: str) -> dict:
    return yaml.safe_load((project / f"Pulumi.{stack}.yaml").read_text())["config"]


def test_default_keys_are_every_declared_image_pin() -> None:
    keys = default_keys(declared_config())
    assert "prometheusImage" in keys and "jaegerImage" in keys
    assert all(k.endswith("Image") for k in keys) and "prometheusMemoryMb" not in keys


def test_image_pins_move_and_comments_and_other_keys_stay(project: Path) -> None:
    _set(project, "dev", "grafanaImage", "grafana/grafana:99.0.0")
    _set(project, "dev", "lokiImage", "grafana/loki:99.0.0")
    _set(project, "dev", "grafanaMemoryMb", "999")  # not an image: stays in dev
    staging = project / "Pulumi.staging.yaml"
    before = staging.read_text()

    result = promote("dev", "staging", project_dir=project)

    after = staging.read_text()
    defaults = declared_config(project)
    assert result.changed == {"grafanaImage": (defaults["grafanaImage"]["default"], "grafana/grafana:99.0.0"),
                              "lokiImage": (defaults["lokiImage"]["default"], "grafana/loki:99.0.0")}
    assert after.startswith(before)  # every comment and key kept, in order; pins appended
    assert after[len(before):] == ("  observability:grafanaImage: grafana/grafana:99.0.0\n"
                                   "  observability:lokiImage: grafana/loki:99.0.0\n")
    assert "observability:grafanaMemoryMb" not in _config(project, "staging")
    assert "+  observability:grafanaImage: grafana/grafana:99.0.0" in result.diff
    assert result.diff.startswith("--- a/Pulumi.staging.yaml\n+++ b/Pulumi.staging.yaml\n")


def test_existing_key_is_updated_in_place(project: Path) -> None:
    _set(project, "prod", "prometheusImage", "prom/prometheus:v3.15.0")
    _set(project, "staging", "prometheusImage", "prom/prometheus:v99.0.0")
    result = promote("staging", "prod", project_dir=project)
    assert result.changed == {"prometheusImage": ("prom/prometheus:v3.15.0", "prom/prometheus:v99.0.0")}
    prod = (project / "Pulumi.prod.yaml").read_text()
    assert prod.count("observability:prometheusImage") == 1
    assert "-  observability:prometheusImage: prom/prometheus:v3.15.0" in result.diff
    assert _config(project, "prod")["observability:prometheusImage"] == "prom/prometheus:v99.0.0"
    assert _config(project, "prod")["observability:backupKeepLast"] == 14  # prod's own value kept


def test_source_default_value_is_promoted_over_an_older_target_pin(project: Path) -> None:
    _set(project, "prod", "jaegerImage", "cr.jaegertracing.io/jaegertracing/jaeger:2.19.0")
    result = promote("staging", "prod", ["jaegerImage"], project_dir=project)
    default = declared_config(project)["jaegerImage"]["default"]
    assert result.changed == {"jaegerImage": ("cr.jaegertracing.io/jaegertracing/jaeger:2.19.0", default)}
    assert _config(project, "prod")["observability:jaegerImage"] == default


def test_nothing_to_promote_leaves_the_file_byte_identical(project: Path) -> None:
    before = (project / "Pulumi.staging.yaml").read_bytes()
    result = promote("dev", "staging", project_dir=project)
    assert result.changed == {} and result.diff == ""
    assert (project / "Pulumi.staging.yaml").read_bytes() == before


def test_dry_run_prints_the_diff_and_writes_nothing(project: Path) -> None:
    _set(project, "dev", "grafanaImage", "grafana/grafana:99.0.0")
    before = (project / "Pulumi.staging.yaml").read_text()
    result = promote("dev", "staging", dry_run=True, project_dir=project)
    assert "+  observability:grafanaImage: grafana/grafana:99.0.0" in result.diff
    assert (project / "Pulumi.staging.yaml").read_text() == before


def test_named_plain_keys_can_be_promoted(project: Path) -> None:
    _set(project, "dev", "scrapeInterval", "30s")
    result = promote("dev", "staging", ["observability:scrapeInterval"], project_dir=project)
    assert result.changed == {"scrapeInterval": ("15s", "30s")}
    assert "observability:prometheusImage" not in _config(project, "staging")


@pytest.mark.parametrize("key", ["slackWebhookAlerts", "pagerdutyRoutingKey"])
def test_declared_secrets_are_refused(project: Path, key: str) -> None:
    with pytest.raises(PromotionError, match=f"{key} is a secret"):
        promote("dev", "staging", [key], project_dir=project)


def test_secure_values_are_refused_in_source_and_target(project: Path) -> None:
    _set(project, "dev", "grafanaImage", f"{{secure: {SECURE}}}")
    with pytest.raises(PromotionError, match="grafanaImage is a secret"):
        promote("dev", "staging", project_dir=project)
    shutil.copy(PROJECT_DIR / "Pulumi.dev.yaml", project / "Pulumi.dev.yaml")
    _set(project, "dev", "grafanaImage", "grafana/grafana:99.0.0")
    _set(project, "staging", "grafanaImage", f"{{secure: {SECURE}}}")
    with pytest.raises(PromotionError, match="stored as a secret in Pulumi.staging.yaml"):
        promote("dev", "staging", project_dir=project)
    assert SECURE in (project / "Pulumi.staging.yaml").read_text()


def test_undeclared_key_fails_with_suggestions(project: Path) -> None:
    with pytest.raises(PromotionError, match="grafanaImag is not declared in Pulumi.yaml.*grafanaImage"):
        promote("dev", "staging", ["grafanaImag"], project_dir=project)


def test_key_without_value_or_default_fails(project: Path) -> None:
    pulumi_yaml = project / "Pulumi.yaml"
    pulumi_yaml.write_text(pulumi_yaml.read_text() + "  extraImage:\n    type: string\n")
    with pytest.raises(PromotionError, match="extraImage has no value in Pulumi.dev.yaml and no default"):
        promote("dev", "staging", ["extraImage"], project_dir=project)


@pytest.mark.parametrize("image", ["grafana/grafana:latest", "grafana/grafana"])
def test_unpinned_image_is_not_promoted(project: Path, image: str) -> None:
    _set(project, "dev", "grafanaImage", image)
    with pytest.raises(PromotionError, match="pinned by tag or digest"):
        promote("dev", "staging", project_dir=project)


def test_missing_stack_file_fails(project: Path) -> None:
    with pytest.raises(PromotionError, match="Pulumi.qa.yaml not found"):
        promote("dev", "qa", project_dir=project)


# --- command line -------------------------------------------------------------------------------------


def test_registered_command_prints_the_diff_and_exits_zero(project: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    _set(project, "dev", "grafanaImage", "grafana/grafana:99.0.0")
    result = CliRunner().invoke(app, ["promote", "--from", "dev", "--to", "staging", "--project-dir", str(project)])
    assert result.exit_code == 0, result.output
    assert "+  observability:grafanaImage: grafana/grafana:99.0.0" in result.stdout
    assert "changed 1 key(s) from dev" in result.stderr


def test_module_runs_standalone_and_fails_non_zero_on_a_secret(project: Path) -> None:
    cmd = [sys.executable, "-m", "automation.promote", "--from", "dev", "--to", "prod",
           "--keys", "grafanaImage,slackWebhookAlerts", "--project-dir", str(project)]
    done = subprocess.run(cmd, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert "slackWebhookAlerts is a secret" in done.stderr
    assert "grafanaImage" not in _config(project, "prod")


def test_automation_cli_has_the_promote_command(project: Path) -> None:
    _set(project, "dev", "lokiImage", "grafana/loki:99.0.0")
    cmd = [sys.executable, "-m", "automation", "promote", "--from", "dev", "--to", "staging", "--dry-run",
           "--project-dir", str(project)]
    done = subprocess.run(cmd, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "+  observability:lokiImage: grafana/loki:99.0.0" in done.stdout
    assert "observability:lokiImage" not in (project / "Pulumi.staging.yaml").read_text()
