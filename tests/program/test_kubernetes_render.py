"""`python -m config.render --stack k8s`: the cluster stack's files, accepted by the pinned promtool, amtool and Jaeger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.jaeger import PASSWORD_FILE, render_jaeger
from config.settings import (
    GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY, OBJECT_STORE_SECRET_KEYS, PROJECT_DIR, from_values,
    stack_file_values,
)
from tests.tools import check_rendered_alertmanager, check_rendered_prometheus
from tests.tracing.path import jaeger_validate


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render-k8s")
    done = subprocess.run([sys.executable, "-m", "config.render", "--stack", "k8s", "--out", str(out)],
                          cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_render_writes_the_cluster_files_per_service(rendered: Path) -> None:
    assert {p.name for p in rendered.iterdir()} == {"prometheus", "grafana", "alertmanager", "jaeger", "loki", "alloy"}
    assert "kubernetes_sd_configs" in (rendered / "prometheus" / "prometheus.yml").read_text()


def test_promtool_accepts_the_pod_discovery_config_and_the_rules(rendered: Path, tmp_path: Path) -> None:
    done = check_rendered_prometheus(rendered / "prometheus", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_accepts_the_alertmanager_config(rendered: Path) -> None:
    done = check_rendered_alertmanager(rendered / "alertmanager")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("storage", ["memory", "badger", "elasticsearch", "opensearch"])
def test_jaeger_validates_the_config_of_each_storage(storage: str, tmp_path: Path) -> None:
    values, _ = stack_file_values("k8s")
    values |= {"jaegerStorage": storage, "alertSecretsRequired": False}
    if storage in ("memory", "badger"):
        values["jaegerReplicas"] = 1
    settings = from_values("k8s", values, {*OBJECT_STORE_SECRET_KEYS, GRAFANA_DATABASE_KEY,
                                           JAEGER_STORAGE_PASSWORD_KEY})
    password = tmp_path / "password"
    password.write_text("not-a-real-password")
    text = render_jaeger(settings).replace(PASSWORD_FILE, str(password))
    if storage == "badger":
        text = text.replace("/badger/", f"{tmp_path}/badger/")
    done = jaeger_validate(text, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    backends = yaml.safe_load(text)["extensions"]["jaeger_storage"]["backends"]
    assert list(backends) == ["memstore" if storage == "memory" else storage]
    assert list(next(iter(backends.values()))) == [storage]
