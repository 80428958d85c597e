"""backup upload to S3 (multipart) and restore from s3:// against a moto server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os

import boto3
import pytest

from tests.automation.conftest import free_port


@pytest.fixture
def s3_endpoint(monkeypatch):  # type: ignore[no-untyped-def]
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="backups")
    yield endpoint
    server.stop()


def test_upload_is_multipart_and_restores_from_s3(cli, tmp_path, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    (source / "objects").mkdir(parents=True)
    big = os.urandom(20 << 20)  # incompressible: the archive exceeds the 8 MiB multipart threshold
    (source / "objects" / hashlib.sha256(big).hexdigest()).write_bytes(big)
    (source / "small.txt").write_text("small")
    args = ["--source", str(source), "--dest", str(tmp_path / "local"), "--s3-bucket", "backups",
            "--s3-prefix", "mime/", "--s3-endpoint", s3_endpoint, "--no-progress", "--name", "mime-storage"]
    result = cli("backup", *args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    url = summary["s3"]["url"]
    key = url.removeprefix("s3://backups/")
    assert key.startswith("mime/mime-storage-")

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    head = s3.head_object(Bucket="backups", Key=key)
    assert head["ContentLength"] == summary["archive_bytes"]
    assert "-" in head["ETag"]  # multipart ETag: "<md5>-<parts>"
    companion = s3.get_object(Bucket="backups", Key=key + ".sha256")["Body"].read().decode()
    assert companion.split()[0] == summary["sha256"]

    target = tmp_path / "restored"
    restored = cli("restore", "--archive", url, "--target", str(target), "--s3-endpoint", s3_endpoint, "--no-progress")
    assert restored.exit_code == 0, restored.stderr
    assert (target / "objects" / hashlib.sha256(big).hexdigest()).read_bytes() == big
    assert (target / "small.txt").read_text() == "small"
    assert cli("verify", "--archive", url, "--s3-endpoint", s3_endpoint).exit_code == 0


def test_s3_retention_keeps_last_n(cli, tmp_path, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for stamp in ("20250101T000000Z", "20250102T000000Z"):
        for suffix in ("", ".sha256"):
            s3.put_object(Bucket="backups", Key=f"p/backup-{stamp}.tar.gz{suffix}", Body=b"old")
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    result = cli("backup", "--source", str(source), "--dest", str(tmp_path / "local"), "--s3-bucket", "backups",
                 "--s3-prefix", "p", "--s3-endpoint", s3_endpoint, "--keep-last", "2", "--no-progress")
    assert result.exit_code == 0, result.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="backups", Prefix="p/")["Contents"])
    new = json.loads(result.stdout)["s3"]["url"].removeprefix("s3://backups/")
    assert keys == sorted(["p/backup-20250102T000000Z.tar.gz", "p/backup-20250102T000000Z.tar.gz.sha256",
                           new, new + ".sha256"])


def test_restore_of_missing_s3_object_fails_clearly(cli, tmp_path, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    result = cli("restore", "--archive", "s3://backups/nope.tar.gz", "--target", str(tmp_path / "t"),
                 "--s3-endpoint", s3_endpoint, "--no-progress")
    assert result.exit_code == 3
    assert "s3://backups/nope.tar.gz" in result.stderr
    assert not (tmp_path / "t").exists()
