"""Waiting for helper subprocesses without leaking them (warnings are errors here)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """Wait for ``proc`` and return its output; kill it (and fail) if it takes too long."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"helper process timed out; stderr:\n{err}") from None
    assert proc.returncode == 0, f"helper process failed ({proc.returncode}):\n{err}"
    return out, err


@contextlib.contextmanager
def reaping(*procs: subprocess.Popen[str]) -> Iterator[None]:
    """On the way out (a failed assertion included), kill and wait for what still runs."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def read_line(proc: subprocess.Popen[str]) -> str:
    """One line of ``proc``'s stdout, read from the pipe itself: the text wrapper's
    ``readline`` buffers ahead, and ``communicate`` would never see what it took."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()
