"""S3 transfer of archives with boto3: multipart upload, download, listing and deletion under a prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from automation.errors import BackupError, ConfigError

PART_SIZE = 8 << 20


def client(endpoint: str | None) -> Any:
    """A boto3 S3 client; credentials and region come from the usual AWS environment/config chain."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4)


def object_key(prefix: str, name: str) -> str:
    """Join a prefix and a file name with exactly one slash."""
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def parse_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ConfigError(f"invalid S3 URL {url!r}: expected s3://BUCKET/KEY")
    return parts.netloc, parts.path.lstrip("/")


def upload(s3: Any, path: Path, bucket: str, key: str, on_bytes: Callable[[int], None] | None = None) -> None:
    """Upload a file (multipart above 8 MiB)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.upload_file(str(path), bucket, key, Config=_transfer_config(), Callback=on_bytes)
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"upload of {path.name!r} to s3://{bucket}/{key} failed: {exc}") from None


def download(s3: Any, bucket: str, key: str, path: Path, required: bool = True) -> bool:
    """Download an object to ``path``; a missing optional object returns False."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.download_file(bucket, key, str(path), Config=_transfer_config())
        return True
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if not required and code in ("404", "NoSuchKey", "NotFound"):
            return False
        raise ConfigError(f"cannot download s3://{bucket}/{key}: {exc}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot download s3://{bucket}/{key}: {exc}") from None


def list_names(s3: Any, bucket: str, prefix: str) -> list[str]:
    """File names (keys without the prefix) directly under ``prefix``."""
    start = object_key(prefix, "")
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=start):
        for item in page.get("Contents", []):
            rest = item["Key"][len(start):]
            if "/" not in rest:
                names.append(rest)
    return names


def delete(s3: Any, bucket: str, keys: list[str]) -> None:
    """Delete objects in batches of 1000 (the API's limit)."""
    for i in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[i : i + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
