"""What a secret-looking value and a pinned image reference look like (pure functions)."""

from __future__ import annotations

import re
from typing import Final

_SLACK_WEBHOOK: Final = re.compile(r"https://hooks\.slack\.com/(services|workflows|triggers)/[A-Za-z0-9/_-]+")
_KEYED_SECRET: Final = re.compile(
    r"""(?ix)
    (?<![A-Za-z0-9])(password|passwd|api[_-]?key|apikey|secret[_-]?access[_-]?key|access[_-]?token|auth[_-]?token
       |secret|token|routing[_-]?key|service[_-]?key|integration[_-]?key)
    ["']?\s*[:=]\s*["']?
    (?P<value>[^\s"',}]+)
    """
)
_HEX32: Final = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32}(?![0-9A-Za-z])")
_AWS_KEY_ID: Final = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_PRIVATE_KEY: Final = re.compile(r"-----BEGIN ([A-Z]+ )?PRIVATE KEY-----")
# A keyed value that only points at where the secret is: a file, an env/template reference.
_INDIRECT: Final = re.compile(r"^(\$__file\{|\$__env\{|\$\{|\{\{|/|<|\[redacted\]$|\*+$)")
_SECRET_ENV_NAME: Final = re.compile(
    r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|ROUTING_KEY|SERVICE_KEY|WEBHOOK)"
)


def secret_findings(text: str) -> list[str]:
    """Names of the kinds of secret ``text`` appears to contain in plain (empty when none)."""
    found: list[str] = []
    if _SLACK_WEBHOOK.search(text):
        found.append("Slack webhook URL")
    if _AWS_KEY_ID.search(text):
        found.append("AWS access key id")
    if _PRIVATE_KEY.search(text):
        found.append("private key")
    for match in _KEYED_SECRET.finditer(text):
        value = match.group("value")
        if not _INDIRECT.match(value):
            found.append(f"{match.group(1).lower()} value")
            break
    if _HEX32.search(text) and (re.fullmatch(r"\s*[0-9a-f]{32}\s*", text) or re.search(
            r"(?i)(routing|service|integration|pagerduty)[_-]?key", text)):
        found.append("PagerDuty routing key")
    return found


def env_findings(entry: str) -> list[str]:
    """Secret kinds in one ``NAME=value`` environment entry (``*_FILE`` names only point at files)."""
    name, sep, value = entry.partition("=")
    if not sep:
        return []
    found = secret_findings(value)
    if (value and _SECRET_ENV_NAME.search(name) and not name.upper().endswith("_FILE")
            and not _INDIRECT.match(value) and not found):
        found.append(f"value of {name}")
    return found


# --- image references ---------------------------------------------------------------------

_DIGEST: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; tag/digest None when absent."""
    name, _, digest = ref.partition("@")
    repo, tag = name, None
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:
        repo, tag = head, tail
    return repo, tag, digest or None


def image_problem(ref: str) -> str | None:
    """Why ``ref`` is not pinned (None when it is pinned by a tag other than latest, or a digest)."""
    if _DIGEST.match(ref):
        return None  # an image id (content address), e.g. RemoteImage.image_id
    repo, tag, digest = split_image(ref)
    if not repo:
        return f"image {ref!r} has no repository"
    if digest is not None:
        return None if _DIGEST.match(digest) else f"image {ref!r} has a malformed digest"
    if tag is None:
        return f"image {ref!r} is untagged (pulls latest): pin a tag such as :v1.2.3 or a digest"
    if tag == "latest":
        return f"image {ref!r} uses the moving tag latest: pin a version tag or a digest"
    if not _TAG.match(tag):
        return f"image {ref!r} has a malformed tag"
    return None
