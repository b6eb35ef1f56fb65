"""The test cluster itself (``tests/support/postgres.py``): unprivileged, private, cleaned up."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import (
    BIN_VARIABLE,
    RUN_AS,
    PostgresDatabase,
    PostgresServer,
    PostgresUnavailable,
    _alive,
    find_bin_dir,
)
from tests.support.procs import ROOT, env


def test_each_test_gets_a_fresh_empty_database(postgres_db: PostgresDatabase) -> None:
    server = postgres_db.server
    assert server.psql("SELECT current_database()", postgres_db.name) == postgres_db.name
    assert (
        server.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            postgres_db.name,
        )
        == "0"
    )
    listen = server.psql("SHOW listen_addresses", postgres_db.name)
    assert listen == "127.0.0.1"


def test_a_dropped_database_is_gone_even_with_a_client_connected(
    postgres_server: PostgresServer,
) -> None:
    db = postgres_server.create_database()
    with socket.create_connection(("127.0.0.1", postgres_server.port)):
        postgres_server.drop_database(db.name)
    names = postgres_server.psql("SELECT datname FROM pg_database").split()
    assert db.name not in names


def test_the_server_runs_unprivileged_and_stop_removes_everything() -> None:
    server = PostgresServer().start()
    root = server.root
    assert root is not None
    pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    owner = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    assert owner == (RUN_AS if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name)

    server.stop()

    assert not root.exists()
    assert not _alive(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    server.stop()  # twice is harmless


def test_the_binaries_can_be_pointed_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BIN_VARIABLE, str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=f"no pg_ctl in {BIN_VARIABLE}"):
        find_bin_dir()
    monkeypatch.delenv(BIN_VARIABLE)
    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql"):
        find_bin_dir(tmp_path)
    (tmp_path / "13" / "bin").mkdir(parents=True)
    (tmp_path / "13" / "bin" / "pg_ctl").touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)
    (tmp_path / "16" / "bin" / "pg_ctl").touch()
    (tmp_path / "9" / "bin").mkdir(parents=True)
    assert find_bin_dir(tmp_path) == tmp_path / "16" / "bin"


def test_the_command_line_server_stops_on_sigterm() -> None:
    """``python -m tests.support.postgres`` (benchmarks run it in the background): a SIGTERM,
    not only Ctrl-C, stops its cluster and removes its folder; it used to leave it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.postgres"],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_command_line_server_stops_cleanly_on_a_sigterm_while_it_starts() -> None:
    """A SIGTERM that lands while the cluster is being made (inside initdb or pg_ctl) used to
    raise there: a non-zero exit, and a cluster half made. It now finishes starting, prints the
    URL and stops at once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.postgres"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline() == "starting a PostgreSQL cluster\n"
        proc.send_signal(signal.SIGTERM)
        url = proc.stdout.readline().strip()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
