#!/usr/bin/env bash
# `make rehearse`: the dev stack's declared containers run with podman, then the runbook's validate phase.
#
# No Docker engine and no Pulumi CLI needed: the program runs under Pulumi mocks, the images are
# built with podman (scripts/images.sh), and `python -m rehearsal run` starts every container the
# program registers, as declared, in its order, then checks it. Progress on stderr; one JSON object
# on stdout; exit 0 only when every check passed. Arguments go to `python -m rehearsal run`
# (--keep leaves the containers running; --stack NAME).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != "0" ]; then
  echo "error: make rehearse runs podman as root (rootful: runc, cgroupfs, netavark); run it as root or with sudo" >&2
  exit 2
fi

if [ -z "${PYTHON:-}" ]; then
  if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
  fi
  venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  PYTHON=venv/bin/python
fi
export PYTHON

# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
bash scripts/images.sh >&2
exec "$PYTHON" -m rehearsal run "$@"
