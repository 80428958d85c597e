"""The version tested is the version deployed: image tags in the stack config equal the pinned builds' --version."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from config.settings import STACKS, declared_config, image_tag, stack_file_values
from tests.tools import parse, pinned_tools

# image key -> (pinned tool, the command that makes the binary print its version)
TESTED_IMAGES = {
    "prometheusImage": ("prometheus", ["--version"]),
    "alertmanagerImage": ("alertmanager", ["--version"]),
    "jaegerImage": ("jaeger", ["version"]),
}
COMPANIONS = {"promtool": ["--version"], "amtool": ["--version"]}


def _bare(version: str) -> str:
    return version.removeprefix("v")


def reported_version(path: str, argv: list[str]) -> str:
    """The release a binary says it is: `NAME, version X (...)` (Prometheus projects) or Jaeger's JSON."""
    done = subprocess.run([path, *argv], capture_output=True, text=True, timeout=60)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    match = re.search(r", version (\S+)", text)
    if match:
        return _bare(match.group(1))
    return _bare(json.loads(done.stdout)["gitVersion"])  # Jaeger: one JSON object on stdout


def test_tools_lines_are_name_version_path() -> None:
    tools = parse("prometheus v3.16.0 /cache/prometheus-v3.16.0/prometheus\n")
    assert tools["prometheus"].version == "v3.16.0" and tools["prometheus"].path.endswith("/prometheus")


@pytest.mark.parametrize("key", sorted(TESTED_IMAGES))
def test_the_default_image_tag_is_the_version_the_tests_run(key: str) -> None:
    tool, argv = TESTED_IMAGES[key]
    built = pinned_tools()[tool]
    _, tag, _ = image_tag(declared_config()[key]["default"])
    assert tag is not None and _bare(tag) == _bare(built.version), (
        f"Pulumi.yaml {key} is {tag} but scripts/tools.sh builds {tool} {built.version}: move both together")
    assert reported_version(built.path, argv) == _bare(built.version)


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_deploys_an_untested_version(stack: str) -> None:
    values, _ = stack_file_values(stack)
    tools = pinned_tools()
    for key, (tool, _) in TESTED_IMAGES.items():
        if key in values:
            _, tag, _ = image_tag(values[key])
            assert tag is not None and _bare(tag) == _bare(tools[tool].version), (stack, key, values[key])


@pytest.mark.parametrize("name", sorted(COMPANIONS))
def test_the_command_line_tools_come_from_the_same_release(name: str) -> None:
    tools = pinned_tools()
    server = {"promtool": "prometheus", "amtool": "alertmanager"}[name]
    assert tools[name].version == tools[server].version
    assert reported_version(tools[name].path, COMPANIONS[name]) == _bare(tools[server].version)
