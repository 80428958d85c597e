#!/usr/bin/env bash
# Installs what the tests need and runs them: `make test` (and .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
[ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libmagic.so.1 ] || need_apt+=(libmagic1)
command -v file >/dev/null 2>&1 || need_apt+=(file)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Prometheus, promtool, Alertmanager, amtool, Jaeger and actionlint at the versions the stack
# deploys, built from their Go modules (once; cached outside the repository).
bash scripts/tools.sh

PYTHON="${PYTHON:-python3}"
if [ ! -x venv/bin/python ]; then
  "$PYTHON" -m venv venv
fi
venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
# The alert-quality evaluator (Go, Prometheus' own rule manager at the pinned version), built once
# outside the repository, before pytest's per-test timeout starts counting.
venv/bin/python -m bench.alert_quality.evaluate >/dev/null

set +e
venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
