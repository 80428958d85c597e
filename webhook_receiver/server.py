"""The receiver: accepts POST on any path, logs one JSON line per notification, records it thread-safely.

It answers the way the service it stands in for answers, because Alertmanager reads the answers:
Alertmanager's webhooks take any 2xx, but its Slack notifier counts a JSON answer without
`"ok": true` as a failed notification (0.30 and later; an incoming webhook answers the text `ok`),
and PagerDuty's Events API answers 202 with a JSON status.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Literal, Protocol

MAX_BODY = 10 * 1024 * 1024

AnswerAs = Literal["webhook", "slack", "pagerduty"]


class LineSink(Protocol):
    """Where the JSON lines go (stdout, a file, both)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class Notification:
    """One received request: arrival time (epoch and monotonic), path, headers and JSON body."""

    ts: float
    monotonic: float
    path: str
    headers: dict[str, str]
    body: Any


class WebhookReceiver:
    """An HTTP server on its own thread; `notifications` and `wait_for` are safe to use from tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log: LineSink | None = None,
                 answer_as: AnswerAs = "webhook") -> None:
        self.answer_as = answer_as
        self._lock = threading.Condition()
        self._received: list[Notification] = []
        self._log = log
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> "WebhookReceiver":
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def wait_for(self, match: Callable[[Notification], bool], timeout: float) -> Notification | None:
        """The first recorded notification `match` accepts, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for n in self._received:
                    if match(n):
                        return n
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> Any:
        """Keep and log one notification; returns its decoded body."""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        n = Notification(time.time(), time.monotonic(), path, headers, body)
        with self._lock:
            self._received.append(n)
            self._lock.notify_all()
        out = self._log or sys.stdout
        out.write(json.dumps({"ts": n.ts, "path": path, "body": body}) + "\n")
        out.flush()
        return body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "body too large", "limit": MAX_BODY})
                    return
                raw = self.rfile.read(length)
                body = receiver._record(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                if receiver.answer_as == "slack":  # an incoming webhook's answer
                    self._answer_text(200, "ok")
                elif receiver.answer_as == "pagerduty":  # Events API v2
                    dedup = body.get("dedup_key") if isinstance(body, dict) else None
                    self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup})
                else:
                    self._answer(200, {"status": "ok"})

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/healthz":
                    self._answer(200, {"status": "ok"})
                else:
                    self._answer(404, {"error": "not found", "path": self.path})

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, "application/json", json.dumps(body).encode())

            def _answer_text(self, code: int, text: str) -> None:
                self._send(code, "text/plain; charset=utf-8", text.encode())

            def _send(self, code: int, content_type: str, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # the JSON line is the log
                pass

        return Handler
