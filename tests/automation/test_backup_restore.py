"""backup / verify / restore: byte-identical round trips, refusal of bad archives, retention."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from automation.retention import Backup, to_delete


def make_tree(root: Path) -> None:
    """Binary, empty, unicode, nested, empty dirs, modes, a symlink."""
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4096 + os.urandom(100_003))
    (root / "empty.txt").write_bytes(b"")
    (root / "ünïcödé ファイル.txt").write_text("héllo wörld\n", encoding="utf-8")
    (root / "nested" / "deeper" / "deepest" / "leaf").write_bytes(b"leaf\n")
    script = root / "nested" / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    secret = root / "nested" / "secret"
    secret.write_text("s")
    secret.chmod(0o600)
    (root / "nested" / "deeper").chmod(0o700)
    (root / "link-to-leaf").symlink_to("nested/deeper/deepest/leaf")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry's type, mode, content and mtime (files), relative to ``root``."""
    result: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            result[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            result[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            result[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes(), st.st_mtime_ns)
    return result


def backup(cli, source: Path, dest: Path, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    result = cli("backup", "--source", str(source), "--dest", str(dest), "--no-progress", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_round_trip_is_byte_identical(cli, tmp_path, compression) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    make_tree(source)
    summary = backup(cli, source, tmp_path / "backups", "--compression", compression)
    archive = Path(summary["archive"])
    assert archive.exists() and not list((tmp_path / "backups").glob(".*partial"))
    assert (archive.parent / (archive.name + ".sha256")).read_text().split()[0] == summary["sha256"]
    assert summary["files"] == 6 and summary["compression"] == compression

    verified = cli("verify", "--archive", str(archive))
    assert verified.exit_code == 0 and json.loads(verified.stdout)["valid"] is True

    target = tmp_path / "restored"
    restored = cli("restore", "--archive", str(archive), "--target", str(target), "--no-progress")
    assert restored.exit_code == 0, restored.stderr
    assert snapshot(target) == snapshot(source)
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(source.stat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restored.restore-")]


def test_gnu_tar_reads_the_archive_and_manifest_is_the_last_member(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    make_tree(source)
    archive = Path(backup(cli, source, tmp_path / "b")["archive"])
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(names[-1]).read().decode().splitlines()  # type: ignore[union-attr]
    assert names[-1] == "manifest.jsonl"
    assert all(n == "data" or n.startswith("data/") for n in names[:-1])
    lines = [json.loads(line) for line in manifest]
    assert lines[0]["format"] == "automation-backup/1" and lines[-1]["end"] is True
    entries = {e["path"]: e for e in lines[1:-1]}
    import hashlib

    assert entries["binary.bin"]["sha256"] == hashlib.sha256((source / "binary.bin").read_bytes()).hexdigest()


def _archive(cli, tmp_path: Path, compression: str = "gz") -> Path:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    make_tree(source)
    return Path(backup(cli, source, tmp_path / "backups", "--compression", compression)["archive"])


def _occupied_target(tmp_path: Path) -> tuple[Path, dict]:
    target = tmp_path / "live"
    target.mkdir()
    (target / "current-data").write_text("do not lose me")
    return target, snapshot(target)


@pytest.mark.parametrize("compression", ["gz", "zst", "none"])
def test_truncated_archive_is_refused_and_target_untouched(cli, tmp_path, compression) -> None:  # type: ignore[no-untyped-def]
    archive = _archive(cli, tmp_path, compression)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])
    (archive.parent / (archive.name + ".sha256")).unlink()  # prove the archive itself is checked
    target, before = _occupied_target(tmp_path)
    result = cli("restore", "--archive", str(archive), "--target", str(target), "--force", "--no-progress")
    assert result.exit_code == 1
    assert "truncated" in result.stderr
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "live", "src"]
    assert cli("verify", "--archive", str(archive)).exit_code == 1


def test_corrupted_file_content_is_refused_naming_the_file(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = _archive(cli, tmp_path, "none")
    data = bytearray(archive.read_bytes())
    marker = data.find(b"leaf\n", data.find(b"data/nested/deeper/deepest/leaf") + 512)
    data[marker] ^= 0xFF
    archive.write_bytes(bytes(data))
    (archive.parent / (archive.name + ".sha256")).unlink()
    target, before = _occupied_target(tmp_path)
    result = cli("restore", "--archive", str(archive), "--target", str(target), "--force", "--no-progress")
    assert result.exit_code == 1
    assert "nested/deeper/deepest/leaf" in result.stderr and "sha256" in result.stderr
    assert snapshot(target) == before


def test_corrupted_compressed_bytes_are_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = _archive(cli, tmp_path, "gz")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x55
    archive.write_bytes(bytes(data))
    target = tmp_path / "new-target"
    result = cli("restore", "--archive", str(archive), "--target", str(target), "--no-progress")
    assert result.exit_code == 1
    assert not target.exists()


def test_companion_digest_mismatch_is_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = _archive(cli, tmp_path)
    companion = archive.parent / (archive.name + ".sha256")
    companion.write_text("0" * 64 + "  " + archive.name + "\n")
    result = cli("verify", "--archive", str(archive))
    assert result.exit_code == 1 and "sha256" in result.stderr


def _evil_archive(path: Path, build) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        build(tar)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


@pytest.mark.parametrize(
    "build, reason",
    [
        (lambda t: _add_file(t, "data/../../escaped"), "'..'"),
        (lambda t: _add_file(t, "/etc/escaped"), "absolute"),
        (lambda t: _add_file(t, "elsewhere/file"), "expected names under data/"),
        (lambda t: _add_link(t, "data/l", "/etc/passwd"), "absolute"),
        (lambda t: _add_link(t, "data/sub/l", "../../outside"), "outside"),
        (lambda t: _add_link(t, "data/h", "data/x", tarfile.LNKTYPE), "expected file, directory or symlink"),
    ],
)
def test_unsafe_members_are_refused(cli, tmp_path, build, reason) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "evil.tar.gz"
    _evil_archive(archive, build)
    target = tmp_path / "target"
    result = cli("restore", "--archive", str(archive), "--target", str(target), "--no-progress")
    assert result.exit_code == 1
    assert reason in result.stderr
    assert not target.exists() and not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]


def test_archive_without_manifest_is_refused(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "plain.tar.gz"
    _evil_archive(archive, lambda t: _add_file(t, "data/file"))
    result = cli("verify", "--archive", str(archive))
    assert result.exit_code == 1 and "no manifest" in result.stderr


def test_non_empty_target_needs_force_and_force_replaces_it(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    archive = _archive(cli, tmp_path)
    target, before = _occupied_target(tmp_path)
    refused = cli("restore", "--archive", str(archive), "--target", str(target), "--no-progress")
    assert refused.exit_code == 3 and "--force" in refused.stderr
    assert snapshot(target) == before
    forced = cli("restore", "--archive", str(archive), "--target", str(target), "--force", "--no-progress")
    assert forced.exit_code == 0
    assert snapshot(target) == snapshot(tmp_path / "src")


def _backups(*specs: tuple[int, bool]) -> list[Backup]:
    now = datetime(2026, 1, 31, tzinfo=timezone.utc)
    return [Backup(f"b{age}", now - timedelta(days=age), good) for age, good in specs]


def test_retention_keeps_last_n_and_drops_old_but_never_the_newest_good() -> None:
    now = datetime(2026, 1, 31, tzinfo=timezone.utc)
    backups = _backups((0, True), (1, True), (2, True), (10, True), (40, True))
    assert [b.name for b in to_delete(backups, 3, None, now)] == ["b10", "b40"]
    assert [b.name for b in to_delete(backups, None, 7, now)] == ["b10", "b40"]
    assert [b.name for b in to_delete(backups, 4, 30, now)] == ["b40"]
    # Every backup old and the newest one incomplete: the newest good one survives anyway.
    stale = _backups((20, False), (25, True), (30, True))
    assert [b.name for b in to_delete(stale, 1, 7, now)] == ["b20", "b30"]
    assert to_delete(backups, None, None, now) == []


def test_backup_applies_retention_to_its_destination(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("x")
    dest = tmp_path / "backups"
    dest.mkdir()
    for stamp in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (dest / f"mime-storage-{stamp}.tar.gz").write_bytes(b"old")
        (dest / f"mime-storage-{stamp}.tar.gz.sha256").write_text("0" * 64)
    (dest / "unrelated.txt").write_text("keep")
    summary = backup(cli, source, dest, "--name", "mime-storage", "--keep-last", "2", "--max-age-days", "36500")
    names = sorted(p.name for p in dest.iterdir())
    new = Path(summary["archive"]).name
    assert names == sorted(
        ["mime-storage-20250103T000000Z.tar.gz", "mime-storage-20250103T000000Z.tar.gz.sha256", new, new + ".sha256",
         "unrelated.txt"]
    )
    assert len(summary["deleted"]) == 2


def test_runbook_backup_wrapper_uses_environment(tmp_path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    source = tmp_path / "storage"
    (source / "objects").mkdir(parents=True)
    (source / "objects" / "a").write_text("a")
    (source / "tmp").mkdir()
    (source / "tmp" / "upload-1.part").write_text("half")
    env = os.environ | {"MIME_STORAGE_DIR": str(source), "BACKUP_DIR": str(tmp_path / "out"),
                        "BACKUP_KEEP_LAST": "1", "PYTHON": sys.executable}
    for _ in range(2):
        done = subprocess.run(["bash", str(root / "automation/backup-mime-storage.sh")], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert Path(summary["archive"]).name.startswith("mime-storage-")
    assert len(list((tmp_path / "out").glob("*.tar.gz"))) == 1
    assert summary["files"] == 1  # uploads in progress (tmp/*) are not archived


def test_partials_of_dead_runs_are_removed_but_not_fresh_ones(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    source.mkdir()
    dest = tmp_path / "backups"
    dest.mkdir()
    stale = dest / ".backup-20250101T000000Z.tar.gz.partial"
    fresh = dest / ".backup-20250102T000000Z.tar.gz.partial"
    for path in (stale, fresh):
        path.write_bytes(b"half an archive")
    os.utime(stale, (0, 0))
    backup(cli, source, dest)
    assert not stale.exists() and fresh.exists()


def test_first_subtree_is_archived_before_the_rest(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "store"
    for sub in ("meta", "objects", "tmp"):
        (source / sub).mkdir(parents=True)
        (source / sub / "x").write_text(sub)
    archive = Path(backup(cli, source, tmp_path / "b", "--first", "objects", "--exclude", "tmp/*")["archive"])
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[:3] == ["data", "data/objects", "data/objects/x"]
    assert sorted(names[3:]) == ["data/meta", "data/meta/x", "data/tmp", "manifest.jsonl"]
    target = tmp_path / "restored"
    assert cli("restore", "--archive", str(archive), "--target", str(target), "--no-progress").exit_code == 0
    assert (target / "objects" / "x").read_text() == "objects" and list((target / "tmp").iterdir()) == []
