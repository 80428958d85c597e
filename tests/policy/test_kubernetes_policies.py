"""The pack's rules on Kubernetes resources: each check called with the SDK's argument objects (one pass, one
violation at least), the policies that run them, then the cluster stack's registrations (Pulumi mocks) through
pulumi-policy's analyzer, as `pulumi preview --policy-pack policy --stack k8s` would run them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from policy import kubernetes as k
from policy import rules
from policy.props import is_secret, reveal
from tests.policy.conftest import secret
from tests.policy.crossguard import Res, analyze, analyzer, resource_args, stack_args, violations
from tests.program.harness import run_stack, stack_config

HARDENED_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534.0, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
        "name": "prometheus",
        "image": "prom/prometheus:v3.16.0",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": "/run/secrets/pw"}],
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "readinessProbe": {"httpGet": {"path": "/-/healthy", "port": 9090.0}},
        "livenessProbe": {"httpGet": {"path": "/-/healthy", "port": 9090.0}},
    }],
}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "prometheus", "namespace": "observability"},
              "spec": {"replicas": 2.0, "template": {"metadata": {"labels": {"service": "prometheus"}},
                                                     "spec": HARDENED_POD}}}
KNOWN_ADVISORIES: set[tuple[str, str]] = set()  # every cluster pod has both probes


@pytest.fixture
def deployment() -> dict[str, Any]:
    return copy.deepcopy(DEPLOYMENT)


def c0(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["template"]["spec"]["containers"][0]


def check(validate: Any, props: dict[str, Any], type_: str = k.DEPLOYMENT, **kw: Any) -> list[str]:
    return violations(validate, resource_args(type_, props, **kw))


@pytest.mark.parametrize("validate", [k.resources, k.capabilities, k.security_context, k.host_access, k.pinned_images,
                                      k.no_plain_secret_env, k.no_public_services, k.no_host_ports, k.retained_claims,
                                      k.probes])
def test_a_hardened_deployment_passes(deployment: dict, validate: Any) -> None:
    assert check(validate, deployment) == []


def test_missing_limits_and_requests_are_named(deployment: dict) -> None:
    del c0(deployment)["resources"]["limits"]
    del c0(deployment)["resources"]["requests"]["cpu"]
    [message] = check(k.resources, deployment)
    assert "limits.memory" in message and "requests.cpu" in message and "container prometheus" in message


@pytest.mark.parametrize("change,fragment", [
    (lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    (lambda d: c0(d)["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    (lambda d: c0(d)["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    (lambda d: c0(d)["securityContext"].update(runAsUser=0.0), "runAsUser is 0"),
])
def test_each_weakened_security_setting_is_a_violation(deployment: dict, change: Any, fragment: str) -> None:
    change(deployment)
    [message] = check(k.security_context, deployment)
    assert fragment in message


@pytest.mark.parametrize("change,fragment", [
    (lambda sc: sc.update(capabilities={"drop": ["NET_RAW"]}), "capabilities.drop"),
    (lambda sc: sc.update(privileged=True), "privileged"),
])
def test_kept_capabilities_are_a_violation(deployment: dict, change: Any, fragment: str) -> None:
    change(c0(deployment)["securityContext"])
    [message] = check(k.capabilities, deployment)
    assert fragment in message


def test_a_container_setting_overrides_the_pod_s(deployment: dict) -> None:
    c0(deployment)["securityContext"]["runAsNonRoot"] = False
    assert "runAsNonRoot" in check(k.security_context, deployment)[0]


def test_host_network_and_host_paths_are_violations(deployment: dict) -> None:
    pod = deployment["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["volumes"] = [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]
    [message] = check(k.host_access, deployment)
    assert "hostNetwork" in message and "hostPath volume sock" in message


@pytest.mark.parametrize("image", ["prom/prometheus", "prom/prometheus:latest"])
def test_unpinned_images_are_violations(deployment: dict, image: str) -> None:
    c0(deployment)["image"] = image
    assert len(check(k.pinned_images, deployment)) == 1


def test_a_plain_secret_in_env_is_a_violation_and_a_secret_value_is_not(deployment: dict) -> None:
    c0(deployment)["env"].append({"name": "SLACK_URL", "value": "https://hooks.slack.com/services/T0/B0/XXXX"})
    [message] = check(k.no_plain_secret_env, deployment)
    assert "env SLACK_URL" in message
    c0(deployment)["env"][-1]["value"] = secret("https://hooks.slack.com/services/T0/B0/XXXX")
    assert check(k.no_plain_secret_env, deployment) == []


def test_a_cronjob_s_pod_is_checked_too(deployment: dict) -> None:
    cron = {"spec": {"jobTemplate": {"spec": {"template": deployment["spec"]["template"]}}}}
    c0(deployment)["securityContext"]["readOnlyRootFilesystem"] = False
    assert len(check(k.security_context, cron, k.CRONJOB)) == 1


def test_config_maps_hold_no_secret_and_secrets_are_pulumi_secrets() -> None:
    plain = {"data": {"alertmanager.yml": "api_url: https://hooks.slack.com/services/T0/B0/XXXX\n"}}
    assert "ConfigMap svc holds a plain Slack webhook URL" in check(k.no_plain_secret_data, plain, k.CONFIG_MAP)[0]
    assert check(k.no_plain_secret_data, {"data": {"a.yml": "api_url_file: /etc/secret\n"}}, k.CONFIG_MAP) == []
    assert check(k.no_plain_secret_data, {"stringData": secret({"key": "v"})}, k.SECRET) == []
    assert check(k.no_plain_secret_data, {"stringData": {"key": secret("v")}}, k.SECRET) == []
    [message] = check(k.no_plain_secret_data, {"stringData": {"key": "v"}}, k.SECRET)
    assert "not Pulumi secrets" in message


def test_public_services_and_host_ports_need_the_stack_opt_in(deployment: dict) -> None:
    lb = {"spec": {"type": "LoadBalancer", "ports": [{"port": 3000.0}]}}
    assert "LoadBalancer" in check(k.no_public_services, lb, k.SERVICE)[0]
    assert check(k.no_public_services, lb, k.SERVICE, config={"allowPublicPorts": True}) == []
    assert check(k.no_public_services, {"spec": {"type": "ClusterIP"}}, k.SERVICE) == []
    c0(deployment)["ports"] = [{"containerPort": 9090.0, "hostPort": 9090.0}]
    assert "binds host ports [9090]" in check(k.no_host_ports, deployment)[0]
    assert check(k.no_host_ports, deployment, config={"allowPublicPorts": True}) == []


def test_a_statefulset_keeps_its_volume_claims() -> None:
    claims = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}
    assert check(k.retained_claims, claims, k.STATEFULSET) == []  # Kubernetes' default is Retain
    claims["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete"}
    assert "whenDeleted=Delete" in check(k.retained_claims, claims, k.STATEFULSET)[0]


def test_each_cluster_check_runs_under_the_docker_policy_it_extends() -> None:
    """The same rules, the same names and levels: a cluster stack gets no policy a Docker stack lacks."""
    by_policy = {"container-memory-limit": k.resources, "container-drop-all-capabilities": k.capabilities,
                 "container-no-new-privileges": k.security_context, "no-public-ports": k.no_public_services,
                 "images-pinned": k.pinned_images, "no-plain-secrets": k.no_plain_secret_data,
                 "data-volumes-protected": k.retained_claims, "container-healthcheck": k.probes}
    for name, check_ in by_policy.items():
        [policy] = [p for p in rules.POLICIES if p.name == name]
        assert check_ in policy._ResourceValidationPolicy__validate, name  # the SDK keeps the list private


def test_missing_probes_are_advisory_findings(deployment: dict) -> None:
    del c0(deployment)["livenessProbe"]
    [message] = check(k.probes, deployment)
    assert "livenessProbe" in message


def _deny(namespace: str) -> Res:
    return Res(k.NETWORK_POLICY, "default-deny", {"metadata": {"namespace": namespace},
                                                   "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})


def test_workloads_need_a_default_deny_in_their_namespace(deployment: dict) -> None:
    workload = Res(k.DEPLOYMENT, "prometheus", deployment)
    assert violations(k.default_deny, stack_args([workload, _deny("observability")])) == []
    [message] = violations(k.default_deny, stack_args([workload, _deny("elsewhere")]))
    assert "no default-deny NetworkPolicy" in message
    allow_all = _deny("observability")
    allow_all.props = {**allow_all.props, "spec": {**allow_all.props["spec"], "ingress": [{}]}}
    assert len(violations(k.default_deny, stack_args([workload, allow_all]))) == 1


def test_workloads_belong_to_components(deployment: dict) -> None:
    component = Res("observability:kubernetes:Service", "prometheus", {})
    inside = Res(k.DEPLOYMENT, "prometheus", deployment, parent=component.urn)
    assert violations(k.workloads_in_components, stack_args([component, inside])) == []
    assert len(violations(k.workloads_in_components, stack_args([Res(k.DEPLOYMENT, "x", deployment)]))) == 1


# --- the cluster stack through the analyzer ------------------------------------------------------------


def _analyze(run: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(stack_config("k8s")[0]))
    with analyzer() as servicer:
        return analyze(servicer, [Res(r.type, r.name, r.raw, r.parent, r.protect, r.urn) for r in run.resources])


def test_the_cluster_stack_passes_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_stack("k8s")
    found = _analyze(run, monkeypatch)
    assert [f"{d.policy} {d.urn.rsplit('::', 1)[-1]}: {d.message}" for d in found if d.level == "mandatory"] == []
    assert {(d.policy, d.urn.rsplit("::", 1)[-1]) for d in found if d.level == "advisory"} <= KNOWN_ADVISORIES
    assert len([r for r in run.resources if r.type in k.WORKLOADS]) == 8  # the pack really saw the workloads


def test_the_pack_flags_the_cluster_stack_s_secrets_once_their_markers_are_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_stack("k8s")
    secrets = [r for r in run.resources if r.type == k.SECRET]
    assert secrets and all(is_secret(r.raw["stringData"]) for r in secrets)
    for r in secrets:
        r.raw = {**r.raw, "stringData": reveal(r.raw["stringData"])}
    flagged = {d.urn.rsplit("::", 1)[-1] for d in _analyze(run, monkeypatch) if d.policy == "no-plain-secrets"}
    assert flagged == {r.name for r in secrets}
