"""The cluster stack's alerting HA on loopback: two Prometheus replicas, an Alertmanager cluster, a receiver.

Every file and flag comes from the renderers for the cluster stack (Pulumi.k8s.yaml): prometheus.yml
with its `prometheus_replica` external label (`${POD_NAME}`), the labeldrop in `alert_relabel_configs`
and one target per Alertmanager pod; Alertmanager's `--cluster.*` flags with one `--cluster.peer`
per replica; alertmanager.yml and the rule files. Only the addresses move: each pod's DNS name
becomes a port on 127.0.0.1, and the one scrape job (pod discovery needs a cluster) becomes a static
target for mime-server that nothing answers, so MimeServerDown fires. Timings are compressed:
1 s scrapes and evaluations, `for` 1 s, `--rules.alert.resend-delay=1s` (Prometheus drops alerts
computed before it has discovered the Alertmanagers and resends after this delay), a short group_wait
and `--cluster.peer-timeout` (how long each peer waits per position before it notifies itself).
"""

from __future__ import annotations

import re
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from config import alertmanager as am
from config import prometheus as prom
from config.rules import RuleTimings, render_rule_files
from config.services import replica_host
from config.settings import (
    GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY, OBJECT_STORE_SECRET_KEYS, StackSettings, from_values,
    stack_file_values,
)
from tests.slo.procs import Proc, Started, free_port, wait_http
from tests.tools import require
from webhook_receiver import Notification, WebhookReceiver

ALERT = "MimeServerDown"
RULE_FILE = "service-alerts.yml"  # MimeServerDown's group
RECEIVERS = ("/slack-ops-critical", "/pagerduty")  # where MimeServerDown goes (continue: true, then critical)


@dataclass(frozen=True)
class Timings:
    scrape_interval: str = "1s"
    group_wait: str = "3s"
    group_interval: str = "1m"  # longer than a case: a second notification can only come from another peer
    peer_timeout: str = "2s"
    resend_delay: str = "1s"

    def seconds(self, value: str) -> float:
        return float(value[:-1]) * {"s": 1, "m": 60}[value[-1]]


def cluster_settings(alertmanagers: int) -> StackSettings:
    """The cluster stack's settings with `alertmanagers` replicas; receivers are local webhooks (no Slack here)."""
    values, _ = stack_file_values("k8s")
    values = values | {"alertSecretsRequired": False, "alertmanagerReplicas": alertmanagers}
    return from_values("k8s", values, {*OBJECT_STORE_SECRET_KEYS, GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY})


def to_loopback(argv: list[str], hosts: dict[str, str]) -> list[str]:
    """Rendered flags with every `host:port` of `hosts` (and the pod IP) replaced by its loopback address."""
    out = []
    for arg in argv:
        for host, local in hosts.items():
            arg = re.sub(rf"(?<==){re.escape(host)}(?=$)", local, arg)
        out.append(arg)
    return out


@dataclass
class Outcome:
    """What the receiver got for the alert: notifications per receiver path, and what they carried."""

    per_receiver: dict[str, int]
    alerts_per_notification: list[int]
    labels: list[dict[str, str]] = field(default_factory=list)
    killed_after_alert_s: float | None = None  # kill inside group_wait: seconds after the peer had the alert


class HaRig(Started):
    """`with HaRig(peers=3, clustered=True) as rig:` starts receiver, Alertmanagers, then (in `fire`) Prometheus."""

    def __init__(self, peers: int, clustered: bool, timings: Timings | None = None) -> None:
        self.peers, self.clustered = peers, clustered
        self.t = timings or Timings()
        self.settings = cluster_settings(peers if clustered else 1)
        self._tmp = tempfile.TemporaryDirectory(prefix="ha-")
        self.dir = Path(self._tmp.name)
        self.receiver = WebhookReceiver(log=open(self.dir / "receiver.jsonl", "a"), answer_as="webhook")
        self.web = [free_port() for _ in range(peers)]
        self.gossip = [free_port() for _ in range(peers)]
        self.ams: list[Proc] = []
        self.proms: list[Proc] = []
        self.dead_port = free_port()  # mime-server's scrape target: nothing listens there

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.receiver.start()
        self._start_alertmanagers()

    def stop(self) -> None:
        for proc in [*self.proms, *self.ams]:
            proc.stop()
        try:
            self.receiver.stop()
        except OSError:
            pass
        self._tmp.cleanup()

    def _start_alertmanagers(self) -> None:
        binary = require("alertmanager")
        (self.dir / "alertmanager.yml").write_text(am.render_alertmanager(
            self.settings, group_wait=self.t.group_wait, group_interval=self.t.group_interval,
            repeat_interval="1h", local_url=self.receiver.url))
        flags = am.command(self.settings)
        for i in range(self.peers):
            hosts = {f"{replica_host(am.ALERTMANAGER.name, j, self.settings.namespace)}:{am.CLUSTER_PORT}":
                     f"127.0.0.1:{self.gossip[j]}" for j in range(self.peers)}
            hosts |= {f"0.0.0.0:{am.CLUSTER_PORT}": f"127.0.0.1:{self.gossip[i]}",
                      f"$(POD_IP):{am.CLUSTER_PORT}": f"127.0.0.1:{self.gossip[i]}",
                      am.CONFIG_PATH: str(self.dir / "alertmanager.yml"), am.DATA_DIR: str(self.dir / f"am-{i}")}
            argv = [binary, *to_loopback(flags, hosts), f"--web.listen-address=127.0.0.1:{self.web[i]}"]
            if self.clustered:
                argv.append(f"--cluster.peer-timeout={self.t.peer_timeout}")
            self.ams.append(Proc(f"alertmanager-{i}", argv, self.dir))
        for i, proc in enumerate(self.ams):
            wait_http(f"http://127.0.0.1:{self.web[i]}/-/ready", 30, proc)
        if self.clustered:
            self._wait_cluster_ready(30)

    def _wait_cluster_ready(self, timeout: float) -> None:
        """Until every peer sees all the others and has settled (it holds notifications back until then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = [self.status(i)["cluster"] for i in range(self.peers)]
            if all(s["status"] == "ready" and len(s["peers"]) == self.peers for s in status):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Alertmanager cluster did not form within {timeout}s:\n{self.ams[0].log_tail()}")

    def status(self, i: int) -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{self.web[i]}/api/v2/status", timeout=5).json()

    def first_notifier(self) -> int:
        """The peer that notifies first: position 0, the first of the cluster's member names in order."""
        names = [self.status(i)["cluster"]["name"] for i in range(self.peers)]
        return names.index(min(names))

    def kill_alertmanager(self, i: int) -> None:
        self.ams[i].kill()

    # -- Prometheus replicas --------------------------------------------------------------------------

    def prometheus_config(self, replica_rules: bool) -> dict[str, Any]:
        """The rendered prometheus.yml with the Alertmanager pods on loopback and a static mime-server job."""
        rendered = yaml.safe_load(prom.render_prometheus(
            self.settings, rule_files=[str(self.dir / "rules" / RULE_FILE)] if replica_rules else []))
        [static] = rendered["alerting"]["alertmanagers"][0]["static_configs"]
        if self.clustered:  # each pod's stable name -> its port on loopback
            pods = {f"{replica_host(am.ALERTMANAGER.name, i, self.settings.namespace)}:{am.PORT}":
                    f"127.0.0.1:{self.web[i]}" for i in range(self.peers)}
            assert sorted(static["targets"]) == sorted(pods), static["targets"]
            static["targets"] = [pods[t] for t in static["targets"]]
        else:  # the control: the same Prometheus sends to two Alertmanagers that do not know each other
            static["targets"] = [f"127.0.0.1:{p}" for p in self.web]
        rendered["global"] |= {"scrape_interval": self.t.scrape_interval, "scrape_timeout": self.t.scrape_interval,
                               "evaluation_interval": self.t.scrape_interval}
        rendered["scrape_configs"] = [{"job_name": "mime-server", "static_configs": [{
            "targets": [f"127.0.0.1:{self.dead_port}"],
            "labels": {"service": "mime-server", "env": self.settings.stack}}]}]
        return rendered

    def fire(self, replicas: int = 2) -> None:
        """Start the Prometheus replicas; once they scrape, load the rules: MimeServerDown fires in both."""
        binary = require("prometheus")
        rules = self.dir / "rules"
        rules.mkdir(exist_ok=True)
        text = render_rule_files(self.settings, RuleTimings(down_for="1s", page_for="2s", ticket_for="2s",
                                                            stack_for="2s", window_scale=1 / 60))[RULE_FILE]
        (rules / RULE_FILE).write_text(text)
        ports = [free_port() for _ in range(replicas)]
        for i in range(replicas):
            config = self.dir / f"prometheus-{i}.yml"
            config.write_text(yaml.safe_dump(self.prometheus_config(replica_rules=False), sort_keys=False))
            argv = [binary, *prom.command(self.settings, str(config), str(self.dir / f"tsdb-{i}")),
                    f"--web.listen-address=127.0.0.1:{ports[i]}", f"--rules.alert.resend-delay={self.t.resend_delay}"]
            self.proms.append(Proc(f"prometheus-{i}", argv, self.dir, env={"POD_NAME": f"prometheus-{i}"}))
        for i, proc in enumerate(self.proms):
            wait_http(f"http://127.0.0.1:{ports[i]}/-/ready", 30, proc)
        self.prometheus_ports = ports
        deadline = time.monotonic() + 30
        while not all(self._query(p, 'up{job="mime-server"} == 0') for p in ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus did not scrape mime-server:\n{self.proms[0].log_tail()}")
            time.sleep(0.2)
        for i, proc in enumerate(self.proms):
            (self.dir / f"prometheus-{i}.yml").write_text(
                yaml.safe_dump(self.prometheus_config(replica_rules=True), sort_keys=False))
            proc.popen.send_signal(signal.SIGHUP)

    def _query(self, port: int, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=5)
        return r.json()["data"]["result"]

    def federate_replica_labels(self) -> set[str]:
        """The `prometheus_replica` each replica puts on its series (federation adds the external labels)."""
        found = set()
        for port in self.prometheus_ports:
            text = httpx.get(f"http://127.0.0.1:{port}/federate", params={"match[]": 'up{job="mime-server"}'},
                             timeout=5).text
            found |= set(re.findall(rf'{prom.REPLICA_LABEL}="([^"]+)"', text))
        return found

    def wait_alert_at(self, i: int, timeout: float) -> float:
        """Until peer `i` holds the firing alert; the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alerts = httpx.get(f"http://127.0.0.1:{self.web[i]}/api/v2/alerts", timeout=5).json()
            if any(a["labels"].get("alertname") == ALERT for a in alerts):
                return time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"alertmanager-{i} never received {ALERT}")

    # -- the outcome -------------------------------------------------------------------------------------

    def notifications(self) -> list[Notification]:
        return [n for n in self.receiver.notifications
                if isinstance(n.body, dict) and n.body.get("status") == "firing"
                and n.body.get("commonLabels", {}).get("alertname") == ALERT]

    def outcome(self, settle: float, killed_after_alert_s: float | None = None) -> Outcome:
        """Wait for the first notification, then `settle` seconds more for any duplicate; count per receiver."""
        first = self.receiver.wait_for(lambda n: n in self.notifications(), 60)
        if first is None:
            raise TimeoutError(f"no notification of {ALERT} within 60s:\n{self.ams[0].log_tail()}")
        time.sleep(settle)
        found = self.notifications()
        return Outcome(
            per_receiver={path: sum(1 for n in found if n.path == path) for path in RECEIVERS},
            alerts_per_notification=[len(n.body["alerts"]) for n in found],
            labels=[a["labels"] for n in found for a in n.body["alerts"]],
            killed_after_alert_s=killed_after_alert_s)

    def settle_seconds(self) -> float:
        """Long enough for the last peer to notify if it were going to: group_wait + peers x peer_timeout + margin."""
        return self.t.seconds(self.t.group_wait) + self.peers * self.t.seconds(self.t.peer_timeout) + 5
