"""ContentStore: in-memory uploads and spilling, the sidecar written in place, group commit of the objects/ fsync."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mime_server import storage
from mime_server.storage import ContentStore, GroupSync, ObjectStore, PendingUpload

METADATA = {"mime_type": "text/plain", "charset": "us-ascii"}


def upload(store: ObjectStore, data: bytes, piece: int = 4096) -> PendingUpload:
    pending = store.begin()
    for start in range(0, len(data), piece):
        pending.write(data[start:start + piece])
        if pending.needs_spill:
            pending.spill()
    return pending


def commit(store: ObjectStore, data: bytes, piece: int = 4096) -> tuple[str, bool]:
    return store.commit(upload(store, data, piece), {**METADATA, "size": len(data)})


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


# -- group commit of the directory fsync ---------------------------------------------------------


class GatedFsync:
    """An injected fsync that records each call and blocks until the test opens its gate."""

    def __init__(self) -> None:
        self.started = 0
        self.gates: list[threading.Event] = [threading.Event() for _ in range(10)]
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.started += 1
            gate = self.gates[self.started - 1]
        assert gate.wait(5), "gate never opened"


def test_a_sync_called_while_an_fsync_is_in_flight_waits_for_the_next_one() -> None:
    fsync = GatedFsync()
    group = GroupSync(fsync)
    first_done, second_done = threading.Event(), threading.Event()

    def sync_then(done: threading.Event) -> None:
        group.sync()
        done.set()

    first = threading.Thread(target=sync_then, args=(first_done,))
    first.start()
    wait_for(lambda: fsync.started == 1)
    # A rename happens now, while fsync #1 (which may have started before it) is in flight.
    second = threading.Thread(target=sync_then, args=(second_done,))
    second.start()
    time.sleep(0.05)
    assert not second_done.is_set()
    fsync.gates[0].set()
    assert first_done.wait(5)
    # Fsync #1 completing is not enough for the second caller: it runs fsync #2 and waits for it.
    wait_for(lambda: fsync.started == 2)
    time.sleep(0.05)
    assert not second_done.is_set(), "acknowledged on an fsync that started before its call"
    fsync.gates[1].set()
    assert second_done.wait(5)
    first.join()
    second.join()
    assert (fsync.started, group.fsyncs) == (2, 2)


def test_callers_waiting_together_share_one_fsync() -> None:
    fsync = GatedFsync()
    group = GroupSync(fsync)
    leader = threading.Thread(target=group.sync)
    leader.start()
    wait_for(lambda: fsync.started == 1)
    followers = [threading.Thread(target=group.sync) for _ in range(8)]
    for follower in followers:
        follower.start()
    time.sleep(0.05)
    fsync.gates[0].set()
    wait_for(lambda: fsync.started == 2)
    fsync.gates[1].set()
    for thread in [leader, *followers]:
        thread.join(5)
        assert not thread.is_alive()
    assert fsync.started == 2, "the 8 callers that arrived during fsync #1 should share fsync #2"


def test_a_sync_with_nothing_in_flight_runs_its_own_fsync() -> None:
    calls: list[float] = []
    group = GroupSync(lambda: calls.append(time.monotonic()))
    group.sync()
    group.sync()
    assert len(calls) == 2


def test_a_failed_fsync_fails_its_callers_and_the_next_one_can_succeed() -> None:
    outcomes = [OSError(5, "Input/output error"), None]

    def fsync() -> None:
        error = outcomes.pop(0)
        if error is not None:
            raise error

    group = GroupSync(fsync)
    with pytest.raises(OSError, match="Input/output error"):
        group.sync()
    group.sync()
    assert outcomes == []


def test_concurrent_commits_share_fsyncs_of_objects(tmp_path: Path) -> None:
    synced: list[Path] = []

    def slow_fsync(path: Path) -> None:
        synced.append(path)
        time.sleep(0.03)

    store = ContentStore(tmp_path, fsync_dir=slow_fsync)
    writers = 8
    bodies = [f"body {n}\n".encode() * 100 for n in range(writers)]
    barrier = threading.Barrier(writers)
    results: list[tuple[str, bool]] = []

    def writer(data: bytes) -> None:
        pending = upload(store, data)
        barrier.wait()
        results.append(store.commit(pending, {**METADATA, "size": len(data)}))

    threads = [threading.Thread(target=writer, args=(data,)) for data in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == sorted((hashlib.sha256(data).hexdigest(), True) for data in bodies)
    assert set(synced) == {tmp_path / "objects"}
    assert 1 <= len(synced) < writers, f"{writers} concurrent commits ran {len(synced)} fsyncs"
    for data in bodies:
        assert (tmp_path / "objects" / hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_every_commit_waits_for_an_fsync_after_its_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    store = ContentStore(tmp_path, fsync_dir=lambda path: events.append("fsync"))
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        events.append("rename")

    monkeypatch.setattr(storage.os, "replace", replace)
    commit(store, b"first\n")
    commit(store, b"first\n")  # deduplicated: still waits, a twin may not have synced yet
    assert events == ["rename", "fsync", "fsync"]


# -- uploads in memory, spilled past the threshold ------------------------------------------------


def test_small_upload_touches_no_file_until_commit(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"held in memory\n" * 1000
    pending = upload(store, data)
    assert not pending.on_disk and not pending.needs_spill
    assert list(store.tmp.iterdir()) == []
    assert (pending.size, pending.sha256, pending.content()) == (len(data), hashlib.sha256(data).hexdigest(), data)
    object_id, created = store.commit(pending, {**METADATA, "size": len(data)})
    assert created and (store.objects / object_id).read_bytes() == data
    assert list(store.tmp.iterdir()) == []


def test_upload_past_the_threshold_is_spilled_in_batches(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, spill_threshold=10_000)
    pending = store.begin()
    data = os.urandom(35_000)
    spills = 0
    for start in range(0, len(data), 3000):
        pending.write(data[start:start + 3000])
        if pending.needs_spill:
            pending.spill()
            spills += 1
            assert pending.on_disk and not pending.needs_spill
    assert spills == 3
    assert pending.path is not None and pending.path.parent == store.tmp
    assert pending.path.stat().st_size == 35_000  # batches of 12 000, 12 000 and 11 000 bytes
    object_id, created = store.commit(pending, {**METADATA, "size": len(data)})
    assert (object_id, created) == (hashlib.sha256(data).hexdigest(), True)
    assert (store.objects / object_id).read_bytes() == data
    assert list(store.tmp.iterdir()) == []


def test_uploads_together_stay_within_the_memory_budget(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, spill_threshold=1_000_000, memory_budget=100_000)
    first, second, third = store.begin(), store.begin(), store.begin()
    first.write(b"a" * 60_000)
    assert not first.needs_spill and store.memory.used == 60_000
    second.write(b"b" * 60_000)  # together past the budget: both spill, though each is under the threshold
    assert first.needs_spill and second.needs_spill and not third.needs_spill  # nothing buffered in the third
    second.spill()
    assert store.memory.used == 60_000 and not first.needs_spill and not second.needs_spill
    third.write(b"c" * 50_000)
    assert store.memory.used == 110_000 and first.needs_spill and third.needs_spill
    third.discard()
    object_id, _ = store.commit(first, {**METADATA, "size": 60_000})
    assert store.memory.used == 0  # committed, spilled and discarded uploads hold nothing
    assert (store.objects / object_id).read_bytes() == b"a" * 60_000
    second.write(b"b" * 10)
    object_id, _ = store.commit(second, {**METADATA, "size": 60_010})
    assert (store.objects / object_id).read_bytes() == b"b" * 60_010 and store.memory.used == 0


def test_discard_removes_a_spilled_temp_file(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, spill_threshold=100)
    pending = upload(store, b"x" * 1000, piece=150)
    assert pending.on_disk and list(store.tmp.iterdir()) == [pending.path]
    pending.discard()
    pending.discard()
    assert list(store.tmp.iterdir()) == []


def test_same_content_is_stored_once_and_the_twin_creates_no_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path)
    object_id, created = commit(store, b"twice\n")
    assert created
    created_files: list[str] = []
    real_mkstemp = storage.tempfile.mkstemp

    def mkstemp(**kwargs: str | Path) -> tuple[int, str]:
        created_files.append(str(kwargs["prefix"]))
        return real_mkstemp(**kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(storage.tempfile, "mkstemp", mkstemp)
    assert commit(store, b"twice\n") == (object_id, False)
    assert created_files == []
    assert store.object_ids() == [object_id]
    assert list(store.tmp.iterdir()) == []


def test_spilled_duplicate_is_discarded(tmp_path: Path) -> None:
    store = ContentStore(tmp_path, spill_threshold=100)
    data = os.urandom(5000)
    first = commit(store, data)
    assert commit(store, data) == (first[0], False)
    assert list(store.tmp.iterdir()) == []


# -- the sidecar ----------------------------------------------------------------------------------


def test_sidecar_is_complete_before_the_object_is_renamed_in(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path)
    seen: list[object] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        name = Path(dst).name
        seen.append(json.loads((store.meta / f"{name}.json").read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", replace)
    data = b"sidecar first\n"
    object_id, _ = commit(store, data)
    assert seen == [{**METADATA, "size": len(data)}]
    assert store.get(object_id).metadata == {**METADATA, "size": len(data)}


def sidecar_bytes(data: bytes) -> bytes:
    return json.dumps({**METADATA, "size": len(data)}, sort_keys=True).encode()


def test_get_never_serves_a_torn_sidecar(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"torn\n"
    object_id, _ = commit(store, data)
    sidecar = store.meta / f"{object_id}.json"
    full = sidecar.read_bytes()
    assert full == sidecar_bytes(data)
    for length in range(len(full)):  # every strict prefix a crash could leave behind
        sidecar.write_bytes(full[:length])
        assert store.get(object_id).metadata == {}, f"torn sidecar of {length} bytes served"
    bad = [b"\x00" * len(full),  # size written back but not the data
           b"null", b"[1, 2]", b'{"charset": "binary"}', b'{"mime_type": 7}',
           json.dumps({**METADATA, "size": len(data) + 1}).encode()]  # not this object's sidecar
    for content in bad:
        sidecar.write_bytes(content)
        assert store.get(object_id).metadata == {}, content
    sidecar.write_bytes(full)
    assert store.get(object_id).metadata == {**METADATA, "size": len(data)}


@pytest.mark.parametrize("leftover", [b"", b'{"charset": "us-as'])
def test_a_torn_sidecar_left_by_a_crash_is_replaced_on_the_next_upload(tmp_path: Path, leftover: bytes) -> None:
    data = b"crashed between create and write\n"
    object_id = hashlib.sha256(data).hexdigest()
    (tmp_path / "meta").mkdir(parents=True)
    (tmp_path / "meta" / f"{object_id}.json").write_bytes(leftover)  # O_EXCL create done, write never ran
    store = ContentStore(tmp_path)
    assert commit(store, data) == (object_id, True)
    assert store.get(object_id).metadata == {**METADATA, "size": len(data)}
    assert list(store.tmp.iterdir()) == []


def test_a_lost_sidecar_of_a_stored_object_is_rewritten_by_a_duplicate_upload(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"sidecar lost in a power cut\n"
    object_id, _ = commit(store, data)
    (store.meta / f"{object_id}.json").unlink()
    assert store.get(object_id).metadata == {}
    assert commit(store, data) == (object_id, False)
    assert store.get(object_id).metadata == {**METADATA, "size": len(data)}


def test_a_complete_sidecar_is_kept(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    data = b"kept\n"
    object_id, _ = commit(store, data)
    sidecar = store.meta / f"{object_id}.json"
    inode = sidecar.stat().st_ino
    commit(store, data)
    assert sidecar.stat().st_ino == inode


def test_a_failed_sidecar_write_leaves_no_sidecar_and_no_object(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path)
    pending = upload(store, b"disk full\n")
    writes: list[bytes] = []

    def full_at_the_sidecar(fd: int, data: bytes) -> None:  # the object's temp file (writev) went out whole
        writes.append(data)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "_write_all", full_at_the_sidecar)
    with pytest.raises(OSError, match="No space left"):
        store.commit(pending, {**METADATA, "size": pending.size})
    assert len(writes) == 1 and json.loads(writes[0])["size"] == 10
    assert (list(store.objects.iterdir()), list(store.meta.iterdir()), list(store.tmp.iterdir())) == ([], [], [])


def test_spilled_chunks_are_written_whole_when_the_kernel_takes_a_few_bytes_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, buffers: real_writev(fd, [bytes(buffers[0][:3])]))
    store = ContentStore(tmp_path, spill_threshold=4)
    pending = store.begin()
    for chunk in (b"first ", b"", b"second ", b"third"):
        pending.write(chunk)
    pending.spill()
    assert pending.path is not None and pending.path.read_bytes() == b"first second third"
    pending.discard()


def test_a_body_begun_unhashed_cannot_be_committed(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    pending = store.begin(hashed=False)  # a detect request's prefix: looked at, never stored
    pending.write(b"looked at only\n")
    with pytest.raises(RuntimeError, match="unhashed"):
        store.commit(pending, {**METADATA, "size": pending.size})
    assert list(store.objects.iterdir()) == [] and list(store.tmp.iterdir()) == []
