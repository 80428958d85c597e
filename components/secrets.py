"""The stack's secret settings (from `pulumi config set --secret`), read once, as secret Outputs."""

from __future__ import annotations

import pulumi

from config.settings import secret_keys


def from_config(config: pulumi.Config) -> tuple[dict[str, pulumi.Output[str]], set[str]]:
    """Every secret setting that is set: key -> secret Output, and the set keys' names.

    Presence is known before any resource exists, so validation can fail early; the value itself
    only ever travels as a secret Output.
    """
    values: dict[str, pulumi.Output[str]] = {}
    for key in secret_keys():
        raw = pulumi.runtime.get_config(f"{config.name}:{key}")
        if raw:
            values[key] = pulumi.Output.secret(raw)
    return values, set(values)
