"""The observed workload: mime-server, mockup-gateway in front of it, mime_storage and its backups."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.secrets import StackSecrets
from components.service import ContainerSpec, Mount, data_volume, hardened_container, python_health
from components.tracing import OTLP_HTTP_ENDPOINT
from config.settings import StackSettings

SERVICE_UID = 10001  # the non-root user of the project's images
MIME_PORT = 8080
GATEWAY_PORT = 8000
SECRETS_DIR = "/run/secrets"


def _otel_env(settings: StackSettings, service: str) -> dict[str, str]:
    """Standard OTEL_* variables: OTLP over HTTP to Jaeger, or tracing off when Jaeger is not deployed."""
    env = {
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={settings.stack}",
    }
    if settings.tracing_enabled:
        env |= {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_HTTP_ENDPOINT,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    else:
        env["OTEL_TRACES_EXPORTER"] = "none"
    return env


class Workload(pulumi.ComponentResource):
    """mime-server and the gateway from one built image; scheduled backups of mime_storage."""

    def __init__(self, name: str, settings: StackSettings, network: docker.Network, secrets: StackSecrets,
                 image: docker.Image, ops_image: docker.Image | None, depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("observability:workload:Workload", name, None, opts)
        self.storage = data_volume(settings, "mime-storage", parent=self)
        self.api_key = random.RandomPassword("gateway-api-key", length=40, special=False,
                                             opts=pulumi.ResourceOptions(parent=self))

        mime_env = _otel_env(settings, "mime-server") | {
            "MIME_MAX_UPLOAD_BYTES": str(settings.mime_server_max_upload_bytes),
        }
        mime_secrets: dict[str, pulumi.Input[str]] = {}
        self.admin_key: random.RandomPassword | None = None
        if settings.fault_injection_enabled:
            self.admin_key = random.RandomPassword("fault-admin-key", length=40, special=False,
                                                   opts=pulumi.ResourceOptions(parent=self))
            mime_secrets[f"{SECRETS_DIR}/admin-key"] = self.admin_key.result
            mime_env["MIME_ADMIN_KEY_FILE"] = f"{SECRETS_DIR}/admin-key"

        self.mime_server = hardened_container(settings, network, ContainerSpec(
            service="mime-server",
            image=image.image_name,
            remote=False,
            command=["python", "-m", "mime_server", "--host", "0.0.0.0", "--port", str(MIME_PORT),
                     "--storage", "/data"],
            envs=mime_env,
            secret_files=mime_secrets,
            file_owner=SERVICE_UID,
            mounts=[Mount("/data", self.storage)],
            healthcheck=python_health(f"http://127.0.0.1:{MIME_PORT}/healthz"),
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            published_port=MIME_PORT,
        ), parent=self, depends_on=depends_on)

        self.gateway = hardened_container(settings, network, ContainerSpec(
            service="mockup-gateway",
            image=image.image_name,
            remote=False,
            command=["python", "-m", "mime_server.gateway", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
                     "--upstream", f"http://mime-server:{MIME_PORT}", "--api-keys-file", f"{SECRETS_DIR}/api-keys"],
            envs=_otel_env(settings, "mockup-gateway") | {
                "GATEWAY_RATE_LIMIT": str(settings.gateway_rate_limit),
                "GATEWAY_RATE_BURST": str(settings.gateway_rate_burst),
                "GATEWAY_UPSTREAM_TIMEOUT": str(settings.gateway_upstream_timeout_seconds),
            },
            secret_files={f"{SECRETS_DIR}/api-keys": self.api_key.result.apply(lambda k: k + "\n")},
            file_owner=SERVICE_UID,
            healthcheck=python_health(f"http://127.0.0.1:{GATEWAY_PORT}/healthz"),
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
            published_port=GATEWAY_PORT,
        ), parent=self, depends_on=[self.mime_server])

        self.backups: docker.Volume | None = None
        self.backup: docker.Container | None = None
        if settings.backup_enabled:
            assert ops_image is not None, "scheduled backups run from the ops image"
            self.backups = data_volume(settings, "mime-storage-backups", parent=self)
            command = ["python", "-m", "automation", "backup-schedule", "--source", "/data", "--dest", "/backups",
                       "--every", f"{settings.backup_interval_hours}h", "--name", "mime-storage",
                       # objects before their sidecars' directory; uploads in flight (tmp/) are skipped
                       "--first", "objects", "--exclude", "tmp/*",
                       "--compression", settings.backup_compression,
                       "--keep-last", str(settings.backup_keep_last),
                       "--max-age-days", str(settings.backup_max_age_days)]
            backup_env: dict[str, pulumi.Input[str]] = {}
            backup_secrets: dict[str, pulumi.Input[str]] = {}
            if settings.backup_s3_bucket:
                command += ["--s3-bucket", settings.backup_s3_bucket, "--s3-prefix", settings.backup_s3_prefix]
                if settings.backup_s3_endpoint:
                    command += ["--s3-endpoint", settings.backup_s3_endpoint]
                if secrets.backup_s3_access_key_id is not None and secrets.backup_s3_secret_access_key is not None:
                    backup_secrets[f"{SECRETS_DIR}/aws-credentials"] = pulumi.Output.format(
                        "[default]\naws_access_key_id = {0}\naws_secret_access_key = {1}\n",
                        secrets.backup_s3_access_key_id, secrets.backup_s3_secret_access_key)
                    backup_env["AWS_SHARED_CREDENTIALS_FILE"] = f"{SECRETS_DIR}/aws-credentials"
            self.backup = hardened_container(settings, network, ContainerSpec(
                service="backup",
                image=ops_image.image_name,
                remote=False,
                command=command,
                envs=backup_env,
                secret_files=backup_secrets,
                file_owner=SERVICE_UID,
                mounts=[Mount("/data", self.storage, read_only=True), Mount("/backups", self.backups)],
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
            ), parent=self, depends_on=[self.mime_server])
        self.register_outputs({"mime_server": self.mime_server.name, "gateway": self.gateway.name})
