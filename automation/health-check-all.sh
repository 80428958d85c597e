#!/usr/bin/env bash
# Runbook "validate all services": health of every service in the stack's health_endpoints output.
# Targets: HEALTH_TARGETS=FILE (JSON/YAML) when set, else `pulumi stack output` of PULUMI_STACK (or the selected stack).
# Extra arguments go to `python -m automation health-check` (e.g. --json, --service prometheus, --timeout 5s).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=()
if [[ -n "${HEALTH_TARGETS:-}" ]]; then args+=(--targets "$HEALTH_TARGETS"); fi
if [[ -n "${PULUMI_STACK:-}" ]]; then args+=(--stack "$PULUMI_STACK"); fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m automation health-check "${args[@]}" "$@"
