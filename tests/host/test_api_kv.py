"""KV over HTTP against a real host: GET/PUT (X-TTL)/DELETE /api/kv/{ns}/{key}, POST /api/kv/{ns}.

Every test runs against a host on a data folder and a host on PostgreSQL (``--store``: the
keys live in its rows), one host per store for the module."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.host.hosting import assert_error, check_tracebacks, running_host, write_project
from tests.support import hostproc
from tests.support.hostproc import HostProcess
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until


@pytest.fixture(scope="module", params=["folder", "postgres"])
def host(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    root = tmp_path_factory.mktemp(f"kv-{request.param}")
    if request.param == "folder":
        with running_host(root) as running:  # as the conftest's ``host``
            yield running
        return
    project = write_project(root)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database = server.create_database()
    try:
        with hostproc.running_host(
            project, None, root, store=database.url, extra_check=check_tracebacks
        ) as running:
            yield running
    finally:
        server.drop_database(database.name)


def listing(http: httpx.Client, ns: str, **body: Any) -> dict[str, Any]:
    response = http.post(f"/api/kv/{ns}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def names(http: httpx.Client, ns: str) -> list[str]:
    return [key["name"] for key in listing(http, ns)["result"]]


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "nested": {"b": [1, 2, None]}}, "text", 42, 1.5, True, None, [1, "two"], "ünïcødé ✓"],
)
def test_put_then_get_returns_the_json_value(http: httpx.Client, value: Any) -> None:
    response = http.put("/api/kv/values/k", content=json.dumps(value))
    assert response.status_code == 200, response.text
    got = http.get("/api/kv/values/k")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    assert got.json() == value


def test_missing_key_is_a_json_404(http: httpx.Client) -> None:
    assert_error(http.get("/api/kv/missing/nope"), 404, "nope")


def test_delete_removes_the_key_and_is_idempotent(http: httpx.Client) -> None:
    assert http.put("/api/kv/del/k", json={"v": 1}).status_code == 200
    assert http.delete("/api/kv/del/k").status_code == 200
    assert_error(http.get("/api/kv/del/k"), 404)
    assert http.delete("/api/kv/del/k").status_code == 200
    assert names(http, "del") == []


def test_keys_may_hold_slashes_and_encoded_characters(http: httpx.Client) -> None:
    assert http.put("/api/kv/paths/users/42/profile", json=1).status_code == 200
    assert http.put("/api/kv/paths/a%20b", json=2).status_code == 200
    assert http.get("/api/kv/paths/users/42/profile").json() == 1
    assert http.get("/api/kv/paths/a b").json() == 2
    # the JS client does not encode keys: a "?" in one arrives as a query string
    assert http.put("/api/kv/paths/what?now", json=3).status_code == 200
    assert http.get("/api/kv/paths/what?now").json() == 3
    assert_error(http.get("/api/kv/paths/what"), 404)
    assert names(http, "paths") == ["a b", "users/42/profile", "what?now"]
    assert http.delete("/api/kv/paths/what?now").status_code == 200
    assert names(http, "paths") == ["a b", "users/42/profile"]


def test_x_ttl_sets_the_expiration_and_the_key_expires(http: httpx.Client) -> None:
    before = time.time() * 1000
    assert http.put("/api/kv/ttl/long", json="x", headers={"X-TTL": "3600"}).status_code == 200
    assert http.put("/api/kv/ttl/short", json="y", headers={"X-TTL": "1"}).status_code == 200
    assert http.put("/api/kv/ttl/forever", json="z").status_code == 200
    keys = {key["name"]: key for key in listing(http, "ttl")["result"]}
    assert set(keys) == {"forever", "long", "short"}
    assert keys["forever"]["expiration"] is None
    assert (
        before + 3_600_000 - 5_000 <= keys["long"]["expiration"] <= time.time() * 1000 + 3_600_000
    )
    assert http.get("/api/kv/ttl/short").json() == "y"
    gone = wait_until(
        lambda: (answer := http.get("/api/kv/ttl/short")).status_code != 200 and answer,
        what="the key with X-TTL: 1 to expire",
    )
    assert_error(gone, 404)
    assert names(http, "ttl") == ["forever", "long"]


def test_list_answers_result_and_result_info(http: httpx.Client) -> None:
    for key in ("b", "a", "c"):
        assert http.put(f"/api/kv/shape/{key}", json=key).status_code == 200
    body = listing(http, "shape")
    assert body == {
        "result": [
            {"name": "a", "expiration": None},
            {"name": "b", "expiration": None},
            {"name": "c", "expiration": None},
        ],
        "result_info": {"cursor": None, "count": 3},
    }
    # An empty body, and a JSON null limit, mean "everything".
    empty = http.post("/api/kv/shape", content=b"")
    assert empty.status_code == 200
    assert [k["name"] for k in empty.json()["result"]] == ["a", "b", "c"]
    assert [k["name"] for k in listing(http, "shape", limit=None)["result"]] == ["a", "b", "c"]


def test_list_prefix_and_cursor_pagination(http: httpx.Client) -> None:
    wanted = [f"user:{i:02d}" for i in range(7)]
    for key in [*reversed(wanted), "other:1", "user", "uses"]:
        assert http.put(f"/api/kv/pages/{key}", json=key).status_code == 200
    seen: list[str] = []
    pages: list[int] = []
    cursor = None
    while True:
        body = listing(http, "pages", prefix="user:", limit=3, cursor=cursor)
        page = [key["name"] for key in body["result"]]
        assert body["result_info"]["count"] == len(page)
        seen += page
        pages.append(len(page))
        cursor = body["result_info"]["cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert cursor
    assert seen == wanted
    assert pages == [3, 3, 1]
    assert names(http, "pages") == sorted([*wanted, "other:1", "user", "uses"])


def test_namespaces_are_separate(http: httpx.Client) -> None:
    assert http.put("/api/kv/ns-one/k", json=1).status_code == 200
    assert http.put("/api/kv/ns-two/k", json=2).status_code == 200
    assert http.get("/api/kv/ns-one/k").json() == 1
    assert http.get("/api/kv/ns-two/k").json() == 2


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        ({}, b"{bad json", "malformed JSON"),
        ({}, b"", "JSON value"),
        ({}, b'{"a": 1} trailing', "malformed JSON"),
        ({}, b"NaN", "malformed JSON"),
        ({"X-TTL": "soon"}, b"1", "X-TTL"),
        ({"X-TTL": "-5"}, b"1", "ttl"),
        ({"X-TTL": "0"}, b"1", "ttl"),
        ({"X-TTL": "inf"}, b"1", "ttl"),
        ({"X-TTL": "nan"}, b"1", "ttl"),
    ],
)
def test_a_refused_put_changes_nothing(
    http: httpx.Client, headers: dict[str, str], body: bytes, needle: str
) -> None:
    assert http.put("/api/kv/refused/k", json={"original": True}).status_code == 200
    assert_error(http.put("/api/kv/refused/k", content=body, headers=headers), 400, needle)
    assert http.get("/api/kv/refused/k").json() == {"original": True}
    assert listing(http, "refused")["result"] == [{"name": "k", "expiration": None}]
    # a refused put of a new key creates nothing
    assert_error(http.put("/api/kv/refused/new", content=body, headers=headers), 400)
    assert_error(http.get("/api/kv/refused/new"), 404)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[1, 2]", "object"),
        (b'"prefix"', "object"),
        (b"{bad", "malformed JSON"),
        (b'{"limit": 0}', "limit"),
        (b'{"limit": -1}', "limit"),
        (b'{"limit": "ten"}', "limit"),
        (b'{"prefix": 5}', "prefix"),
        (b'{"cursor": "not-a-cursor!"}', "cursor"),
        (b'{"cursor": 12}', "cursor"),
    ],
)
def test_bad_list_requests_are_400(http: httpx.Client, body: bytes, needle: str) -> None:
    assert_error(http.post("/api/kv/listing-errors", content=body), 400, needle)


def test_wrong_methods_are_405_with_the_allowed_ones(http: httpx.Client) -> None:
    response = http.patch("/api/kv/ns/key", json=1)
    assert_error(response, 405, "PATCH")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "PUT", "DELETE"}
    response = http.get("/api/kv/ns")
    assert_error(response, 405)
    assert "POST" in response.headers["allow"]


def test_a_nul_in_a_key_is_kept_on_a_folder_and_a_clear_400_on_postgresql(
    http: httpx.Client, host: HostProcess
) -> None:
    put = http.put("/api/kv/nul/a%00b", json=1)
    if host.store is None:  # a folder keeps any key
        assert put.status_code == 200, put.text
        assert http.get("/api/kv/nul/a%00b").json() == 1
    else:  # a PostgreSQL text cannot hold a NUL: refused, naming it, nothing written
        assert_error(put, 400, "NUL")
        assert_error(http.get("/api/kv/nul/a%00b"), 404)
        assert names(http, "nul") == []
