"""The observed workload as services: mime-server, mockup-gateway in front of it, and the scheduled backup of mime_storage.

On a cluster with `objectStoreBucket` set, mime-server keeps its files in the S3-compatible store
(`--storage-backend s3`, under `mime-storage/`), so any replica serves any file; the scheduled
backup of the mime_storage volume is a Docker-host job and is not deployed there (the bucket's
versioning or replication is the store's backup).
"""

from __future__ import annotations

from config.jaeger import JAEGER, OTLP_HTTP_ENDPOINT
from config.services import (
    AWS_CREDENTIALS_TEMPLATE, WORKLOAD_UID, Container, Credential, Endpoint, SecretFile, Service, Volume,
    python_health,
)
from config.settings import OBJECT_STORE_SECRET_KEYS, StackSettings
from mime_server.limits import POOL_CONNECTIONS

MIME_PORT = 8080
GATEWAY_PORT = 8000
SECRETS_DIR = "/run/secrets"
STORAGE_DIR = "/data"
BACKUPS_DIR = "/backups"
STORAGE = Volume("mime-storage", STORAGE_DIR, size_gi=10)
API_KEY = Credential("gateway-api-key", 40)
ADMIN_KEY = Credential("fault-admin-key", 40)
S3_PREFIX = "mime-storage/"
S3_CREDENTIALS_FILE = f"{SECRETS_DIR}/aws-credentials"


def otel_env(settings: StackSettings, service: str) -> dict[str, str]:
    """Standard OTEL_* variables: OTLP over HTTP to Jaeger, or tracing off when Jaeger is not deployed."""
    env = {
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={settings.stack}",
    }
    if JAEGER.enabled(settings):
        env |= {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_HTTP_ENDPOINT,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    else:
        env["OTEL_TRACES_EXPORTER"] = "none"
    return env


def edge_env(prefix: str, settings: StackSettings, key: str) -> dict[str, str]:
    """The edge limits (mime_server/limits.py) of one service as its environment: <PREFIX>_MAX_HEADER_BYTES..."""
    field = key.replace("Server", "_server").lower()  # mimeServer -> mime_server, gateway -> gateway
    return {f"{prefix}_{name.upper()}": _number(getattr(settings, f"{field}_{name}{suffix}"))
            for name, suffix in (("max_header_bytes", ""), ("max_headers", ""), ("header_timeout", "_seconds"),
                                 ("body_timeout", "_seconds"), ("keepalive_timeout", "_seconds"),
                                 ("max_connections", ""))}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _mime_server(settings: StackSettings) -> Container:
    env = otel_env(settings, MIME_SERVER.name) | edge_env("MIME", settings, MIME_SERVER.key) | {
        "MIME_MAX_UPLOAD_BYTES": str(settings.mime_server_max_upload_bytes),
        "MIME_UPLOAD_MEMORY_BUDGET_BYTES": str(settings.mime_server_upload_memory_budget_bytes),
    }
    secret_files: tuple[SecretFile, ...] = ()
    credentials: tuple[Credential, ...] = ()
    if settings.fault_injection_enabled:
        path = f"{SECRETS_DIR}/admin-key"
        secret_files, credentials = (SecretFile(path, (ADMIN_KEY.name,)),), (ADMIN_KEY,)
        env["MIME_ADMIN_KEY_FILE"] = path
    command: tuple[str, ...] = ("python", "-m", "mime_server", "--host", "0.0.0.0", "--port", str(MIME_PORT))
    volumes: tuple[Volume, ...] = (STORAGE,)
    tmp_mb = 64
    if settings.object_store:
        # on an object store, bodies past the memory budget spill to /tmp (on the volume otherwise):
        # room for the largest upload on every connection the gateway's pool and the scrapes can hold
        tmp_mb = -(-settings.mime_server_max_upload_bytes * (POOL_CONNECTIONS + 16) // (1024 * 1024))
        command += ("--storage-backend", "s3", "--s3-bucket", settings.object_store_bucket, "--s3-prefix", S3_PREFIX)
        if settings.object_store_endpoint:
            command += ("--s3-endpoint", settings.object_store_endpoint)
        env |= {"AWS_REGION": settings.object_store_region, "AWS_SHARED_CREDENTIALS_FILE": S3_CREDENTIALS_FILE}
        secret_files += (SecretFile(S3_CREDENTIALS_FILE, OBJECT_STORE_SECRET_KEYS, AWS_CREDENTIALS_TEMPLATE),)
        volumes = ()
    else:
        command += ("--storage", STORAGE_DIR)
    return Container(
        image="",
        command=command,
        env=env,
        secret_files=secret_files,
        credentials=credentials,
        file_owner=WORKLOAD_UID,
        uid=WORKLOAD_UID,
        volumes=volumes,
        health=python_health(MIME_PORT, "/healthz"),
        read_only=True,
        tmpfs={"/tmp": f"rw,noexec,nosuid,size={tmp_mb}m"},
    )


def _gateway(settings: StackSettings) -> Container:
    keys = f"{SECRETS_DIR}/api-keys"
    return Container(
        image="",
        command=("python", "-m", "mime_server.gateway", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
                 "--upstream", MIME_SERVER.url(MIME_PORT), "--api-keys-file", keys),
        env=otel_env(settings, GATEWAY.name) | edge_env("GATEWAY", settings, GATEWAY.key) | {
            "GATEWAY_RATE_LIMIT": str(settings.gateway_rate_limit),
            "GATEWAY_RATE_BURST": str(settings.gateway_rate_burst),
            "GATEWAY_UPSTREAM_TIMEOUT": str(settings.gateway_upstream_timeout_seconds),
            "GATEWAY_AUTH_FAILURE_BURST": str(settings.gateway_auth_failure_burst),
            "GATEWAY_AUTH_FAILURE_RATE": _number(settings.gateway_auth_failure_rate),
        },
        secret_files=(SecretFile(keys, (API_KEY.name,), "{0}\n"),),  # one key per line
        credentials=(API_KEY,),
        file_owner=WORKLOAD_UID,
        uid=WORKLOAD_UID,
        health=python_health(GATEWAY_PORT, "/healthz"),
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
    )


def _backup(settings: StackSettings) -> Container:
    command = ["python", "-m", "automation", "backup-schedule", "--source", STORAGE_DIR, "--dest", BACKUPS_DIR,
               "--every", f"{settings.backup_interval_hours}h", "--name", STORAGE.name,
               # objects before their sidecars' directory; uploads in flight (tmp/) are skipped
               "--first", "objects", "--exclude", "tmp/*",
               "--compression", settings.backup_compression,
               "--keep-last", str(settings.backup_keep_last),
               "--max-age-days", str(settings.backup_max_age_days)]
    env: dict[str, str] = {}
    secret_files: tuple[SecretFile, ...] = ()
    if settings.backup_s3_bucket:
        command += ["--s3-bucket", settings.backup_s3_bucket, "--s3-prefix", settings.backup_s3_prefix]
        if settings.backup_s3_endpoint:
            command += ["--s3-endpoint", settings.backup_s3_endpoint]
        keys = ("backupS3AccessKeyId", "backupS3SecretAccessKey")
        if all(k in settings.secrets_set for k in keys):
            path = f"{SECRETS_DIR}/aws-credentials"
            secret_files = (SecretFile(path, keys, AWS_CREDENTIALS_TEMPLATE),)
            env["AWS_SHARED_CREDENTIALS_FILE"] = path
    return Container(
        image="",
        command=tuple(command),
        env=env,
        secret_files=secret_files,
        file_owner=WORKLOAD_UID,
        uid=WORKLOAD_UID,
        volumes=(Volume(STORAGE.name, STORAGE_DIR, read_only=True), Volume("mime-storage-backups", BACKUPS_DIR)),
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
    )


MIME_SERVER = Service(
    name="mime-server", key="mimeServer", image="workload", container=_mime_server, port=MIME_PORT,
    health=Endpoint(MIME_PORT, "/healthz"), metrics=Endpoint(MIME_PORT, "/metrics"), after=("jaeger",))
GATEWAY = Service(
    name="mockup-gateway", key="gateway", image="workload", container=_gateway, port=GATEWAY_PORT,
    health=Endpoint(GATEWAY_PORT, "/healthz"), metrics=Endpoint(GATEWAY_PORT, "/metrics"),
    after=("mime-server", "jaeger"))
BACKUP = Service(
    name="backup", key="backup", image="ops", container=_backup,
    enabled=lambda settings: settings.backup_enabled and not settings.kubernetes, after=("mime-server",))
