"""Alerting HA of the cluster stack with real processes on 127.0.0.1: one alert from two Prometheus replicas.

A 3-peer Alertmanager cluster started with the rendered `--cluster.*` flags sends exactly one
notification per receiver, also when a peer (the one that would notify first) is killed before the
alert arrives or inside group_wait; two Alertmanagers without clustering (the control) send two.
Each case prints its figures (`pytest -s tests/ha`).
"""

from __future__ import annotations

import time

import pytest

from config.prometheus import REPLICA_LABEL
from tests.ha.cluster import RECEIVERS, HaRig, Outcome

pytestmark = pytest.mark.e2e


def report(case: str, outcome: Outcome) -> None:
    print(f"\nHA {case}: notifications per receiver {outcome.per_receiver}, alerts per notification "
          f"{outcome.alerts_per_notification}"
          + (f", peer killed {outcome.killed_after_alert_s:.2f}s after it had the alert"
             if outcome.killed_after_alert_s is not None else ""))


def assert_notified(outcome: Outcome, times: int) -> None:
    """`times` notifications per receiver, each holding one alert: both replicas' alerts are one alert once the
    replica label is dropped."""
    assert outcome.per_receiver == {path: times for path in RECEIVERS}
    assert set(outcome.alerts_per_notification) == {1}
    assert all(REPLICA_LABEL not in labels for labels in outcome.labels)


def test_three_clustered_peers_send_one_notification_for_the_alert_of_two_prometheus_replicas():
    with HaRig(peers=3, clustered=True) as rig:
        rig.fire(replicas=2)
        assert rig.federate_replica_labels() == {"prometheus-0", "prometheus-1"}  # each replica labels its own
        outcome = rig.outcome(rig.settle_seconds())
    report("3 clustered peers", outcome)
    assert_notified(outcome, 1)


def test_one_notification_when_the_first_notifier_is_killed_before_the_alert():
    with HaRig(peers=3, clustered=True) as rig:
        rig.kill_alertmanager(rig.first_notifier())
        rig.fire(replicas=2)
        outcome = rig.outcome(rig.settle_seconds())
    report("3 clustered peers, first notifier killed before the alert", outcome)
    assert_notified(outcome, 1)


def test_one_notification_when_the_first_notifier_is_killed_inside_group_wait():
    with HaRig(peers=3, clustered=True) as rig:
        first = rig.first_notifier()
        rig.fire(replicas=2)
        seen = rig.wait_alert_at(first, 30)
        rig.kill_alertmanager(first)
        killed_after = time.monotonic() - seen
        assert killed_after < rig.t.seconds(rig.t.group_wait), "the kill came after group_wait"
        assert rig.notifications() == []  # nothing was sent before the kill
        outcome = rig.outcome(rig.settle_seconds(), killed_after)
    report("3 clustered peers, first notifier killed inside group_wait", outcome)
    assert_notified(outcome, 1)


def test_control_two_unclustered_alertmanagers_send_two():
    with HaRig(peers=2, clustered=False) as rig:
        assert all(s == "disabled" for s in (rig.status(i)["cluster"]["status"] for i in range(2)))
        rig.fire(replicas=2)
        outcome = rig.outcome(rig.settle_seconds())
    report("2 unclustered Alertmanagers (control)", outcome)
    assert_notified(outcome, 2)
