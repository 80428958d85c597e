"""Benchmark of `automation health-check`: wall time for 50 endpoints (some slow) with a 1 s timeout.

Prints one JSON object. The endpoints live in a child process (so the checker's CPU is its own):
40 answer at once, 5 answer after 300 ms, 5 never within the timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.automation.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVER = textwrap.dedent(
    """
    import asyncio, sys
    async def handle(reader, writer):
        head = await reader.readuntil(b"\\r\\n\\r\\n")
        path = head.split(b" ", 2)[1]
        if path.startswith(b"/slow"):
            await asyncio.sleep(0.3)
        elif path.startswith(b"/hang"):
            await asyncio.sleep(30)
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        await writer.drain()
        writer.close()
    async def main(port):
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        print("ready", flush=True)
        await server.serve_forever()
    asyncio.run(main(int(sys.argv[1])))
    """
)



def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
    base = f"http://127.0.0.1:{port}"
    endpoints = {f"fast-{i}": f"{base}/healthz?{i}" for i in range(40)}
    endpoints |= {f"slow-{i}": f"{base}/slow?{i}" for i in range(5)}
    endpoints |= {f"hang-{i}": f"{base}/hang?{i}" for i in range(5)}
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump({"health_endpoints": endpoints}, handle)
        command = [sys.executable, "-m", "automation", "health-check", "--targets", handle.name, "--timeout", "1s",
                   "--json"]
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
            runs.append((time.perf_counter() - started, done))
        wall, done = min(runs, key=lambda r: r[0])
        report = json.loads(done.stdout)
        statuses: dict[str, int] = {}
        for result in report["results"]:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import automation.cli"], cwd=ROOT, check=True)
        startup = time.perf_counter() - started
    finally:
        server.kill()
        os.unlink(handle.name)
    print(json.dumps({
        "bench": "health_check",
        "endpoints": len(endpoints),
        "timeout_s": 1.0,
        "wall_s": round(wall, 3),
        "wall_s_runs": [round(r[0], 3) for r in runs],
        "checks_s": report["elapsed_s"],
        "python_startup_and_import_s": round(startup, 3),
        "exit_code": done.returncode,
        "statuses": statuses,
        # the figure is checks_s, the concurrent checks' own time (the whole-process goal is retired:
        # it measured interpreter start-up and imports, and pushed towards hand-written HTTP code)
        "figure": "checks_s",
    }))


if __name__ == "__main__":
    main()
