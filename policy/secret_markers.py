"""Keep Pulumi secrets recognisable inside resource validations.

The engine sends a policy pack every secret input as ``{sig: secret, value: plaintext}``
(``KeepSecrets``), but pulumi-policy 1.21.0 unwraps that to the bare plaintext before calling
``validate`` (only remediations keep a ``Secret`` marker), so a policy cannot tell a secret
upload from a plain one (https://github.com/pulumi/pulumi-policy/issues/241, open). ``install()`` makes the analyzer's
deserializer turn each secret into a ``pulumi_policy.Secret`` instead, so the no-plain-secrets
policy can allow secret uploads and still flag plain ones. The pack pins pulumi-policy; the
test suite runs the real analyzer servicer through this path, so an SDK change that breaks it
fails a test rather than silently passing.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import Secret
from pulumi_policy import deserialize as _deserialize
from pulumi_policy import policy as _policy

from .props import SECRET_SIG, SIG_KEY

_ORIGINAL = _deserialize.deserialize_properties


def mark_secrets(prop: Any) -> Any:
    """Replace every secret wrapper in a raw (serialized) property tree with a ``Secret``."""
    if isinstance(prop, list):
        return [mark_secrets(e) for e in prop]
    if isinstance(prop, dict):
        if prop.get(SIG_KEY) == SECRET_SIG:
            return Secret(_deserialize._deserialize_property(mark_secrets(prop.get("value"))))
        return {k: mark_secrets(v) for k, v in prop.items()}
    return prop


def deserialize_keeping_secrets(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
    """``deserialize_properties`` that leaves ``Secret`` markers where the engine sent secrets."""
    if proxy_secrets:
        return _ORIGINAL(props, True)
    return _ORIGINAL(mark_secrets(props))


def install() -> None:
    """Route the analyzer's property deserialization through ``deserialize_keeping_secrets``."""
    _policy.deserialize_properties = deserialize_keeping_secrets  # type: ignore[attr-defined]


def uninstall() -> None:
    """Restore the SDK's own deserializer (tests)."""
    _policy.deserialize_properties = _ORIGINAL  # type: ignore[attr-defined]
