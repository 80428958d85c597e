"""The OpenTelemetry internals `mime_server.otlp` relies on, in one place, for the versions they were checked against.

The in-place span encoder reuses the exporters' private value encoder and size check, and the
HTTP exporter's private state (`_shutdown`, `_metrics`, `_max_request_size`, `_client`). Private
code can change in any release, so `usable()` accepts only the versions pinned in
mime_server/requirements.txt; with any other version `mime_server.tracing` uses the official
exporters unchanged. tests/service/test_otlp.py proves, for the pinned versions, that the encoder's
message equals the official encoder's.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# The distributions whose private parts are used, at the version they were checked against.
CHECKED = {
    "opentelemetry-exporter-otlp-proto-common": "1.45.2",
    "opentelemetry-exporter-otlp-proto-http": "1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc": "1.45.2",
}


def mismatches() -> dict[str, str | None]:
    """Distribution -> installed version, for each one that is not the checked version."""
    found: dict[str, str | None] = {}
    for name, expected in CHECKED.items():
        try:
            installed: str | None = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != expected:
            found[name] = installed
    return found


def usable() -> bool:
    """True when every distribution is at the version the private parts were checked against."""
    return not mismatches()


from opentelemetry.exporter.otlp.proto.common._internal import _encode_value as encode_value  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._common import (  # noqa: E402
    RequestPayloadTooLargeError,
    _is_request_too_large as is_request_too_large,
)

__all__ = ["CHECKED", "RequestPayloadTooLargeError", "encode_value", "is_request_too_large", "mismatches", "usable"]
