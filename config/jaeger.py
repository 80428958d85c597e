"""Jaeger v2: its configuration (OTLP and legacy agent receivers, trace storage, health, metrics) and its service.

Storage is `jaegerStorage`: bounded memory (default), Badger on a data volume (one replica), or an
Elasticsearch/OpenSearch cluster (`jaegerStorageUrl`, optional basic auth whose password Jaeger
reads from a secret file), the one choice under which Jaeger runs as stateless replicas.
"""

from __future__ import annotations

import yaml

from config.services import Container, Endpoint, MetaAlert, Port, SecretFile, Service, Volume, wget_health
from config.settings import JAEGER_STORAGE_PASSWORD_KEY, StackSettings

CONFIG_ROOT = "/etc/jaeger"
CONFIG_PATH = f"{CONFIG_ROOT}/config.yaml"
HEALTH_PORT = 13133
METRICS_PORT = 8888
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
AGENT_COMPACT_PORT = 6831
QUERY_PORT = 16686
QUERY_GRPC_PORT = 16685  # jaeger_query's gRPC API (api_v2/api_v3): upstream's default, rendered explicitly
UID = 10001  # the Jaeger image's own user
DATA_DIR = "/badger"
PASSWORD_FILE = f"{CONFIG_ROOT}/secrets/storage-password"
INDEX_PREFIX = "jaeger"


def store_name(settings: StackSettings) -> str:
    """The storage backend's name in the config: `memstore` (as always) or the backend's kind."""
    return "memstore" if settings.jaeger_storage == "memory" else settings.jaeger_storage


def storage_backend(settings: StackSettings) -> dict:
    """The `jaeger_storage` backend for `jaegerStorage` (memory, badger, elasticsearch, opensearch)."""
    kind = settings.jaeger_storage
    if kind == "memory":
        return {"memory": {"max_traces": settings.jaeger_max_traces}}
    if kind == "badger":
        return {"badger": {"directories": {"keys": f"{DATA_DIR}/keys", "values": f"{DATA_DIR}/values"},
                           "ephemeral": False}}
    backend: dict = {"server_urls": [settings.jaeger_storage_url.rstrip("/")],
                     "indices": {"index_prefix": INDEX_PREFIX}}
    if settings.jaeger_storage_username:
        backend["auth"] = {"basic": {"username": settings.jaeger_storage_username, "password_file": PASSWORD_FILE}}
    return {kind: backend}


def render_jaeger(settings: StackSettings) -> str:
    """config.yaml for the Jaeger v2 binary (an OpenTelemetry Collector distribution).

    Receivers listen on 0.0.0.0 so the services reach them over the stack network; the
    legacy Jaeger agent receiver (UDP, thrift compact) keeps old jaeger_client
    programs working. Traces live in memory, bounded by `jaegerMaxTraces`.
    """
    doc = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp", "jaeger"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "detailed",
                    "readers": [{"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": METRICS_PORT}}}}],
                },
                "logs": {"level": "info", "encoding": "json"},
            },
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": f"0.0.0.0:{HEALTH_PORT}"}},
            "jaeger_query": {
                # v2 traces its own query API by default, into the same bounded store: the
                # `jaegerMaxTraces` budget is for the services' traces, not for UI clicks
                "enable_tracing": False,
                "storage": {"traces": store_name(settings)},
                "http": {"endpoint": f"0.0.0.0:{QUERY_PORT}"},
                "grpc": {"endpoint": f"0.0.0.0:{QUERY_GRPC_PORT}"},
            },
            "jaeger_storage": {"backends": {store_name(settings): storage_backend(settings)}},
        },
        "receivers": {
            "otlp": {"protocols": {
                "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
            }},
            "jaeger": {"protocols": {"thrift_compact": {"endpoint": f"0.0.0.0:{AGENT_COMPACT_PORT}"}}},
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": store_name(settings)}},
    }
    return "# Rendered by config/jaeger.py; edit the renderer or the stack settings, not this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)


def _container(settings: StackSettings) -> Container:
    secret_files = ()
    if settings.jaeger_storage_username and settings.jaeger_storage in ("elasticsearch", "opensearch"):
        secret_files = (SecretFile(PASSWORD_FILE, (JAEGER_STORAGE_PASSWORD_KEY,)),)
    return Container(
        image=str(settings.service(JAEGER.name).image),
        command=("--config", CONFIG_PATH),
        files={CONFIG_PATH: render_jaeger(settings)},
        secret_files=secret_files,
        file_owner=UID if secret_files else None,
        uid=UID,
        volumes=(Volume("jaeger-data", DATA_DIR, size_gi=10),) if settings.jaeger_storage == "badger" else (),
        health=wget_health(HEALTH_PORT, "/status"),
    )


def _meta_alerts(settings: StackSettings) -> tuple[MetaAlert, ...]:
    # the names Jaeger 2.x (an OpenTelemetry collector) exposes to Prometheus 3, seen in tests/tracing
    return (
        MetaAlert("JaegerSpansRefused", "otelcol_receiver_refused_spans_total", "the span receivers refuse spans"),
        MetaAlert("JaegerSpanExportFailing", "otelcol_exporter_send_failed_spans_total", "spans fail to reach storage"),
    )


JAEGER = Service(
    name="jaeger", key="jaeger", image="remote", container=_container,
    enabled=lambda settings: settings.tracing_enabled, port=QUERY_PORT,
    health=Endpoint(QUERY_PORT, "/"), metrics=Endpoint(METRICS_PORT, "/metrics"),
    ports=(Port("otlp-grpc", OTLP_GRPC_PORT), Port("otlp-http", OTLP_HTTP_PORT),
           Port("agent-compact", AGENT_COMPACT_PORT, "UDP"), Port("query-grpc", QUERY_GRPC_PORT),
           Port("healthcheck", HEALTH_PORT)),
    meta_alerts=_meta_alerts, config_root=CONFIG_ROOT)
OTLP_HTTP_ENDPOINT = JAEGER.url(OTLP_HTTP_PORT)  # what the services export to (OTEL_EXPORTER_OTLP_ENDPOINT)
