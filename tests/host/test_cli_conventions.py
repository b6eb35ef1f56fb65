"""The CLI as people know CLIs, and one rule for the folders; each check is a real subprocess.

``--version``; the program names itself; every positional argument has help; ``--data`` before
or after the subcommand; one error prefix with exit codes 1 (not found, failed) and 2 (usage);
no folder is created by a typo; the CLI run inside a project uses that project's ``data/``;
clients on a folder see the dev host's skipped clock.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostproc import ROOT, cli, host_env, running_host
from tests.support.waiting import wait_until

ECHO = """from platform_shim.workflows import define_workflow


@define_workflow({"id": "echo"})
async def echo(input, step, ctx):
    return input
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "echo.py").write_text(ECHO)
    return root


def run_all(*commands: list[str], cwd: Path = ROOT) -> list[subprocess.CompletedProcess[str]]:
    """Run several CLI commands at once (each pays Python's start-up) and wait for all."""
    procs = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=host_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = []
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


HOST = [sys.executable, "-m", "host"]
POSITIONAL_HELP = [
    ["dev"],
    ["build"],
    ["runs", "show"],
    ["runs", "cancel"],
    ["runs", "rerun"],
    ["start"],
    ["send-event"],
    ["kv", "get"],
    ["kv", "put"],
    ["kv", "list"],
]


@pytest.mark.slow
def test_version_program_name_and_help_for_every_positional_argument() -> None:
    entry = Path(sys.executable).with_name("platform-host")
    version, named, *helps = run_all(
        [*HOST, "--version"],
        [str(entry), "--help"],
        *([*HOST, *args, "--help"] for args in POSITIONAL_HELP),
    )
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"python -m host \d+\.\d+\.\d+\n", version.stdout), version.stdout
    assert named.returncode == 0, named.stderr
    assert named.stdout.startswith("usage: platform-host ")
    for args, result in zip(POSITIONAL_HELP, helps, strict=True):
        assert result.returncode == 0, (args, result.stderr)
        section = result.stdout.split("positional arguments:\n")[1].split("\n\n")[0]
        for line in section.splitlines():
            if line.startswith("  ") and not line.startswith("   "):
                # "  name   help text": a name alone on its line would be an argument without help
                assert len(line.split(None, 1)) == 2, (args, line)


def test_data_goes_before_or_after_the_subcommand(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    put = cli("--data", data, "kv", "put", "ns", "k", '"v"', "--create")
    assert put.returncode == 0, put.stderr
    before, after = run_all(
        [*HOST, "--data", data, "kv", "get", "ns", "k"],
        [*HOST, "kv", "get", "ns", "k", "--data", data],
    )
    assert (before.returncode, json.loads(before.stdout)) == (0, "v"), before.stderr
    assert (after.returncode, json.loads(after.stdout)) == (0, "v"), after.stderr


@pytest.mark.slow
def test_errors_share_one_prefix_and_exit_codes_mean_one_thing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    d = str(data)
    usage, bad_json, bad_limit, missing_run, missing_key = run_all(
        [*HOST, "runs", "nosuch", "--data", d],
        [*HOST, "start", "echo", "{oops", "--data", d],
        [*HOST, "runs", "list", "--limit", "0", "--data", d],
        [*HOST, "runs", "show", "r1", "--data", d],
        [*HOST, "kv", "get", "ns", "nope", "--data", d],
    )
    for result in (usage, bad_json, bad_limit):
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: "), result.stderr
    for result in (missing_run, missing_key):
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in "".join(r.stderr for r in (usage, bad_json, missing_run))


@pytest.mark.slow
def test_a_typo_creates_no_folder(tmp_path: Path, project: Path) -> None:
    typo = tmp_path / "typo"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    listing, starting, wrong_folder, dev = run_all(
        [*HOST, "runs", "list", "--data", str(typo)],
        [*HOST, "start", "echo", "--data", str(typo)],
        [*HOST, "start", "echo"],  # run from a folder that is no project: no ./data there
        [*HOST, "dev", str(tmp_path / "no-such-project"), "--port", "0"],
        cwd=empty,
    )
    for result in (listing, starting, wrong_folder):
        assert result.returncode == 1, result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("error: no data folder at "), result.stderr
    assert f"no data folder at {typo}:" in listing.stderr
    assert f"no data folder at {empty / 'data'}:" in wrong_folder.stderr
    assert "--create" in starting.stderr  # a write may ask for the folder to be made
    assert dev.returncode == 1
    assert dev.stderr == f"error: project folder {tmp_path / 'no-such-project'} does not exist\n"
    assert not typo.exists()
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "no-such-project").exists()


@pytest.mark.slow
def test_one_rule_for_the_data_folder(project: Path, tmp_path: Path) -> None:
    """dev PROJECT serves PROJECT/data; the CLI run inside PROJECT uses PROJECT/data too."""
    dev_help = cli("dev", "--help")
    assert "else PROJECT/data" in " ".join(dev_help.stdout.split())
    assert "./data" not in dev_help.stdout

    with running_host(project, project / "data", tmp_path / "logs", command="dev") as host:
        run_id = cli("start", "echo", '{"x": 1}', cwd=project).stdout.strip()
        assert host.wait_status(run_id, "completed")["output"] == {"x": 1}
    shown = cli("runs", "show", run_id, "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["status"] == "completed"


@pytest.mark.slow
def test_runs_list_of_an_unknown_workflow_names_the_known_ones(project: Path) -> None:
    data = project / "data"
    started = cli("start", "echo", "{}", "--data", str(data), "--create")
    assert started.returncode == 0, started.stderr
    result = cli("runs", "list", "--workflow", "ecko", "--data", str(data))
    assert result.returncode == 1
    assert result.stderr == "error: no runs of workflow 'ecko'; known workflows: echo\n"


HOURLY = """from platform_shim.workflows import define_workflow


@define_workflow({"id": "hourly", "trigger": {"kind": "schedule", "cron": "0 0 * * * *"}})
async def hourly(input, step, ctx):
    return input["scheduledAt"]
"""


@pytest.mark.slow
def test_clients_see_the_dev_hosts_skipped_clock(project: Path, tmp_path: Path) -> None:
    data = project / "data"
    d = ("--data", str(data))
    (project / "workflows" / "hourly.py").write_text(HOURLY)
    with running_host(project, data, tmp_path / "logs", command="dev") as host:
        skipped = host.http.post("/api/dev/clock", json={"advance": "24h"}).json()
        assert skipped["offsetMs"] == 24 * 3600 * 1000

        # The skipped day's hours are caught up with one tick; its next tick is an hour on, by
        # the folder's clock (before, the CLI computed it from the wall clock: a day behind).
        wait_until(
            lambda: any(s["lastAt"] for s in host.http.get("/api/workflows/schedules").json()),
            10,
            "the caught-up tick",
        )
        [row] = cli("schedules", *d).stdout.splitlines()[1:]
        last, following = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)
        assert following > last, row

        # Before, the CLI's clock was the wall clock: a TTL of 60 s written a day "ago" by the
        # host's reckoning was expired at once.
        put = cli("kv", "put", "cfg", "t", "1", "--ttl", "60", *d)
        assert put.returncode == 0, put.stderr
        assert host.http.get("/api/kv/cfg/t").status_code == 200
        got = cli("kv", "get", "cfg", "t", *d)
        assert (got.returncode, got.stdout.strip()) == (0, "1"), got.stderr

        run_id = cli("start", "echo", "{}", *d).stdout.strip()
        run = host.wait_status(run_id, "completed")
        assert run["createdAt"] >= skipped["now"]
        assert run["updatedAt"] - run["createdAt"] < 3600 * 1000
        # The host logs the start and end of a run another process recorded, too.
        log = host.wait_for_log(f"run completed: echo {run_id} in ")
        assert f"run started: echo {run_id}" in log

        script = "from platform_shim import get_platform\nprint(get_platform().clock.now_ms())\n"
        now = subprocess.run(
            [sys.executable, "-c", script],
            env=host_env(PLATFORM_DATA_DIR=str(data)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert now.returncode == 0, now.stderr
        assert int(now.stdout) >= skipped["now"]
