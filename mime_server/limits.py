"""The edge limits of both services: what one client may cost in memory, time and connections, defaults in one place.

Each limit is a command-line option and an environment variable of the service
(``--max-header-bytes`` / ``MIME_MAX_HEADER_BYTES`` or ``GATEWAY_MAX_HEADER_BYTES``); a stack
sets them through its settings (README, "The workload's limits").
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, fields

from mime_server.options import env_default, parse_float, parse_int

# The gateway's upstream pool: a bounded pool, excess requests wait for a connection instead of
# opening ever more; idle pooled connections are dropped before mime-server's keep-alive timeout
# closes them (so mime-server's must stay above it).
POOL_CONNECTIONS = 64
KEEPALIVE_S = 4.0
# What the gateway adds to a request it forwards (Host, X-Request-Id, X-Forwarded-For, traceparent,
# tracestate): mime-server's head limits must leave room for it.
FORWARDED_FIELDS = 5
FORWARDED_BYTES = 1024

# Uploads held in memory by all of mime-server's uploads together; past it every upload spills to
# tmp/ at its next chunk. Measured with bench.edge (50 concurrent distinct 8 MiB uploads): with this
# budget and MALLOC_ARENA_MAX=2 the peak RSS stays far below the 256 MB container limit.
UPLOAD_MEMORY_BUDGET_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class EdgeLimits:
    """Per-connection bounds the HTTP layer enforces before (and while) the application runs."""

    max_header_bytes: int = 16 * 1024    # request target + header lines; over it: 431
    max_headers: int = 100               # header fields; over it: 431
    header_timeout: float = 10.0         # seconds to receive a complete request head; then 408 (or close)
    body_timeout: float = 30.0           # seconds without a byte while a request body is due; then 408
    keepalive_timeout: float = 5.0       # seconds an idle kept-alive connection stays open
    max_connections: int = 256           # open connections; past it the longest idle or slow-head one is
                                         # closed, or, if every one is busy, the new one gets 503 + Retry-After

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"{field.name} must be positive, got {value!r}")


# option name, help, type for each field, in field order
_OPTIONS = {
    "max_header_bytes": ("bytes of the request target and header fields; more: 431", parse_int),
    "max_headers": ("header fields per request; more: 431", parse_int),
    "header_timeout": ("seconds to receive a complete request head; then 408 and close", parse_float),
    "body_timeout": ("seconds without a body byte while a request body is due; then 408 and close", parse_float),
    "keepalive_timeout": ("seconds an idle keep-alive connection stays open", parse_float),
    "max_connections": ("open connections at once; past it the longest idle or slow-head one is closed, or, "
                        "if all are busy, the new one gets 503 with Retry-After", parse_int),
}


def env_name(prefix: str, field: str) -> str:
    """The environment variable of a limit: ``MIME_`` or ``GATEWAY_`` and the field name in capitals."""
    return f"{prefix}_{field.upper()}"


def add_limit_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str], prefix: str,
                        defaults: EdgeLimits = EdgeLimits()) -> None:
    """Add one option per limit (``--max-header-bytes`` ...), each defaulting to its env variable, then ``defaults``."""
    for field in fields(EdgeLimits):
        help_text, convert = _OPTIONS[field.name]
        option = "--" + field.name.replace("_", "-")
        name = env_name(prefix, field.name)
        parser.add_argument(option, dest=field.name, type=convert(option),
                            default=env_default(environ, name, str(getattr(defaults, field.name))),
                            help=f"{help_text} (env {name})")


def limits_from_args(args: argparse.Namespace) -> EdgeLimits:
    """The limits parsed by the options :func:`add_limit_arguments` added."""
    return EdgeLimits(**{field.name: getattr(args, field.name) for field in fields(EdgeLimits)})


# Each service's defaults. The gateway's are the public edge's. mime-server's clients are the
# gateway (a pool of at most 64 connections), Prometheus and health checks; its head limits leave
# room for the fields the gateway adds to a request it forwards (Host, X-Request-Id,
# X-Forwarded-For, traceparent, tracestate: under 1 KiB), so a request within the gateway's limits
# is never refused upstream.
GATEWAY_LIMITS = EdgeLimits(max_connections=512)
MIME_LIMITS = EdgeLimits(max_header_bytes=GATEWAY_LIMITS.max_header_bytes + 4096,
                         max_headers=GATEWAY_LIMITS.max_headers + 20)
