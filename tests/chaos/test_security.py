"""Security properties of the host, each tested where it is decided.

- Loopback by default: the CLI, ``HostConfig`` and the server bind 127.0.0.1 unless told
  otherwise, and another address without a token is refused before anything listens. (The
  real-process forms, a refused start and the bearer on every request, are in
  ``tests/host/test_api_errors.py``.)
- The token is compared in constant time (``hmac.compare_digest`` is what decides, for the
  header and for ``?token=``), and only ``/api`` and ``/_platform`` require it.
- No data is ever unpickled, unmarshalled or evaluated: the only ``exec``/``compile`` in the
  packages is the loader's, of the user's own source files (checked on the syntax tree).
- Errors are logged in full but answered as a message: a workflow that raises with a secret in
  a local variable has a run error of just ``type``, ``message`` and ``step``; a route that raises
  answers a bare 500 message; the log has the tracebacks.
"""

from __future__ import annotations

import ast
import hmac
import logging
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

import host.middleware
from host.cli import _parser
from host.config import HostConfig, is_loopback
from tests.chaos.inproc import inprocess_host
from tests.support.hostproc import ROOT

SECRET = "hunter2-s3cr3t-value"

PROJECT = f"""
from platform_shim.workflows import define_workflow


@define_workflow({{"id": "leaky", "options": {{"retries": 0}}}})
async def leaky(input, step, ctx):
    def charge():
        api_key = {SECRET!r}
        raise RuntimeError("card declined")

    await step.run("charge", charge)


@define_workflow({{"id": "outside", "options": {{"retries": 0}}}})
async def outside(input, step, ctx):
    password = {SECRET!r}
    raise ValueError("no such customer")
"""

ROUTES = f"""
from starlette.routing import Route


async def boom(request):
    token = {SECRET!r}
    raise RuntimeError("the route exploded")


routes = [Route("/boom", boom)]
"""


def write_project(root: Path) -> Path:
    project = root / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "flows.py").write_text(textwrap.dedent(PROJECT))
    (project / "routes.py").write_text(textwrap.dedent(ROUTES))
    return project


# ----------------------------------------------------------------------------- loopback


def test_loopback_is_the_default_and_other_addresses_need_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PLATFORM_TOKEN", raising=False)
    for command in ("serve", "dev"):
        assert _parser().parse_args([command]).host == "127.0.0.1"
    assert HostConfig().host == "127.0.0.1"
    for address in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(address)
        HostConfig(host=address).check()
    for address in ("0.0.0.0", "::", "192.168.1.5", "example.com", ""):
        assert not is_loopback(address)
        with pytest.raises(SystemExit, match="PLATFORM_TOKEN"):
            HostConfig(host=address).check()
    HostConfig(host="0.0.0.0", token="t").check()


# ------------------------------------------------------------------------------- token


async def test_the_token_is_compared_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(host.middleware.hmac, "compare_digest", spy)
    token = "correct-horse-battery"
    async with inprocess_host(write_project(tmp_path), tmp_path / "data", token=token) as (_, http):
        assert (await http.get("/api/workflows/runs")).status_code == 401
        wrong = {"Authorization": "Bearer correct-horse-batterz"}
        assert (await http.get("/api/workflows/runs", headers=wrong)).status_code == 401
        short = {"Authorization": "Bearer c"}
        assert (await http.get("/api/workflows/runs", headers=short)).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/api/workflows/runs", headers=right)).status_code == 200
        assert (await http.get(f"/_platform/?token={token}")).status_code == 200
        assert (await http.get(f"/api/kv/ns/k?token={token}")).status_code == 401
        assert (await http.get("/_platform/api/runs", headers=wrong)).status_code == 401
        # Public by design: the API's description and the app's own routes.
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/boom")).status_code == 500
    assert [b for _, b in calls] == [token.encode()] * 5, calls
    assert {a for a, _ in calls} == {b"correct-horse-batterz", b"c", token.encode()}


# ----------------------------------------------------------------------- no code from data

PACKAGES = ("platform_shim", "host")
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}
ALLOWED = {("host/loader.py", "compile"), ("host/loader.py", "exec")}


def test_no_pickle_marshal_or_eval_of_data() -> None:
    found: list[tuple[str, int, str]] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            tree = ast.parse(path.read_text(), name)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [(node.module or "").split(".")[0]]
                else:
                    modules = []
                found += [(name, node.lineno, m) for m in modules if m in FORBIDDEN_MODULES]
                if isinstance(node, ast.Call):
                    func = node.func
                    called = func.id if isinstance(func, ast.Name) else None
                    if isinstance(func, ast.Attribute) and func.attr in ("load", "loads"):
                        base = func.value
                        if isinstance(base, ast.Name) and base.id in FORBIDDEN_MODULES | {"yaml"}:
                            called = f"{base.id}.{func.attr}"
                    if called in FORBIDDEN_CALLS or (called or "").startswith(("yaml.", "pickle.")):
                        found.append((name, node.lineno, str(called)))
    unexpected = [f for f in found if (f[0], f[2]) not in ALLOWED]
    assert not unexpected, unexpected
    # The loader's exec runs the code compiled from a user's .py file, and nothing else.
    loader = (ROOT / "host" / "loader.py").read_text()
    assert 'compile(path.read_bytes(), str(path), "exec", dont_inherit=True)' in loader
    assert sorted(f[2] for f in found) == ["compile", "exec"], found


# ----------------------------------------------------------------------- errors redacted


async def test_errors_are_logged_in_full_but_answered_as_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with inprocess_host(write_project(tmp_path), tmp_path / "data") as (app, http):
        worker = app.state.worker
        runs = {}
        for workflow in ("leaky", "outside"):
            started = await http.post(f"/api/workflows/{workflow}/start", json={})
            runs[workflow] = started.json()["runId"]
        await worker.settle(timeout=10)
        for workflow, run_id in runs.items():
            run = await http.get(f"/api/workflows/runs/{run_id}")
            history = await http.get(f"/api/workflows/runs/{run_id}/history")
            listing = await http.get("/api/workflows/runs", params={"workflowId": workflow})
            dashboard = await http.get(f"/_platform/api/runs/{run_id}")
            body = run.json()
            assert body["status"] == "failed", body
            error = body["error"]
            assert set(error) <= {"type", "message", "step"}, error
            for response in (run, history, listing):
                assert response.status_code == 200, response.text
                assert SECRET not in response.text
                assert "Traceback" not in response.text
                assert 'File "' not in response.text
            # The dashboard (behind the token whenever the host is reachable from elsewhere) is
            # where tracebacks are shown: the raising lines, never the locals beside them.
            assert dashboard.status_code == 200, dashboard.text
            assert SECRET not in dashboard.text
            [failure] = dashboard.json()["failures"]
            assert failure["trace"].startswith("Traceback (most recent call last)")
            if workflow == "leaky":
                assert error == {
                    "type": "RuntimeError",
                    "message": "card declined",
                    "step": "charge",
                }
                assert history.json()[0]["error"] == {
                    "type": "RuntimeError",
                    "message": "card declined",
                }
            else:
                assert error == {"type": "ValueError", "message": "no such customer"}
        boom = await http.get("/boom")
        assert boom.status_code == 500
        assert boom.json() == {
            "error": "internal_error",
            "detail": "internal error; the host log has the details",
        }
        assert "exploded" not in boom.text
    assert "Traceback (most recent call last)" in caplog.text
    for needle in ("card declined", "no such customer", "the route exploded", "in charge"):
        assert needle in caplog.text, needle
    assert "leaky" in caplog.text
    assert "outside" in caplog.text
    for line in (tmp_path / "data" / "runs.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        assert SECRET not in orjson.dumps(record).decode()


def test_a_token_with_url_special_characters_works_as_a_query_parameter() -> None:
    from urllib.parse import quote_plus

    from host.middleware import BearerTokenMiddleware

    token = 'tok"<&> é'
    middleware = BearerTokenMiddleware(app=None, token=token)  # type: ignore[arg-type]
    stream = "/api/events/stream"
    ok = {"path": stream, "headers": [], "query_string": f"token={quote_plus(token)}".encode()}
    wrong = {"path": stream, "headers": [], "query_string": b"token=nope"}
    elsewhere = {"path": "/api/kv/ns", "headers": [], "query_string": ok["query_string"]}
    assert middleware.authorized(ok)
    assert not middleware.authorized(wrong)
    assert not middleware.authorized(elsewhere)  # a token in a URL only where EventSource needs it
