"""Jaeger v2 configuration: OTLP and legacy agent receivers, bounded in-memory storage, health, metrics."""

from __future__ import annotations

import yaml

from config.settings import StackSettings

CONFIG_PATH = "/etc/jaeger/config.yaml"
HEALTH_PORT = 13133
METRICS_PORT = 8888
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
AGENT_COMPACT_PORT = 6831
QUERY_PORT = 16686
QUERY_GRPC_PORT = 16685  # jaeger_query's gRPC API (api_v2/api_v3): upstream's default, rendered explicitly


def render_jaeger(settings: StackSettings) -> str:
    """config.yaml for the Jaeger v2 binary (an OpenTelemetry Collector distribution).

    Receivers listen on 0.0.0.0 so the services reach them over the stack network; the
    legacy Jaeger agent receiver (UDP 6831, thrift compact) keeps old jaeger_client
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
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"0.0.0.0:{QUERY_PORT}"},
                "grpc": {"endpoint": f"0.0.0.0:{QUERY_GRPC_PORT}"},
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": settings.jaeger_max_traces}}}},
        },
        "receivers": {
            "otlp": {"protocols": {
                "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
            }},
            "jaeger": {"protocols": {"thrift_compact": {"endpoint": f"0.0.0.0:{AGENT_COMPACT_PORT}"}}},
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    return "# Rendered by config/jaeger.py; edit the renderer or the stack settings, not this file.\n" + \
        yaml.safe_dump(doc, sort_keys=False)
