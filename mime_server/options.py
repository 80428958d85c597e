"""Command-line option helpers shared by both services: env-var defaults, positive numbers, secret files."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any


def env_default(environ: Mapping[str, str], name: str, default: str | None) -> str | None:
    """The value of an environment variable, or the default when unset or empty."""
    return environ.get(name) or default


def positive(name: str, convert: Callable[[str], float]) -> Callable[[str], Any]:
    """argparse type: a positive number parsed with ``convert``; the error names the option and value."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {value!r}") from None
        if not number > 0 or number != number or number == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be a positive finite number, got {value!r}")
        return number

    return parse


def parse_int(name: str) -> Callable[[str], int]:
    """argparse type for a positive integer."""
    return positive(name, int)


def parse_float(name: str) -> Callable[[str], float]:
    """argparse type for a positive number."""
    return positive(name, float)


def read_secret_file(path: str | None) -> str | None:
    """First non-comment line of a secret file (trailing newline stripped), or None without a path."""
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            value = line.strip()
            if value and not value.startswith("#"):
                return value
    raise ValueError(f"secret file {path!r} holds no value")
