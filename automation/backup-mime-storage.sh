#!/usr/bin/env bash
# Runbook "backup MIME storage": one verified archive of the mime-server storage volume, JSON summary on stdout.
# Environment (each also a flag of `python -m automation backup`):
#   MIME_STORAGE_DIR (default ./mime_storage)   BACKUP_DIR (default ./backups)   BACKUP_COMPRESSION (gz)
#   BACKUP_KEEP_LAST / BACKUP_MAX_AGE_DAYS      retention, unset = keep everything
#   S3_BUCKET / S3_PREFIX / S3_ENDPOINT          optional upload (credentials: the usual AWS_* variables)
#   BACKUP_EXCLUDE (default 'tmp/*')             uploads in progress are never objects (mime-server empties tmp/ at start)
#   BACKUP_FIRST (default objects)               archived first, so each archived object's meta/ sidecar is archived too
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MIME_STORAGE_DIR="${MIME_STORAGE_DIR:-./mime_storage}"
export BACKUP_DIR="${BACKUP_DIR:-./backups}"
export BACKUP_NAME="${BACKUP_NAME:-mime-storage}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m automation backup --exclude "${BACKUP_EXCLUDE:-tmp/*}" \
    --first "${BACKUP_FIRST:-objects}" "$@"
