"""`python -m webhook_receiver --host H --port P [--log-file F]`: run the receiver until interrupted."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from webhook_receiver.server import LineSink, WebhookReceiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webhook_receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--log-file", help="append the JSON lines here as well as to stdout")
    args = parser.parse_args(argv)
    log: LineSink = sys.stdout
    if args.log_file:
        log = _Tee(sys.stdout, open(args.log_file, "a", encoding="utf-8"))
    receiver = WebhookReceiver(args.host, args.port, log=log)
    print(f'{{"msg": "listening", "url": "{receiver.url}"}}', flush=True)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


class _Tee:
    """Writes every line to each stream."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


if __name__ == "__main__":
    sys.exit(main())
