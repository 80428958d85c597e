"""The pinned server builds the tests and benchmarks run: `scripts/tools.sh`'s `NAME VERSION PATH` lines.

Prometheus, promtool, Alertmanager, amtool, Jaeger and actionlint are built from their Go modules
at the versions the stack deploys; nothing here falls back to whatever happens to be on PATH, so
a test never passes on a version we do not ship.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS_SCRIPT = REPO / "scripts" / "tools.sh"


class ToolsUnavailable(RuntimeError):
    """scripts/tools.sh could not provide the pinned builds; the message is its own."""


@dataclass(frozen=True)
class Tool:
    name: str
    version: str  # the release, as upstream tags it: v3.16.0
    path: str


def parse(lines: str) -> dict[str, Tool]:
    """`NAME VERSION PATH` lines -> tools by name."""
    tools: dict[str, Tool] = {}
    for line in lines.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) != 3:
            raise ToolsUnavailable(f"unexpected line from {TOOLS_SCRIPT.name}: {line!r} (expected NAME VERSION PATH)")
        tools[parts[0]] = Tool(*parts)
    return tools


@functools.cache
def pinned_tools() -> dict[str, Tool]:
    """Every pinned tool, building what is missing (once per machine; seconds when cached)."""
    proc = subprocess.run(["bash", str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise ToolsUnavailable(f"bash scripts/tools.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return parse(proc.stdout)


def pinned(name: str) -> str:
    """Path of the pinned build of `name` (prometheus, promtool, alertmanager, amtool, jaeger, actionlint)."""
    tools = pinned_tools()
    if name not in tools:
        raise ToolsUnavailable(f"{name} is not one of the pinned tools: {', '.join(sorted(tools))}")
    path = tools[name].path
    if not Path(path).is_file():
        raise ToolsUnavailable(f"{path} is missing: remove its folder and run `bash scripts/tools.sh` again")
    return path


def require(name: str) -> str:
    """`pinned(name)` in a test: a build that cannot be had fails the test with the reason, never skips it."""
    try:
        return pinned(name)
    except ToolsUnavailable as exc:
        import pytest

        pytest.fail(f"the pinned {name} is not available: {exc}", pytrace=False)


def check_rendered_prometheus(prometheus_dir: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check config --lint=all --lint-fatal` on a rendered prometheus.yml with its rules.

    The config names the rules by their container path; a copy in ``workdir`` names the rendered
    files beside it instead, so the same rules are checked (duplicates and bad names fail too).
    """
    import yaml

    config = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text())
    config["rule_files"] = [str(prometheus_dir / "rules" / "*.yml")]
    local = workdir / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    return subprocess.run([require("promtool"), "check", "config", "--lint=all", "--lint-fatal", str(local)],
                          capture_output=True, text=True)


def check_rendered_alertmanager(alertmanager_dir: Path) -> subprocess.CompletedProcess[str]:
    """`amtool check-config` on a rendered alertmanager.yml."""
    return subprocess.run([require("amtool"), "check-config", str(alertmanager_dir / "alertmanager.yml")],
                          capture_output=True, text=True)
