"""``python -m host dev``: edits to the project's code are picked up while it runs.

A good edit replaces the module (new runs use the new code); a broken edit is logged with its
file and line and the last good version keeps serving; fixing it reloads again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from host.loader import Loader
from tests.support.hostproc import HostProcess, running_host
from tests.support.waiting import wait_until

TEMPLATE = """from platform_shim.workflows import define_workflow


@define_workflow({{"id": "greet"}})
async def greet(input, step, ctx):
    return {value}
"""


def greet_source(value: str) -> str:
    return TEMPLATE.format(value=value)


def run_greet(host: HostProcess) -> object:
    response = host.http.post("/api/workflows/greet/start", json={})
    assert response.status_code == 200, response.text
    return host.wait_status(response.json()["runId"], "completed", timeout=5)["output"]


def edit(path: Path, text: str) -> None:
    # Write then rename, the way many editors save: the watcher sees one complete file.
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_dev_reloads_good_edits_and_keeps_the_last_good_version_on_a_broken_one(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    greet = project / "workflows" / "greet.py"
    greet.parent.mkdir(parents=True)
    greet.write_text(greet_source('"version 1"'))

    with running_host(project, tmp_path / "data", tmp_path / "logs", command="dev") as host:
        assert run_greet(host) == "version 1"

        # A good edit: new runs return the new value.
        mark = len(host.log())
        edit(greet, greet_source('{"version": 2}'))
        host.wait_for_log("reloaded greet.py", start=mark)
        assert run_greet(host) == {"version": 2}

        # A broken edit: the error names the file and line; the old code keeps serving.
        mark = len(host.log())
        edit(greet, greet_source('"unterminated'))
        log = host.wait_for_log("reload failed, keeping the last good version", start=mark)
        failure = next(line for line in log[mark:].splitlines() if "reload failed" in line)
        assert f"{greet.resolve()}:6" in failure, failure
        assert "SyntaxError" in failure
        assert run_greet(host) == {"version": 2}

        # Fixed: reloaded again.
        mark = len(host.log())
        edit(greet, greet_source('"version three"'))
        host.wait_for_log("reloaded greet.py", start=mark)
        assert run_greet(host) == "version three"

        # A new file is picked up too, and its workflow can be started.
        mark = len(host.log())
        edit(
            project / "workflows" / "added.py",
            greet_source('"added"').replace('"greet"', '"added"'),
        )
        host.wait_for_log("reloaded added.py", start=mark)
        response = host.http.post("/api/workflows/added/start", json={})
        assert response.status_code == 200, response.text
        assert host.wait_status(response.json()["runId"], "completed")["output"] == "added"
        assert run_greet(host) == "version three"


def test_reload_never_runs_stale_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's bytecode cache trusts a source file's mtime (whole seconds) and size. An edit saved
    within the same second as the last load, keeping the size ("v1" -> "v2"), must still reload."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # the default outside this sandbox
    project = tmp_path / "project"
    greet = project / "workflows" / "greet.py"
    greet.parent.mkdir(parents=True)
    greet.write_text(greet_source('"v1"'))
    loader = Loader(project)
    loader.load_all(strict=True)

    stat = greet.stat()
    greet.write_text(greet_source('"v2"'))
    os.utime(greet, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # saved within the same second
    loader.load("workflows", greet.resolve())
    workflow = loader.registry.get("greet")
    assert workflow is not None
    assert asyncio.run(workflow.handler(None, None, None)) == "v2"


def test_reading_a_file_does_not_reload_it_and_a_reload_does_not_trigger_itself(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    greet = project / "workflows" / "greet.py"
    greet.parent.mkdir(parents=True)
    greet.write_text(greet_source('"version 1"'))

    marker = project / "workflows" / "marker.py"
    with running_host(project, tmp_path / "data", tmp_path / "logs", command="dev") as host:
        greet.read_text()  # an editor opening the file, grep, a build...
        barrier(host, marker)
        assert "reloaded greet.py" not in host.log()

        edit(greet, greet_source('"version 2"'))
        host.wait_for_log("reloaded greet.py")
        barrier(host, marker)  # the reload read greet.py before the marker was written
        assert host.log().count("reloaded greet.py") == 1


def barrier(host: HostProcess, marker: Path) -> None:
    """Edit ``marker`` and wait for its reload. The watcher sees one folder's changes in order
    and reloads a round's files sorted by name, so a reload of ``greet.py`` set off by anything
    before this edit is in the log once ``marker.py``'s is (no fixed sleep to guess how long)."""
    mark = len(host.log())
    edit(marker, greet_source(f'"{mark}"').replace('"greet"', '"marker"'))
    host.wait_for_log("reloaded marker.py", start=mark)


ROUTES = """from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def ping(request):
    return PlainTextResponse("pong")


routes = [Route("/ping", ping)]
"""

HANDLER = """from platform_shim.events import on_kv_change


@on_kv_change({"namespace": "inbox"})
async def copy(event, ctx):
    await ctx.kv.put("seen", event["key"], event["eventId"])
"""


@pytest.mark.slow
def test_folders_and_files_created_while_dev_runs_are_loaded(tmp_path: Path) -> None:
    """Only workflows/ exists at start: a routes/ folder, an events/ folder and a single-file
    workflows.py created later are loaded as they appear (before, none was ever watched)."""
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "greet.py").write_text(greet_source('"hi"'))

    with running_host(project, tmp_path / "data", tmp_path / "logs", command="dev") as host:
        assert host.http.get("/ping").status_code == 404

        # A new folder with a file written at once: watched and loaded.
        mark = len(host.log())
        (project / "routes").mkdir()
        (project / "routes" / "extra.py").write_text(ROUTES)
        host.wait_for_log("reloaded extra.py", start=mark)
        response = host.http.get("/ping")
        assert (response.status_code, response.text) == (200, "pong")

        # An empty new folder, then a file in it.
        mark = len(host.log())
        (project / "events").mkdir()
        host.wait_for_log("watching the new folder", start=mark)
        edit(project / "events" / "copy.py", HANDLER)
        host.wait_for_log("reloaded copy.py", start=mark)
        assert host.http.put("/api/kv/inbox/k1", json=1).status_code == 200
        wait_until(lambda: host.http.get("/api/kv/seen/k1").status_code == 200, 5, "the handler")

        # The single-file form beside the folders.
        mark = len(host.log())
        edit(project / "workflows.py", greet_source('"single"').replace('"greet"', '"single"'))
        host.wait_for_log("reloaded workflows.py", start=mark)
        response = host.http.post("/api/workflows/single/start", json={})
        assert response.status_code == 200, response.text
        assert host.wait_status(response.json()["runId"], "completed")["output"] == "single"
