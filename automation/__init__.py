"""Operations CLI of the observability stack: health checks, backups, replay, metrics export, test alerts.

Run it as ``python -m automation COMMAND``; the runbook's shell wrappers in this folder call it.
"""
