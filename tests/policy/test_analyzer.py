"""The pack as CrossGuard runs it: pulumi-policy's analyzer servicer in-process, and the real pack server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import rules, secret_markers
from tests.policy.conftest import secret
from tests.policy.crossguard import Res, analyze, analyzer, urn

POLICY_DIR = Path(rules.__file__).resolve().parent
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"


def _with_secret_upload(container: dict[str, Any]) -> dict[str, Any]:
    container["uploads"] = secret(container["uploads"] + [{"file": "/run/secrets/slack", "content": SLACK}])
    return container


def _in_component(name: str, container: dict[str, Any]) -> list[Res]:
    component = Res("observability:monitoring:Monitoring", "monitoring", {})
    return [component, Res(rules.CONTAINER, name, container, parent=component.urn)]


def test_compliant_container_gets_no_diagnostic(container: dict) -> None:
    with analyzer() as servicer:
        assert analyze(servicer, _in_component("prometheus", container)) == []


def test_secret_upload_passes_only_because_the_pack_keeps_secret_markers(container: dict) -> None:
    resources = _in_component("alertmanager", _with_secret_upload(container))
    with analyzer() as servicer:
        assert analyze(servicer, resources) == []
    # Without the pack's deserializer the SDK hands the plaintext over and the upload looks plain.
    from pulumi_policy import EnforcementLevel
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    secret_markers.uninstall()
    bare = _PolicyAnalyzerServicer("p", "0.1.0", rules.POLICIES, EnforcementLevel.MANDATORY)
    assert [d.policy for d in analyze(bare, resources)] == ["no-plain-secrets"]


def test_violations_come_back_mandatory_or_advisory(container: dict) -> None:
    container["ports"][0]["ip"] = "0.0.0.0"
    del container["healthcheck"]
    with analyzer() as servicer:
        found = {(d.policy, d.level) for d in analyze(servicer, [Res(rules.CONTAINER, "grafana", container)])}
    assert found == {("no-public-ports", "mandatory"), ("container-healthcheck", "advisory"),
                     ("containers-in-components", "mandatory")}


def test_protect_option_reaches_the_volume_policy() -> None:
    volume = {"name": "dev_loki_data", "labels": [{"label": "data", "value": "true"}]}
    with analyzer() as servicer:
        assert analyze(servicer, [Res(rules.VOLUME, "loki-data", volume, protect=True)]) == []
        assert [d.policy for d in analyze(servicer, [Res(rules.VOLUME, "loki-data", volume)])] == [
            "data-volumes-protected"]


def test_stack_config_from_the_engine_opts_in_to_public_ports(container: dict,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    container["ports"][0]["ip"] = "0.0.0.0"
    resources = _in_component("grafana", container)
    with analyzer() as servicer:
        monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"observability:allowPublicPorts": "false"}))
        assert [d.policy for d in analyze(servicer, resources)] == ["no-public-ports"]
        monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"observability:allowPublicPorts": "true"}))
        assert analyze(servicer, resources) == []


def test_unknown_value_in_preview_is_reported_not_passed(container: dict) -> None:
    container["memory"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    with analyzer() as servicer:
        found = analyze(servicer, _in_component("grafana", container))
    assert [(d.policy, d.level) for d in found] == [("container-memory-limit", "advisory")]
    assert "can't run policy" in found[0].message


def test_pack_server_starts_like_the_analyzer_starts_it(tmp_path: Path) -> None:
    """`python -m pulumi.policy ENGINE DIR` is how the Python policy analyzer runs a pack."""
    pack = tmp_path / "any-folder-name"
    pack.mkdir()
    for f in POLICY_DIR.glob("*.py"):
        (pack / f.name).write_text(f.read_text())
    env = dict(os.environ, PULUMI_CONFIG=json.dumps({"observability:allowPublicPorts": "false"}))
    proc = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(pack)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
        assert port.isdigit(), proc.stderr.read().decode()  # type: ignore[union-attr]
        stub = analyzer_pb2_grpc.AnalyzerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        assert info.name == "observability-policies"
        assert {p.name for p in info.policies} == {p.name for p in rules.POLICIES}
        props = json_format.ParseDict({"uploads": secret([{"file": "/run/secrets/slack", "content": SLACK}]),
                                       "envs": [f"SLACK_URL={SLACK}"], "memory": 64.0,
                                       "capabilities": {"drops": ["ALL"]},
                                       "securityOpts": ["no-new-privileges:true"],
                                       "ports": [{"internal": 3000.0, "external": 3000.0, "ip": "0.0.0.0"}],
                                       "restart": "unless-stopped", "logDriver": "local",
                                       "healthcheck": {"tests": ["CMD", "true"]}}, struct_pb2.Struct())
        response = stub.Analyze(analyzer_pb2.AnalyzeRequest(
            type=rules.CONTAINER, name="grafana", urn=urn(rules.CONTAINER, "grafana"), properties=props), timeout=30)
        assert sorted(d.policyName for d in response.diagnostics) == ["no-plain-secrets", "no-public-ports"]
        [plain] = [d.message for d in response.diagnostics if d.policyName == "no-plain-secrets"]
        assert "env SLACK_URL" in plain and "/run/secrets/slack" not in plain  # the secret upload passed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
