"""``python -m host build``: discover and validate a project, write ``build/manifest.json``.

A broken module fails the build naming its file and line; a workflow id defined in two files
fails it naming both.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.support.hostproc import ROOT, cli


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the repository's example app (a build writes into the project folder)."""
    root = tmp_path / "example"
    for kind in ("workflows", "events", "routes"):
        shutil.copytree(ROOT / kind, root / kind, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_build_the_example_app(example: Path) -> None:
    before = int(time.time() * 1000)
    result = cli("build", str(example))
    after = int(time.time() * 1000)
    assert result.returncode == 0, result.stderr
    assert "✅ Workflows build completed: 7 workflow(s)" in result.stdout.splitlines()
    assert not (example / "data").exists()  # a build reads code, never data

    manifest = json.loads((example / "build" / "manifest.json").read_text())
    assert {"version", "workflows", "events", "buildTime"} <= set(manifest)
    assert isinstance(manifest["version"], int)
    assert before <= manifest["buildTime"] <= after
    for entry in manifest["workflows"]:
        assert set(entry) == {"id", "export", "file", "options", "trigger"}
    for entry in manifest["events"]:
        assert set(entry) == {"id", "export", "file", "trigger"}

    workflows = {w["id"]: w for w in manifest["workflows"]}
    assert sorted(workflows) == [
        "fulfill-order",
        "invoice-builder",
        "nightly-reconcile",
        "nudge-followup",
        "onboarding",
        "onboarding-after-signup",
        "shipping",
    ]
    assert workflows["onboarding"] == {
        "id": "onboarding",
        "export": "onboarding",
        "file": "workflows/onboarding.py",
        "options": {"retries": 5, "timeoutSecs": 9 * 24 * 3600},
        "trigger": None,
    }
    assert workflows["fulfill-order"]["export"] == "fulfill_order"
    assert workflows["fulfill-order"]["options"] == {"retries": 5, "timeoutSecs": 15 * 24 * 3600}
    assert workflows["nightly-reconcile"]["trigger"] == {"kind": "schedule", "cron": "0 0 3 * * *"}
    assert workflows["nightly-reconcile"]["options"] == {"retries": 3}
    assert workflows["onboarding-after-signup"]["trigger"] == {
        "kind": "event",
        "t": "auth.user.registered",
    }
    assert workflows["onboarding-after-signup"]["export"] == "on_signup"
    assert (
        workflows["shipping"]["file"]
        == workflows["invoice-builder"]["file"]
        == "workflows/shipping.py"
    )

    events = {e["export"]: e for e in manifest["events"]}
    assert events["nudge_on_invite"] == {
        "id": "invites:nudge_on_invite",
        "export": "nudge_on_invite",
        "file": "events/invites.py",
        "trigger": {"kind": "kv", "namespace": "invites", "keyPattern": "inv:*", "op": "put"},
    }
    assert events["onboard_new_user"]["trigger"] == {
        "kind": "db",
        "collection": "users",
        "op": "insert",
    }
    assert events["deliver_emails"]["trigger"] == {
        "kind": "queue",
        "queue": "emails",
        "batch": 10,
        "maxAttempts": 3,
    }


def test_build_single_file_forms_and_an_empty_project(tmp_path: Path) -> None:
    project = write(
        tmp_path / "single",
        {
            "workflows.py": "from platform_shim.workflows import define_workflow\n\n\n"
            '@define_workflow({"id": "one"})\n'
            "async def one(input, step, ctx):\n"
            "    return 1\n",
            "events.py": "from platform_shim.events import define_event\n\n\n"
            '@define_event({"t": "ping"})\n'
            "async def pong(event, ctx):\n"
            "    pass\n",
        },
    )
    result = cli("build", str(project))
    assert result.returncode == 0, result.stderr
    assert "✅ Workflows build completed: 1 workflow(s)" in result.stdout
    manifest = json.loads((project / "build" / "manifest.json").read_text())
    assert [(w["id"], w["file"]) for w in manifest["workflows"]] == [("one", "workflows.py")]
    assert [(e["export"], e["file"], e["trigger"]) for e in manifest["events"]] == [
        ("pong", "events.py", {"kind": "event", "t": "ping"})
    ]

    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("build", str(empty))
    assert result.returncode == 0, result.stderr
    assert "✅ Workflows build completed: 0 workflow(s)" in result.stdout


GOOD = 'from platform_shim.workflows import define_workflow\n\n\n@define_workflow({"id": "ok"})\nasync def ok(input, step, ctx):\n    return 1\n'


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        pytest.param(
            "from platform_shim.workflows import define_workflow\n\n\ndef broken(:\n    pass\n",
            4,
            "SyntaxError",
            id="syntax-error",
        ),
        pytest.param(
            "import os\n\nSETTINGS = {}\nREGION = SETTINGS['region']\n",
            4,
            "KeyError: 'region'",
            id="exception-at-import",
        ),
        pytest.param(
            "from platform_shim.workflows import define_workflow\n\n\n"
            '@define_workflow({"id": "typo", "option": {"retries": 1}})\n'
            "async def typo(input, step, ctx):\n"
            "    return 1\n",
            4,
            "unknown descriptor key(s) ['option']",
            id="bad-descriptor",
        ),
    ],
)
def test_a_broken_module_fails_the_build_naming_file_and_line(
    tmp_path: Path, source: str, line: int, message: str
) -> None:
    project = write(tmp_path / "p", {"workflows/good.py": GOOD, "workflows/bad.py": source})
    result = cli("build", str(project))
    assert result.returncode != 0
    bad = (project / "workflows" / "bad.py").resolve()
    assert f"{bad}:{line}" in result.stderr, result.stderr
    assert message in result.stderr
    assert "✅" not in result.stdout
    assert not (project / "build" / "manifest.json").exists()


def test_a_duplicate_workflow_id_fails_the_build_naming_both_files(tmp_path: Path) -> None:
    twin = GOOD.replace("async def ok", "async def also_ok")
    project = write(tmp_path / "p", {"workflows/a.py": GOOD, "workflows/b.py": twin})
    result = cli("build", str(project))
    assert result.returncode != 0
    assert "'ok' is defined twice" in result.stderr, result.stderr
    for name in ("a.py", "b.py"):
        assert str((project / "workflows" / name).resolve()) in result.stderr
    assert not (project / "build" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        pytest.param(
            "workflows/bad.py",
            "from platform_shim.workflows import define_workflow\n\n\n"
            '@define_workflow({"id": "no-ctx"})\n'
            "async def no_ctx(input, step):\n"
            "    return 1\n",
            "workflow 'no-ctx': the handler at",
            id="workflow-without-ctx",
        ),
        pytest.param(
            "events/bad.py",
            "from platform_shim.events import on_kv_change\n\n\n"
            '@on_kv_change({"namespace": "n"})\n'
            "async def h(event):\n"
            "    pass\n",
            "kv handler 'h' at",
            id="handler-without-ctx",
        ),
        pytest.param(
            "events/bad.py",
            "from platform_shim.events import on_queue\n\n\n"
            '@on_queue("emails")\n'
            "async def deliver(messages, ctx, extra):\n"
            "    pass\n",
            "takes (messages, ctx, extra) but is called with (messages, ctx)",
            id="queue-consumer-with-an-extra-parameter",
        ),
    ],
)
def test_a_wrong_signature_fails_build_and_dev_naming_file_and_line(
    tmp_path: Path, name: str, source: str, message: str
) -> None:
    """Checked at load: before, these loaded and then failed every attempt at call time."""
    project = write(tmp_path / "p", {"workflows/good.py": GOOD, name: source})
    where = f"{(project / name).resolve()}:4"
    result = cli("build", str(project))
    assert result.returncode == 1
    assert where in result.stderr, result.stderr
    assert message in result.stderr
    assert not (project / "build" / "manifest.json").exists()

    dev = cli("dev", str(project), "--port", "0", "--data", str(tmp_path / "data"))
    assert dev.returncode == 1, dev.stderr
    assert where in dev.stderr and message in dev.stderr, dev.stderr
