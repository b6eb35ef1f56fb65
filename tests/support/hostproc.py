"""The one way the tests run a real host: ``python -m host <command>`` in a subprocess.

``HostProcess`` keeps a project, a data folder and a port across successive processes:
``start()`` spawns ``python -m host serve|dev <project> --port <port> --data <data>`` (or
``--store <store>`` when given one, or neither for ``data=None``: the environment decides) with its
output in ``<logs>/host-<n>.log`` (a pipe nobody reads would fill up and block it),
``wait_ready()`` polls until it answers, ``stop()`` sends SIGTERM (as a user's Ctrl-C would) and
waits for the graceful shutdown, ``kill()`` sends SIGKILL at once. ``running_host`` wraps one
start and stop, and fails the test if the host did not exit 0 or its log shows an unhandled
error. Only 127.0.0.1 is ever connected to, whatever address the host binds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PORT_IN_USE = "the port is in use"  # what the host logs when it cannot bind its port

__all__ = [
    "ROOT",
    "HostProcess",
    "check_log",
    "cli",
    "free_port",
    "host_env",
    "running_host",
    "spawn",
]


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def host_env(**extra: str) -> dict[str, str]:
    """This environment without the platform's settings (a developer's shell may set some),
    with the repository importable and output unbuffered, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env.pop("CHAOS_DRAIN", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
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


def spawn(
    args: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m host ARGS`` with its output appended to ``log_path``, without waiting
    (for hosts that must refuse to start, and for ``HostProcess``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "host", *args],
            cwd=cwd or ROOT,
            env=host_env(**(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def check_log(text: str) -> None:
    """No request was answered with a 500 and nothing crashed in the ASGI app."""
    assert "unhandled error" not in text, text[-6000:]
    assert "Exception in ASGI application" not in text, text[-6000:]


class HostExited(AssertionError):
    """The host ended while it was expected to start answering."""


class PortTaken(HostExited):
    """The host could not bind its port: another process took it after ``free_port``."""


class HostProcess:
    """Successive ``python -m host <command>`` processes on one project, data folder and port."""

    def __init__(
        self,
        project: Path,
        data: Path | None,
        logs: Path,
        *,
        store: str | None = None,
        command: str = "serve",
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        token: str | None = None,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.project = project
        self.data = data
        self.store = store
        self.logs = logs
        self.command = command
        self.args = tuple(args)
        self.env = dict(env or {})
        self.token = token
        if token is not None:
            self.env["PLATFORM_TOKEN"] = token
        self.pinned = port is not None
        self.port = port or free_port()
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.count = 0
        self.log_path = logs / "host-0.log"
        self._clients: list[httpx.Client] = []
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def http(self) -> httpx.Client:
        """An HTTP client on the running host (with the token if any); a new one per process."""
        if self._http is None:
            self._http = self.client(timeout=15.0)
        return self._http

    def client(self, *, auth: bool = True, timeout: float = 10.0) -> httpx.Client:
        """Another HTTP client on the host, closed when the process stops."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._clients.append(client)
        return client

    # ----------------------------------------------------------------------------- lifecycle

    def start(self, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        """Spawn the next process (the previous one must have ended); does not wait for it."""
        assert self.proc is None or self.proc.poll() is not None, "a host is still running"
        self.count += 1
        self.log_path = self.logs / f"host-{self.count}.log"
        args = [self.command, str(self.project), "--port", str(self.port)]
        if self.store is not None:
            args += ["--store", self.store]
        elif self.data is not None:
            args += ["--data", str(self.data)]
        self.proc = spawn(
            [*args, *self.args, *extra], self.log_path, env={**self.env, **env}, cwd=self.cwd
        )
        return self.proc

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Poll until the host answers; the seconds that took. Fails if it exits first
        (``PortTaken`` if it lost its port to another process)."""
        proc = self.proc
        assert proc is not None, "start() the host first"
        began = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

        with httpx.Client(base_url=self.url, headers=headers, timeout=2.0) as probe:

            def answers() -> bool:
                if proc.poll() is not None:
                    log = self.log()
                    error = PortTaken if PORT_IN_USE in log else HostExited
                    raise error(f"host {self.count} exited with {proc.returncode}:\n{log[-6000:]}")
                with contextlib.suppress(httpx.TransportError):
                    return probe.get("/api/workflows/schedules").status_code == 200
                return False

            try:
                wait_until(answers, timeout, f"host {self.count} on port {self.port} to answer")
            except HostExited:
                raise
            except AssertionError as exc:  # timed out: say what the host was doing
                raise AssertionError(f"{exc}\n{self.log()[-6000:]}") from None
        return time.monotonic() - began

    def launch(self, *extra: str, **env: str) -> HostProcess:
        """``start`` and ``wait_ready``; on another port if another process took this one
        (unless the port was given)."""
        for _attempt in range(3):
            self.start(*extra, **env)
            try:
                self.wait_ready()
                return self
            except PortTaken:
                if self.pinned:
                    raise
                self.port = free_port()
        raise AssertionError(f"the host could not bind a free port in 3 tries:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, at once, and wait for the process to be gone."""
        self._close_clients()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and the exit code; SIGKILL and a failure if it does not stop in time."""
        self._close_clients()
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"host {self.count} did not stop within {timeout}s of SIGTERM:\n"
                    f"{self.log()[-6000:]}"
                ) from None
        return int(proc.returncode)

    def _close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._http = None

    # ------------------------------------------------------------------------------ reading

    def log(self) -> str:
        """The current process's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 15.0, start: int = 0) -> str:
        """Wait for ``text`` to appear in the log after character ``start``; returns the log."""

        def logged() -> str:
            log = self.log()
            return log if text in log[start:] else ""

        return wait_until(logged, timeout, f"{text!r} in the host log")

    def start_run(self, workflow_id: str, input: Any = None) -> str:
        response = self.http.post(f"/api/workflows/{workflow_id}/start", json=input)
        assert response.status_code == 200, response.text
        return str(response.json()["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/workflows/runs/{run_id}")
        assert response.status_code == 200, response.text
        value: dict[str, Any] = response.json()
        return value

    def history(self, run_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/api/workflows/runs/{run_id}/history")
        assert response.status_code == 200, response.text
        value: list[dict[str, Any]] = response.json()
        return value

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 15.0) -> dict[str, Any]:
        """Poll the run until its status is one of ``statuses``; the run."""

        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in statuses else None

        return wait_until(reached, timeout, f"run {run_id} to be {'/'.join(statuses)}")


@contextlib.contextmanager
def running_host(
    project: Path,
    data: Path | None,
    logs: Path,
    *,
    extra_check: Callable[[str], None] | None = None,
    **options: Any,
) -> Iterator[HostProcess]:
    """A started, answering host (``options`` as for ``HostProcess``); on the way out it is
    stopped with SIGTERM and must exit 0 with a clean log (``check_log``, then ``extra_check``)."""
    host = HostProcess(project, data, logs, **options)
    try:
        yield host.launch()
    finally:
        code = host.stop()
    log = host.log()
    assert code == 0, f"the host exited with {code}:\n{log[-6000:]}"
    check_log(log)
    if extra_check is not None:
        extra_check(log)
