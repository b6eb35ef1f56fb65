"""``python -m host``: every command, run as a user runs it, in a real subprocess.

The data commands work on a data folder directly: with no host (they write what the next host
picks up) and beside a running host (which applies their writes within about a second).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hostproc import ROOT, cli, host_env, running_host
from tests.support.waiting import wait_until

PROJECT_FILES = {
    "workflows/basics.py": """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "echo"})
async def echo(input, step, ctx):
    return await step.run("echo", lambda: input)


@define_workflow({"id": "waiter"})
async def waiter(input, step, ctx):
    got = await step.wait_for_event("go", type="go", match={"key": input["key"]})
    return {"got": got}
""",
    "events/copy.py": """
from platform_shim.events import on_kv_change


@on_kv_change({"namespace": "inbox", "op": "put"})
async def copy_to_seen(event, ctx):
    await ctx.kv.put("seen", event["key"], event["value"])
""",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name, text in PROJECT_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


HELP = [
    [],
    ["dev"],
    ["serve"],
    ["build"],
    ["runs"],
    ["runs", "list"],
    ["runs", "show"],
    ["runs", "cancel"],
    ["start"],
    ["send-event"],
    ["kv"],
    ["kv", "get"],
    ["kv", "put"],
    ["kv", "list"],
    ["schedules"],
    ["compact"],
]


@pytest.mark.slow
def test_every_command_has_help() -> None:
    procs = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "host", *args, "--help"],
                cwd=ROOT,
                env=host_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in HELP
    ]
    for args, proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (args, err)
        assert out.startswith(" ".join(["usage: python -m host", *args])), (args, out)


def test_no_command_prints_the_help_with_the_commands() -> None:
    result = cli()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m host")
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")}
    assert {"dev", "serve", "build", "runs", "start", "send-event", "kv", "compact"} <= listed


# ------------------------------------------------------------------------- with no host


@pytest.mark.slow
def test_kv_commands(data: Path) -> None:
    d = ("--data", str(data))
    ok(cli("kv", "put", "cfg", "b", '{"n": 2}', *d, "--create"))
    ok(cli("kv", "put", "cfg", "a", '"one"', *d))
    assert json.loads(ok(cli("kv", "get", "cfg", "b", *d))) == {"n": 2}
    # A missing key says so on stderr (exit 1); a stored null prints null (exit 0).
    missing = cli("kv", "get", "cfg", "nope", *d)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr == "error: no key 'nope' in namespace 'cfg'\n"
    ok(cli("kv", "put", "cfg", "nothing", "null", *d))
    assert ok(cli("kv", "get", "cfg", "nothing", *d)).strip() == "null"
    assert ok(cli("kv", "list", "cfg", *d)).split() == ["a", "b", "nothing"]
    assert ok(cli("kv", "list", "cfg", "--prefix", "b", *d)).split() == ["b"]

    page = cli("kv", "list", "cfg", "--limit", "1", *d)
    assert page.stdout.split() == ["a"]
    cursor = page.stderr.split("--cursor ")[1].split()[0]
    assert ok(cli("kv", "list", "cfg", "--cursor", cursor, "--limit", "1", *d)).split() == ["b"]

    bad = cli("kv", "put", "cfg", "c", "{not json", *d)
    assert bad.returncode == 2  # a wrong command line
    assert bad.stderr.startswith("error: value is not valid JSON")
    ok(cli("kv", "put", "cfg", "t", "1", "--ttl", "60", *d))
    assert json.loads(ok(cli("kv", "get", "cfg", "t", *d))) == 1
    # Environment instead of --data.
    assert json.loads(ok(cli("kv", "get", "cfg", "a", PLATFORM_DATA_DIR=str(data)))) == "one"


@pytest.mark.slow
def test_run_commands_without_a_host_then_a_host_carries_them_out(
    project: Path, data: Path, tmp_path: Path
) -> None:
    d = ("--data", str(data))
    first = cli("start", "echo", '{"x": 1}', *d, "--create")
    echo_id = ok(first).strip()
    # No host on the folder: the run is queued, and the CLI says so.
    assert first.stderr == (
        f"note: no host is running on {data}: the run is queued and runs when one opens the folder\n"
    )
    assert ok(cli("start", "waiter", '{"key": "a"}', "--run-id", "w1", *d)).strip() == "w1"
    assert (
        ok(cli("start", "waiter", '{"key": "a"}', "--run-id", "w1", *d)).strip() == "w1"
    )  # idempotent

    runs = json.loads(ok(cli("runs", "list", "--json", *d)))
    assert sorted((r["runId"], r["status"]) for r in runs) == sorted(
        [(echo_id, "queued"), ("w1", "queued")]
    )
    table = ok(cli("runs", "list", "--workflow", "waiter", *d)).splitlines()
    assert table[0].split()[:3] == ["RUN", "WORKFLOW", "STATUS"]
    assert len(table) == 2
    assert table[1].startswith("w1 ")
    shown = json.loads(ok(cli("runs", "show", echo_id, "--json", *d)))
    assert shown["run"]["input"] == {"x": 1}
    assert shown["history"] == []
    unknown = cli("runs", "show", "nope", *d)
    assert unknown.returncode == 1
    assert unknown.stderr == "error: unknown run 'nope'\n"
    bad_input = cli("start", "echo", "{oops", *d)
    assert bad_input.returncode == 2
    assert bad_input.stderr.startswith("error: input is not valid JSON")

    # Sent before the waiter ever runs: kept, and taken when it reaches its wait.
    assert "0 parked run(s) resumed" in ok(cli("send-event", "go", '{"key": "a", "n": 1}', *d))
    assert "no host is running" in ok(cli("schedules", *d))
    report = json.loads(ok(cli("compact", "--json", *d)))
    assert set(report) >= {"events", "runs"}
    sentence = ok(cli("compact", *d))
    assert sentence.startswith(f"Compacted {data}: the event stream from "), sentence
    assert "finished run(s) past retention pruned)." in sentence

    with running_host(project, data, tmp_path / "logs") as host:
        assert host.wait_status(echo_id, "completed")["output"] == {"x": 1}
        assert host.wait_status("w1", "completed")["output"] == {"got": {"key": "a", "n": 1}}


@pytest.mark.slow
def test_a_cancel_recorded_without_a_host_is_carried_out_by_the_next_host(
    project: Path, data: Path, tmp_path: Path
) -> None:
    d = ("--data", str(data))
    ok(cli("start", "waiter", '{"key": "a"}', "--run-id", "w1", *d, "--create"))
    assert "cancel requested for w1" in ok(cli("runs", "cancel", "w1", *d))
    with running_host(project, data, tmp_path / "logs") as host:
        assert host.wait_status("w1", "cancelled", "waiting_event")["status"] == "cancelled"


# -------------------------------------------------------------------- beside a live host


@pytest.mark.slow
def test_data_commands_beside_a_running_host(project: Path, data: Path, tmp_path: Path) -> None:
    d = ("--data", str(data))
    with running_host(project, data, tmp_path / "logs") as host:
        # start: recorded by the CLI, run by the host within about a second.
        before = time.monotonic()
        run_id = ok(cli("start", "echo", '{"hello": "cli"}', *d)).strip()
        written = time.monotonic()
        assert host.wait_status(run_id, "completed", timeout=5)["output"] == {"hello": "cli"}
        picked_up = time.monotonic() - written
        assert picked_up < 1.0, (
            f"the host took {picked_up:.2f}s to run a CLI start ({written - before:.2f}s to write it)"
        )

        # An unknown workflow is refused, naming the ones the running host knows.
        unknown = cli("start", "nope", *d)
        assert unknown.returncode == 1  # not found
        assert unknown.stderr.startswith("error: unknown workflow 'nope'")
        assert "echo" in unknown.stderr
        # With a host on the folder, no note about a missing one.
        quiet = cli("start", "echo", "{}", *d)
        assert quiet.stderr == ""
        host.wait_status(quiet.stdout.strip(), "completed")

        # send-event resumes a parked run; runs cancel cancels another.
        for key in ("a", "b"):
            ok(cli("start", "waiter", json.dumps({"key": key}), "--run-id", f"wait-{key}", *d))
            host.wait_status(f"wait-{key}", "waiting_event")
        assert "1 parked run(s) resumed" in ok(cli("send-event", "go", '{"key": "a"}', *d))
        assert host.wait_status("wait-a", "completed")["output"] == {"got": {"key": "a"}}
        assert "cancel requested for wait-b" in ok(cli("runs", "cancel", "wait-b", *d))
        assert host.wait_status("wait-b", "cancelled")["error"]["type"] == "WorkflowCancelled"
        assert "already ended: wait-b" in ok(cli("runs", "cancel", "wait-b", *d))

        shown = ok(cli("runs", "show", "wait-a", *d))
        assert "status    completed" in shown
        assert "go" in shown
        assert "wait_event" in shown

        # kv put from the CLI reaches the host's handler, whose write the CLI reads back.
        ok(cli("kv", "put", "inbox", "k1", '{"v": 1}', *d))
        assert wait_until(
            lambda: cli("kv", "get", "seen", "k1", *d).returncode == 0, 5, "the handler's copy"
        )
        assert ok(cli("kv", "list", "seen", *d)).split() == ["k1"]

        # compact: the host owns the folder, so the CLI asks it, and it compacts.
        mark = len(host.log())
        compact = ok(cli("compact", *d))
        assert compact == (
            f"A host (process {host.proc.pid}) has {data} open: asked it to compact"
            " (it does so within a second; its log says how much it saved).\n"
        )
        host.wait_for_log("compacted runs.jsonl", timeout=5, start=mark)

        assert ok(cli("schedules", *d)).startswith("WORKFLOW")
        listed = json.loads(ok(cli("runs", "list", "--json", "--status", "completed", *d)))
        assert {r["runId"] for r in listed} == {run_id, "wait-a", quiet.stdout.strip()}


@pytest.mark.slow
def test_schedules_lists_the_ticks_of_a_running_cron(tmp_path: Path, data: Path) -> None:
    project = tmp_path / "cron"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "beat.py").write_text(
        "from platform_shim.workflows import define_workflow\n\n\n"
        '@define_workflow({"id": "beat", "trigger": {"kind": "schedule", "cron": "* * * * * *"}})\n'
        "async def beat(input, step, ctx):\n"
        '    return input["scheduledAt"]\n'
    )
    with running_host(project, data, tmp_path / "logs") as host:
        schedules = wait_until(
            lambda: [s for s in host.http.get("/api/workflows/schedules").json() if s["lastAt"]],
            5,
            "a tick",
        )
        assert schedules[0]["workflowId"] == "beat"
        assert schedules[0]["cron"] == "* * * * * *"
        assert schedules[0]["nextAt"] > schedules[0]["lastAt"]
        out = ok(cli("schedules", "--data", str(data)))
    lines = out.splitlines()
    assert lines[0].split() == [
        "WORKFLOW",
        "CRON",
        "LAST",
        "TICK",
        "(UTC)",
        "NEXT",
        "TICK",
        "(UTC)",
    ]
    assert lines[1].startswith("beat ")
    assert "* * * * * *" in lines[1]
    assert lines[1].count(":") == 4  # a last and a next tick, each HH:MM:SS


def test_serve_refuses_a_broken_project_naming_file_and_line(tmp_path: Path) -> None:
    project = tmp_path / "broken"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "bad.py").write_text(
        "import os\n\nTIMEOUT = int(os.environ['NO_SUCH_SETTING'])\n"
    )
    result = cli("serve", str(project), "--port", "0", "--data", str(tmp_path / "data"), timeout=20)
    assert result.returncode == 1
    bad = (project / "workflows" / "bad.py").resolve()
    assert result.stderr.splitlines()[-1] == f"error: {bad}:3: KeyError: 'NO_SUCH_SETTING'"
    assert "Traceback" not in result.stderr
