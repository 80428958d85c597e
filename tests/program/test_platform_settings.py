"""Platform settings: what more than one replica needs, each failure naming its key before any resource."""

from __future__ import annotations

import pulumi
import pytest

from config.settings import (
    GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY, OBJECT_STORE_SECRET_KEYS, SettingsError, from_values,
    stack_file_values,
)
from tests.program import harness

DEV = {"alertSecretsRequired": False}
SECRETS = {*OBJECT_STORE_SECRET_KEYS, GRAFANA_DATABASE_KEY, JAEGER_STORAGE_PASSWORD_KEY}


def k8s(**overrides: object) -> dict[str, object]:
    """Pulumi.k8s.yaml's values (alert secrets not required) with `overrides`."""
    values, _ = stack_file_values("k8s")
    return values | DEV | overrides


def test_docker_is_the_default_platform_and_runs_one_of_each():
    settings = from_values("dev", DEV)
    assert settings.platform == "docker" and not settings.kubernetes
    assert {s.replicas for s in settings.services.values()} == {1}


def test_the_cluster_stack_validates_with_its_secrets():
    settings = from_values("k8s", k8s(), SECRETS)
    assert settings.kubernetes and settings.object_store and settings.grafana_database
    assert (settings.replicas("prometheus"), settings.replicas("alertmanager"), settings.replicas("loki")) == (2, 3, 3)


@pytest.mark.parametrize(("values", "secrets", "key", "fragment"), [
    (DEV | {"prometheusReplicas": 2}, set(), "prometheusReplicas", "1 on platform docker"),
    (k8s(objectStoreBucket=""), SECRETS, "lokiReplicas", "1 unless objectStoreBucket is set"),
    (k8s(objectStoreBucket="", lokiReplicas=1), SECRETS, "mimeServerReplicas", "1 unless objectStoreBucket is set"),
    (k8s(jaegerStorage="memory"), SECRETS, "jaegerReplicas", "1 with jaegerStorage memory"),
    (k8s(jaegerStorage="badger"), SECRETS, "jaegerReplicas", "1 with jaegerStorage badger"),
    (k8s(), SECRETS - {GRAFANA_DATABASE_KEY}, "grafanaReplicas", "1 without a shared database"),
    (k8s(), SECRETS - set(OBJECT_STORE_SECRET_KEYS), "objectStoreBucket", "objectStoreAccessKeyId"),
    (k8s(alloyReplicas=2), SECRETS, "alloyReplicas", "one pod per node"),
    (k8s(logShipper="promtail"), SECRETS, "logShipper", "'alloy' on platform kubernetes"),
    (k8s(imageRegistry=""), SECRETS, "imageRegistry", "a registry the cluster pulls from"),
    (k8s(jaegerStorageUrl=""), SECRETS, "jaegerStorageUrl", "the URL of the opensearch cluster"),
    (k8s(platform="nomad"), SECRETS, "platform", "'docker' or 'kubernetes'"),
    (k8s(namespace="Observability_1"), SECRETS, "namespace", "a value matching"),
    (k8s(objectStoreEndpoint="s3.example.com"), SECRETS, "objectStoreEndpoint", "an http:// or https:// URL, or empty"),
])
def test_bad_platform_settings_name_key_value_and_expectation(values, secrets, key, fragment):
    with pytest.raises(SettingsError) as err:
        from_values("k8s" if values.get("platform") else "dev", values, secrets)
    message = str(err.value)
    assert f"observability:{key}" in message and fragment in message


def test_a_single_replica_cluster_needs_no_object_store_nor_database():
    settings = from_values("k8s", k8s(objectStoreBucket="", lokiReplicas=1, mimeServerReplicas=1, grafanaReplicas=1,
                                      jaegerReplicas=1, jaegerStorage="badger"), set())
    assert not settings.object_store and not settings.grafana_database


def test_a_bad_replica_setting_stops_the_program_before_any_resource():
    with pytest.raises(pulumi.RunError, match="observability:lokiReplicas = 3: expected 1 unless objectStoreBucket"):
        harness.run_program("k8s", {"objectStoreBucket": ""}, harness.K8S_SECRETS)
    assert harness.last_monitor is not None and harness.last_monitor.registrations == []


def test_the_cluster_stack_without_its_secrets_says_which_to_set():
    with pytest.raises(pulumi.RunError, match="pulumi config set --secret objectStoreAccessKeyId"):
        harness.run_program("k8s", None, harness.STAGING_SECRETS)
    assert harness.last_monitor.registrations == []
