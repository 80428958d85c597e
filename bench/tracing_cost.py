"""What tracing costs mime-server, counted in CPU instructions (valgrind), so the count does not
depend on what else the machine is doing.

``python -m bench.tracing_cost`` prints ONE JSON object:
- per ``POST /v1/detect`` (4 KiB PNG) through the real app, called in-process over ASGI (no sockets):
  instructions with tracing off (OpenTelemetry's no-op provider, as OTEL_TRACES_EXPORTER=none),
  with the SDK recording the request's two spans (server span + "detect") but exporting nothing,
  and with the full pipeline (BatchSpanProcessor + this project's OTLP/HTTP exporter to a local sink);
- per span: encoding an OTLP batch with opentelemetry's encoder and with ``mime_server.otlp``.
Each figure is (instructions of a run with N_LARGE units - a run with N_SMALL) / (N_LARGE - N_SMALL),
which cancels interpreter start-up and imports. Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
N_SMALL, N_LARGE = 100, 500
REQUEST_MODES = ("tracing_off", "spans_not_exported", "spans_exported_otlp")
ENCODE_MODES = ("create_only", "official_encoder", "project_encoder")


# -- workloads (run under valgrind in a child process) -----------------------------------------


def _request_workload(mode: str, count: int) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    from bench.mime_server import OtlpSink, png_payload
    from mime_server.app import ServerSettings, create_app
    from mime_server.metrics import new_registry
    from mime_server.otlp import HttpSpanExporter
    from mime_server.tracing import make_tracer_provider

    sink = OtlpSink()
    provider: Any
    if mode == "tracing_off":
        provider = NoOpTracerProvider()
    elif mode == "spans_not_exported":
        provider = make_tracer_provider("mime-server", None)
    else:
        provider = make_tracer_provider("mime-server", HttpSpanExporter(endpoint=f"{sink.url}/v1/traces"))
    app = create_app(ServerSettings(storage=Path(tempfile.mkdtemp(prefix="tracing-cost-"))),
                     tracer_provider=provider, registry=new_registry(), log_stream=io.StringIO())
    payload = png_payload(4096)
    headers = [(b"host", b"bench"), (b"content-type", b"image/png"), (b"content-length", str(len(payload)).encode())]

    async def one() -> None:
        messages = [{"type": "http.request", "body": payload, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/detect", "raw_path": b"/v1/detect", "query_string": b"",
                 "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "root_path": "",
                 "state": {}}
        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"detect answered {statuses}")

    async def run() -> None:
        for _ in range(count // 8):
            await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(run())
    if hasattr(provider, "shutdown"):
        provider.shutdown()  # exports what is still queued: every span of the run is paid for
    sink.server.shutdown()


def _encode_workload(mode: str, count: int) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from mime_server.otlp import encode_spans as ours

    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("mime_server")
    for _ in range(count):
        tracer.start_span("POST /v1/detect", kind=SpanKind.SERVER, attributes={
            "http.request.method": "POST", "url.path": "/v1/detect", "http.route": "/v1/detect",
            "http.response.status_code": 200}).end()
    spans = kept.get_finished_spans()
    encoder = {"official_encoder": official, "project_encoder": ours}.get(mode)
    if encoder is not None:
        for start in range(0, len(spans), 512):
            encoder(spans[start:start + 512]).SerializePartialToString()


# -- driver -----------------------------------------------------------------------------------


def instructions(kind: str, mode: str, count: int) -> int:
    """Instructions valgrind counts for one child process running a workload."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m", "bench.tracing_cost",
         "--workload", kind, mode, str(count)], cwd=REPO, capture_output=True, text=True, check=True)
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if match is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def per_unit(kind: str, mode: str) -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two runs of one figure, side by side
        small, large = pool.map(lambda n: instructions(kind, mode, n), (N_SMALL, N_LARGE))
    return round((large - small) / (N_LARGE - N_SMALL))


def main() -> None:
    if shutil.which("valgrind") is None:
        print(json.dumps({"error": "valgrind not found: apt-get install valgrind"}))
        raise SystemExit(1)
    request = {mode: per_unit("request", mode) for mode in REQUEST_MODES}
    encode = {mode: per_unit("encode", mode) for mode in ENCODE_MODES}
    off = request["tracing_off"]
    report = {
        "method": f"valgrind callgrind instruction counts, (N={N_LARGE} - N={N_SMALL}) / {N_LARGE - N_SMALL}",
        "instructions_per_detect_request": request,
        "tracing_share_of_request_pct": {
            "recording_two_spans": round((request["spans_not_exported"] / off - 1) * 100, 1),
            "recording_and_exporting": round((request["spans_exported_otlp"] / off - 1) * 100, 1),
        },
        "instructions_per_span": {
            "sdk_create_and_end_4_attributes": encode["create_only"],
            "official_encoder": encode["official_encoder"] - encode["create_only"],
            "project_encoder": encode["project_encoder"] - encode["create_only"],
        },
    }
    per_span = report["instructions_per_span"]
    per_span["encoder_speedup"] = round(per_span["official_encoder"] / per_span["project_encoder"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--workload"]:
        kind, mode, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        (_request_workload if kind == "request" else _encode_workload)(mode, count)
    else:
        main()
