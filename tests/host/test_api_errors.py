"""Error answers across the API against a real host: unknown routes, wrong methods, the body
limit (``--max-body``), and the bearer token required off loopback.

Every client mistake is a JSON ``{"error", "detail"}`` 4xx, never a 500 (the host log is also
checked for unhandled errors at teardown), and never a partial write.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.host.hosting import StartHost, assert_error, quiet, write_project
from tests.support.hostproc import HostProcess

ROUTES: list[tuple[str, str]] = [
    ("GET", "/api/kv/ns/key"),
    ("PUT", "/api/kv/ns/key"),
    ("DELETE", "/api/kv/ns/key"),
    ("POST", "/api/kv/ns"),
    ("POST", "/api/db/coll"),
    ("POST", "/api/db/coll/findOne"),
    ("PUT", "/api/db/coll"),
    ("POST", "/api/db/coll/update"),
    ("DELETE", "/api/db/coll/delete"),
    ("GET", "/api/db/coll/indexes"),
    ("POST", "/api/db/coll/indexes"),
    ("DELETE", "/api/db/coll/indexes/name"),
    ("GET", "/api/storage/some/key"),
    ("PUT", "/api/storage/some/key"),
    ("DELETE", "/api/storage/some/key"),
    ("GET", "/api/storage"),
    ("GET", "/api/storage/some/key/metadata"),
    ("POST", "/api/workflows/echo/start"),
    ("POST", "/api/workflows/signal"),
    ("GET", "/api/workflows/runs/run-id"),
    ("GET", "/api/workflows/runs/run-id/history"),
    ("POST", "/api/workflows/runs/run-id/cancel"),
    ("GET", "/api/workflows/runs"),
    ("GET", "/api/workflows/schedules"),
    ("POST", "/api/events"),
]

GARBAGE = [
    b"{bad json",
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"1e999",
    b'{"filter": {"$bogus": 1}, "update": {"$nope": 1}, "keys": 7, "t": 9, "eventType": []}',
    b"\xff\xfe\x00binary",
    b"[" * 5000,
]


def snapshot(http: httpx.Client) -> Any:
    """Everything a refused request could have touched."""
    return (
        http.post("/api/kv/ns", json={}).json(),
        http.post("/api/db/coll", json={}).json(),
        http.get("/api/db/coll/indexes").json(),
        http.get("/api/storage").json(),
        [r["runId"] for r in http.get("/api/workflows/runs", params={"limit": 1000}).json()],
        http.get("/api/events", params={"limit": 1}).json(),
    )


@pytest.fixture(scope="module")
def seeded(http: httpx.Client) -> None:
    assert http.put("/api/kv/ns/key", json={"seed": True}).status_code == 200
    assert http.put("/api/db/coll", json={"_id": "seed", "n": 1}).status_code == 200
    assert http.put("/api/storage/some/key", content=b"seed").status_code == 200


@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda b: repr(b[:12]))
def test_garbage_bodies_on_every_write_route_are_refused_cleanly(
    http: httpx.Client, seeded: None, garbage: bytes
) -> None:
    try:
        orjson.loads(garbage)
        valid_json = True
    except orjson.JSONDecodeError:
        valid_json = False
    accepted = True  # the module's host may still be finishing earlier requests' runs
    for method, path in ROUTES:
        if method == "GET" or path.startswith("/api/storage/") or path.endswith("/cancel"):
            continue  # no JSON body there (storage PUT takes any bytes: tested on its own)
        ignores_body = path.startswith("/api/db/coll/indexes/") or (
            path == "/api/kv/ns/key" and method == "DELETE"
        )
        if accepted:
            quiet(http)  # a run an accepted request started writes its status events later
        before = snapshot(http)
        response = http.request(method, path, content=garbage)
        accepted = response.status_code < 400
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        if not valid_json and not ignores_body:
            assert_error(response, 400, "JSON")  # malformed JSON is always a 400
        if response.status_code >= 400:
            assert_error(response, response.status_code)
            assert snapshot(http) == before, (method, path, garbage)


def test_every_route_answers_json_never_500(http: httpx.Client, seeded: None) -> None:
    for method, path in ROUTES:
        response = http.request(method, path, content=b"{}" if method != "GET" else b"")
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            assert_error(response, response.status_code)


def test_unknown_routes_are_json_404(http: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/nope"),
        ("POST", "/api/kv"),
        ("GET", "/api/db"),
        ("POST", "/api/workflows/echo/stop"),
        ("GET", "/api/workflows/runs/a/b/c"),
        ("GET", "/nothing-here"),
    ]:
        assert_error(http.request(method, path), 404, path)
    # with a body the server will not read, it says it closes the connection
    response = http.post("/api/nope", content=b"x" * 100)
    assert_error(response, 404)
    assert response.headers.get("connection") == "close"


def test_wrong_methods_are_json_405_naming_the_allowed_ones(http: httpx.Client) -> None:
    for method, path in [
        ("PATCH", "/api/kv/ns/key"),
        ("GET", "/api/kv/ns"),
        ("DELETE", "/api/db/coll"),
        ("GET", "/api/db/coll/update"),
        ("POST", "/api/storage"),
        ("PATCH", "/api/storage/a"),
        ("PUT", "/api/workflows/echo/start"),
        ("DELETE", "/api/workflows/runs"),
        ("PUT", "/api/events"),
    ]:
        response = http.request(method, path)
        body = assert_error(response, 405, method)
        assert response.headers["allow"], response.headers
        for allowed in response.headers["allow"].split(","):
            assert allowed.strip() in body["detail"]


# -------------------------------------------------------------------------- the body limit


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A host started with ``--max-body 1000``."""
    from tests.host.hosting import running_host

    with (
        running_host(tmp_path_factory.mktemp("small"), "--max-body", "1000") as host,
        httpx.Client(base_url=host.url, timeout=10.0) as client,
    ):
        yield client


BIG = json.dumps({"blob": "x" * 1500}).encode()
FITS = json.dumps({"blob": "x" * 900}).encode()

LIMITED = [
    ("PUT", "/api/kv/limits/key"),
    ("PUT", "/api/db/limits"),
    ("PUT", "/api/storage/limits/object"),
    ("POST", "/api/workflows/echo/start"),
    ("POST", "/api/events"),
]


def limited_snapshot(http: httpx.Client) -> Any:
    return (
        http.post("/api/kv/limits", json={}).json(),
        http.post("/api/db/limits", json={}).json(),
        http.get("/api/storage").json(),
        [r["runId"] for r in http.get("/api/workflows/runs").json()],
        http.get("/api/events", params={"limit": 1}).json(),
    )


@pytest.mark.parametrize(("method", "path"), LIMITED)
def test_a_body_over_the_limit_is_413_with_content_length(
    small: httpx.Client, method: str, path: str
) -> None:
    before = limited_snapshot(small)
    response = small.request(method, path, content=BIG)
    assert_error(response, 413, "1000")
    assert response.headers["connection"] == "close"
    assert limited_snapshot(small) == before


@pytest.mark.parametrize(("method", "path"), LIMITED)
def test_a_chunked_body_over_the_limit_is_413(small: httpx.Client, method: str, path: str) -> None:
    before = limited_snapshot(small)

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(BIG), 300):
            yield BIG[start : start + 300]

    response = small.request(method, path, content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "1000")
    assert limited_snapshot(small) == before


def test_a_body_within_the_limit_is_accepted(small: httpx.Client) -> None:
    assert small.put("/api/kv/limits/fits", content=FITS).status_code == 200
    assert small.get("/api/kv/limits/fits").json() == json.loads(FITS)

    def chunks() -> Iterator[bytes]:
        yield FITS[:500]
        yield FITS[500:]

    assert small.put("/api/kv/limits/chunked", content=chunks()).status_code == 200
    assert small.get("/api/kv/limits/chunked").json() == json.loads(FITS)
    # and the connection that carried the refused bodies is still usable afterwards
    assert small.get("/api/kv/limits/fits").status_code == 200


# ------------------------------------------------------------------------------ the token


def test_binding_another_address_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    host = HostProcess(project, tmp_path / "data", tmp_path, args=("--host", "0.0.0.0"))
    proc = host.start()
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        host.kill()
        pytest.fail("a host on 0.0.0.0 without PLATFORM_TOKEN started serving")
    assert code != 0
    log = host.log()
    assert "PLATFORM_TOKEN" in log
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_with_a_token_every_api_request_needs_the_bearer(start_host: StartHost) -> None:
    token = "s3cret-token-for-tests"
    host = start_host(bind="0.0.0.0", token=token)
    assert host.url.startswith("http://127.0.0.1:")  # we only ever connect to loopback
    anonymous = host.client(auth=False)
    wrong = httpx.Client(
        base_url=host.url, headers={"Authorization": "Bearer not-it"}, timeout=10.0
    )
    try:
        for method, path in [
            ("GET", "/api/kv/ns/key"),
            ("PUT", "/api/kv/ns/key"),
            ("POST", "/api/workflows/echo/start"),
            ("GET", "/api/workflows/runs"),
            ("GET", "/api/events/stream"),
            ("GET", "/api/nope"),
            ("GET", "/_platform/"),
        ]:
            for client in (anonymous, wrong):
                response = client.request(
                    method, path, content=b'{"x": 1}' if method != "GET" else b""
                )
                assert_error(response, 401, "Bearer")
                assert response.headers["www-authenticate"] == "Bearer"
        basic = anonymous.get("/api/workflows/runs", headers={"Authorization": f"Basic {token}"})
        assert_error(basic, 401)
    finally:
        wrong.close()
    authed = host.client()
    assert authed.get("/api/workflows/runs").json() == []  # the refused start started nothing
    assert_error(authed.get("/api/kv/ns/key"), 404)  # the refused put wrote nothing
    assert authed.put("/api/kv/ns/key", json={"ok": True}).status_code == 200
    assert authed.get("/api/kv/ns/key").json() == {"ok": True}
    run_id = authed.post("/api/workflows/echo/start", json={"a": 1}).json()["runId"]
    assert authed.get(f"/api/workflows/runs/{run_id}").status_code == 200
