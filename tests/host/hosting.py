"""Running the host in a subprocess for the HTTP tests: ``python -m host serve <project> --port <free> --data <tmp>``.

Every test here talks HTTP to a Hypercorn server in another process, the way the platform's
JS client (and curl) do; nothing is served in-process. The test project (written into a tmp
folder) holds a few workflows:

- ``echo``: one ``step.run`` that returns its input;
- ``sleepy``: ``step.sleep`` for 200 ms, then returns ``{"slept": true}``;
- ``waiter``: ``wait_for_event("approval", type="order.approved", match={"orderId": input.orderId})``;
- ``failing``: a step that raises ``RuntimeError("boom")`` (no retries);
- ``nightly``: a daily cron trigger (for ``/api/workflows/schedules``).

``host`` is one host per test module (tests use their own namespaces, collections and keys);
``start_host`` starts more, with other options (``--max-body``, ``--host 0.0.0.0``, env). Every
host is stopped with SIGTERM and must exit 0 within a few seconds, and its log must show no
unhandled error (a 500) and no traceback other than the ``failing`` workflow's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

WORKFLOWS = textwrap.dedent(
    """
    from platform_shim.workflows import define_workflow


    @define_workflow({"id": "echo"})
    async def echo(input, step, ctx):
        return await step.run("echo", lambda: input)


    @define_workflow({"id": "sleepy"})
    async def sleepy(input, step, ctx):
        await step.sleep("nap", "200ms")
        return {"slept": True}


    @define_workflow({"id": "waiter"})
    async def waiter(input, step, ctx):
        got = await step.wait_for_event(
            "approval", type="order.approved", match={"orderId": input["orderId"]}, timeout="60s"
        )
        return {"approved": got}


    @define_workflow({"id": "failing", "options": {"retries": 0}})
    async def failing(input, step, ctx):
        def boom():
            raise RuntimeError("boom")

        await step.run("explode", boom)


    @define_workflow({"id": "nightly", "trigger": {"kind": "schedule", "cron": "0 0 3 * * *"}})
    async def nightly(input, step, ctx):
        return input
    """
)


REALTIME_CONFIG = textwrap.dedent(
    """
    [realtime]
    presence_grace = "60s"
    outbox = 8

    [realtime.history]
    channels = ["chat:*"]
    max_messages = 5
    """
)
"""``platform.toml``: history on ``chat:*`` (5 kept), a small outbox so that a slow WebSocket
client is dropped after a few messages, and a presence grace long enough to reconnect in."""


def write_project(root: Path) -> Path:
    """The small test project; returns its folder."""
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "workflows" / "flows.py").write_text(WORKFLOWS)
    (project / "platform.toml").write_text(REALTIME_CONFIG)
    return project


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Host:
    """A running host subprocess; ``url`` always points at 127.0.0.1."""

    url: str
    port: int
    project: Path
    data: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    token: str | None = None
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, *, auth: bool = True, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client on the host (closed when the host stops); with the token if any."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._clients.append(client)
        return client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed and failed if it takes over STOP_TIMEOUT)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(
                    f"the host did not exit within {STOP_TIMEOUT}s of SIGTERM\n{self.log()[-4000:]}"
                )
        return self.proc.returncode


def _spawn(
    args: Sequence[str], env: dict[str, str] | None, log_path: Path
) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full_env.pop("PLATFORM_TOKEN", None)
    full_env.pop("PLATFORM_DATA_DIR", None)
    full_env.pop("PLATFORM_MAX_BODY", None)
    full_env.update(env or {})
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "host", *args],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_until_up(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, token: str | None
) -> bool:
    """True once the host answers; False if it lost a race for its port (try another)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(timeout=1.0, headers=headers) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = log_path.read_text(errors="replace")
                if "the port is in use" in log:  # lost the race for the free port
                    return False
                pytest.fail(f"the host exited with {proc.returncode} while starting:\n{log}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/api/workflows/schedules").status_code == 200:
                    return True
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"the host did not answer within {STARTUP_TIMEOUT}s:\n{log_path.read_text()}")


def check_log(host: Host) -> None:
    """No 500 was answered and nothing crashed, apart from the ``failing`` workflow's error."""
    text = host.log()
    assert "unhandled error" not in text, text[-6000:]
    assert "Exception in ASGI application" not in text, text[-6000:]
    tracebacks = text.count("Traceback (most recent call last)")
    expected = text.count("RuntimeError: boom") and text.count("of 'failing' failed")
    # Each failed ``failing`` run logs one error record with up to two chained tracebacks.
    assert tracebacks <= 2 * expected, text[-6000:]


StartHost = Callable[..., Host]


@contextlib.contextmanager
def running_host(
    root: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    bind: str = "127.0.0.1",
    token: str | None = None,
    command: str = "serve",
    project: Path | None = None,
) -> Iterator[Host]:
    """Start a host on a fresh project (or ``project``) and data folder under ``root``; stop it after."""
    root.mkdir(parents=True, exist_ok=True)
    project = project or write_project(root)
    data = root / "data"
    env = dict(env or {})
    if token is not None:
        env["PLATFORM_TOKEN"] = token
    for _attempt in range(3):  # another process may grab the free port before the host binds it
        port = free_port()
        log_path = root / f"host-{port}.log"
        args = [command, str(project), "--host", bind, "--port", str(port), "--data", str(data)]
        proc = _spawn([*args, *extra], env, log_path)
        url = f"http://127.0.0.1:{port}"  # never any other address, whatever is bound
        host = Host(url, port, project, data, log_path, proc, token)
        try:
            up = _wait_until_up(proc, url, log_path, token)
        except BaseException:
            host.stop()
            raise
        if up:
            break
    else:
        pytest.fail(f"the host could not bind a free port in 3 tries:\n{host.log()}")
    try:
        yield host
    finally:
        code = host.stop()
    assert code == 0, f"the host exited with {code} after SIGTERM\n{host.log()[-4000:]}"
    check_log(host)


def spawn_host(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m host <args>`` without waiting for it (for hosts that must refuse to start)."""
    root.mkdir(parents=True, exist_ok=True)
    return _spawn(list(args), env, root / "host.log")


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """A JSON ``{"error", "detail"}`` answer with ``status``; ``needles`` appear in the detail."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str), body
    assert body["error"], body
    for needle in needles:
        assert needle in str(body["detail"]), (needle, body)
    return body


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)
