"""The document database over HTTP against a real host: /api/db/{coll}[/findOne|/update|/delete|/indexes]."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.host.hosting import assert_error


def insert(http: httpx.Client, coll: str, doc: dict[str, Any]) -> str:
    response = http.put(f"/api/db/{coll}", json=doc)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id"}, body
    assert isinstance(body["id"], str)
    doc_id: str = body["id"]
    return doc_id


def find(http: httpx.Client, coll: str, filter: Any = None, **options: Any) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"filter": filter if filter is not None else {}}
    if options:
        body["options"] = options
    response = http.post(f"/api/db/{coll}", json=body)
    assert response.status_code == 200, response.text
    docs: list[dict[str, Any]] = response.json()
    return docs


def indexes(http: httpx.Client, coll: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/db/{coll}/indexes")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


@pytest.fixture(scope="module")
def people(http: httpx.Client) -> list[str]:
    docs = [
        {"name": "ada", "age": 36, "tags": ["math", "code"], "address": {"city": "London"}},
        {"name": "grace", "age": 85, "tags": ["navy", "code"], "address": {"city": "Arlington"}},
        {"name": "alan", "age": 41, "tags": ["math"], "address": {"city": "Wilmslow"}},
        {"name": "linus", "age": 28, "tags": [], "address": {"city": "Portland"}},
    ]
    return [insert(http, "people", doc) for doc in docs]


def test_insert_returns_the_id_and_the_document_has_both_id_forms(http: httpx.Client) -> None:
    doc_id = insert(http, "inserted", {"name": "x", "n": 1})
    [doc] = find(http, "inserted")
    assert doc == {"_id": doc_id, "id": doc_id, "name": "x", "n": 1}
    chosen = insert(http, "inserted", {"_id": "mine", "name": "y"})
    assert chosen == "mine"
    assert find(http, "inserted", {"id": "mine"})[0]["name"] == "y"


def test_find_with_filter_and_options(http: httpx.Client, people: list[str]) -> None:
    older = find(http, "people", {"age": {"$gte": 36}}, sort={"age": -1})
    assert [d["name"] for d in older] == ["grace", "alan", "ada"]
    page = find(http, "people", {}, sort=[["name", 1]], skip=1, limit=2)
    assert [d["name"] for d in page] == ["alan", "grace"]
    projected = find(http, "people", {"tags": "math"}, sort={"name": 1}, projection={"name": 1})
    assert projected == [
        {"_id": people[0], "id": people[0], "name": "ada"},
        {"_id": people[2], "id": people[2], "name": "alan"},
    ]
    dotted = find(
        http, "people", {"address.city": {"$in": ["London", "Portland"]}}, sort={"age": 1}
    )
    assert [d["name"] for d in dotted] == ["linus", "ada"]
    combined = find(
        http,
        "people",
        {"$or": [{"age": {"$lt": 30}}, {"name": "grace"}]},
        sort={"name": 1},
    )
    assert [d["name"] for d in combined] == ["grace", "linus"]
    # no body fields at all: everything
    response = http.post("/api/db/people", json={})
    assert len(response.json()) == 4
    assert find(http, "no-such-collection", {"a": 1}) == []


def test_find_one_returns_the_document_or_404(http: httpx.Client, people: list[str]) -> None:
    response = http.post("/api/db/people/findOne", json={"name": "grace"})
    assert response.status_code == 200
    assert response.json()["_id"] == people[1]
    assert response.json()["age"] == 85
    assert_error(http.post("/api/db/people/findOne", json={"name": "nobody"}), 404)
    assert_error(http.post("/api/db/empty-collection/findOne", json={}), 404)


def test_update_answers_both_count_spellings(http: httpx.Client) -> None:
    for n in range(3):
        insert(http, "counters", {"group": "g", "n": n})
    response = http.post(
        "/api/db/counters/update",
        json={"filter": {"n": 1}, "update": {"$inc": {"n": 10}, "$set": {"hit": True}}},
    )
    assert response.status_code == 200
    assert response.json() == {"matched": 1, "modified": 1, "matchedCount": 1, "modifiedCount": 1}
    assert [d["n"] for d in find(http, "counters", {"hit": True})] == [11]
    none = http.post(
        "/api/db/counters/update", json={"filter": {"n": 99}, "update": {"$set": {"x": 1}}}
    )
    assert none.json() == {"matched": 0, "modified": 0, "matchedCount": 0, "modifiedCount": 0}
    same = http.post(
        "/api/db/counters/update", json={"filter": {"n": 0}, "update": {"$set": {"n": 0}}}
    )
    assert same.json() == {"matched": 1, "modified": 0, "matchedCount": 1, "modifiedCount": 0}
    many = http.post(
        "/api/db/counters/update",
        json={"filter": {"group": "g"}, "update": {"$set": {"all": 1}}, "many": True},
    )
    assert many.json() == {"matched": 3, "modified": 3, "matchedCount": 3, "modifiedCount": 3}


def test_delete_answers_both_count_spellings(http: httpx.Client) -> None:
    for n in range(3):
        insert(http, "doomed", {"n": n, "kind": "x"})
    response = http.request("DELETE", "/api/db/doomed/delete", json={"n": 1})
    assert response.status_code == 200
    assert response.json() == {"deleted": 1, "deletedCount": 1}
    assert sorted(d["n"] for d in find(http, "doomed")) == [0, 2]
    nothing = http.request("DELETE", "/api/db/doomed/delete", json={"n": 42})
    assert nothing.json() == {"deleted": 0, "deletedCount": 0}
    many = http.request("DELETE", "/api/db/doomed/delete?many=1", json={"kind": "x"})
    assert many.json() == {"deleted": 2, "deletedCount": 2}
    assert find(http, "doomed") == []


def test_indexes_create_list_drop(http: httpx.Client) -> None:
    assert indexes(http, "indexed") == [
        {
            "collection": "indexed",
            "name": "_id_",
            "keys": [["_id", 1]],
            "unique": True,
            "sparse": False,
            "kind": "document",
        }
    ]
    response = http.post("/api/db/indexed/indexes", json={"keys": {"email": 1}, "unique": True})
    assert response.status_code == 200, response.text
    descriptor = {
        "collection": "indexed",
        "name": "email_1",
        "keys": [["email", 1]],
        "unique": True,
        "sparse": False,
        "kind": "document",
    }
    assert response.json() == descriptor
    # the JS client's tuple form, with a name; creating the same index again is a no-op
    compound = {"keys": [["last", 1], ["first", -1]], "name": "by_name"}
    first = http.post("/api/db/indexed/indexes", json=compound)
    assert first.json()["keys"] == [["last", 1], ["first", -1]]
    assert http.post("/api/db/indexed/indexes", json=compound).json() == first.json()
    assert [i["name"] for i in indexes(http, "indexed")] == ["_id_", "email_1", "by_name"]
    dropped = http.delete("/api/db/indexed/indexes/by_name")
    assert dropped.status_code == 200
    assert dropped.json() == {"removed": True}
    assert http.delete("/api/db/indexed/indexes/by_name").json() == {"removed": False}
    assert [i["name"] for i in indexes(http, "indexed")] == ["_id_", "email_1"]


def test_unique_clashes_are_409_and_write_nothing(http: httpx.Client) -> None:
    assert (
        http.post("/api/db/uniq/indexes", json={"keys": {"email": 1}, "unique": True}).status_code
        == 200
    )
    first = insert(http, "uniq", {"email": "a@b.c", "n": 1})
    assert_error(http.put("/api/db/uniq", json={"email": "a@b.c", "n": 2}), 409, "email")
    assert_error(http.put("/api/db/uniq", json={"_id": first, "email": "other"}), 409)
    other = insert(http, "uniq", {"email": "x@y.z", "n": 3})
    clash = http.post(
        "/api/db/uniq/update",
        json={"filter": {"_id": other}, "update": {"$set": {"email": "a@b.c"}}},
    )
    assert_error(clash, 409)
    assert sorted((d["email"], d["n"]) for d in find(http, "uniq")) == [("a@b.c", 1), ("x@y.z", 3)]
    # a unique index the documents already violate is refused, and not created
    insert(http, "dupes", {"k": 1})
    insert(http, "dupes", {"k": 1})
    assert_error(http.post("/api/db/dupes/indexes", json={"keys": {"k": 1}, "unique": True}), 409)
    assert [i["name"] for i in indexes(http, "dupes")] == ["_id_"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/api/db/guarded", b"{bad", 400, "malformed JSON"),
        ("POST", "/api/db/guarded", b"[]", 400, "object"),
        ("POST", "/api/db/guarded", b'{"filter": 3}', 400, "filter"),
        ("POST", "/api/db/guarded", b'{"filter": {"n": {"$regexx": "a"}}}', 400, "$regexx"),
        ("POST", "/api/db/guarded", b'{"filter": {"$where": "1"}}', 400, "$where"),
        ("POST", "/api/db/guarded", b'{"options": {"sort": 5}}', 400, "sort"),
        ("POST", "/api/db/guarded", b'{"options": {"sort": {"n": 2}}}', 400, "sort"),
        ("POST", "/api/db/guarded", b'{"options": {"limit": -1}}', 400, "limit"),
        ("POST", "/api/db/guarded", b'{"options": {"hint": 1}}', 400, "hint"),
        ("POST", "/api/db/guarded", b'{"options": 7}', 400, "options"),
        ("POST", "/api/db/guarded/findOne", b"3", 400, "object"),
        ("POST", "/api/db/guarded/findOne", b'{"n": {"$nope": 1}}', 400, "$nope"),
        ("PUT", "/api/db/guarded", b"{bad", 400, "malformed JSON"),
        ("PUT", "/api/db/guarded", b"[1]", 400, "object"),
        ("PUT", "/api/db/guarded", b'{"_id": 5}', 400, "_id"),
        ("PUT", "/api/db/guarded", b'{"_id": "keep"}', 409, "keep"),
        ("POST", "/api/db/guarded/update", b'{"filter": {}}', 400, "update"),
        ("POST", "/api/db/guarded/update", b'{"filter": {}, "update": 5}', 400, "update"),
        (
            "POST",
            "/api/db/guarded/update",
            b'{"filter": {}, "update": {"$rename": {"n": "m"}}}',
            400,
            "$rename",
        ),
        (
            "POST",
            "/api/db/guarded/update",
            b'{"filter": {"n": {"$bad": 1}}, "update": {"$set": {"n": 2}}}',
            400,
            "$bad",
        ),
        (
            "POST",
            "/api/db/guarded/update",
            b'{"filter": {}, "update": {"$inc": {"n": "x"}}}',
            400,
            "$inc",
        ),
        ("DELETE", "/api/db/guarded/delete", b"5", 400, "object"),
        ("DELETE", "/api/db/guarded/delete", b'{"n": {"$oops": 1}}', 400, "$oops"),
        ("POST", "/api/db/guarded/indexes", b'{"keys": 5}', 400, "keys"),
        ("POST", "/api/db/guarded/indexes", b'{"keys": {"n": 2}}', 400, "direction"),
        (
            "POST",
            "/api/db/guarded/indexes",
            b'{"keys": {"n": 1}, "expireAfterSeconds": 5}',
            400,
            "expireAfterSeconds",
        ),
        (
            "POST",
            "/api/db/guarded/indexes",
            b'{"keys": {"n": 1}, "name": "by_n", "unique": true}',
            400,
            "by_n",
        ),
        ("DELETE", "/api/db/guarded/indexes/_id_", b"", 400, "_id_"),
    ],
)
def test_refused_requests_are_4xx_and_change_nothing(
    http: httpx.Client, method: str, path: str, body: bytes, status: int, needle: str
) -> None:
    if not find(http, "guarded"):
        insert(http, "guarded", {"_id": "keep", "n": 1})
        assert (
            http.post(
                "/api/db/guarded/indexes", json={"keys": {"n": 1}, "name": "by_n"}
            ).status_code
            == 200
        )
    before = (find(http, "guarded"), indexes(http, "guarded"))
    assert_error(http.request(method, path, content=body), status, needle)
    assert (find(http, "guarded"), indexes(http, "guarded")) == before


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/db/people", '{{"filter": {}}}'),
        ("/api/db/people/findOne", "{}"),
        ("/api/db/people/update", '{{"filter": {}, "update": {{"$set": {{"x": 1}}}}}}'),
        ("/api/db/people/delete", "{}"),
    ],
)
@pytest.mark.parametrize("operator", ["$and", "$or"])
def test_a_filter_nested_too_deeply_is_400(
    http: httpx.Client, people: list[str], path: str, template: str, operator: str
) -> None:
    depth = 510  # valid JSON (under orjson's 1024 levels), deeper than Python's recursion
    deep = f'{{"{operator}": [' * depth + '{"age": 1}' + "]}" * depth
    before = find(http, "people")
    method = "DELETE" if path.endswith("/delete") else "POST"
    assert_error(http.request(method, path, content=template.format(deep)), 400, "deep")
    assert find(http, "people") == before


def test_wrong_methods_are_405(http: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/db/people"),
        ("DELETE", "/api/db/people"),
        ("GET", "/api/db/people/findOne"),
        ("PUT", "/api/db/people/update"),
        ("POST", "/api/db/people/delete"),
        ("PUT", "/api/db/people/indexes"),
        ("GET", "/api/db/people/indexes/x"),
    ]:
        assert_error(http.request(method, path), 405, method)
    allow = http.get("/api/db/people").headers["allow"]
    assert {m.strip() for m in allow.split(",")} >= {"POST", "PUT"}
