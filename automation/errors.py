"""Exception types of the ops CLI, each mapped to one process exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_THRESHOLDS = 99  # same code as k6 when thresholds fail


class AutomationError(Exception):
    """Base class: a failure the CLI reports as one clear line and an exit code."""

    exit_code = EXIT_FAILED


class ConfigError(AutomationError):
    """The command cannot run as configured (unknown target, bad URL, missing tool or file)."""

    exit_code = EXIT_CONFIG


class UsageError(AutomationError):
    """An option value is malformed (the message names the value and what was expected)."""

    exit_code = EXIT_USAGE


class BackupError(AutomationError):
    """Writing or uploading a backup failed."""


class ArchiveInvalid(AutomationError):
    """An archive is corrupted, truncated, unsafe or does not match its manifest."""
