#!/usr/bin/env bash
# Deploys a stack (dev by default) on this Docker host with a local file backend: `make up`.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK="${STACK:-dev}"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "error: Docker does not answer (docker info failed). Install Docker and start the engine, then retry." >&2
  exit 1
fi

if ! command -v pulumi >/dev/null 2>&1; then
  if [ -x "$HOME/.pulumi/bin/pulumi" ]; then
    export PATH="$HOME/.pulumi/bin:$PATH"
  else
    echo "Pulumi CLI not found: installing it with the official installer (https://get.pulumi.com)."
    curl -fsSL https://get.pulumi.com | sh
    export PATH="$HOME/.pulumi/bin:$PATH"
  fi
fi

if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
fi
venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt

# State lives in the project (no cloud account); `pulumi login` is not changed globally.
export PULUMI_BACKEND_URL="file://$PWD/.pulumi-state"
mkdir -p .pulumi-state
if [ "$STACK" = "dev" ]; then
  # Dev only: a documented default passphrase. Staging and prod must set their own.
  export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-dev-passphrase-not-secret}"
elif [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ]; then
  echo "error: set PULUMI_CONFIG_PASSPHRASE for stack $STACK (only dev has a default)." >&2
  exit 1
fi

pulumi stack select "$STACK" --create --non-interactive
pulumi up --yes --non-interactive --stack "$STACK"

echo "Validating every service (python -m automation health-check):"
venv/bin/python -m automation health-check --stack "$STACK" --retries 10
