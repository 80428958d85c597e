"""Benchmark of the workload's edge: memory and errors under hostile clients, the cost of the limits, the server choice.

``python -m bench.edge [--before DIR] [--only SECTION,...]`` prints ONE JSON object with:

- ``hostile``: for each tree (this one, and ``--before DIR``, a checkout of an older
  ``mime_server/``), run with the allocator settings of its own image, fresh mime-server and
  gateway processes per load, their peak RSS (VmHWM from /proc/PID/status) against the container
  limits (256 MB, 128 MB), what the clients got and the 5xx counted in ``http_requests_total``.
  Loads: header bombs (two unfinished 96 MiB heads, a complete 16 MiB header, 100,000 header
  fields), 50 concurrent distinct 8 MiB uploads (direct and through the gateway), 200 concurrent
  1 MB uploads, 50 concurrent 8 MiB detect bodies, 1,000 slow connections held 12 s (with a
  well-behaved request meanwhile), and misbehaving requests (abort mid-upload, malformed chunked
  body, 300-character multipart boundary, NaN fault spec, trailing slash, garbage).
- ``uploads_50x8MiB_by_allocator``: that upload load per tree under glibc's defaults,
  ``MALLOC_ARENA_MAX=2`` alone, and this tree's image settings.
- ``throughput``: wrk (16 connections, telemetry off) on detect 4 KiB and upload 64 KiB, server
  and gateway, each tree's services running side by side (plus this tree under glibc's
  defaults), runs alternated, best of 3, with the services' CPU per request; plus the open-loop
  200 req/s p95 through the gateway.
- ``instructions_per_request``: valgrind's instruction count per mime-server detect request fed
  in-process to uvicorn's httptools protocol (each tree) and to the edge protocol (this tree):
  what the changes cost, whatever else the machine is doing.
- ``server_choice``: the mime-server app on each candidate HTTP server (uvicorn+httptools as it
  was, uvicorn+httptools behind ``mime_server/edge.py``, uvicorn+h11 with its head limit,
  hypercorn, granian), side by side: detect 4 KiB throughput and p95, and what each does with a
  64 KiB header, 1,000 header fields, an idle connection and a slow head. hypercorn and granian
  are bench-only: found on PYTHONPATH or reported "not installed".

Loopback only; every load is bounded in count and time. Never part of the test run's pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.mime_server import (
    free_port,
    image_env,
    open_loop,
    png_payload,
    run_async,
    running_services,
    wait_healthy,
    wrk,
)

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"
LIMITS_MB = {"mime-server": 256, "gateway": 128}  # Pulumi.yaml mimeServerMemoryMb / gatewayMemoryMb
MIB = 1024 * 1024
BOMB_BYTES = 96 * MIB
UPLOADS, UPLOAD_BYTES = 50, 8 * MIB
SLOW_CONNECTIONS, SLOW_HOLD_S = 1000, 12.0
RUN_SECONDS, REPEATS = 3, 3
CANDIDATES = ("uvicorn-httptools", "uvicorn-edge", "uvicorn-h11", "hypercorn", "granian")


# -- processes --------------------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM) in KiB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


@contextlib.contextmanager
def services(tree: Path, workdir: Path, env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """mime-server and gateway of ``tree`` as processes (telemetry off, allocator as ``env`` says), fresh storage."""
    storage = Path(tempfile.mkdtemp(prefix="storage-", dir=workdir))
    try:
        with running_services(tree, workdir, {"OTEL_TRACES_EXPORTER": "none", **(env or {})}, storage) as info:
            yield info
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def five_xx(url: str) -> int:
    """5xx answers counted in ``http_requests_total`` of the service at ``url``."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("http_requests_total{") and re.search(r'code="5\d\d"', line)))


# -- raw clients ------------------------------------------------------------------------------


def read_status(sock: socket.socket, timeout: float) -> int | str:
    """The status of the answer on ``sock``, or what happened instead ("closed", "reset", "no answer")."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed"
            data += chunk
    except TimeoutError:
        return "no answer"
    except ConnectionResetError:
        return "reset"
    return int(data.split(b" ", 2)[1])


def send_head_bomb(port: int, head: bytes, filler_bytes: int, timeout: float = 60.0) -> int | str:
    """Send ``head`` then ``filler_bytes`` of one never-ending header value; stop once the server answers."""
    piece = b"b" * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < filler_bytes:
                sock.sendall(piece)
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or a close) is waiting
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_status(sock, timeout)


def send_request(port: int, raw: bytes, timeout: float = 30.0) -> int | str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_status(sock, timeout)


def upload_raw(port: int, index: int, base: bytes, key: bool, path: str = "/v1/files") -> int | str:
    """POST one distinct body of len(base) bytes in 256 KiB pieces."""
    head = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(base)}\r\n"
            + (f"X-API-Key: {API_KEY}\r\n" if key else "") + "\r\n").encode()
    view = memoryview(index.to_bytes(8, "big") + base[8:])
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        for start in range(0, len(view), 256 * 1024):
            sock.sendall(view[start:start + 256 * 1024])
        return read_status(sock, 120)


def tally(results: list[int | str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result)] = counts.get(str(result), 0) + 1
    return dict(sorted(counts.items()))


class Peak:
    """Samples VmRSS of processes while a load runs; VmHWM (the kernel's own peak) read at the end."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: status_kib(pid, "VmRSS") for name, pid in pids.items()}

    def result(self) -> dict[str, Any]:
        out = {}
        for name, pid in self.pids.items():
            peak_mb = round(status_kib(pid, "VmHWM") / 1024, 1)
            out[name] = {"rss_before_mb": round(self.start[name] / 1024, 1), "peak_rss_mb": peak_mb,
                         "limit_mb": LIMITS_MB[name], "under_limit": peak_mb < LIMITS_MB[name]}
        return out


# -- hostile loads ----------------------------------------------------------------------------


def load_header_bombs(svc: dict[str, Any]) -> dict[str, Any]:
    peak = Peak(svc["pids"])
    answers: dict[str, Any] = {}
    for name, port in svc["ports"].items():
        head = b"GET /v1/files/x HTTP/1.1\r\nHost: bench\r\nX-Bomb: "
        with ThreadPoolExecutor(2) as pool:  # two unfinished 96 MiB heads at once, no API key
            answers[f"{name}_two_unfinished_96MiB"] = tally(list(pool.map(
                lambda _: send_head_bomb(port, head, BOMB_BYTES), range(2))))
        answers[f"{name}_complete_16MiB_header"] = send_request(
            port, b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: " + b"a" * (16 * MIB) + b"\r\n\r\n")
        answers[f"{name}_100000_fields"] = send_request(
            port, b"GET /healthz HTTP/1.1\r\nHost: bench\r\n" + b"X-F: v\r\n" * 100_000 + b"\r\n")
    return {"answers": answers, "memory": peak.result()}


def load_uploads(svc: dict[str, Any], through_gateway: bool, count: int = UPLOADS, size: int = UPLOAD_BYTES,
                 path: str = "/v1/files") -> dict[str, Any]:
    base = os.urandom(size)
    port = svc["ports"]["gateway" if through_gateway else "mime-server"]
    peak = Peak(svc["pids"] if through_gateway else {"mime-server": svc["pids"]["mime-server"]})
    started = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda i: upload_raw(port, i, base, through_gateway, path), range(count)))
    return {"answers": tally(results), "seconds": round(time.monotonic() - started, 1), "memory": peak.result()}


def load_slow_connections(svc: dict[str, Any], name: str) -> dict[str, Any]:
    """SLOW_CONNECTIONS connections each sending a head one short header line at a time, 1 a second,
    for SLOW_HOLD_S; a well-behaved request 3 s in. What each connection got, and memory."""
    port = svc["ports"][name]
    peak = Peak({name: svc["pids"][name]})
    outcome: dict[str, str] = {}
    socks: list[socket.socket] = []
    for _ in range(SLOW_CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, ConnectionError):
            sock.send(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        socks.append(sock)
    started = time.monotonic()
    polite: int | str = "not sent"
    received: dict[int, bytes] = {}

    def polite_request() -> None:
        nonlocal polite
        try:
            polite = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10,
                               headers={"x-api-key": API_KEY}).status_code
        except httpx.HTTPError as exc:
            polite = type(exc).__name__

    timer = threading.Timer(3.0, polite_request)
    timer.start()
    while time.monotonic() - started < SLOW_HOLD_S:
        for index, sock in enumerate(socks):
            if index in outcome:
                continue
            try:
                chunk = sock.recv(65536)
                if chunk:
                    received[index] = received.get(index, b"") + chunk
                    continue
                outcome[index] = "closed"
            except BlockingIOError:
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    sock.send(b"X-S: 1\r\n")
            except ConnectionError:
                outcome[index] = "reset"
        time.sleep(1.0)
    timer.join()
    open_at_end = sum(1 for index in range(len(socks)) if index not in outcome)
    statuses = tally([int(data.split(b" ", 2)[1]) for data in received.values() if data.startswith(b"HTTP/1.1 ")])
    for sock in socks:
        sock.close()
    return {"held_s": SLOW_HOLD_S, "still_open_at_end": open_at_end, "closed_by_server": len(outcome),
            "answers_seen": statuses, "well_behaved_request_at_3s": polite, "memory": peak.result()}


def load_misbehaving(svc: dict[str, Any]) -> dict[str, Any]:
    """Requests whose fault is the client's, through the gateway and straight to mime-server."""
    answers: dict[str, Any] = {}
    key = f"X-API-Key: {API_KEY}\r\n".encode()
    for name, port in svc["ports"].items():
        cases = {
            "malformed_chunked": b"POST /v1/files HTTP/1.1\r\nHost: b\r\n" + key
            + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
            "boundary_300": b"POST /v1/files HTTP/1.1\r\nHost: b\r\n" + key + b"Content-Type: multipart/form-data; "
            b"boundary=" + b"q" * 300 + b"\r\nContent-Length: 4\r\n\r\nabcd",
            "nan_fault_spec": b"POST /admin/faults HTTP/1.1\r\nHost: b\r\nX-Admin-Key: x\r\n" + key
            + b"Content-Length: 19\r\n\r\n{\"error_rate\": NaN}",
            "duplicate_length": b"POST /v1/files HTTP/1.1\r\nHost: b\r\n" + key
            + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "garbage": b"GARBAGE\r\n\r\n",
            "trailing_slash": b"GET /v1/files/" + b"ab" * 32 + b"/ HTTP/1.1\r\nHost: b\r\n" + key + b"\r\n",
        }
        for case, raw in cases.items():
            answers[f"{name}_{case}"] = send_request(port, raw, 15)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # abort mid-upload
            sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: b\r\n" + key + b"Content-Length: 100000\r\n\r\n"
                         + b"a" * 30000)
            time.sleep(0.2)
        answers[f"{name}_abort_mid_upload"] = "aborted by the client"
    time.sleep(1.0)
    return {"answers": answers}


def hostile(tree: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"allocator_env": env}
    loads: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
        ("header_bombs", load_header_bombs),
        ("uploads_50x8MiB_direct", lambda svc: load_uploads(svc, False)),
        ("uploads_50x8MiB_through_gateway", lambda svc: load_uploads(svc, True)),
        ("uploads_200x1MB_direct", lambda svc: load_uploads(svc, False, 200, 1_000_000)),
        ("detect_50x8MiB_direct", lambda svc: load_uploads(svc, False, path="/v1/detect")),
        ("slow_connections_1000_mime_server", lambda svc: load_slow_connections(svc, "mime-server")),
        ("slow_connections_1000_gateway", lambda svc: load_slow_connections(svc, "gateway")),
        ("misbehaving_requests", load_misbehaving),
    ]
    for name, load in loads:
        with services(tree, workdir, env) as svc:  # fresh processes: VmHWM is this load's peak
            try:
                result = load(svc)
            except OSError as exc:
                result = {"failed": f"{type(exc).__name__}: {exc}"}
            result["five_xx_counted"] = {service: five_xx(svc[key]) for service, key in
                                         (("mime-server", "server"), ("gateway", "gateway"))}
            out[name] = result
    return out


def uploads_only(tree: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    with services(tree, workdir, env) as svc:
        return {"allocator_env": env, **load_uploads(svc, False)}


# -- throughput before/after --------------------------------------------------------------------


def throughput(trees: dict[str, tuple[Path, dict[str, str]]], workdir: Path) -> dict[str, Any]:
    detect, upload = workdir / "detect.png", workdir / "upload.png"
    detect.write_bytes(png_payload(4096))
    upload.write_bytes(png_payload(65536))
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        running = {name: stack.enter_context(services(tree, workdir, env)) for name, (tree, env) in trees.items()}
        for label, path, body, unique in (("detect_4k", "/v1/detect", detect, False),
                                          ("upload_64k", "/v1/files", upload, True)):
            for target in ("server", "gateway"):
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
                for _ in range(REPEATS):  # alternated, so drift on the shared machine hits each tree alike
                    for name in trees:
                        runs[name].append(wrk(running[name][target] + path, body, unique, RUN_SECONDS, workdir,
                                              running[name]["pids"]))
                best = {name: max(results, key=lambda run: run["requests_per_s"]) for name, results in runs.items()}
                entry: dict[str, Any] = {name: {k: best[name][k] for k in ("requests_per_s", "p50_ms", "p95_ms",
                                                                             "errors")} for name in trees}
                for name, results in runs.items():  # both services' CPU per request, lowest run
                    entry[name]["cpu_us_per_request"] = min(sum(run["cpu_us_per_request"].values())
                                                            for run in results)
                for name in best:
                    if name != "before" and "before" in best:
                        entry[f"{name}_vs_before_throughput"] = round(best[name]["requests_per_s"]
                                                                      / best["before"]["requests_per_s"], 3)
                        entry[f"{name}_vs_before_p95"] = round(best[name]["p95_ms"] / best["before"]["p95_ms"], 3)
                out[f"{label}_{target}"] = entry
        for label, path, body, unique in (("detect_4k", "/v1/detect", detect, False),
                                          ("upload_64k", "/v1/files", upload, True)):
            out[f"open_loop_200rps_{label}_gateway"] = {
                name: run_async(open_loop(running[name]["gateway"] + path, body.read_bytes(), unique, 200, 6))
                for name in trees}
    return out


# -- server choice ------------------------------------------------------------------------------


def bench_app() -> Any:
    """mime-server's app for the server comparison (storage from EDGE_BENCH_STORAGE)."""
    from mime_server.app import ServerSettings, create_app

    return create_app(ServerSettings(storage=Path(os.environ["EDGE_BENCH_STORAGE"])))


def serve_candidate(candidate: str, port: int) -> None:
    """``python -m bench.edge --serve CANDIDATE PORT``: the app on one candidate server, production-like settings."""
    if candidate == "granian":
        from granian import Granian
        from granian.http import HTTP1Settings

        Granian("bench.edge:bench_app", address="127.0.0.1", port=port, interface="asgi", factory=True, http="1",
                websockets=False, log_enabled=False, loop="uvloop",
                http1_settings=HTTP1Settings(header_read_timeout=10_000, max_buffer_size=16 * 1024)).serve()
        return
    app = bench_app()
    if candidate == "hypercorn":
        import asyncio

        import uvloop
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.h11_max_incomplete_size = 16 * 1024
        config.read_timeout = 10
        config.keep_alive_timeout = 5
        config.accesslog = config.errorlog = None
        uvloop.run(serve(app, config, shutdown_trigger=asyncio.Event().wait))  # type: ignore[arg-type]
        return
    import uvicorn

    from mime_server.limits import MIME_LIMITS
    from mime_server.serve import uvicorn_config

    if candidate == "uvicorn-edge":
        config = uvicorn_config(app, "127.0.0.1", port, MIME_LIMITS, app.state.access, None)
    elif candidate == "uvicorn-h11":
        config = uvicorn.Config(app, host="127.0.0.1", port=port, http="h11", log_config=None, access_log=False,
                                h11_max_incomplete_event_size=16 * 1024)
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", log_config=None, access_log=False)
    uvicorn.Server(config).run()


def probe_idle_and_slow(port: int, wait_s: float) -> dict[str, Any]:
    """Seconds until the server closes an idle connection and a slow-head one (None: still open after wait_s)."""
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n")
    started = time.monotonic()
    closed: dict[str, Any] = {"idle_connection_closed_after_s": None, "slow_head_closed_after_s": None}
    socks = {"idle_connection_closed_after_s": idle, "slow_head_closed_after_s": slow}
    while time.monotonic() - started < wait_s and any(v is None for v in closed.values()):
        for name, sock in socks.items():
            if closed[name] is None and select.select([sock], [], [], 0)[0]:
                with contextlib.suppress(ConnectionError):
                    if sock.recv(65536):
                        with contextlib.suppress(ConnectionError):
                            sock.send(b"X-S: 1\r\n")
                        continue
                closed[name] = round(time.monotonic() - started, 1)
        slow_ok = closed["slow_head_closed_after_s"] is None
        if slow_ok:
            with contextlib.suppress(ConnectionError):
                slow.send(b"X-S: 1\r\n")
        time.sleep(0.5)
    idle.close()
    slow.close()
    return closed


def server_choice(workdir: Path) -> dict[str, Any]:
    detect = workdir / "detect.png"
    detect.write_bytes(png_payload(4096))
    extra = os.environ.get("EDGE_BENCH_PYTHONPATH", "/tmp/edge-bench-deps")
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{extra}", "OTEL_TRACES_EXPORTER": "none"}
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    out: dict[str, Any] = {}
    try:
        for candidate in CANDIDATES:
            module = {"hypercorn": "hypercorn", "granian": "granian"}.get(candidate)
            if module and subprocess.run([sys.executable, "-c", f"import {module}"], env=env,
                                         capture_output=True).returncode:
                out[candidate] = f"not installed (pip install {module} to compare)"
                continue
            port = free_port()
            storage = Path(tempfile.mkdtemp(prefix=f"choice-{candidate}-", dir=workdir))
            process = subprocess.Popen([sys.executable, "-m", "bench.edge", "--serve", candidate, str(port)],
                                       cwd=REPO, env={**env, "EDGE_BENCH_STORAGE": str(storage)},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_healthy(f"http://127.0.0.1:{port}", process)
            processes[candidate] = (process, port)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in processes}
        for _ in range(REPEATS):
            for name, (_process, port) in processes.items():
                runs[name].append(wrk(f"http://127.0.0.1:{port}/v1/detect", detect, False, RUN_SECONDS, workdir))
        with ThreadPoolExecutor(len(processes)) as pool:
            probes = dict(zip(processes, pool.map(lambda item: probe_idle_and_slow(item[1], 14.0),
                                                  processes.values())))
        for name, (_process, port) in processes.items():
            best = max(runs[name], key=lambda run: run["requests_per_s"])
            out[name] = {"detect_4k_requests_per_s": best["requests_per_s"], "p95_ms": best["p95_ms"],
                         "header_64KiB": send_request(port, b"GET /healthz HTTP/1.1\r\nHost: b\r\nX-Big: "
                                                      + b"a" * 65536 + b"\r\n\r\n", 10),
                         "fields_1000": send_request(port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n"
                                                     + b"X-F: v\r\n" * 1000 + b"\r\n", 10),
                         **probes[name]}
        if isinstance(out.get("uvicorn-httptools"), dict):
            base = out["uvicorn-httptools"]["detect_4k_requests_per_s"]
            for name in processes:
                out[name]["throughput_vs_uvicorn_httptools"] = round(out[name]["detect_4k_requests_per_s"] / base, 3)
    finally:
        for process, _port in processes.values():
            process.send_signal(signal.SIGTERM)
        for process, _port in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    return out


# -- instructions per request (valgrind) -------------------------------------------------------

# Run with ``python -c`` and the tree under test alone on PYTHONPATH (so that its own mime_server
# is imported): N detect requests of 4 KiB fed as raw HTTP bytes to uvicorn's httptools protocol
# or to the edge protocol, with the tree's app behind it, on one kept-alive connection.
PROTOCOL_WORKLOAD = r"""
import asyncio, io, sys, tempfile
from pathlib import Path
import uvicorn
from opentelemetry.trace import NoOpTracerProvider
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from mime_server.app import ServerSettings, create_app
from mime_server.metrics import new_registry

protocol, count = sys.argv[1], int(sys.argv[2])
app = create_app(ServerSettings(storage=Path(tempfile.mkdtemp(prefix="edge-instr-"))),
                 tracer_provider=NoOpTracerProvider(), registry=new_registry(), log_stream=io.StringIO())
if protocol == "edge":
    from mime_server.edge import edge_protocol
    from mime_server.limits import MIME_LIMITS
    cls = edge_protocol(MIME_LIMITS, app.state.access)
else:
    cls = HttpToolsProtocol
body = bytes(range(256)) * 16
request = (b"POST /v1/detect HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\nContent-Type: image/png\r\n"
           b"Content-Length: 4096\r\n\r\n" + body)

class Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.closing = False
    def write(self, data): pass
    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)
    def is_closing(self): return self.closing
    def close(self): self.closing = True
    def pause_reading(self): pass
    def resume_reading(self): pass

async def run():
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    proto = cls(config=config, server_state=ServerState(), app_state={})
    proto.connection_made(Transport())
    for _ in range(count):
        proto.data_received(request)
        while not proto.cycle.response_complete:
            await asyncio.sleep(0.0005)
    proto.connection_lost(None)

asyncio.run(run())
"""
INSTRUCTION_COUNTS = (100, 400)


def instructions_per_request(tree: Path, protocol: str) -> int:
    """(instructions of N_LARGE requests - of N_SMALL) / difference, counted by valgrind: independent of load."""
    def count(requests: int) -> int:
        env = {**os.environ, "PYTHONPATH": str(tree), "OTEL_TRACES_EXPORTER": "none"}
        result = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                 "-c", PROTOCOL_WORKLOAD, protocol, str(requests)], cwd=tree, env=env,
                                capture_output=True, text=True, check=True)
        match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
        if match is None:
            raise RuntimeError(f"valgrind printed no instruction count:\n{result.stderr[-2000:]}")
        return int(match.group(1))

    small, large = INSTRUCTION_COUNTS
    with ThreadPoolExecutor(2) as pool:
        low, high = pool.map(count, (small, large))
    return round((high - low) / (large - small))


def instructions(trees: dict[str, Path]) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        return {"error": "valgrind not found: apt-get install valgrind"}
    out: dict[str, Any] = {"method": "valgrind callgrind, mime-server POST /v1/detect 4 KiB fed to the protocol "
                                     "in-process, (N=%d - N=%d) / %d" % (INSTRUCTION_COUNTS[1], INSTRUCTION_COUNTS[0],
                                                                          INSTRUCTION_COUNTS[1] - INSTRUCTION_COUNTS[0])}
    for name, tree in trees.items():
        out[f"{name}_httptools"] = instructions_per_request(tree, "httptools")
    out["after_edge"] = instructions_per_request(trees["after"], "edge")
    if "before" in trees:
        out["after_edge_vs_before"] = round(out["after_edge"] / out["before_httptools"], 3)
    out["edge_protocol_share"] = round(out["after_edge"] / out["after_httptools"] - 1, 3)
    return out


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.edge")
    parser.add_argument("--before", type=Path, help="a checkout holding an older mime_server/ to compare with")
    parser.add_argument("--only", default="hostile,throughput,server_choice,instructions",
                        help="comma-separated sections: hostile, uploads, throughput, server_choice, instructions")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    trees = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    # Each tree's processes get the allocator settings of its own image; "after_glibc_defaults"
    # separates what the code changed from what the allocator settings do.
    variants = {name: (tree, image_env(tree)) for name, tree in trees.items()}
    variants["after_glibc_defaults"] = (REPO, {})
    began = time.monotonic()
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_1m_at_start": os.getloadavg()[0]},
                              "limits_mb": LIMITS_MB}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        workdir = Path(tmp)
        if "server_choice" in sections:
            report["server_choice"] = server_choice(workdir)
        if "instructions" in sections:
            report["instructions_per_request"] = instructions(trees)
        if "throughput" in sections:
            report["throughput"] = throughput(variants, workdir)
        if "hostile" in sections:
            report["hostile"] = {name: hostile(tree, workdir, env) for name, (tree, env) in variants.items()
                                 if name != "after_glibc_defaults"}
        if "hostile" in sections or "uploads" in sections:
            allocators = {"glibc_defaults": {}, "arena_max_2": {"MALLOC_ARENA_MAX": "2"},
                          "image": image_env(REPO)}
            report["uploads_50x8MiB_by_allocator"] = {
                f"{name}_{label}": uploads_only(tree, workdir, env)
                for name, tree in trees.items() for label, env in allocators.items()}
    report["machine"]["loadavg_1m_at_end"] = os.getloadavg()[0]
    report["duration_s"] = round(time.monotonic() - began, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve_candidate(sys.argv[2], int(sys.argv[3]))
    else:
        main()
