"""The cluster stack (Pulumi.k8s.yaml) under Pulumi mocks: workloads, HA wiring, hardening, NetworkPolicies, secrets.

Every registered Kubernetes object is also validated against the newest Kubernetes JSON schema that
kubernetes-validate bundles, in strict mode (no field the API does not know).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.kubernetes import file_key
from config import registry
from config.alertmanager import CLUSTER_PORT
from config.logshipper import relabel_rules
from config.prometheus import REPLICA_LABEL
from config.settings import K8S_STACKS, STACKS, from_values, stack_file_values
from tests.logs.alloy_syntax import Call, Concat, parse
from tests.program import harness

NS = "observability"
WORKLOADS = harness.WORKLOADS
DEPLOYMENT, STATEFULSET, DAEMONSET = WORKLOADS
SERVICE, CONFIG_MAP, SECRET = "kubernetes:core/v1:Service", "kubernetes:core/v1:ConfigMap", "kubernetes:core/v1:Secret"
NETPOL, PDB = "kubernetes:networking.k8s.io/v1:NetworkPolicy", "kubernetes:policy/v1:PodDisruptionBudget"
# what Pulumi.k8s.yaml asks for: kind and replicas of each service
EXPECTED = {
    "prometheus": (STATEFULSET, 2), "alertmanager": (STATEFULSET, 3), "loki": (STATEFULSET, 3),
    "jaeger": (DEPLOYMENT, 2), "grafana": (DEPLOYMENT, 2), "mime-server": (DEPLOYMENT, 2),
    "mockup-gateway": (DEPLOYMENT, 2), "alloy": (DAEMONSET, None),
}


@lru_cache(maxsize=None)
def run(stack: str = "k8s") -> harness.ProgramRun:
    return harness.run_stack(stack)


def k8s_objects(r: harness.ProgramRun) -> list[harness.Registration]:
    return [x for x in r.resources if x.type.startswith("kubernetes:")]


def workloads(r: harness.ProgramRun) -> dict[str, harness.Registration]:
    return {x.name: x for x in r.resources if x.type in WORKLOADS}


def one(r: harness.ProgramRun, type_: str, name: str) -> harness.Registration:
    [found] = [x for x in r.resources if x.type == type_ and x.name == name]
    return found


def pod(w: harness.Registration) -> dict[str, Any]:
    return w.inputs["spec"]["template"]["spec"]


def container(w: harness.Registration) -> dict[str, Any]:
    [c] = pod(w)["containers"]
    return c


def config_file(r: harness.ProgramRun, service: str, path: str) -> str:
    return one(r, CONFIG_MAP, f"{service}-config").inputs["data"][file_key(path)]


def test_k8s_is_a_cluster_stack_and_the_docker_stacks_stay_docker():
    assert K8S_STACKS == ("k8s",)
    assert stack_file_values("k8s")[0]["platform"] == "kubernetes"
    assert all(stack_file_values(s)[0].get("platform", "docker") == "docker" for s in STACKS)


def test_each_service_is_one_workload_of_the_expected_kind_and_replicas():
    r = run()
    found = {name: (w.type, w.inputs["spec"].get("replicas")) for name, w in workloads(r).items()}
    assert found == EXPECTED
    assert r.containers == {}  # no Docker container on a cluster
    components = {c.name for c in r.by_type("observability:kubernetes:Service")}
    assert components == set(EXPECTED)  # the same component names as the Docker services


def test_same_stack_outputs_as_docker_plus_the_namespace():
    r, docker = run(), run("prod")
    assert set(r.outputs) == set(docker.outputs) | {"namespace"}
    assert r.outputs["containers"]["alertmanager"] == "statefulset/alertmanager"
    assert r.outputs["urls"]["grafana"] == f"http://grafana.{NS}.svc:3000"
    assert r.outputs["mime_storage_volume"] == "s3://observability-k8s/mime-storage/"
    assert {"grafana_admin_password", "gateway_api_key"} <= r.secret_outputs


def test_images_are_pinned_and_the_built_ones_pushed_to_the_registry():
    r = run()
    [image] = r.by_type("docker:index/image:Image")
    assert image.inputs["imageName"].startswith("registry.example.internal/observability/observability/mime-server:")
    assert image.inputs["skipPush"] is False
    for name, w in workloads(r).items():
        ref = container(w)["image"]
        assert ":" in ref.rsplit("/", 1)[-1] and not ref.endswith(":latest"), (name, ref)


def test_alertmanager_is_a_three_peer_gossip_cluster_with_stable_names():
    r = run()
    am = workloads(r)["alertmanager"]
    assert am.inputs["spec"]["serviceName"] == "alertmanager-headless"
    args = container(am)["args"]
    peers = [a.split("=", 1)[1] for a in args if a.startswith("--cluster.peer=")]
    assert peers == [f"alertmanager-{i}.alertmanager-headless.{NS}.svc:{CLUSTER_PORT}" for i in range(3)]
    assert f"--cluster.listen-address=0.0.0.0:{CLUSTER_PORT}" in args
    assert f"--cluster.advertise-address=$(POD_IP):{CLUSTER_PORT}" in args
    env = {e["name"]: e for e in container(am)["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    headless = one(r, SERVICE, "alertmanager-headless").inputs["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {(p["port"], p["protocol"]) for p in headless["ports"]} >= {(CLUSTER_PORT, "TCP"), (CLUSTER_PORT, "UDP")}


def test_receiver_secrets_are_secret_volumes_read_through_files():
    r = run()
    am = workloads(r)["alertmanager"]
    secret = one(r, SECRET, "alertmanager-secrets")
    mounts = {m["mountPath"]: m for m in container(am)["volumeMounts"]}
    for path in ("/etc/alertmanager/secrets/slack-alerts-url", "/etc/alertmanager/secrets/slack-ops-critical-url",
                 "/etc/alertmanager/secrets/pagerduty-routing-key"):
        assert mounts[path]["subPath"] in secret.inputs["stringData"]
        assert mounts[path]["readOnly"] is True
    volume = next(v for v in pod(am)["volumes"] if v["name"] == "secrets")
    assert volume["secret"] == {"secretName": "alertmanager-secrets", "defaultMode": 0o440}
    config = yaml.safe_load(config_file(r, "alertmanager", "/etc/alertmanager/alertmanager.yml"))
    assert config["receivers"][0]["slack_configs"][0]["api_url_file"] == "/etc/alertmanager/secrets/slack-ops-critical-url"


def test_prometheus_pair_labels_each_replica_drops_the_label_from_alerts_and_sends_to_every_alertmanager_pod():
    r = run()
    prom = workloads(r)["prometheus"]
    config = yaml.safe_load(config_file(r, "prometheus", "/etc/prometheus/prometheus.yml"))
    assert config["global"]["external_labels"][REPLICA_LABEL] == "${POD_NAME}"
    env = {e["name"]: e for e in container(prom)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": REPLICA_LABEL}]
    [am] = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == [f"alertmanager-{i}.alertmanager-headless.{NS}.svc:9093"
                                                  for i in range(3)]
    # every pod of every scraped service, found in the namespace; the same job names and labels as Docker
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {s.name for s in registry.enabled_services(registry_settings()) if s.metrics}
    for name, job in jobs.items():
        [sd] = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NS]
        assert sd["selectors"] == [{"role": "pod", "label": f"service={name},stack=k8s"}]
        targets = {rule.get("target_label"): rule.get("replacement") for rule in job["relabel_configs"]}
        assert targets["service"] == name and targets["env"] == "k8s"
    role = one(r, "kubernetes:rbac.authorization.k8s.io/v1:Role", "prometheus").inputs
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert pod(prom)["automountServiceAccountToken"] is True
    assert pod(workloads(r)["grafana"])["automountServiceAccountToken"] is False


def registry_settings():
    values, secrets = stack_file_values("k8s")
    return from_values("k8s", values, set(harness.K8S_SECRETS))


def test_loki_is_a_ring_on_object_storage_with_credentials_from_a_file():
    r = run()
    loki = yaml.safe_load(config_file(r, "loki", "/etc/loki/loki.yaml"))
    assert loki["common"]["storage"]["s3"]["bucketnames"] == "observability-k8s"
    assert "access_key_id" not in json.dumps(loki) and "secret_access_key" not in json.dumps(loki)
    assert loki["schema_config"]["configs"][0]["object_store"] == "s3"
    assert loki["common"]["replication_factor"] == 3
    assert loki["memberlist"]["join_members"] == [f"loki-headless.{NS}.svc:7946"]
    env = {e["name"]: e.get("value") for e in container(workloads(r)["loki"])["env"]}
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/etc/loki/secrets/aws-credentials"


def test_mime_server_runs_on_the_s3_backend_with_its_interface():
    w = workloads(run())["mime-server"]
    args = container(w)["args"]
    flags = dict(zip(args[::1], args[1::1]))
    assert flags["--storage-backend"] == "s3" and flags["--s3-bucket"] == "observability-k8s"
    assert flags["--s3-prefix"] == "mime-storage/" and flags["--s3-endpoint"] == "https://s3.storage.example.internal"
    assert "--storage" not in args
    env = {e["name"]: e.get("value") for e in container(w)["env"]}
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == "/run/secrets/aws-credentials"
    assert "volumeClaimTemplates" not in w.inputs["spec"]


def test_jaeger_is_stateless_over_opensearch_with_its_password_in_a_file():
    r = run()
    config = yaml.safe_load(config_file(r, "jaeger", "/etc/jaeger/config.yaml"))
    backend = config["extensions"]["jaeger_storage"]["backends"]["opensearch"]["opensearch"]
    assert backend["server_urls"] == ["https://opensearch.storage.example.internal:9200"]
    assert backend["auth"]["basic"] == {"username": "jaeger", "password_file": "/etc/jaeger/secrets/storage-password"}
    assert workloads(r)["jaeger"].type == DEPLOYMENT


def test_grafana_replicas_share_the_database_read_from_a_file():
    w = workloads(run())["grafana"]
    env = {e["name"]: e.get("value") for e in container(w)["env"]}
    assert env["GF_DATABASE_URL__FILE"] == "/run/secrets/database-url"
    assert "volumeClaimTemplates" not in w.inputs["spec"]


def test_alloy_tails_this_node_s_pods_with_the_docker_stream_labels():
    r = run()
    text = config_file(r, "alloy", "/etc/alloy/config.alloy")
    root = parse(text)
    [selectors] = root.component("discovery.kubernetes", "pods").children("selectors")
    assert selectors.attrs["field"] == Concat(("spec.nodeName=", Call("sys.env", ("NODE_NAME",))))
    source = root.component("loki.source.kubernetes", "pods")
    assert source.attrs["targets"].path == "discovery.relabel.pods.output"
    rules = root.component("discovery.relabel", "pods").children("rule")
    targets = [rule.attrs.get("target_label") for rule in rules]
    assert targets == [None, "service", "container", "env"]  # keep this stack, then the same three labels
    assert [r.target_label for r in relabel_rules(registry_settings())] == targets
    alloy = workloads(r)["alloy"]
    assert not pod(alloy).get("hostNetwork") and all("hostPath" not in v for v in pod(alloy)["volumes"])
    env = {e["name"]: e for e in container(alloy)["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    role = one(r, "kubernetes:rbac.authorization.k8s.io/v1:Role", "alloy").inputs
    assert role["rules"][0]["resources"] == ["pods", "pods/log"]


def test_every_pod_is_hardened_with_requests_limits_and_probes_from_the_registry():
    r = run()
    settings = registry_settings()
    for name, w in workloads(r).items():
        p, c = pod(w), container(w)
        assert p["securityContext"]["runAsNonRoot"] is True and p["securityContext"]["runAsUser"] > 0, name
        assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        memory = f"{settings.service(name).memory_mb}Mi"
        assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"] == memory, name
        assert c["resources"]["requests"]["cpu"], name
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), name
        health = registry.service(name).health
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": health.path, "port": health.port}, (name, probe)
        ports = {p["containerPort"] for p in c["ports"]}
        assert {p.number for p in registry.listening_ports(registry.service(name))} == ports, name
        labels = w.inputs["spec"]["template"]["metadata"]["labels"]
        assert (labels["service"], labels["env"], labels["stack"]) == (name, "k8s", "k8s"), name
    namespace = one(r, "kubernetes:core/v1:Namespace", "namespace")
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace.protect


def test_replicas_spread_over_nodes_and_keep_one_out_at_most():
    r = run()
    budgets = {x.name: x.inputs["spec"] for x in r.by_type(PDB)}
    assert set(budgets) == {n for n, (_, replicas) in EXPECTED.items() if replicas and replicas > 1}
    assert "mockup-gateway" in budgets
    for name, spec in budgets.items():
        assert spec["maxUnavailable"] == 1 and spec["selector"]["matchLabels"] == {"service": name, "stack": "k8s"}
    for name, w in workloads(r).items():
        if w.type != DAEMONSET:
            [spread] = pod(w)["topologySpreadConstraints"]
            assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1, name


def _allowed(policy: dict[str, Any], direction: str) -> set[tuple[str, int, str]]:
    """(peer service, port, protocol) a policy allows in one direction; peers outside the stack by their kind."""
    rules = policy["spec"].get(direction) or []
    found = set()
    for rule in rules:
        for peer in rule.get("from" if direction == "ingress" else "to", []):
            who = (peer.get("podSelector", {}).get("matchLabels", {}).get("service")
                   or ("dns" if "namespaceSelector" in peer else "outside"))
            found |= {(who, p["port"], p["protocol"]) for p in rule["ports"]}
    return found


def test_network_policies_deny_by_default_and_allow_the_data_flow_scrape_and_peer_edges():
    r = run()
    policies = {x.name: x.inputs for x in r.by_type(NETPOL)}
    deny = policies.pop("default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert set(policies) == set(EXPECTED)
    mime_in = _allowed(policies["mime-server"], "ingress")
    assert mime_in == {("mockup-gateway", 8080, "TCP"), ("prometheus", 8080, "TCP")}
    assert ("alertmanager", 9093, "TCP") in _allowed(policies["prometheus"], "egress")
    gossip = {("alertmanager", CLUSTER_PORT, "TCP"), ("alertmanager", CLUSTER_PORT, "UDP")}
    assert gossip <= _allowed(policies["alertmanager"], "ingress")
    assert ("outside", 443, "TCP") in _allowed(policies["alertmanager"], "egress")  # Slack, PagerDuty
    assert ("jaeger", 4318, "TCP") in _allowed(policies["mime-server"], "egress")
    assert ("loki", 3100, "TCP") in _allowed(policies["alloy"], "egress")
    assert ("dns", 53, "UDP") in _allowed(policies["grafana"], "egress")
    assert not any(who == "grafana" for who, _, _ in mime_in)  # nothing the registry does not name
    # every flow of the registry is allowed at both ends
    for flow in registry.flows(registry_settings()):
        for port in flow.ports:
            edge = (port.number, port.protocol)
            assert (flow.source, *edge) in _allowed(policies[flow.target], "ingress"), flow
            assert (flow.target, *edge) in _allowed(policies[flow.source], "egress"), flow


def test_no_secret_appears_in_plaintext_in_any_kubernetes_object():
    r = run()
    secrets = list(harness.K8S_SECRETS.values())
    generated = [f"generated-{n}-0123456789abcdef" for n in ("grafana-admin-password", "gateway-api-key")]
    wrapped = harness.wrapped_secrets(r, secrets + generated)
    assert set(secrets + generated) <= wrapped  # every secret reached a Secret object, wrapped
    for cm in r.by_type(CONFIG_MAP):
        for value in cm.inputs["data"].values():
            assert not any(s in value for s in secrets + generated)


# --- the Kubernetes API's own schema -----------------------------------------------------------------


def newest_schema() -> str:
    return kubernetes_validate.utils.latest_version()


def test_the_newest_bundled_schema_is_kubernetes_1_37():
    assert newest_schema().startswith("1.37")


def test_every_registered_kubernetes_object_is_valid_in_strict_mode():
    objects = k8s_objects(run())
    assert len(objects) >= 60
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj.inputs, newest_schema(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj.type} {obj.name}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert errors == []


def test_strict_validation_rejects_a_field_the_api_does_not_know():
    w = workloads(run())["prometheus"]
    broken = json.loads(json.dumps(w.inputs))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFs"):
        kubernetes_validate.validate(broken, newest_schema(), strict=True)


def test_mime_server_s_tmp_holds_the_largest_upload_of_every_upstream_connection():
    """On an object store, bodies past the memory budget spill to /tmp: its size limit must hold them,
    or the kubelet evicts the pod where a 507 was due."""
    from config.workload import MIME_SERVER
    from mime_server.limits import POOL_CONNECTIONS

    values, _ = stack_file_values("k8s")
    settings = from_values("k8s", values, set(harness.K8S_SECRETS))
    tmp = MIME_SERVER.container(settings).tmpfs["/tmp"]
    size_mb = int(tmp.rsplit("size=", 1)[1].rstrip("m"))
    assert size_mb * 1024 * 1024 >= settings.mime_server_max_upload_bytes * (POOL_CONNECTIONS + 16)
