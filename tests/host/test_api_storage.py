"""Object storage over HTTP against a real host: /api/storage[/{key}[/metadata]]."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.host.hosting import assert_error

PNG = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF, 0xFE, 0x80])


def enc(key: str) -> str:
    """The key as the JS client sends it: ``encodeURIComponent`` (one path segment)."""
    return quote(key, safe="-_.!~*'()")


def listing(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/api/storage", params=params)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def test_put_get_metadata_delete(http: httpx.Client) -> None:
    key = "images/cat photo.png"
    before = time.time() * 1000
    response = http.put(
        f"/api/storage/{enc(key)}",
        content=PNG,
        headers={
            "Content-Type": "image/png",
            "X-Metadata": json.dumps({"owner": "u_1", "contentType": "image/png"}),
        },
    )
    assert response.status_code == 200, response.text

    got = http.get(f"/api/storage/{enc(key)}")
    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"

    meta = http.get(f"/api/storage/{enc(key)}/metadata")
    assert meta.status_code == 200
    body = meta.json()
    assert body["size"] == len(PNG)
    assert body["contentType"] == "image/png"
    assert before - 5000 <= body["lastModified"] <= time.time() * 1000
    assert body["metadata"] == {"owner": "u_1", "contentType": "image/png"}

    assert http.delete(f"/api/storage/{enc(key)}").status_code == 200
    assert_error(http.get(f"/api/storage/{enc(key)}"), 404)
    assert_error(http.get(f"/api/storage/{enc(key)}/metadata"), 404)
    assert http.delete(f"/api/storage/{enc(key)}").status_code == 200  # idempotent


def test_content_type_header_alone_sets_the_type_exactly(http: httpx.Client) -> None:
    assert (
        http.put(
            "/api/storage/notes/a.txt", content=b"caf\xe9", headers={"Content-Type": "text/plain"}
        ).status_code
        == 200
    )
    got = http.get("/api/storage/notes/a.txt")
    assert got.content == b"caf\xe9"
    assert got.headers["content-type"] == "text/plain"  # no charset added to what was stored
    meta = http.get(f"/api/storage/{enc('notes/a.txt')}/metadata").json()
    assert meta["contentType"] == "text/plain"
    assert meta["size"] == 4
    # without any type: octet-stream
    assert http.put("/api/storage/raw.bin", content=b"\x00\x01").status_code == 200
    assert http.get("/api/storage/raw.bin").headers["content-type"] == "application/octet-stream"


def test_unencoded_and_encoded_keys_name_the_same_object(http: httpx.Client) -> None:
    assert (
        http.put(
            "/api/storage/docs/x/y.json",
            content=b"{}",
            headers={"Content-Type": "application/x-test"},
        ).status_code
        == 200
    )
    assert http.get(f"/api/storage/{enc('docs/x/y.json')}").content == b"{}"
    assert http.get("/api/storage/docs/x/y.json/metadata").json()["size"] == 2
    # a key that itself ends in /metadata is reached encoded
    assert http.put(f"/api/storage/{enc('odd/metadata')}", content=b"M").status_code == 200
    assert http.get(f"/api/storage/{enc('odd/metadata')}").content == b"M"
    assert http.get(f"/api/storage/{enc('odd/metadata')}/metadata").json()["size"] == 1
    assert_error(http.get("/api/storage/odd/metadata"), 404)  # the metadata of "odd": none
    unicode_key = "ünï/ço dé ✓.txt"
    assert http.put(f"/api/storage/{enc(unicode_key)}", content=b"u").status_code == 200
    assert [o["key"] for o in listing(http, prefix="ünï/")] == [unicode_key]


def test_list_with_prefix_and_limit(http: httpx.Client) -> None:
    for name in ("c", "a", "b", "d"):
        assert (
            http.put(f"/api/storage/listing/{name}", content=name.encode() * 3).status_code == 200
        )
    assert http.put("/api/storage/listing-other/z", content=b"z").status_code == 200
    objects = listing(http, prefix="listing/")
    assert [o["key"] for o in objects] == ["listing/a", "listing/b", "listing/c", "listing/d"]
    for obj in objects:
        assert obj["size"] == 3
        assert isinstance(obj["lastModified"], int)
        assert "metadata" in obj
    assert [o["key"] for o in listing(http, prefix="listing/", limit=2)] == [
        "listing/a",
        "listing/b",
    ]
    everything = [o["key"] for o in listing(http)]
    assert everything == sorted(everything)
    assert "listing-other/z" in everything
    assert listing(http, prefix="nothing-here/") == []


def test_head_reads_and_never_deletes(http: httpx.Client) -> None:
    assert (
        http.put(
            "/api/storage/head/me.txt",
            content=b"still here",
            headers={"Content-Type": "text/plain"},
        ).status_code
        == 200
    )
    for path in ("/api/storage/head/me.txt", f"/api/storage/{enc('head/me.txt')}"):
        head = http.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == "text/plain"
        assert head.headers["content-length"] == "10"
    assert http.head(f"/api/storage/{enc('head/me.txt')}/metadata").status_code == 200
    assert http.head("/api/storage/head/missing").status_code == 404
    assert http.get("/api/storage/head/me.txt").content == b"still here"
    assert http.head("/api/kv/head-ns/k").status_code == 404
    assert http.head("/api/db/head-coll/indexes").status_code == 200
    assert [o["key"] for o in listing(http, prefix="head/")] == ["head/me.txt"]


def test_metadata_header_may_carry_utf8(http: httpx.Client) -> None:
    meta = {"title": "Überschrift ✓"}
    raw = json.dumps(meta, ensure_ascii=False).encode()
    assert (
        http.put(
            "/api/storage/utf8-meta.txt", content=b"x", headers=[("X-Metadata", raw)]
        ).status_code
        == 200
    )
    assert http.get("/api/storage/utf8-meta.txt/metadata").json()["metadata"] == meta


def test_missing_objects_are_json_404s(http: httpx.Client) -> None:
    assert_error(http.get("/api/storage/no/such/object"), 404, "no/such/object")
    assert_error(http.get(f"/api/storage/{enc('no/such/object')}/metadata"), 404)


@pytest.mark.parametrize(
    ("raw_key", "needle"),
    [
        ("..%2F..%2Fetc%2Fpasswd", ".."),
        ("a%2F..%2Fb", ".."),
        ("%2E%2E", ".."),
        ("%2Fetc%2Fpasswd", "absolute"),
        ("a%00b", "NUL"),
        ("a%5Cb", "backslash"),
        ("C%3A%5Cwindows", ""),
        ("a%2F%2Fb", "empty"),
        ("a%2F.%2Fb", "'.'"),
        ("%FF%FE", "UTF-8"),
    ],
)
def test_hostile_keys_are_400_and_write_nothing(
    http: httpx.Client, raw_key: str, needle: str
) -> None:
    before = listing(http)
    assert_error(http.put(f"/api/storage/{raw_key}", content=b"evil"), 400, needle)
    assert_error(http.get(f"/api/storage/{raw_key}"), 400)
    assert_error(http.get(f"/api/storage/{raw_key}/metadata"), 400)
    assert_error(http.delete(f"/api/storage/{raw_key}"), 400)
    assert listing(http) == before


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"X-Metadata": "{not json"}, "X-Metadata"),
        ({"X-Metadata": "[1, 2]"}, "X-Metadata"),
        ({"X-Metadata": '"text"'}, "X-Metadata"),
        ({"X-Metadata": '{"contentType": 5}'}, "contentType"),
    ],
)
def test_bad_metadata_is_400_and_writes_nothing(
    http: httpx.Client, headers: dict[str, str], needle: str
) -> None:
    assert (
        http.put(
            "/api/storage/guarded.txt", content=b"original", headers={"Content-Type": "text/plain"}
        ).status_code
        == 200
    )
    before = listing(http)
    assert_error(
        http.put("/api/storage/guarded.txt", content=b"changed", headers=headers), 400, needle
    )
    assert_error(
        http.put("/api/storage/guarded-new.txt", content=b"new", headers=headers), 400, needle
    )
    assert http.get("/api/storage/guarded.txt").content == b"original"
    assert listing(http) == before


def test_bad_list_parameters_are_400(http: httpx.Client) -> None:
    assert_error(http.get("/api/storage", params={"limit": "ten"}), 400, "limit")
    assert_error(http.get("/api/storage", params={"limit": "-1"}), 400, "limit")


def test_wrong_methods_are_405(http: httpx.Client) -> None:
    assert_error(http.post("/api/storage/some/key", content=b"x"), 405, "POST")
    assert_error(http.delete("/api/storage"), 405)
    assert_error(http.patch("/api/storage/some/key"), 405)


def test_stored_html_is_never_served_as_a_page_of_this_origin(http: httpx.Client) -> None:
    put = http.put(
        "/api/storage/evil.html",
        content=b"<script>alert(1)</script>",
        headers={"Content-Type": "text/html"},
    )
    assert put.status_code == 200
    got = http.get("/api/storage/evil.html")
    assert got.headers["content-type"] == "text/html"
    assert got.headers["content-security-policy"] == "sandbox"
    assert got.headers["x-content-type-options"] == "nosniff"
