"""A real ``python -m host serve`` subprocess that the chaos tests kill and restart on one port.

Unlike ``tests/support/hostproc.py`` (one host for one test), a ``HostRunner`` keeps the port,
the project and the data folder across many processes: ``start()`` spawns a host (its log goes to
``logs/host-<n>.log``), ``wait_ready()`` polls it, ``kill()`` sends SIGKILL at once and ``stop()``
SIGTERM (a graceful shutdown that must exit 0). Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("PLATFORM_DATA_DIR", "PLATFORM_TOKEN", "PLATFORM_MAX_BODY", "CHAOS_DRAIN"):
        env.pop(name, None)
    env.update(extra)
    return env


class HostRunner:
    """Successive hosts on one project, data folder and port."""

    def __init__(self, project: Path, data: Path, logs: Path, *, port: int | None = None) -> None:
        self.project = project
        self.data = data
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0
        self.log_path = logs / "host-0.log"

    def start(self, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None, "a host is still running"
        self.count += 1
        self.log_path = self.logs / f"host-{self.count}.log"
        args = ["serve", str(self.project), "--port", str(self.port), "--data", str(self.data)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "host", *args, *extra],
                cwd=ROOT,
                env=host_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds until the host answered; fails if it exits or stays silent."""
        assert self.proc is not None
        began = time.monotonic()
        deadline = began + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"host {self.count} exited with {self.proc.returncode}:\n{self.log()[-6000:]}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/api/workflows/schedules").status_code == 200:
                        return time.monotonic() - began
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"host {self.count} did not answer in {timeout}s:\n{self.log()[-6000:]}"
                    )
                time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and the exit code (SIGKILL and a failure if it does not stop in time)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"host {self.count} did not stop on SIGTERM:\n{self.log()[-6000:]}"
                ) from None
        return int(self.proc.returncode)
