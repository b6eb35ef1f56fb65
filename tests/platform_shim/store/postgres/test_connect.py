"""Store URLs and connecting: every failure is one clear error naming the URL, password hidden."""

from __future__ import annotations

import pytest

from platform_shim.store.postgres import (
    BadStoreUrl,
    StoreUnreachable,
    check_url,
    connect,
    redact,
)
from tests.support.hostproc import free_port
from tests.support.postgres import PostgresServer


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "empty"),
        ("mysql://u@h/db", "the scheme must be postgresql://, not mysql://"),
        ("localhost:5432/db", "the scheme must be postgresql://"),
        ("postgresql://u@h:99999/db", "Port out of range"),
        ("postgresql://u@h:port/db", "bad store URL"),
        ("postgresql://u@h:5432", "names no database"),
        ("postgresql://u@h:5432/", "names no database"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(BadStoreUrl, match=says):
        check_url(url)


def test_good_urls_pass() -> None:
    for url in (
        "postgresql://u:p@h:5432/db",
        "postgres://h/db",
        "postgresql:///db?host=/var/run/postgresql",
    ):
        assert check_url(url).path.strip("/")


def test_redact_hides_the_password_only() -> None:
    assert redact("postgresql://alice:s3cret@h:5432/db") == "postgresql://alice:***@h:5432/db"
    assert redact("postgresql://alice@h/db") == "postgresql://alice@h/db"
    assert "s3cret" not in redact("postgresql://alice:s3cret@[::1/db")


async def test_nothing_listening_is_unreachable() -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreUnreachable, match="Connection refused") as caught:
        await connect(url)
    assert "s3cret" not in str(caught.value)
    assert "postgresql://alice:***@127.0.0.1" in str(caught.value)


async def test_a_missing_database_is_unreachable(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreUnreachable, match='database "no_such_db" does not exist'):
        await connect(postgres_server.url("no_such_db"))


async def test_a_bad_url_never_reaches_the_driver() -> None:
    with pytest.raises(BadStoreUrl, match="scheme"):
        await connect("sqlite:///x.db")
