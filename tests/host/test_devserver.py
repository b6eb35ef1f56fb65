"""What ``python -m host dev`` says, run as a user runs it: start-up failures in one line,
the dashboard's address, ``/`` leading to it, one line per request and per run start and end,
and a retried attempt in one line with the traceback kept for the last attempt."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from host.app import create_app
from host.config import HostConfig
from tests.support.hostproc import ROOT, host_env, running_host

FLAKY = """from platform_shim.workflows import define_workflow


@define_workflow({"id": "flaky", "options": {"retries": 2}})
async def flaky(input, step, ctx):
    if ctx.attempt <= input["failures"]:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")
    return ctx.attempt
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "flaky.py").write_text(FLAKY)
    return root


def dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", "dev", *args],
        cwd=ROOT,
        env=host_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_busy_port_is_one_line_before_anything_is_opened(project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = dev(str(project), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: the port is in use\n"
    assert result.stdout == ""
    assert not (project / "data").exists()  # bound (or failed) before opening the folder


def test_a_locked_data_folder_is_one_line(project: Path, tmp_path: Path) -> None:
    with running_host(project, project / "data", tmp_path / "logs", command="dev") as host:
        result = dev(str(project), "--port", "0")
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"error: DataDirLocked: data folder {str(project / 'data')!r} is already in use"
            f" by process {host.proc.pid}"
        ]


@pytest.mark.slow
def test_what_the_dev_server_says(project: Path, tmp_path: Path) -> None:
    with running_host(project, project / "data", tmp_path / "logs", command="dev") as host:
        url = host.url
        startup = host.log()
        assert f"dev server (hot reload) on {url} " in startup
        assert f"dashboard: {url}/_platform/" in startup

        # No route at / in the app: / leads to the dashboard.
        home = host.http.get("/", follow_redirects=False)
        assert (home.status_code, home.headers["location"]) == (307, "/_platform/")
        assert host.http.get("/", follow_redirects=True).status_code == 200

        ok = host.http.post("/api/workflows/flaky/start", json={"failures": 1}).json()["runId"]
        failing = host.http.post("/api/workflows/flaky/start", json={"failures": 3}).json()
        assert host.wait_status(ok, "completed", timeout=20)["output"] == 2
        assert host.wait_status(failing["runId"], "failed", timeout=20)["attempt"] == 3
        log = host.wait_for_log(f"run failed: flaky {failing['runId']} in ")

    lines = log.splitlines()
    assert any(re.search(r" host\.http: GET / 307 \d+\.\d ms$", line) for line in lines)
    requests = [line for line in lines if " host.http: " in line]
    assert any(" POST /api/workflows/flaky/start 200 " in line for line in requests)
    assert all(line.endswith(" ms") for line in requests)
    assert sum(f"run started: flaky {ok}" in line for line in lines) == 1
    assert sum(f"run completed: flaky {ok} in " in line for line in lines) == 1

    # Each retried attempt is one line; the traceback comes once, with the last attempt.
    assert log.count("Traceback (most recent call last)") == 1
    retried = [line for line in lines if "retrying in" in line]
    assert len(retried) == 3  # attempt 1 of ok, attempts 1 and 2 of failing
    last = log.index("failed on its last attempt 3")
    assert log.index("Traceback (most recent call last)") > last


def test_quiet_leaves_the_request_lines_out(project: Path, tmp_path: Path) -> None:
    with running_host(
        project, project / "data", tmp_path / "logs", command="dev", args=("--quiet",)
    ) as host:
        assert host.http.get("/api/kv/ns/k").status_code == 404
        run_id = host.http.post("/api/workflows/flaky/start", json={"failures": 0}).json()
        host.wait_for_log(f"run completed: flaky {run_id['runId']}")
        assert " host.http: " not in host.log()


HOME_ROUTE = """from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse("my home")


routes = [Route("/", home)]
"""


async def test_an_apps_own_route_at_slash_wins_over_the_redirect(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "routes").mkdir(parents=True)
    (project / "routes" / "home.py").write_text(HOME_ROUTE)
    app = create_app(HostConfig(project_dir=project, data_dir=tmp_path / "data", dev=True))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
    ):
        response = await http.get("/")
    assert (response.status_code, response.text) == (200, "my home")
