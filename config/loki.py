"""Loki: loki.yaml (single-binary Loki 3.7 on one host, filesystem storage, retention by the compactor) and its service.

The container mounts this file at /etc/loki/loki.yaml and a data volume at /loki. Every path
Loki writes lies under /loki, so that one volume holds chunks, index, compactor state and
delete requests. Retention comes from the stack setting `lokiRetentionDays`.

On a cluster with `objectStoreBucket` set, chunks, index and delete requests go to the S3-compatible
store (keys under `index/` and the tenant's folder, beside mime-server's `mime-storage/`), the
credentials come from a shared credentials file (the AWS SDK's chain, never the config file), and
more than one replica form a ring over memberlist with replication factor min(replicas, 3), as
the Loki chart's SingleBinary mode does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from config.services import (
    AWS_CREDENTIALS_TEMPLATE, Container, Endpoint, Health, MetaAlert, Port, SecretFile, Service, Volume, headless,
)
from config.settings import OBJECT_STORE_SECRET_KEYS, StackSettings

CONFIG_ROOT = "/etc/loki"
CONFIG_PATH = f"{CONFIG_ROOT}/loki.yaml"
DATA_DIR = "/loki"
HTTP_PORT = 3100
GRPC_PORT = 9096
MEMBERLIST_PORT = 7946  # the ring's gossip between replicas
UID = 10001  # the Loki image's own user
CREDENTIALS_FILE = f"{CONFIG_ROOT}/secrets/aws-credentials"
PUSH_PATH = "/loki/api/v1/push"
SCHEMA_FROM = "2024-04-01"  # first day of the v13 period; must never change once logs exist

# Limits sized for one Docker host with a few services (see README "Logs"): the two services
# log one line per request, so a few MB/s and a few thousand streams leave ample headroom.
INGESTION_RATE_MB = 4
INGESTION_BURST_MB = 8
MAX_GLOBAL_STREAMS = 5000
MAX_LABEL_NAMES_PER_SERIES = 15
MAX_LINE_SIZE = "256KB"
MAX_QUERY_SERIES = 1000
RESULTS_CACHE_MB = 100


def retention_period(settings: StackSettings) -> str:
    """Retention as a Loki duration in hours (Loki's `d` unit is not accepted everywhere)."""
    return f"{settings.loki_retention_days * 24}h"


def loki_config(settings: StackSettings) -> dict[str, Any]:
    """The loki.yaml document as data (tests read it; `render_loki` writes it)."""
    retention = retention_period(settings)
    return {
        "auth_enabled": False,
        "server": {"http_listen_port": HTTP_PORT, "grpc_listen_port": GRPC_PORT, "log_level": "info",
                   "log_format": "json"},
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": DATA_DIR,
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
            "storage": {"filesystem": {"chunks_directory": f"{DATA_DIR}/chunks",
                                       "rules_directory": f"{DATA_DIR}/rules"}},
        },
        "schema_config": {"configs": [{
            "from": SCHEMA_FROM,
            "store": "tsdb",
            "object_store": "filesystem",
            "schema": "v13",
            "index": {"prefix": "index_", "period": "24h"},
        }]},
        "storage_config": {
            "tsdb_shipper": {"active_index_directory": f"{DATA_DIR}/tsdb-index",
                             "cache_location": f"{DATA_DIR}/tsdb-cache"},
            "filesystem": {"directory": f"{DATA_DIR}/chunks"},
        },
        "compactor": {
            "working_directory": f"{DATA_DIR}/compactor",
            "compaction_interval": "10m",
            "retention_enabled": True,
            "retention_delete_delay": "2h",
            "retention_delete_worker_count": 50,
            "delete_request_store": "filesystem",
        },
        "limits_config": {
            "retention_period": retention,
            "ingestion_rate_mb": INGESTION_RATE_MB,
            "ingestion_burst_size_mb": INGESTION_BURST_MB,
            "max_global_streams_per_user": MAX_GLOBAL_STREAMS,
            "max_label_names_per_series": MAX_LABEL_NAMES_PER_SERIES,
            "max_line_size": MAX_LINE_SIZE,
            "max_query_series": MAX_QUERY_SERIES,
            "reject_old_samples": True,
            "reject_old_samples_max_age": retention,
            "max_query_lookback": retention,
            "allow_structured_metadata": True,
            "volume_enabled": True,
        },
        "query_range": {"results_cache": {"cache": {"embedded_cache": {"enabled": True,
                                                                        "max_size_mb": RESULTS_CACHE_MB}}}},
        "analytics": {"reporting_enabled": False},
    }


def _on_object_store(doc: dict[str, Any], settings: StackSettings) -> None:
    """Chunks, index and delete requests in the bucket; credentials from AWS_SHARED_CREDENTIALS_FILE."""
    s3: dict[str, Any] = {"bucketnames": settings.object_store_bucket, "region": settings.object_store_region}
    if settings.object_store_endpoint:
        url = urlsplit(settings.object_store_endpoint)
        s3 |= {"endpoint": url.netloc, "insecure": url.scheme == "http", "s3forcepathstyle": True}
    doc["common"]["storage"] = {"s3": s3}
    doc["schema_config"]["configs"][0]["object_store"] = "s3"
    del doc["storage_config"]["filesystem"]
    doc["compactor"]["delete_request_store"] = "s3"
    replicas = settings.replicas(LOKI.name)
    if replicas > 1:
        del doc["common"]["instance_addr"]  # each replica advertises its pod IP (eth0)
        doc["common"]["replication_factor"] = min(replicas, 3)
        doc["common"]["ring"] = {"kvstore": {"store": "memberlist"}}
        doc["memberlist"] = {"bind_port": MEMBERLIST_PORT,
                             "join_members": [f"{headless(LOKI.name)}.{settings.namespace}.svc:{MEMBERLIST_PORT}"]}


def render_loki(settings: StackSettings) -> str:
    """loki.yaml text for the stack."""
    doc = loki_config(settings)
    if settings.object_store:
        _on_object_store(doc, settings)
    return ("# Rendered by config/loki.py; edit the renderer or the stack settings, not this file.\n"
            + yaml.safe_dump(doc, sort_keys=False))


def _container(settings: StackSettings) -> Container:
    secret_files: tuple[SecretFile, ...] = ()
    env: dict[str, str] = {}
    if settings.object_store:
        secret_files = (SecretFile(CREDENTIALS_FILE, OBJECT_STORE_SECRET_KEYS, AWS_CREDENTIALS_TEMPLATE),)
        env = {"AWS_SHARED_CREDENTIALS_FILE": CREDENTIALS_FILE}
    return Container(
        image=str(settings.service(LOKI.name).image),
        command=(f"-config.file={CONFIG_PATH}",),
        env=env,
        files={CONFIG_PATH: render_loki(settings)},
        secret_files=secret_files,
        file_owner=UID if secret_files else None,
        uid=UID,
        volumes=(Volume("loki-data", DATA_DIR, size_gi=10),),
        # The Loki image has no shell, wget or curl: the binary checks its own /ready.
        health=Health(("CMD", "/usr/bin/loki", "-health"), start_period="30s"),
    )


LOKI = Service(
    name="loki", key="loki", image="remote", container=_container,
    enabled=lambda settings: settings.logs_enabled, port=HTTP_PORT,
    health=Endpoint(HTTP_PORT, "/ready"), metrics=Endpoint(HTTP_PORT, "/metrics"),
    ports=(Port("grpc", GRPC_PORT, peers=True), Port("memberlist", MEMBERLIST_PORT, peers=True)),
    meta_alerts=lambda settings: (MetaAlert("LokiDiscardingLines", "loki_discarded_samples_total",
                                            "Loki discards log lines"),),
    config_root=CONFIG_ROOT)
PUSH_URL = LOKI.url(HTTP_PORT, PUSH_PATH)
