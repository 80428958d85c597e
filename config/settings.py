"""Typed stack settings: the one validated view of a stack's Pulumi config.

Every setting is declared once, in the `config:` block of `Pulumi.yaml` (type, description,
default); a stack file (`Pulumi.<stack>.yaml`) overrides some. This module gives those values
types and checks them, so bad configuration fails before any resource is registered, with a
message naming the key, the bad value and what is expected. It holds no default value of its
own: the numbers (SLO targets, ports, retention) live in stack config and nowhere else.

Secrets are never read here: the model only knows which secret keys are set, because the
renderers point services at secret *files* and the components deliver the values.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mime_server.buckets import LATENCY_BUCKETS
from mime_server.limits import FORWARDED_BYTES, FORWARDED_FIELDS, KEEPALIVE_S, POOL_CONNECTIONS

PROJECT = "observability"
PROJECT_DIR = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")  # the Docker stacks
K8S_STACKS = ("k8s",)  # the cluster stacks (platform: kubernetes)
ALL_STACKS = STACKS + K8S_STACKS


class SettingsError(Exception):
    """A stack setting is missing or wrong; the message names the key, value and expectation."""


# --- the services ------------------------------------------------------------------------
# Each service is defined once in the registry (config/registry.py); its per-stack settings are
# <key>MemoryMb, <key>Image (remote images only), <key>Port and <key>BindAddress (published
# services only). The registry is imported when first needed: its modules import this one.


def _registry() -> Any:
    from config import registry

    return registry


ALERT_SECRET_KEYS = ("slackWebhookAlerts", "slackWebhookOpsCritical", "pagerdutyRoutingKey")
OBJECT_STORE_SECRET_KEYS = ("objectStoreAccessKeyId", "objectStoreSecretAccessKey")
GRAFANA_DATABASE_KEY = "grafanaDatabaseUrl"
JAEGER_STORAGE_PASSWORD_KEY = "jaegerStoragePassword"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class ServiceSettings(BaseModel):
    """One service's image, memory limit and host binding."""

    model_config = ConfigDict(frozen=True)

    name: str
    image: str | None
    memory_mb: int = Field(gt=0)
    replicas: int = Field(default=1, ge=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    bind_address: str | None = None


class SloTargets(BaseModel):
    """Availability, error-rate and latency objectives of one commitment (SLA or SLO)."""

    model_config = ConfigDict(frozen=True)

    availability: float
    error_rate: float
    latency_seconds: float
    latency_percentile: float


class StackSettings(BaseModel):
    """Every setting of one stack, typed and validated. Field aliases are the Pulumi keys."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", allow_inf_nan=False)

    stack: str
    secrets_set: frozenset[str] = frozenset()

    bind_address: str = Field(alias="bindAddress")
    allow_public_ports: bool = Field(alias="allowPublicPorts")
    tracing_enabled: bool = Field(alias="tracingEnabled")
    logs_enabled: bool = Field(alias="logsEnabled")
    alerting_enabled: bool = Field(alias="alertingEnabled")
    log_shipper: Literal["alloy", "promtail"] = Field(alias="logShipper")

    scrape_interval: str = Field(alias="scrapeInterval", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    evaluation_interval: str = Field(alias="evaluationInterval", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    prometheus_retention_days: int = Field(alias="prometheusRetentionDays", gt=0)
    loki_retention_days: int = Field(alias="lokiRetentionDays", gt=0)
    jaeger_max_traces: int = Field(alias="jaegerMaxTraces", gt=0)
    grafana_admin_user: str = Field(alias="grafanaAdminUser", min_length=1)
    grafana_external_url: str = Field(alias="grafanaExternalUrl", pattern=r"^(https?://[^\s#?]+)?$")
    runbook_base_url: str = Field(alias="runbookBaseUrl", pattern=r"^(https?://[^\s#]+)?$")

    sla_availability: float = Field(alias="slaAvailability")
    sla_error_rate: float = Field(alias="slaErrorRate")
    sla_latency_seconds: float = Field(alias="slaLatencySeconds", gt=0)
    sla_latency_percentile: float = Field(alias="slaLatencyPercentile")
    slo_availability: float = Field(alias="sloAvailability")
    slo_error_rate: float = Field(alias="sloErrorRate")
    slo_latency_seconds: float = Field(alias="sloLatencySeconds", gt=0)
    slo_latency_percentile: float = Field(alias="sloLatencyPercentile")
    slo_window_days: int = Field(alias="sloWindowDays", gt=0)
    error_budget_alert_consumed: float = Field(alias="errorBudgetAlertConsumed", gt=0, lt=1)

    alert_group_wait: str = Field(alias="alertGroupWait", pattern=r"^[0-9]+(ms|s|m|h)$")
    alert_group_interval: str = Field(alias="alertGroupInterval", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    alert_repeat_interval: str = Field(alias="alertRepeatInterval", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    alert_notification_timeout: str = Field(alias="alertNotificationTimeout", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    alert_down_for: str = Field(alias="alertDownFor", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    slo_page_for: str = Field(alias="sloPageFor", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    slo_ticket_for: str = Field(alias="sloTicketFor", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    stack_alert_for: str = Field(alias="stackAlertFor", pattern=r"^[1-9][0-9]*(ms|s|m|h)$")
    alert_secrets_required: bool = Field(alias="alertSecretsRequired")
    slack_channel_alerts: str = Field(alias="slackChannelAlerts", pattern=r"^#[a-z0-9_-]+$")
    slack_channel_ops_critical: str = Field(alias="slackChannelOpsCritical", pattern=r"^#[a-z0-9_-]+$")
    pagerduty_url: str = Field(alias="pagerdutyUrl", pattern=r"^https?://")

    mime_server_max_upload_bytes: int = Field(alias="mimeServerMaxUploadBytes", gt=0)
    fault_injection_enabled: bool = Field(alias="faultInjectionEnabled")
    gateway_rate_limit: float = Field(alias="gatewayRateLimit", gt=0)
    gateway_rate_burst: int = Field(alias="gatewayRateBurst", gt=0)
    gateway_upstream_timeout_seconds: float = Field(alias="gatewayUpstreamTimeoutSeconds", gt=0)
    mime_server_max_header_bytes: int = Field(alias="mimeServerMaxHeaderBytes", gt=0)
    mime_server_max_headers: int = Field(alias="mimeServerMaxHeaders", gt=0)
    mime_server_header_timeout_seconds: float = Field(alias="mimeServerHeaderTimeoutSeconds", gt=0)
    mime_server_body_timeout_seconds: float = Field(alias="mimeServerBodyTimeoutSeconds", gt=0)
    mime_server_keepalive_timeout_seconds: float = Field(alias="mimeServerKeepaliveTimeoutSeconds", gt=0)
    mime_server_max_connections: int = Field(alias="mimeServerMaxConnections", gt=0)
    mime_server_upload_memory_budget_bytes: int = Field(alias="mimeServerUploadMemoryBudgetBytes", gt=0)
    gateway_max_header_bytes: int = Field(alias="gatewayMaxHeaderBytes", gt=0)
    gateway_max_headers: int = Field(alias="gatewayMaxHeaders", gt=0)
    gateway_header_timeout_seconds: float = Field(alias="gatewayHeaderTimeoutSeconds", gt=0)
    gateway_body_timeout_seconds: float = Field(alias="gatewayBodyTimeoutSeconds", gt=0)
    gateway_keepalive_timeout_seconds: float = Field(alias="gatewayKeepaliveTimeoutSeconds", gt=0)
    gateway_max_connections: int = Field(alias="gatewayMaxConnections", gt=0)
    gateway_auth_failure_burst: int = Field(alias="gatewayAuthFailureBurst", gt=0)
    gateway_auth_failure_rate: float = Field(alias="gatewayAuthFailureRate", gt=0)

    backup_enabled: bool = Field(alias="backupEnabled")
    backup_interval_hours: int = Field(alias="backupIntervalHours", gt=0)
    backup_keep_last: int = Field(alias="backupKeepLast", ge=1)
    backup_max_age_days: int = Field(alias="backupMaxAgeDays", ge=1)
    backup_compression: Literal["gz", "zst"] = Field(alias="backupCompression")
    backup_s3_bucket: str = Field(alias="backupS3Bucket")
    backup_s3_prefix: str = Field(alias="backupS3Prefix")
    backup_s3_endpoint: str = Field(alias="backupS3Endpoint")

    platform: Literal["docker", "kubernetes"] = Field(alias="platform")
    namespace: str = Field(alias="namespace", pattern=_DNS_LABEL)
    storage_class: str = Field(alias="storageClass")
    image_registry: str = Field(alias="imageRegistry", pattern=r"^([a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9._-]+)*)?$")
    object_store_endpoint: str = Field(alias="objectStoreEndpoint", pattern=r"^(https?://[^/\s]+)?$")
    object_store_bucket: str = Field(alias="objectStoreBucket")
    object_store_region: str = Field(alias="objectStoreRegion", min_length=1)
    jaeger_storage: Literal["memory", "badger", "elasticsearch", "opensearch"] = Field(alias="jaegerStorage")
    jaeger_storage_url: str = Field(alias="jaegerStorageUrl", pattern=r"^(https?://[^/\s]+/?)?$")
    jaeger_storage_username: str = Field(alias="jaegerStorageUsername")

    services: dict[str, ServiceSettings]

    # -- derived views ---------------------------------------------------------------------

    @property
    def sla(self) -> SloTargets:
        return SloTargets(
            availability=self.sla_availability,
            error_rate=self.sla_error_rate,
            latency_seconds=self.sla_latency_seconds,
            latency_percentile=self.sla_latency_percentile,
        )

    @property
    def slo(self) -> SloTargets:
        return SloTargets(
            availability=self.slo_availability,
            error_rate=self.slo_error_rate,
            latency_seconds=self.slo_latency_seconds,
            latency_percentile=self.slo_latency_percentile,
        )

    @property
    def enabled_services(self) -> tuple[str, ...]:
        """Names of the services this stack deploys, in registry order."""
        return tuple(s.name for s in _registry().enabled_services(self))

    @property
    def alert_receivers_external(self) -> bool:
        """True when every alert secret is set: notifications go to Slack and PagerDuty."""
        return all(k in self.secrets_set for k in ALERT_SECRET_KEYS)

    @property
    def kubernetes(self) -> bool:
        """True when the stack runs on a Kubernetes cluster (`platform: kubernetes`)."""
        return self.platform == "kubernetes"

    @property
    def object_store(self) -> bool:
        """True when Loki and mime-server keep their data in the S3-compatible store (clusters only)."""
        return self.kubernetes and bool(self.object_store_bucket)

    @property
    def grafana_database(self) -> bool:
        """True when Grafana keeps its state in the database of `grafanaDatabaseUrl` (not SQLite)."""
        return GRAFANA_DATABASE_KEY in self.secrets_set

    def replicas(self, name: str) -> int:
        return self.services[name].replicas

    def service(self, name: str) -> ServiceSettings:
        return self.services[name]

    def container_name(self, name: str) -> str:
        return f"{self.stack}-{name}"

    # -- cross-field validation -------------------------------------------------------------

    def _check_edge_limits(self) -> None:
        for key, value, holds, expected in _edge_relations(self):
            if not holds:
                raise _err(key, value, expected)

    @model_validator(mode="after")
    def _check(self) -> "StackSettings":
        for key, value in (
            ("slaAvailability", self.sla_availability),
            ("sloAvailability", self.slo_availability),
            ("slaErrorRate", self.sla_error_rate),
            ("sloErrorRate", self.slo_error_rate),
            ("slaLatencyPercentile", self.sla_latency_percentile),
            ("sloLatencyPercentile", self.slo_latency_percentile),
        ):
            if not 0 < value < 1:
                raise _err(key, value, "a ratio strictly between 0 and 1 (e.g. 0.999 for 99.9%)")
        if self.slo_availability < self.sla_availability:
            raise _err("sloAvailability", self.slo_availability,
                       f"at least slaAvailability ({self.sla_availability}): an SLO looser than its SLA")
        if self.slo_error_rate > self.sla_error_rate:
            raise _err("sloErrorRate", self.slo_error_rate,
                       f"at most slaErrorRate ({self.sla_error_rate}): an SLO looser than its SLA")
        if self.slo_latency_seconds > self.sla_latency_seconds:
            raise _err("sloLatencySeconds", self.slo_latency_seconds,
                       f"at most slaLatencySeconds ({self.sla_latency_seconds}): an SLO looser than its SLA")
        if self.slo_latency_percentile < self.sla_latency_percentile:
            raise _err("sloLatencyPercentile", self.slo_latency_percentile,
                       f"at least slaLatencyPercentile ({self.sla_latency_percentile})")
        for key, value in (("slaLatencySeconds", self.sla_latency_seconds),
                           ("sloLatencySeconds", self.slo_latency_seconds)):
            if float(value) not in LATENCY_BUCKETS:
                raise _err(key, value, "a latency bucket bound the services expose, one of "
                           + ", ".join(repr(float(b)) for b in LATENCY_BUCKETS))
        try:
            check_alert_for_order(self.alert_down_for, {"sloPageFor": self.slo_page_for,
                                                        "sloTicketFor": self.slo_ticket_for,
                                                        "stackAlertFor": self.stack_alert_for})
        except ValueError as exc:
            raise SettingsError(f"{PROJECT}:{exc}") from None
        if _seconds(self.alert_notification_timeout) >= _seconds(self.alert_group_interval):
            raise _err("alertNotificationTimeout", self.alert_notification_timeout,
                       f"less than alertGroupInterval ({self.alert_group_interval}): Alertmanager gives up "
                       "on a group's notifications when its next flush is due, so a longer timeout never applies")
        self._check_edge_limits()
        _check_address("bindAddress", self.bind_address)
        if self.backup_s3_bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.backup_s3_bucket):
            raise _err("backupS3Bucket", self.backup_s3_bucket, "a valid S3 bucket name, or empty for no upload")

        enabled = set(self.enabled_services)
        used: dict[int, str] = {}
        for svc in self.services.values():
            spec = _registry().service(svc.name)
            if spec.image == "remote":
                _check_image(f"{spec.key}Image", svc.image or "")
            if svc.name not in enabled or svc.port is None:
                continue
            addr = svc.bind_address or self.bind_address
            _check_address(f"{spec.key}BindAddress", addr)
            if _is_public(addr) and not self.allow_public_ports:
                raise _err(f"{spec.key}BindAddress" if svc.bind_address else "bindAddress", addr,
                           "a loopback or specific address; binding every interface needs "
                           "`pulumi config set allowPublicPorts true`")
            if svc.port in used:
                raise _err(f"{spec.key}Port", svc.port,
                           f"a host port not already used by {used[svc.port]}")
            used[svc.port] = svc.name

        self._check_platform()

        if self.alerting_enabled and self.alert_secrets_required:
            missing = [k for k in ALERT_SECRET_KEYS if k not in self.secrets_set]
            if missing:
                cmds = "; ".join(f"pulumi config set --secret {k} <value> --stack {self.stack}" for k in missing)
                raise SettingsError(
                    f"stack {self.stack!r} requires the alert secrets {', '.join(missing)} "
                    f"(alertSecretsRequired is true) but they are not set. Run: {cmds}")
        return self

    def _check_platform(self) -> None:
        """Replicas and storage: what runs on one host, and what more than one replica needs."""
        for svc in self.services.values():
            spec = _registry().service(svc.name)
            key = f"{spec.key}Replicas"
            if svc.replicas > 1 and not self.kubernetes:
                raise _err(key, svc.replicas, "1 on platform docker (one container per service); "
                           "more replicas need `pulumi config set platform kubernetes`")
            if svc.replicas > 1 and spec.placement == "per-node":
                raise _err(key, svc.replicas, f"1: {spec.name} runs one pod per node (a DaemonSet), not replicas")
        if self.jaeger_storage in ("elasticsearch", "opensearch") and not self.jaeger_storage_url:
            raise _err("jaegerStorageUrl", self.jaeger_storage_url,
                       f"the URL of the {self.jaeger_storage} cluster (jaegerStorage is {self.jaeger_storage})")
        if not self.kubernetes:
            return
        if not self.image_registry:
            raise _err("imageRegistry", self.image_registry,
                       "a registry the cluster pulls from, e.g. registry.example.com/observability: `pulumi up` "
                       "pushes the images built from this repository there (after `docker login`)")
        if self.logs_enabled and self.log_shipper != "alloy":
            raise _err("logShipper", self.log_shipper, "'alloy' on platform kubernetes (Promtail is end of life)")
        if self.object_store_bucket and not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.object_store_bucket):
            raise _err("objectStoreBucket", self.object_store_bucket, "a valid S3 bucket name")
        missing = [k for k in OBJECT_STORE_SECRET_KEYS if k not in self.secrets_set]
        if self.object_store_bucket and missing:
            raise SettingsError(f"{PROJECT}:objectStoreBucket = {self.object_store_bucket!r} needs the secrets "
                                f"{', '.join(missing)}: run "
                                + "; ".join(f"pulumi config set --secret {k} <value> --stack {self.stack}"
                                            for k in missing))
        for name, key, what in (("loki", "lokiReplicas", "Loki replicas share their chunks"),
                                ("mime-server", "mimeServerReplicas", "mime-server replicas share the stored files")):
            if self.replicas(name) > 1 and not self.object_store:
                raise _err(key, self.replicas(name),
                           f"1 unless objectStoreBucket is set: {what} through the S3-compatible object store")
        if self.replicas("jaeger") > 1 and self.jaeger_storage in ("memory", "badger"):
            raise _err("jaegerReplicas", self.replicas("jaeger"),
                       f"1 with jaegerStorage {self.jaeger_storage} (each replica would keep traces of its own); "
                       "more replicas need jaegerStorage elasticsearch or opensearch")
        if self.replicas("grafana") > 1 and not self.grafana_database:
            raise _err("grafanaReplicas", self.replicas("grafana"),
                       "1 without a shared database: set it with "
                       f"`pulumi config set --secret {GRAFANA_DATABASE_KEY} postgres://... --stack {self.stack}`")


def _edge_relations(s: "StackSettings") -> list[tuple[str, object, bool, str]]:
    """(key, value, holds, expectation) of every relation between the two services' edge limits."""
    return [
        ("mimeServerMaxHeaderBytes", s.mime_server_max_header_bytes,
         s.mime_server_max_header_bytes >= s.gateway_max_header_bytes + FORWARDED_BYTES,
         f"at least gatewayMaxHeaderBytes + {FORWARDED_BYTES} ({s.gateway_max_header_bytes + FORWARDED_BYTES}): "
         "mime-server must accept what the gateway accepts and adds"),
        ("mimeServerMaxHeaders", s.mime_server_max_headers,
         s.mime_server_max_headers >= s.gateway_max_headers + FORWARDED_FIELDS,
         f"at least gatewayMaxHeaders + {FORWARDED_FIELDS} ({s.gateway_max_headers + FORWARDED_FIELDS}): "
         "mime-server must accept what the gateway accepts and adds"),
        ("mimeServerKeepaliveTimeoutSeconds", s.mime_server_keepalive_timeout_seconds,
         s.mime_server_keepalive_timeout_seconds > KEEPALIVE_S,
         f"more than the gateway's pooled-connection idle time ({KEEPALIVE_S:g} s), or the gateway reuses "
         "connections mime-server is closing"),
        ("mimeServerMaxConnections", s.mime_server_max_connections,
         s.mime_server_max_connections > POOL_CONNECTIONS + 16,
         f"more than the gateway's upstream pool ({POOL_CONNECTIONS}) plus room for Prometheus and health checks (16)"),
        ("gatewayBodyTimeoutSeconds", s.gateway_body_timeout_seconds,
         s.gateway_body_timeout_seconds <= s.mime_server_body_timeout_seconds,
         f"at most mimeServerBodyTimeoutSeconds ({s.mime_server_body_timeout_seconds:g}): the gateway answers a "
         "stalled client first"),
    ]


def check_alert_for_order(down_for: str, others: Mapping[str, str]) -> None:
    """Every other alert `for` is at least MimeServerDown's: it must fire first, and inhibit them.

    Raises ValueError naming the first offending key (used by the settings and the rule timings).
    """
    for key, value in others.items():
        if _seconds(value) < _seconds(down_for):
            raise ValueError(f"{key} = {value!r}: expected at least alertDownFor ({down_for}): MimeServerDown "
                             "must fire first, or the alerts it silences notify before it")


def _err(key: str, value: object, expected: str) -> SettingsError:
    return SettingsError(f"{PROJECT}:{key} = {value!r}: expected {expected}")


def _seconds(duration: str) -> float:
    """Seconds in a validated duration such as 30s, 5m or 500ms."""
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|m|h)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def _check_address(key: str, addr: str) -> None:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise _err(key, addr, "an IP address such as 127.0.0.1") from None


def _is_public(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_unspecified


_REPO = re.compile(r"^[a-z0-9]([a-z0-9._/-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_tag(image: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (repository, tag, digest)."""
    ref, _, digest = image.partition("@")
    repo, tag = ref, None
    head, sep, tail = ref.rpartition(":")
    if sep and "/" not in tail:
        repo, tag = head, tail
    return repo, tag, digest or None


def _check_image(key: str, image: str) -> None:
    repo, tag, digest = image_tag(image)
    if (not _REPO.match(repo) or (tag is not None and not _TAG.match(tag))
            or (digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest))):
        raise _err(key, image, "an image reference such as prom/prometheus:v3.16.0")
    if tag == "latest":
        raise _err(key, image, "a pinned tag, never `latest`")
    if tag is None and digest is None:
        raise _err(key, image, "an image pinned by tag or digest, e.g. prom/prometheus:v3.16.0")


# --- schema: the keys, their types and defaults, as declared in Pulumi.yaml ------------------


@functools.lru_cache(maxsize=16)
def _parsed(path: str, mtime_ns: int) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def project_file(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """Pulumi.yaml as data; parsed once per version of the file (the program asks for it once per key)."""
    path = project_dir / "Pulumi.yaml"
    return copy.deepcopy(_parsed(str(path), path.stat().st_mtime_ns))


def declared_config(project_dir: Path = PROJECT_DIR) -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml: key -> {type, description, default, secret}."""
    return dict(project_file(project_dir).get("config") or {})


def service_keys() -> set[str]:
    """The per-service Pulumi keys the registry's services need."""
    keys: set[str] = set()
    for spec in _registry().SERVICES:
        keys.add(f"{spec.key}MemoryMb")
        if spec.image == "remote":
            keys.add(f"{spec.key}Image")
        if spec.port is not None:
            keys |= {f"{spec.key}Port", f"{spec.key}BindAddress"}
        keys.add(f"{spec.key}Replicas")
    return keys


def model_keys() -> set[str]:
    """Every Pulumi key the settings model reads (flat fields, per-service keys, secrets)."""
    keys = {f.alias for name, f in StackSettings.model_fields.items() if f.alias}
    return keys | service_keys() | set(secret_keys())


def secret_keys(project_dir: Path = PROJECT_DIR) -> tuple[str, ...]:
    """The secret settings: the keys Pulumi.yaml declares with `secret: true`."""
    return tuple(k for k, v in declared_config(project_dir).items() if v.get("secret"))


def defaults(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    return {k: v["default"] for k, v in declared_config(project_dir).items() if "default" in v}


def stack_file_values(stack: str, project_dir: Path = PROJECT_DIR) -> tuple[dict[str, Any], set[str]]:
    """Plain values and the names of secret keys set in Pulumi.<stack>.yaml (secrets not read)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SettingsError(f"stack file {path} not found: expected one of "
                            f"{', '.join(f'Pulumi.{s}.yaml' for s in ALL_STACKS)} or `pulumi stack init {stack}`")
    data = yaml.safe_load(path.read_text()) or {}
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    for full, value in (data.get("config") or {}).items():
        ns, _, key = full.partition(":")
        if ns != PROJECT:
            continue
        if isinstance(value, dict) and "secure" in value:
            secrets.add(key)
        else:
            values[key] = value
    return values, secrets


def from_values(stack: str, values: Mapping[str, Any], secrets_set: set[str] | frozenset[str] = frozenset(),
                project_dir: Path = PROJECT_DIR) -> StackSettings:
    """Build and validate settings from Pulumi.yaml defaults overlaid with `values`."""
    declared = declared_config(project_dir)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise SettingsError(f"{PROJECT}:{unknown[0]} is not a setting of this project: expected one of the keys "
                            f"declared in Pulumi.yaml (see README, 'Settings')")
    merged = {**defaults(project_dir), **{k: v for k, v in values.items() if v is not None}}
    secret = secret_keys(project_dir)
    for k in secrets_set:
        if k not in secret:
            raise SettingsError(f"{PROJECT}:{k} is set as a secret but is not a secret setting: "
                                f"expected plain `pulumi config set {k} <value>`")
    services: dict[str, dict[str, Any]] = {}
    for spec in _registry().SERVICES:
        published = spec.port is not None
        bind = merged.pop(f"{spec.key}BindAddress", None) if published else None
        services[spec.name] = {
            "name": spec.name,
            "image": merged.pop(f"{spec.key}Image", None),
            "memory_mb": merged.pop(f"{spec.key}MemoryMb", None),
            "replicas": merged.pop(f"{spec.key}Replicas", 1),
            "port": merged.pop(f"{spec.key}Port", None) if published else None,
            "bind_address": bind or None,
        }
    for k in secret:
        merged.pop(k, None)
    try:
        return StackSettings(stack=stack, secrets_set=frozenset(secrets_set), services=services, **merged)
    except ValidationError as exc:
        raise _from_validation_error(exc, merged, services) from None


def _from_validation_error(exc: ValidationError, flat: Mapping[str, Any],
                           services: Mapping[str, Mapping[str, Any]]) -> SettingsError:
    first = exc.errors()[0]
    loc = first["loc"]
    if loc and loc[0] == "services" and len(loc) >= 3:
        spec = _registry().service(str(loc[1]))
        suffix = {"memory_mb": "MemoryMb", "port": "Port", "image": "Image", "replicas": "Replicas"}.get(str(loc[2]), str(loc[2]))
        key = f"{spec.key}{suffix}"
    else:
        key = str(loc[0]) if loc else "?"
    ctx = first.get("ctx") or {}
    expected = first["msg"]
    if first["type"] == "literal_error":
        expected = f"one of {ctx.get('expected')}"
    elif first["type"] == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        expected = ("a duration such as 30s or 5m" if "(ms|s|m|h)" in pattern
                    else "a Slack channel such as #alerts" if pattern.startswith("^#")
                    else "an http:// or https:// URL, or empty" if "https?://" in pattern
                    else f"a value matching {pattern}")
    elif "missing" == first["type"]:
        return SettingsError(f"{PROJECT}:{key} is not set and has no default in Pulumi.yaml")
    if first["type"] == "finite_number":
        expected = "a finite number"
    return _err(key, first.get("input"), expected.replace("Input should be ", "a value ").replace("Input ", "a value "))


def load_stack(stack: str, project_dir: Path = PROJECT_DIR) -> StackSettings:
    """Settings of a stack from its stack file, as `pulumi up` would see them (for render/tests)."""
    values, secrets = stack_file_values(stack, project_dir)
    return from_values(stack, values, secrets, project_dir)
