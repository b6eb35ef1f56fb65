"""A real ``python -m host`` in a subprocess, for end-to-end tests of the CLI and the server.

The host's log goes to a file (a pipe nobody reads would fill up and block it); ``log()`` reads
it back, ``wait_for_log`` polls it. Stopping sends SIGTERM, as a user's Ctrl-C would, and waits
for the graceful shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PLATFORM_DATA_DIR", None)
    env.pop("PLATFORM_TOKEN", None)
    env.update(extra)
    return env


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m host ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "host", *args],
        cwd=cwd or ROOT,
        env=host_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class HostProcess:
    """``python -m host <mode> <project> --port <free> --data <data>`` running in the background."""

    def __init__(
        self,
        mode: str,
        project: Path,
        data: Path,
        log_path: Path,
        *,
        cwd: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.data = data
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log_file = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host",
                mode,
                str(project),
                "--port",
                str(self.port),
                "--data",
                str(data),
                *extra,
            ],
            cwd=cwd or ROOT,
            env=host_env(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.http = httpx.Client(base_url=self.base_url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the host exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                return self.http.get("/api/workflows/runs").status_code == 200
            return False

        wait_until(ready, timeout, "the host to answer")

    def wait_for_log(self, text: str, timeout: float = 10, start: int = 0) -> str:
        """Wait for ``text`` to appear in the log after character ``start``; returns the log."""
        return str(
            wait_until(
                lambda: text in self.log()[start:] and self.log(),
                timeout,
                f"{text!r} in the host log",
            )
        )

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/workflows/runs/{run_id}")
        assert response.status_code == 200, response.text
        value: dict[str, Any] = response.json()
        return value

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 10) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            response = self.http.get(f"/api/workflows/runs/{run_id}")
            if response.status_code == 200 and response.json()["status"] in statuses:
                return dict(response.json())
            return None

        return dict(wait_until(check, timeout, f"run {run_id} to be {'/'.join(statuses)}"))

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the graceful shutdown; returns the exit code."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the host did not stop on SIGTERM:\n{self.log()}") from None
        self._log_file.close()
        return int(self.proc.returncode)


@contextlib.contextmanager
def running_host(
    mode: str, project: Path, data: Path, log_path: Path, **kwargs: Any
) -> Iterator[HostProcess]:
    """A started, answering host; stopped (and checked to stop cleanly) on the way out."""
    host = HostProcess(mode, project, data, log_path, **kwargs)
    ok = False
    try:
        host.wait_ready()
        yield host
        ok = True
    finally:
        code = host.stop()
        if ok:
            assert code == 0, f"the host exited with {code}:\n{host.log()}"
