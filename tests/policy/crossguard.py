"""Drives the policy pack the way `pulumi preview --policy-pack` does, without the CLI.

Two levels: `resource_args`/`stack_args` build the SDK's real argument objects from
serialized properties (the engine's wire form), decoded exactly as the analyzer decodes them;
`Analyzer` feeds real `AnalyzeRequest`/`AnalyzeStackRequest` protobufs to pulumi-policy's own
analyzer servicer, with the pack's secret markers installed as `policy/__main__.py` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import unknown_checking_proxy

from policy import rules, secret_markers

STACK_URN = "urn:pulumi:dev::observability::pulumi:pulumi:Stack::observability-dev"


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:dev::observability::{type_}::{name}"


def decode(serialized: Mapping[str, Any]) -> Mapping[str, Any]:
    """Properties as a validation sees them: wire form -> SDK objects, secrets kept as markers."""
    return unknown_checking_proxy(secret_markers.deserialize_keeping_secrets(dict(serialized)))


def options(protect: bool = False, parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def resource_args(type_: str, props: Mapping[str, Any], name: str = "svc", protect: bool = False,
                  config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_, decode(props), urn(type_, name), name, options(protect), None,
                                  dict(config) if config is not None else None)


def violations(validate: Any, args: Any) -> list[str]:
    """Messages a validate function reports for `args`."""
    found: list[str] = []
    validate(args, lambda message, urn=None: found.append(message))
    return found


@dataclass
class Res:
    """A registered resource in wire form (what the mock harness records, or a hand-built one)."""


    type: str
    name: str
    props: Mapping[str, Any]
    parent: str | None = None
    protect: bool = False
    urn: str = ""

    def __post_init__(self) -> None:
        self.urn = self.urn or urn(self.type, self.name)


def stack_args(resources: Iterable[Res]) -> StackValidationArgs:
    """StackValidationArgs with parents linked to resource objects, as AnalyzeStack does."""
    built = {r.urn: (r, PolicyResource(r.type, decode(r.props), r.urn, r.name, options(r.protect, r.parent),
                                       None, None, [], {})) for r in resources}
    for res, policy_resource in built.values():
        if res.parent in built:
            policy_resource.parent = built[res.parent][1]
    return StackValidationArgs([pr for _, pr in built.values()])


# --- the real analyzer servicer -----------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str  # "mandatory" | "advisory"
    urn: str
    message: str


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(props), struct_pb2.Struct())


def _diagnostics(response: Any, resource_urn: str = "") -> list[Diagnostic]:
    """Diagnostics of a response; a resource validation's carry the analyzed resource's URN."""
    levels = {analyzer_pb2.MANDATORY: "mandatory", analyzer_pb2.ADVISORY: "advisory"}
    return [Diagnostic(d.policyName, levels.get(d.enforcementLevel, str(d.enforcementLevel)),
                       d.urn or resource_urn, d.message)
            for d in response.diagnostics]


@contextmanager
def analyzer() -> Iterator[_PolicyAnalyzerServicer]:
    """pulumi-policy's analyzer servicer for the pack, with the pack's secret markers installed."""
    secret_markers.install()
    try:
        from pulumi_policy import EnforcementLevel
        yield _PolicyAnalyzerServicer("observability-policies", "0.1.0", rules.POLICIES, EnforcementLevel.MANDATORY)
    finally:
        secret_markers.uninstall()


def analyze(servicer: _PolicyAnalyzerServicer, resources: Iterable[Res]) -> list[Diagnostic]:
    """Every diagnostic of Analyze (per resource) and AnalyzeStack (once) over `resources`."""
    resources = list(resources)
    found: list[Diagnostic] = []
    for r in resources:
        request = analyzer_pb2.AnalyzeRequest(
            type=r.type, name=r.name, urn=r.urn, properties=_struct(r.props),
            options=analyzer_pb2.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or ""))
        found += _diagnostics(servicer.Analyze(request, None), r.urn)
    stack_request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            type=r.type, name=r.name, urn=r.urn, properties=_struct(r.props), parent=r.parent or "",
            options=analyzer_pb2.AnalyzerResourceOptions(protect=r.protect, parent=r.parent or ""))
        for r in resources])
    found += _diagnostics(servicer.AnalyzeStack(stack_request, None))
    return found
