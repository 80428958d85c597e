"""Reading resource properties the way CrossGuard hands them to a policy.

The engine passes a resource's inputs under the provider's schema names (camelCase, e.g.
``securityOpts``, ``logOpts``, ``contentBase64``); numbers arrive as floats (protobuf Struct
numbers are doubles). Helpers here also accept the snake_case spelling, so a hand-built
argument or another harness reads the same. A value the engine does not know yet during
preview (e.g. an image id) raises ``UnknownValueError`` on access: ``get`` turns it into the
``UNKNOWN`` marker so one unknown field does not stop the other checks on a resource.
A Pulumi secret is a ``pulumi_policy.Secret`` (see ``secret_markers``) or, in the Pulumi mocks,
the raw wrapper ``{"4dabf...": "1b470...", "value": ...}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pulumi_policy import Secret
from pulumi_policy.proxy import UnknownValueError

SIG_KEY: Final = "4dabf18193072939515e22adb298388d"
SECRET_SIG: Final = "1b47061264138c4ac30d75fd1eb44270"


class _Unknown:
    """Marker of a value that is unknown during preview."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


def snake(name: str) -> str:
    """``securityOpts`` -> ``security_opts``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def get(props: Mapping[str, Any] | Any, name: str, default: Any = None) -> Any:
    """Property ``name`` (camelCase) or its snake_case spelling; ``UNKNOWN`` if not known yet."""
    if not isinstance(props, Mapping):
        return default
    for key in (name, snake(name)):
        try:
            if key in props:
                return props[key]
        except UnknownValueError:
            return UNKNOWN
    return default


def is_secret(value: Any) -> bool:
    """True for a Pulumi secret: the policy SDK's ``Secret`` or the mocks' signature wrapper."""
    if isinstance(value, Secret):
        return True
    if isinstance(value, Mapping):
        try:
            return value.get(SIG_KEY) == SECRET_SIG
        except UnknownValueError:
            return False
    return False


def reveal(value: Any) -> Any:
    """The value inside a secret (for structural checks that do not care about secrecy)."""
    while is_secret(value):
        value = value.value if isinstance(value, Secret) else value["value"]
    return value


def items(value: Any) -> list[Any]:
    """A list property as a plain list (secrets revealed, unknown or missing -> [])."""
    value = reveal(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return []
    out: list[Any] = []
    for i in range(len(value)):
        try:
            out.append(value[i])
        except UnknownValueError:
            out.append(UNKNOWN)
    return out


def labels(props: Mapping[str, Any]) -> dict[str, str]:
    """Docker labels (``[{label, value}]``, or a plain map) as a dict of known strings."""
    raw = reveal(get(props, "labels"))
    if isinstance(raw, Mapping):
        return {str(k): str(reveal(get(raw, str(k)))) for k in raw}
    out: dict[str, str] = {}
    for entry in items(raw):
        key, value = reveal(get(entry, "label")), reveal(get(entry, "value"))
        if isinstance(key, str) and isinstance(value, str):
            out[key] = value
    return out
