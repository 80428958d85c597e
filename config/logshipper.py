"""Log shipper configs: Grafana Alloy (config.alloy, the default) and Promtail (promtail.yaml).

Both read container logs through the Docker API (socket mounted read-only), keep only this
stack's containers, and push to Loki with the stream labels the runbook's queries use:
`service`, `container` (the service name, from the container's `service` label, so it carries
no stack prefix), `env`, and `level` parsed from the JSON line. High-cardinality fields
(trace_id, request_id, span_id) stay in the line, where `| json` finds them.

The Docker API already unwraps the json-file driver's {"log", "stream", "time"} envelope, so
neither pipeline needs a `docker` stage. One data model (`RELABEL_RULES`, `JSON_FIELDS`,
`LINE_LABELS`) feeds both renderers, so the two shippers cannot drift apart.

On a cluster Alloy runs as a DaemonSet and each pod tails, through the Kubernetes API, the logs
of this stack's pods on its own node (no host path, no root): the pods carry the same `service`,
`env` and `stack` labels the Docker containers carry, so the same rules give the same four stream
labels and every query and dashboard works unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from config.loki import PUSH_URL
from config.services import NODE_NAME_ENV, Container, Endpoint, HostPath, MetaAlert, Service
from config.settings import StackSettings

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_HOST = f"unix://{DOCKER_SOCKET}"
ALLOY_CONFIG_ROOT = "/etc/alloy"
ALLOY_CONFIG_PATH = f"{ALLOY_CONFIG_ROOT}/config.alloy"
ALLOY_PORT = 12345
ALLOY_STORAGE_PATH = "/tmp/alloy"  # positions and WAL: only what is re-read after a restart is lost
PROMTAIL_CONFIG_ROOT = "/etc/promtail"
PROMTAIL_CONFIG_PATH = f"{PROMTAIL_CONFIG_ROOT}/promtail.yaml"
PROMTAIL_PORT = 9080
PROMTAIL_POSITIONS = "/tmp/promtail-positions.yaml"
REFRESH_INTERVAL = "5s"

STREAM_LABELS = ("service", "container", "env", "level")
# JSON field (JMESPath of a top-level key) extracted from each line -> name in the extracted map.
JSON_FIELDS: dict[str, str] = {"level": "level"}
# Extracted values promoted to stream labels: low cardinality only (info/warn/error).
LINE_LABELS: tuple[str, ...] = ("level",)

META = "__meta_docker_container_label_"
K8S_META = "__meta_kubernetes_pod_label_"
ALLOY_UID = 473  # the image's `alloy` user: on a cluster nothing needs root


@dataclass(frozen=True)
class RelabelRule:
    """One Prometheus-style relabel rule, as both Alloy `rule` blocks and Promtail write it."""

    source_labels: tuple[str, ...]
    action: Literal["keep", "replace"]
    regex: str = "(.*)"
    target_label: str | None = None
    replacement: str = "$1"


def relabel_rules(settings: StackSettings) -> list[RelabelRule]:
    """Keep this stack's containers; turn Docker labels (pod labels on a cluster) into `service`, `container`, `env`."""
    meta = K8S_META if settings.kubernetes else META
    return [
        RelabelRule((f"{meta}stack",), "keep", regex=re.escape(settings.stack)),
        RelabelRule((f"{meta}service",), "replace", target_label="service"),
        RelabelRule((f"{meta}service",), "replace", target_label="container"),
        RelabelRule((f"{meta}env",), "replace", target_label="env"),
    ]


def docker_label_filter(settings: StackSettings) -> str:
    """Docker API filter so discovery lists only this stack's containers at all."""
    return f"stack={settings.stack}"


# --- Alloy ---------------------------------------------------------------------------------


def _s(value: str) -> str:
    """An Alloy string literal (Alloy strings use Go/JSON escapes)."""
    return json.dumps(value)


def _alloy_rule(rule: RelabelRule) -> str:
    lines = [f"    source_labels = [{', '.join(_s(x) for x in rule.source_labels)}]",
             f"    regex         = {_s(rule.regex)}",
             f"    action        = {_s(rule.action)}"]
    if rule.target_label is not None:
        lines += [f"    target_label  = {_s(rule.target_label)}",
                  f"    replacement   = {_s(rule.replacement)}"]
    return "  rule {\n" + "\n".join(lines) + "\n  }"


def _alloy_map(values: dict[str, str], indent: str) -> str:
    body = "\n".join(f"{indent}  {key} = {_s(val)}," for key, val in values.items())
    return "{\n" + body + f"\n{indent}}}"


def _alloy_tail(settings: StackSettings) -> str:
    """loki.process (level from the JSON line) -> loki.write: the same on every platform."""
    json_map = _alloy_map(JSON_FIELDS, "    ")
    label_map = _alloy_map({name: name for name in LINE_LABELS}, "    ")
    return f"""loki.process "json_lines" {{
  forward_to = [loki.write.loki.receiver]

  stage.json {{
    expressions = {json_map}
  }}

  stage.labels {{
    values = {label_map}
  }}
}}

loki.write "loki" {{
  endpoint {{
    url = {_s(PUSH_URL)}
  }}
}}
"""


def render_alloy_kubernetes(settings: StackSettings) -> str:
    """config.alloy on a cluster: discovery.kubernetes (this node's pods of the stack) -> discovery.relabel ->
    loki.source.kubernetes (the Kubernetes API's pod logs) -> loki.process -> loki.write."""
    rules = "\n".join(_alloy_rule(r) for r in relabel_rules(settings))
    return f"""// Rendered by config/logshipper.py; edit the renderer or the stack settings, not this file.
// Stack {settings.stack}: pod logs of this node via the Kubernetes API -> Loki, labels {", ".join(STREAM_LABELS)}.

logging {{
  level  = "info"
  format = "json"
}}

discovery.kubernetes "pods" {{
  role = "pod"

  namespaces {{
    names = [{_s(settings.namespace)}]
  }}

  // one DaemonSet pod per node, each tailing the pods of its own node
  selectors {{
    role  = "pod"
    label = {_s(f"stack={settings.stack}")}
    field = "spec.nodeName=" + sys.env({_s(NODE_NAME_ENV)})
  }}
}}

discovery.relabel "pods" {{
  targets = discovery.kubernetes.pods.targets

{rules}
}}

loki.source.kubernetes "pods" {{
  targets    = discovery.relabel.pods.output
  forward_to = [loki.process.json_lines.receiver]
}}

{_alloy_tail(settings)}"""


def render_alloy(settings: StackSettings) -> str:
    """config.alloy text: discovery.docker -> loki.source.docker (relabelled) -> loki.process -> loki.write."""
    if settings.kubernetes:
        return render_alloy_kubernetes(settings)
    rules = "\n".join(_alloy_rule(r) for r in relabel_rules(settings))
    return f"""// Rendered by config/logshipper.py; edit the renderer or the stack settings, not this file.
// Stack {settings.stack}: container logs via the Docker API -> Loki, labels {", ".join(STREAM_LABELS)}.

logging {{
  level  = "info"
  format = "json"
}}

discovery.docker "containers" {{
  host             = {_s(DOCKER_HOST)}
  refresh_interval = {_s(REFRESH_INTERVAL)}

  filter {{
    name   = "label"
    values = [{_s(docker_label_filter(settings))}]
  }}
}}

// Rules only: loki.source.docker applies them to each container it tails.
discovery.relabel "containers" {{
  targets = []

{rules}
}}

loki.source.docker "containers" {{
  host          = {_s(DOCKER_HOST)}
  targets       = discovery.docker.containers.targets
  relabel_rules = discovery.relabel.containers.rules
  forward_to    = [loki.process.json_lines.receiver]
}}

{_alloy_tail(settings)}"""


# --- Promtail ------------------------------------------------------------------------------


def _promtail_rule(rule: RelabelRule) -> dict[str, Any]:
    doc: dict[str, Any] = {"source_labels": list(rule.source_labels), "regex": rule.regex, "action": rule.action}
    if rule.target_label is not None:
        doc["target_label"] = rule.target_label
        doc["replacement"] = rule.replacement
    return doc


def promtail_config(settings: StackSettings) -> dict[str, Any]:
    """The promtail.yaml document as data."""
    return {
        "server": {"http_listen_port": PROMTAIL_PORT, "grpc_listen_port": 0, "log_level": "info",
                   "log_format": "json"},
        "positions": {"filename": PROMTAIL_POSITIONS},
        "clients": [{"url": PUSH_URL}],
        "scrape_configs": [{
            "job_name": "docker",
            "docker_sd_configs": [{
                "host": DOCKER_HOST,
                "refresh_interval": REFRESH_INTERVAL,
                "filters": [{"name": "label", "values": [docker_label_filter(settings)]}],
            }],
            "relabel_configs": [_promtail_rule(r) for r in relabel_rules(settings)],
            "pipeline_stages": [
                {"json": {"expressions": dict(JSON_FIELDS)}},
                {"labels": {name: name for name in LINE_LABELS}},
            ],
        }],
    }


def render_promtail(settings: StackSettings) -> str:
    """promtail.yaml text (Promtail 3.6.11, end of life: selectable, not the default)."""
    return ("# Rendered by config/logshipper.py; edit the renderer or the stack settings, not this file.\n"
            "# Promtail is end of life (last release 3.6.11); Alloy is the default shipper.\n"
            + yaml.safe_dump(promtail_config(settings), sort_keys=False))


# The shipper runs as root with every capability dropped: reading the root-owned Docker socket
# needs uid 0, nothing more. Neither image ships a client for a healthcheck.
_SOCKET = HostPath(DOCKER_SOCKET, DOCKER_SOCKET)


def _alloy_container(settings: StackSettings) -> Container:
    if settings.kubernetes:
        return Container(
            image=str(settings.service(ALLOY.name).image),
            command=("run", f"--server.http.listen-addr=0.0.0.0:{ALLOY_PORT}", f"--storage.path={ALLOY_STORAGE_PATH}",
                     "--disable-reporting", ALLOY_CONFIG_PATH),
            files={ALLOY_CONFIG_PATH: render_alloy(settings)},
            uid=ALLOY_UID,
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=256m"},
        )
    return Container(
        image=str(settings.service(ALLOY.name).image),
        command=("run", f"--server.http.listen-addr=0.0.0.0:{ALLOY_PORT}", f"--storage.path={ALLOY_STORAGE_PATH}",
                 "--disable-reporting", ALLOY_CONFIG_PATH),
        files={ALLOY_CONFIG_PATH: render_alloy(settings)},
        host_paths=(_SOCKET,),
        user="0:0",
    )


def _promtail_container(settings: StackSettings) -> Container:
    return Container(
        image=str(settings.service(PROMTAIL.name).image),
        command=(f"-config.file={PROMTAIL_CONFIG_PATH}",),
        files={PROMTAIL_CONFIG_PATH: render_promtail(settings)},
        host_paths=(_SOCKET,),
        user="0:0",
    )


def _dropping(service: str, metric: str) -> tuple[MetaAlert, ...]:
    return (MetaAlert("LogShipperDroppingEntries", metric, f"{service} drops log entries"),)


ALLOY = Service(
    name="alloy", key="alloy", image="remote", container=_alloy_container,
    enabled=lambda settings: settings.logs_enabled and settings.log_shipper == "alloy", port=ALLOY_PORT,
    health=Endpoint(ALLOY_PORT, "/-/ready"), metrics=Endpoint(ALLOY_PORT, "/metrics"), after=("loki",),
    meta_alerts=lambda settings: _dropping("alloy", "loki_write_dropped_entries_total"),
    config_root=ALLOY_CONFIG_ROOT, placement="per-node", reads_cluster=("pods", "pods/log"))
PROMTAIL = Service(
    name="promtail", key="promtail", image="remote", container=_promtail_container,
    enabled=lambda settings: settings.logs_enabled and settings.log_shipper == "promtail", port=PROMTAIL_PORT,
    health=Endpoint(PROMTAIL_PORT, "/ready"), metrics=Endpoint(PROMTAIL_PORT, "/metrics"), after=("loki",),
    meta_alerts=lambda settings: _dropping("promtail", "promtail_dropped_entries_total"),
    config_root=PROMTAIL_CONFIG_ROOT, placement="per-node")
