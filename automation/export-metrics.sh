#!/usr/bin/env bash
# Runbook "export metrics to CSV": `bash automation/export-metrics.sh > metrics.csv`.
# Only CSV goes to stdout (timestamp,unix,query,metric,labels,value); messages go to stderr.
# Environment: PROMETHEUS_URL (default http://127.0.0.1:9090), EXPORT_START (-1h), EXPORT_END (now), EXPORT_STEP (15s).
# Extra arguments go to `python -m automation export-metrics` (e.g. --query 'rps=sum(rate(http_requests_total[5m]))').
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m automation export-metrics "$@"
