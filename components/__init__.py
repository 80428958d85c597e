"""Pulumi ComponentResources of the observability stack; config-file text comes from `config/`."""
