"""Benchmark: the share of requests traced end to end in the pinned Jaeger, spans per trace, the dependency edge.

`python -m bench.trace_path [--requests N]` runs the loopback trace path of tests/tracing/path.py (the
pinned Jaeger with the rendered config, mime-server and mockup-gateway exporting OTLP as deployed,
the pinned Prometheus scraping Jaeger with the rendered scrape job and stack alerts), sends N mixed
requests through the gateway at 90% of its per-key rate limit, and prints ONE JSON object: requests
traced (the runbook's success metric is 100%), spans per trace by kind of request, Jaeger's
dependency edges, spans stored against `otelcol_receiver_accepted_spans_total` in Prometheus, and how
Prometheus evaluates the Jaeger meta-alerts.
"""

from __future__ import annotations

import argparse
import json
import sys

from config.settings import load_stack
from tests.tracing.path import TracePath


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_path", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="requests through the gateway (at least 33)")
    parser.add_argument("--stack", default="dev", help="stack whose settings render the configs")
    args = parser.parse_args(argv)
    with TracePath(load_stack(args.stack)) as path:
        measurement = path.measure(args.requests)
    print(json.dumps(measurement.figures()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
