"""The JSON-lines file format: one JSON object a line, UTF-8, ``\\n``-terminated.

This module owns how records become bytes and how bytes become records again; nothing else
parses or writes data files. Its guarantees:

- A record is a whole line or it is not there. A line without its ``\\n`` at the end of a file
  is a torn append (a writer died mid-write); a line that does not parse as a JSON object is
  corrupt (a crash on a bad disk, a hand edit). Both are skipped with a warning that names the
  file and the line number; every other line still loads.
- A file is replaced only whole: the new content is written beside it, fsync'd, renamed over it,
  and the folder is fsync'd, so a crash at any instant leaves either the old or the new file.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

__all__ = [
    "Record",
    "bulk_load",
    "fsync_dir",
    "iter_records",
    "iter_snapshot",
    "replace_file",
    "replace_file_bytes",
    "write_all",
    "write_lines",
]

Record = dict[str, Any]
T = TypeVar("T")

log = logging.getLogger("platform_shim.store")

_SYNC_EVERY = 4 << 20


def iter_records(
    data: bytes,
    path: Path | str,
    first_line: int = 1,
    *,
    final: bool = True,
    quiet_until: int = 0,
) -> Iterator[tuple[int, Record, bytes]]:
    """Yield ``(line number, record, line bytes)`` for each whole, valid line in ``data``.

    ``data`` must start at a line boundary. With ``final`` the last fragment (no ``\\n``) is a
    torn line and is reported; without it, the caller is expected to keep that fragment for
    later (a writer may still be appending it) and this function ignores it. Lines up to
    ``quiet_until`` are not reported (a second pass over lines reported already).
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when data ends with a newline
    lineno = first_line
    for line in lines:
        if line:
            record = _parse(line, path, lineno, lineno > quiet_until)
            if record is not None:
                yield lineno, record, line
        lineno += 1
    if tail and final:
        log.warning("%s:%d: skipped a torn line (no newline at the end of the file)", path, lineno)


def _parse(line: bytes, path: Path | str, lineno: int, warn: bool = True) -> Record | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if warn:
            log.warning("%s:%d: skipped a corrupt line (%s)", path, lineno, exc)
        return None
    if not isinstance(record, dict):
        if warn:
            log.warning("%s:%d: skipped a line that is not a JSON object", path, lineno)
        return None
    return record


def iter_snapshot(path: Path) -> Iterator[Record]:
    """The records of a snapshot file, one line at a time (nothing when it does not exist).

    Snapshots are replaced whole, so a bad line here is damage: it is skipped with a warning
    naming the file and line, like any other."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    parse = orjson.loads
    with handle:
        for lineno, line in enumerate(handle, 1):
            try:
                record = parse(line)  # the trailing newline is whitespace to the parser
            except orjson.JSONDecodeError:
                if line.strip():
                    _parse(line.rstrip(b"\n"), path, lineno)  # warns, naming file and line
                continue
            if isinstance(record, dict):
                yield record
            else:
                log.warning("%s:%d: skipped a line that is not a JSON object", path, lineno)


@contextmanager
def bulk_load() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects at once.

    Loading a million records creates millions of dicts; each generation-2 pass walks all of
    them, which made a 1M-line load 8x slower in our measurements. Nothing built while loading
    is cyclic garbage, so nothing is lost by pausing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(
    path: Path,
    lines: Iterable[bytes],
    *,
    before_rename: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Write ``lines`` (each without its newline) to a new file and atomically put it at ``path``.

    Returns the new file's size and line count. ``before_rename`` runs after the new file is durable and just
    before the rename; crash tests use it to die at that instant.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    return _replace(path, tmp, lambda fd: write_lines(fd, lines), before_rename)


def replace_file_bytes(path: Path, data: bytes) -> None:
    """Atomically put ``data`` at ``path`` (temp file, fsync, rename, fsync the folder).

    The temp name is unique per call: threads of one process may write the same path at once
    (two puts of the same blob)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    _replace(path, tmp, lambda fd: write_all(fd, data), None)


def _replace(
    path: Path, tmp: Path, write: Callable[[int], T], before_rename: Callable[[], None] | None
) -> T:
    # The one replace sequence: write the temp file, fsync it, rename it over ``path``, fsync the
    # folder. Until the rename ``path`` is untouched; a failed write leaves no temp file behind.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        result = write(fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return result


def write_lines(fd: int, lines: Iterable[bytes]) -> tuple[int, int]:
    """Write ``lines`` (each without its newline); returns the bytes and lines written."""
    # Joined into writes of about 1 MiB: one syscall per line would dominate a snapshot's cost.
    # Every _SYNC_EVERY bytes the file is fdatasync'd: a big file's dirty pages otherwise pile
    # up, and the next small fsync of a log (ext4 commits them in the same journal transaction)
    # waits for all of them, which made requests wait hundreds of ms while a snapshot was written.
    size = count = 0
    buf: list[bytes] = []
    pending = unsynced = 0
    for line in lines:
        buf.append(line)
        buf.append(b"\n")
        count += 1
        pending += len(line) + 1
        if pending >= 1 << 20:
            size += write_all(fd, b"".join(buf))
            buf.clear()
            unsynced += pending
            pending = 0
            if unsynced >= _SYNC_EVERY:
                os.fdatasync(fd)
                unsynced = 0
    if buf:
        size += write_all(fd, b"".join(buf))
    return size, count


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` (``os.write`` may write less than asked); returns its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)
