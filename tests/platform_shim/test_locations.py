"""``platform_shim.locations``: the one rule from flags and variables to a store location.

Precedence (an explicit location beats the environment, ``$PLATFORM_STORE`` beats
``$PLATFORM_DATA_DIR``), URL checks that never echo a password, and the helpers that print a
location.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_shim.locations import (
    describe,
    given_location,
    is_folder,
    parse_location,
    resolve_location,
    scrub,
)
from platform_shim.store import MemorySpace
from platform_shim.store.postgres import BadStoreUrl

URL = "postgresql://alice:s3cret@db.example:5432/app"
SHOWN = "postgresql://alice:***@db.example:5432/app"


def test_parse_location_tells_urls_from_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_location(URL) == URL
    assert parse_location("postgres://bob@h/db") == "postgres://bob@h/db"
    assert parse_location("memory:") == "memory:"
    assert parse_location("memory:shared") == "memory:shared"
    assert parse_location("data") == tmp_path / "data"
    assert parse_location(str(tmp_path / "x")) == tmp_path / "x"
    # A folder whose name holds a colon is written as a path.
    assert parse_location("./odd:name") == tmp_path / "odd:name"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the store location is empty"),
        ("mysql://alice:s3cret@h/db", "unsupported store 'mysql://alice:***@h/db'"),
        ("redis://:s3cret@h", "unsupported store 'redis://:***@h'"),
        ("postgresql://alice:s3cret@h:port/db", "bad store URL 'postgresql://alice:***@h:port/db'"),
        ("postgresql://alice:s3cret@h/", "names no database"),
        ("postgres:/alice:s3cret@h/db", "write postgres://USER@HOST:PORT/DATABASE"),
        ("postgresql:db", "write postgresql://"),
    ],
)
def test_a_bad_location_is_named_without_its_password(text: str, says: str) -> None:
    with pytest.raises(BadStoreUrl) as raised:
        parse_location(text)
    assert isinstance(raised.value, ValueError)
    assert says in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_precedence(tmp_path: Path) -> None:
    a, b, default = tmp_path / "a", tmp_path / "b", tmp_path / "default"
    both = {"PLATFORM_STORE": str(a), "PLATFORM_DATA_DIR": str(b)}

    def resolve(store: str | None = None, data: str | None = None, **env: str) -> object:
        return resolve_location(store=store, data=data, default=default, environ=env)

    assert resolve() == default
    assert resolve(PLATFORM_DATA_DIR=str(b)) == b
    assert resolve(**both) == a  # $PLATFORM_STORE beats $PLATFORM_DATA_DIR
    assert resolve(PLATFORM_STORE=URL, PLATFORM_DATA_DIR=str(b)) == URL
    assert resolve(data=str(b), PLATFORM_STORE=URL) == b  # the command line beats both
    assert resolve(store=str(b), **both) == b
    assert resolve(store="memory:", **both) == "memory:"
    assert resolve(PLATFORM_STORE="", PLATFORM_DATA_DIR=str(b)) == b  # empty is unset
    with pytest.raises(ValueError, match="not both"):
        resolve(store=URL, data=str(b))


def test_a_bad_variable_is_named_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(BadStoreUrl) as raised:
        resolve_location(default=tmp_path, environ={"PLATFORM_STORE": "mysql://a:s3cret@h/db"})
    assert str(raised.value).startswith("$PLATFORM_STORE: unsupported store 'mysql://a:***@h/db'")


def test_describe_and_is_folder(tmp_path: Path) -> None:
    assert describe(URL) == SHOWN
    assert describe("postgresql://alice@h/db") == "postgresql://alice@h/db"
    assert describe(tmp_path) == str(tmp_path)
    assert describe("memory:") == "memory:"
    assert describe(MemorySpace("memory:x")) == "memory:x"
    assert is_folder(tmp_path) and is_folder("data")
    assert not is_folder(URL) and not is_folder("memory:") and not is_folder(MemorySpace())


def test_scrub_hides_the_password_wherever_a_message_quotes_it(tmp_path: Path) -> None:
    assert scrub(f"cannot open {URL!r}", URL) == f"cannot open {SHOWN!r}"
    assert scrub("auth failed for s3cret", URL) == "auth failed for ***"
    encoded = "postgresql://alice:p%40ss@h/db"
    assert "p%40ss" not in scrub(f"x {encoded} y p@ss", encoded)
    assert "p@ss" not in scrub(f"x {encoded} y p@ss", encoded)
    assert scrub("s3cret stays in a folder's message", tmp_path) == (
        "s3cret stays in a folder's message"
    )


def test_given_location_takes_exactly_one(tmp_path: Path) -> None:
    assert given_location(tmp_path, None, "f") == tmp_path
    assert given_location(None, "memory:", "f") == "memory:"
    assert given_location(None, str(tmp_path / "d"), "f") == tmp_path / "d"
    with pytest.raises(TypeError, match=r"f\(\) takes a data folder or store="):
        given_location(None, None, "f")
    with pytest.raises(TypeError, match="exactly one"):
        given_location(tmp_path, URL, "f")
