"""loki.yaml: retention from settings through the compactor, tsdb v13 on the filesystem under /loki."""

from __future__ import annotations

from typing import Any

import yaml

from config.loki import DATA_DIR, render_loki
from config.settings import load_stack


def rendered(**updates: Any) -> dict[str, Any]:
    settings = load_stack("dev").model_copy(update=updates)
    return dict(yaml.safe_load(render_loki(settings)))


def paths(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [p for v in doc.values() for p in paths(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in paths(v)]
    return [doc] if isinstance(doc, str) and doc.startswith("/") else []


def test_retention_comes_from_settings_through_the_compactor() -> None:
    assert rendered()["limits_config"]["retention_period"] == "168h"  # the 7-day default
    doc = rendered(loki_retention_days=14)
    assert doc["limits_config"]["retention_period"] == "336h"
    assert doc["compactor"]["retention_enabled"] is True
    assert doc["compactor"]["delete_request_store"] == "filesystem"
    assert doc["limits_config"]["reject_old_samples_max_age"] == "336h"


def test_single_tenant_tsdb_v13_on_the_filesystem() -> None:
    doc = rendered()
    assert doc["auth_enabled"] is False
    [period] = doc["schema_config"]["configs"]
    assert (period["store"], period["schema"], period["object_store"]) == ("tsdb", "v13", "filesystem")
    assert period["index"]["period"] == "24h"  # retention and tsdb need 24h index tables
    assert doc["common"]["replication_factor"] == 1 and doc["common"]["ring"]["kvstore"]["store"] == "inmemory"


def test_every_path_lies_in_the_data_volume() -> None:
    found = paths(rendered())
    assert found and all(p == DATA_DIR or p.startswith(DATA_DIR + "/") for p in found), found


def test_limits_fit_one_host() -> None:
    limits = rendered()["limits_config"]
    assert 0 < limits["ingestion_rate_mb"] <= limits["ingestion_burst_size_mb"] <= 16
    assert 0 < limits["max_global_streams_per_user"] <= 10000
    assert limits["allow_structured_metadata"] is True  # required by schema v13 features (OTLP, detected level)


def test_no_usage_reports_leave_the_host() -> None:
    assert rendered()["analytics"] == {"reporting_enabled": False}
