"""The pack's pure matchers: image references agree with the settings model; secret look-alikes."""

from __future__ import annotations

import pytest

from config.settings import image_tag
from policy.patterns import env_findings, image_problem, secret_findings, split_image

REFS = [
    "prom/prometheus:v3.16.0",
    "prom/prometheus",
    "prom/prometheus:latest",
    "localhost:5000/mime-server",
    "localhost:5000/mime-server:1.2",
    "cr.jaegertracing.io/jaegertracing/jaeger:2.12.0",
    "grafana/grafana@sha256:" + "0f" * 32,
    "grafana/grafana:13.0.1@sha256:" + "0f" * 32,
]


@pytest.mark.parametrize("ref", REFS)
def test_image_split_agrees_with_the_settings_model(ref: str) -> None:
    # The pack runs in its own virtualenv without the program's code, so it carries its own
    # parser; this keeps the two readings of a reference identical.
    assert split_image(ref) == image_tag(ref)


@pytest.mark.parametrize("ref,pinned", [
    (REFS[0], True), (REFS[1], False), (REFS[2], False), (REFS[3], False), (REFS[4], True), (REFS[6], True),
])
def test_pinned_means_a_tag_other_than_latest_or_a_digest(ref: str, pinned: bool) -> None:
    assert (image_problem(ref) is None) is pinned


@pytest.mark.parametrize("text", [
    "scrape_interval: 15s\nevaluation_interval: 15s\n",
    "api_url_file: /etc/alertmanager/secrets/slack-alerts-url\n",
    "uid: 0123456789abcdef0123456789abcdef\n",  # a dashboard uid is 32 hex without a key context
    "bearer_token_file: /var/run/token\n",
    "url: http://webhook-receiver:9095/hook\n",
])
def test_configuration_that_only_points_at_secrets_is_not_flagged(text: str) -> None:
    assert secret_findings(text) == []


@pytest.mark.parametrize("entry", ["API_KEY=", "TOKEN_FILE=/run/secrets/t", "OTEL_SERVICE_NAME=mime-server"])
def test_env_entries_without_a_secret_value_are_not_flagged(entry: str) -> None:
    assert env_findings(entry) == []


def test_aws_key_and_private_key_are_flagged() -> None:
    assert secret_findings("aws_access_key_id = AKIAABCDEFGHIJKLMNOP") == ["AWS access key id"]
    assert secret_findings("-----BEGIN OPENSSH PRIVATE KEY-----\nabc") == ["private key"]
