"""The data folder: JSON-lines logs and snapshots, content-addressed blobs, the worker lock.

Layout (documented for users in the README):

    data/
      events.jsonl     the platform event stream; every service change is one line here
      runs.jsonl       the workflow ledger: runs, steps, signals
      dispatch.jsonl   handler and trigger cursors, dead handler deliveries
      kv.jsonl, db.jsonl, storage.jsonl, queue.jsonl
                       snapshots written by compaction (the live state as of an event id)
      runs-archive/    finished runs, moved out of runs.jsonl (segments and their index, see
                       store/archive.py)
      blobs/ab/abcd…   storage object bytes, named by their SHA-256
      .locks/          lock files (append locks per log, the single-worker lock and its pid,
                       worker.json: the live worker's advert)
      .doorbell/       touched by a non-worker process after it appends, to wake the worker

Blobs are written whole (temp file, fsync, rename, fsync the folder) before the event that
names them is appended, so an object's metadata never points at bytes that are not on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from platform_shim.errors import DataDirLocked, StoreError
from platform_shim.store.archive import FileArchive
from platform_shim.store.flusher import Flusher
from platform_shim.store.jsonl import (
    Record,
    iter_snapshot,
    replace_file,
    replace_file_bytes,
)
from platform_shim.store.lock import WorkerLock
from platform_shim.store.log import FileLog
from platform_shim.store.memory import check_secret_name, new_secret
from platform_shim.store.protocol import Consumer, Durability
from platform_shim.store.watcher import DataWatcher

__all__ = ["FileStore"]


def _read_secret(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise StoreError(None, f"{path} is too short to be a secret; delete it to make a new one")
    return key


class FileStore:
    """A ``Store`` on a local folder."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, durability: Durability = "fsync"
    ) -> None:
        if durability not in ("fsync", "flush"):
            raise ValueError(f"durability must be 'fsync' or 'flush', not {durability!r}")
        self.data_dir = Path(data_dir).absolute()
        self.location = str(self.data_dir)
        self.durability: Durability = durability
        self.lock_dir = self.data_dir / ".locks"
        self.blob_dir = self.data_dir / "blobs"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self.doorbell_dir = self.data_dir / ".doorbell"
        self.doorbell_dir.mkdir(exist_ok=True)
        self._doorbell = self.doorbell_dir / f"{os.getpid()}"
        self.flusher = Flusher(self.data_dir.name)
        self._logs: dict[str, FileLog] = {}
        self._archives: list[FileArchive] = []
        # Only the worker compacts, so the worker's files are never replaced under it.
        self.worker = False
        self._worker_lock = WorkerLock(self.lock_dir / "worker.lock")

    # ---------------------------------------------------------------------------- logs

    def open_log(self, name: str, consumer: Consumer) -> FileLog:
        if name in self._logs:
            raise ValueError(f"log {name!r} is already open in this store")
        opened = FileLog(self, name, consumer)
        self._logs[name] = opened
        return opened

    def open_archive(self, name: str, *, writable: bool) -> FileArchive:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"not an archive name: {name!r}")
        archive = FileArchive(self.data_dir / name, writable=writable)
        self._archives.append(archive)
        return archive

    def log_path(self, name: str) -> Path:
        return self.data_dir / f"{name}.jsonl"

    # ----------------------------------------------------------------------- snapshots

    def read_snapshot(self, name: str) -> Iterator[Record]:
        """The snapshot's records, read line by line (a million of them need not sit in a list)."""
        return iter_snapshot(self.log_path(name))

    def write_snapshot(self, name: str, lines: Iterable[bytes]) -> None:
        replace_file(self.log_path(name), lines)

    # --------------------------------------------------------------------------- blobs

    def blob_path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a blob digest: {digest!r}")
        return self.blob_dir / digest[:2] / digest

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        try:
            try:
                # Touched so that a compaction's garbage collection, which spares young blobs,
                # cannot remove it before the event that refers to it again is written.
                os.utime(path)
                return digest
            except FileNotFoundError:
                pass
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file_bytes(path, data)
        except OSError as exc:
            raise StoreError(
                exc.errno, f"could not store an object's bytes: {exc.strerror}"
            ) from exc
        return digest

    def read_blob(self, digest: str) -> bytes | None:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None

    def blob_digests(self) -> Iterator[tuple[str, float]]:
        if not self.blob_dir.exists():
            return
        for sub in self.blob_dir.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                if len(path.name) == 64 and not path.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        yield path.name, path.stat().st_mtime

    def delete_blob(self, digest: str) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    def ring(self) -> None:
        """Tell the worker (watching ``.doorbell/``) that this process appended something.

        Only other processes ring: the worker's own appends would otherwise wake its watcher
        thousands of times a second for nothing."""
        if self.worker:
            return
        try:
            os.utime(self._doorbell)
        except FileNotFoundError:
            self._doorbell.touch()

    # -------------------------------------------------------------------------- secrets

    def secret(self, name: str, *, create: bool) -> bytes | None:
        """``<data>/<name>.key`` (0600), made with a link, which refuses to replace a key
        another process made at the same moment."""
        check_secret_name(name)
        path = self.data_dir / f"{name}.key"
        with contextlib.suppress(FileNotFoundError):
            return _read_secret(path)
        if not create:
            return None
        temp = self.data_dir / f".{name}.key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, new_secret())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)  # atomic, and refuses to replace a key another process made
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        return _read_secret(path)

    # --------------------------------------------------------------------- worker lock

    def acquire_worker_lock(self) -> None:
        if not self._worker_lock.try_acquire():
            raise DataDirLocked(str(self.data_dir), self.worker_pid())
        self.worker = True
        pid_file = self.lock_dir / "worker.pid"
        replace_file_bytes(pid_file, f"{os.getpid()}\n".encode())
        self._remove_stale_temp_files()

    def release_worker_lock(self) -> None:
        if self._worker_lock.held:
            (self.lock_dir / "worker.json").unlink(missing_ok=True)
            (self.lock_dir / "worker.pid").unlink(missing_ok=True)
            self._worker_lock.release()
        self.worker = False

    @property
    def lock_lost(self) -> bool:
        return False  # held by this process until it lets go or ends

    def worker_pid(self) -> int | None:
        """The pid of the live worker on this folder, or None when there is none."""
        if not self._worker_lock.held and not self._worker_lock.held_elsewhere():
            return None
        try:
            return int((self.lock_dir / "worker.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_advert(self, advert: dict[str, Any]) -> None:
        if not self.worker:
            raise StoreError(None, f"only the worker advertises on {self.data_dir}")
        replace_file_bytes(self.lock_dir / "worker.json", orjson.dumps(advert))

    def read_advert(self) -> dict[str, Any] | None:
        # The file outlives a killed worker: it counts only while someone holds the lock.
        if self.worker_pid() is None:
            return None
        try:
            advert = orjson.loads((self.lock_dir / "worker.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return advert if isinstance(advert, dict) else None

    def watch(self, on_change: Callable[[], None], *, poll_interval: float) -> DataWatcher:
        # Other processes touch a file in .doorbell/ after they append (``ring``).
        return DataWatcher(self.doorbell_dir, on_change, poll_interval=poll_interval)

    def _remove_stale_temp_files(self) -> None:
        # Left by a compaction or a blob write that died before its rename; only the worker
        # compacts, and blob temps older than a minute have no live writer.
        for path in self.data_dir.glob("*.tmp"):
            path.unlink(missing_ok=True)
        if self.blob_dir.exists():
            cutoff = time.time() - 60
            for path in self.blob_dir.glob("*/*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()

    # -------------------------------------------------------------------------- closing

    def documents(self) -> None:
        return None  # the database service queries its own fold

    def kv_table(self) -> None:
        return None  # the KV service folds its keys

    def close(self) -> None:
        self._doorbell.unlink(missing_ok=True)
        self.flusher.close()
        for opened in self._logs.values():
            opened.close()
        self._logs.clear()
        for archive in self._archives:
            archive.close()
        self._archives.clear()
        self.release_worker_lock()
