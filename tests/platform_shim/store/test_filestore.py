"""The data folder: blobs, snapshots, the single-worker lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from platform_shim.errors import DataDirLocked
from platform_shim.store import FileStore
from platform_shim.store.jsonl import replace_file
from tests.support.procs import env


def test_blobs_are_content_addressed_and_durable(data_dir: Path) -> None:
    store = FileStore(data_dir)
    digest = store.put_blob(b"hello")
    assert store.put_blob(b"hello") == digest
    assert store.read_blob(digest) == b"hello"
    assert store.read_blob("0" * 64) is None
    assert [d for d, _ in store.blob_digests()] == [digest]
    store.delete_blob(digest)
    assert store.read_blob(digest) is None
    with pytest.raises(ValueError, match="digest"):
        store.read_blob("../../etc/passwd")
    store.close()


def test_snapshots_replace_whole(data_dir: Path) -> None:
    store = FileStore(data_dir)
    store.write_snapshot("kv", [orjson.dumps({"checkpoint": 3}), orjson.dumps({"k": "a"})])
    assert list(store.read_snapshot("kv")) == [{"checkpoint": 3}, {"k": "a"}]
    assert list(store.read_snapshot("missing")) == []
    store.close()


def test_a_crash_before_the_rename_leaves_the_old_file(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    path = data_dir / "f.jsonl"
    path.write_bytes(b'{"old":1}\n')

    def boom() -> None:
        raise RuntimeError("died")

    with pytest.raises(RuntimeError):
        replace_file(path, [b'{"new":1}'], before_rename=boom)
    assert path.read_bytes() == b'{"old":1}\n'


@pytest.mark.chaos
def test_one_worker_per_folder_and_the_lock_dies_with_its_process(data_dir: Path) -> None:
    first = FileStore(data_dir)
    first.acquire_worker_lock()
    second = FileStore(data_dir)
    with pytest.raises(DataDirLocked) as caught:
        second.acquire_worker_lock()
    assert caught.value.pid == os.getpid()
    assert str(os.getpid()) in str(caught.value)
    first.close()
    second.acquire_worker_lock()
    second.close()

    # A worker killed while holding the lock does not block the next one.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from platform_shim.store import FileStore;"
            f"s=FileStore({str(data_dir)!r}); s.acquire_worker_lock(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    third = FileStore(data_dir)
    with pytest.raises(DataDirLocked) as caught:
        third.acquire_worker_lock()
    assert caught.value.pid == holder.pid
    holder.kill()
    holder.wait()
    holder.stdout.close()
    third.acquire_worker_lock()
    assert third.worker_pid() == os.getpid()
    third.close()


def test_a_process_asking_who_the_worker_is_never_keeps_the_worker_out(data_dir: Path) -> None:
    """A client asks "is there a worker?" by probing the worker lock. A worker starting during
    the probe used to fail with DataDirLocked (the SIGKILL suite's cycle 6 on CI): a probe is not a
    worker, so the worker waits it out, and two probes at once both see the folder free."""
    data_dir.mkdir(parents=True)
    FileStore(data_dir).close()
    lock_file = data_dir / ".locks" / "worker.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe in progress, held 0.3 s
        asker = FileStore(data_dir)
        assert asker.worker_pid() is None  # a second probe during the first: still no worker
        release = threading.Timer(0.3, fcntl.flock, (fd, fcntl.LOCK_UN))
        release.start()
        worker = FileStore(data_dir)
        worker.acquire_worker_lock()
        release.join()
        assert asker.worker_pid() == os.getpid()
        worker.close()
        asker.close()
    finally:
        os.close(fd)
