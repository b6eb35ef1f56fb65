"""``--store LOCATION`` and ``$PLATFORM_STORE`` on the host and the CLI, with folders and ``memory:``.

The rule (``platform_shim/locations.py``): ``--store`` or ``--data`` (never both) beats the
environment, where ``$PLATFORM_STORE`` beats ``$PLATFORM_DATA_DIR``, which beats
``PROJECT/data``. A bad URL is exit 2 with one ``error:`` line and no password; the data
commands refuse ``memory:`` (they would see an empty store). Real ``python -m host``
subprocesses throughout, and an in-process app for what a store without a folder keeps locally
(the dev clock's offset, the auth secret). The PostgreSQL side is
``test_store_flag_postgres.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.app import create_app
from host.config import HostConfig
from platform_shim.store.postgres import BadStoreUrl
from tests.host.hosting import check_tracebacks, write_project
from tests.support import hostproc
from tests.support.hostproc import ROOT, cli, host_env
from tests.support.waiting import wait_until_async

HOST = [sys.executable, "-m", "host"]
URL = "postgresql://alice:s3cret@db.example:5432/app"
AUTH = "/api/platform/auth"


def run_all(
    *commands: tuple[list[str], dict[str, str]], cwd: Path = ROOT
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m host ARGS`` with ``ENV`` for each ``(ARGS, ENV)`` at once; wait for all."""
    procs = [
        subprocess.Popen(
            [*HOST, *args],
            cwd=cwd,
            env=host_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in commands
    ]
    results = []
    for (args, _), proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The usage error's message: exit 2, nothing on stdout, one ``error:`` line last on stderr
    (argparse prints its usage before it), no traceback, no password."""
    assert result.returncode == 2, (result.args, result.returncode, result.stderr)
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "s3cret" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    return last


# ------------------------------------------------------------------------ hosts on a store


def test_serve_with_store_memory_answers_a_workflow_start_and_auth(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    with hostproc.running_host(
        project, None, tmp_path, store="memory:", extra_check=check_tracebacks
    ) as host:
        run_id = host.start_run("echo", {"hello": "memory"})
        assert host.wait_status(run_id, "completed")["output"] == {"hello": "memory"}
        # The auth secret lives in the memory store's private folder: tokens still check.
        credentials = {"email": "m@example.com", "password": "pw-long-enough"}
        user = host.http.post(f"{AUTH}/register", json=credentials)
        assert user.status_code == 200, user.text
        token = host.http.post(f"{AUTH}/login", json=credentials).json()["access_token"]
        checked = host.http.post(f"{AUTH}/validate", json={"token": token})
        assert checked.json()["id"] == user.json()["id"], checked.text
        assert "(data: memory:)" in host.log()
    assert not (project / "data").exists()  # nothing was written to a folder


def test_platform_store_memory_serves_dev_without_a_flag(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    with hostproc.running_host(
        project,
        None,
        tmp_path,
        command="dev",
        env={"PLATFORM_STORE": "memory:", "PLATFORM_DATA_DIR": str(tmp_path / "ignored")},
        extra_check=check_tracebacks,
    ) as host:
        run_id = host.start_run("sleepy")
        assert host.wait_status(run_id, "completed")["output"] == {"slept": True}
    assert not (project / "data").exists()
    assert not (tmp_path / "ignored").exists()


def test_store_folder_is_a_data_folder_and_beats_the_environment(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    data = tmp_path / "chosen"
    elsewhere = {"PLATFORM_STORE": "memory:", "PLATFORM_DATA_DIR": str(tmp_path / "other")}
    with hostproc.running_host(
        project,
        None,
        tmp_path,
        store=str(data),
        env=elsewhere,
        extra_check=check_tracebacks,
    ) as host:
        # A CLI start on the same folder, named by --store: the host runs it.
        started = cli("start", "echo", '{"via": "cli"}', "--store", str(data), **elsewhere)
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        assert host.wait_status(run_id, "completed")["output"] == {"via": "cli"}
        assert f"(data: {data})" in host.log()
    shown = cli("runs", "show", run_id, "--json", PLATFORM_STORE=str(data))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["status"] == "completed"
    assert not (tmp_path / "other").exists()
    compacted = cli("compact", "--store", str(data))
    assert compacted.returncode == 0, compacted.stderr
    assert compacted.stdout.startswith(f"Compacted {data}: "), compacted.stdout


# -------------------------------------------------------------------------- the CLI's rule


@pytest.mark.slow
def test_precedence_of_flags_and_variables(tmp_path: Path) -> None:
    project = tmp_path / "project"
    a, b, c = tmp_path / "a", tmp_path / "b", project / "data"
    for folder, value in ((a, "A"), (b, "B"), (c, "C")):
        put = cli("kv", "put", "ns", "k", json.dumps(value), "--data", str(folder), "--create")
        assert put.returncode == 0, put.stderr
    get = ["kv", "get", "ns", "k"]
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (get, {}, "C"),  # run inside the project: PROJECT/data
        (get, {"PLATFORM_DATA_DIR": str(b)}, "B"),
        (get, {"PLATFORM_STORE": str(a)}, "A"),
        (get, {"PLATFORM_STORE": str(a), "PLATFORM_DATA_DIR": str(b)}, "A"),
        ([*get, "--data", str(b)], {"PLATFORM_STORE": str(a)}, "B"),
        ([*get, "--store", str(a)], {"PLATFORM_DATA_DIR": str(b)}, "A"),
        (["--store", str(b), *get], {"PLATFORM_STORE": str(a)}, "B"),
        ([*get, "--store", str(a)], {"PLATFORM_STORE": "memory:"}, "A"),
    ]
    results = run_all(*((args, env) for args, env, _ in cases), cwd=project)
    for (args, env, expected), result in zip(cases, results, strict=True):
        assert result.returncode == 0, (args, env, result.stderr)
        assert json.loads(result.stdout) == expected, (args, env, result.stdout)


@pytest.mark.slow
def test_store_and_data_exclude_each_other_on_either_side_of_the_command(
    tmp_path: Path,
) -> None:
    d = str(tmp_path)
    results = run_all(
        (["kv", "get", "ns", "k", "--data", d, "--store", d], {}),
        (["kv", "get", "ns", "k", "--store", d, "--data", d], {}),
        (["--data", d, "kv", "get", "ns", "k", "--store", d], {}),
        (["--store", d, "runs", "list", "--data", d], {}),
        (["serve", d, "--port", "0", "--data", d, "--store", "memory:"], {}),
    )
    for result in results:
        message = one_error_line(result)
        assert "not allowed with argument" in message, message
        assert "--store" in message and "--data" in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_urls_are_usage_errors_without_password_or_traceback(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    empty = tmp_path / "cwd"
    empty.mkdir()
    p = str(project)
    results = run_all(
        (["kv", "get", "ns", "k", "--store", "mysql://alice:s3cret@h/db"], {}),
        (["start", "echo", "--store", "postgresql://alice:s3cret@h:port/db"], {}),
        (["runs", "list"], {"PLATFORM_STORE": "redis://alice:s3cret@h"}),
        (["serve", p, "--port", "0", "--store", "postgres:/alice:s3cret@h/db"], {}),
        (["dev", p, "--port", "0"], {"PLATFORM_STORE": "postgresql://alice:s3cret@h/"}),
        (["kv", "get", "ns", "k", "--store", "memory:"], {}),
        (["runs", "list"], {"PLATFORM_STORE": "memory:"}),
        cwd=empty,
    )
    messages = [one_error_line(result) for result in results]
    assert messages[0] == (
        "error: unsupported store 'mysql://alice:***@h/db': give"
        " postgresql://USER@HOST:PORT/DATABASE, memory: or a data folder's path"
    )
    assert messages[1].startswith("error: bad store URL 'postgresql://alice:***@h:port/db': ")
    assert messages[2].startswith("error: $PLATFORM_STORE: unsupported store 'redis://alice:***@h'")
    assert messages[3] == (
        "error: bad store URL 'postgres:/alice:***@h/db': write postgres://USER@HOST:PORT/DATABASE"
    )
    assert messages[4].startswith(
        "error: $PLATFORM_STORE: bad store URL 'postgresql://alice:***@h/'"
    )
    for message in messages[5:]:
        assert "'memory:' lives in the memory of the process that opens it" in message, message
    for result in results:  # one line: argparse's usage is not printed for these
        assert result.stderr.count("\n") == 1, result.stderr
    assert list(empty.iterdir()) == []  # no folder made from a mistyped URL
    assert not (project / "data").exists()


def test_help_names_store_everywhere_data_is() -> None:
    results = run_all(
        (["--help"], {}),
        (["serve", "--help"], {}),
        (["runs", "list", "--help"], {}),
        (["kv", "put", "--help"], {}),
    )
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "[--data DIR | --store LOCATION]" in result.stdout, result.stdout
    text = " ".join(results[0].stdout.split())
    assert "$PLATFORM_STORE beats $PLATFORM_DATA_DIR" in text
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in text


# ------------------------------------------------------------------------ HostConfig, in process


def test_host_config_holds_a_url_or_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLATFORM_DATA_DIR", raising=False)
    monkeypatch.delenv("PLATFORM_STORE", raising=False)
    memory = HostConfig(project_dir=tmp_path, store="memory:")
    assert (memory.store, memory.data_dir, memory.location) == ("memory:", None, "memory:")
    remote = HostConfig(project_dir=tmp_path, store=URL)
    assert remote.where == "postgresql://alice:***@db.example:5432/app"
    folder = HostConfig(project_dir=tmp_path, store=str(tmp_path / "d"))
    assert (folder.store, folder.data_dir) == (None, tmp_path / "d")
    assert HostConfig(project_dir=tmp_path).data_dir == tmp_path.resolve() / "data"

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("PLATFORM_STORE", URL)
    assert HostConfig(project_dir=tmp_path).location == URL
    assert HostConfig(project_dir=tmp_path, data_dir=tmp_path / "x").location == tmp_path / "x"
    with pytest.raises(ValueError, match="not both"):
        HostConfig(project_dir=tmp_path, data_dir=tmp_path, store="memory:")
    with pytest.raises(BadStoreUrl, match="unsupported store"):
        HostConfig(project_dir=tmp_path, store="mysql://h/db")


NAPPER = """from platform_shim.workflows import define_workflow


@define_workflow({"id": "napper"})
async def napper(input, step, ctx):
    await step.sleep("nap", "24h")
    return "rested"
"""


async def test_dev_clock_and_auth_work_on_a_store_without_a_folder(tmp_path: Path) -> None:
    """What a folder keeps as local files (the dev clock's offset, the auth secret) still works
    on a store that is no folder: the offset stays in the host, the secret in the store's
    private folder."""
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "napper.py").write_text(NAPPER)
    app = create_app(HostConfig(project_dir=project, store="memory:", dev=True))
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
        app.router.lifespan_context(app),
    ):
        run_id = (await client.post("/api/workflows/napper/start", json={})).json()["runId"]

        async def status(wanted: str) -> dict[str, Any] | None:
            run: dict[str, Any] = (await client.get(f"/api/workflows/runs/{run_id}")).json()
            return run if run["status"] == wanted else None

        await wait_until_async(lambda: status("sleeping"), what="the run to sleep")
        moved = await client.post("/api/dev/clock", json={"advance": "24h"})
        assert moved.status_code == 200 and moved.json()["offsetMs"] == 86_400_000
        run = await wait_until_async(lambda: status("completed"), what="the run to wake")
        assert run["output"] == "rested"

        credentials = {"email": "d@example.com", "password": "pw-long-enough"}
        assert (await client.post(f"{AUTH}/register", json=credentials)).status_code == 200
        token = (await client.post(f"{AUTH}/login", json=credentials)).json()["access_token"]
        checked = await client.post(f"{AUTH}/validate", json={"token": token})
        assert checked.status_code == 200, checked.text
    assert not (project / "data").exists()
