"""A real PostgreSQL for tests: Debian's binaries, ``initdb`` into a temp folder, ``pg_ctl start``.

``PostgresServer`` owns one throwaway cluster: its data folder, its unix socket folder and its log
live in one temp folder, it listens on a free port of 127.0.0.1 only (``trust`` authentication,
so never anything but loopback), and ``stop()`` kills it (``pg_ctl stop -m immediate``) and
deletes the folder. PostgreSQL refuses to run as root, so under uid 0 the cluster belongs to a
system user (``pgtest``, created with ``useradd`` when missing) and every server program runs
through ``runuser``. Administration (CREATE/DROP DATABASE) goes through the cluster's own
``psql``, so this module needs no Python driver.

Fixtures (import them into a conftest): ``postgres_server`` is one cluster per test session,
stopped at the end of the session even when tests fail; ``postgres_db`` is a fresh, empty
database per test, dropped after it (``WITH (FORCE)``: a subprocess the test left connected does
not block the drop). Without the binaries the tests skip and say why, or fail where
``PLATFORM_TESTS_REQUIRE`` names ``postgresql`` (``tests/support/required.py``).

``python -m tests.support.postgres [--fsync]`` starts a cluster and prints its URL until Ctrl-C
(``bench/pg_commit.py`` starts its own the same way).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.hostproc import free_port
from tests.support.required import unavailable

__all__ = [
    "PostgresDatabase",
    "PostgresServer",
    "PostgresUnavailable",
    "find_bin_dir",
    "postgres_db",
    "postgres_server",
]

PROGRAM = "postgresql"
"""The name ``PLATFORM_TESTS_REQUIRE`` uses for this requirement."""
RUN_AS = "pgtest"
"""The unprivileged user the cluster belongs to when the tests run as root."""
SUPERUSER = "postgres"
"""The cluster's superuser role (``initdb -U``), whatever the operating-system user."""
BIN_ROOT = Path("/usr/lib/postgresql")
BIN_VARIABLE = "PLATFORM_TESTS_POSTGRES_BIN"


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries here, or the cluster could not be created or started."""


def find_bin_dir(root: Path = BIN_ROOT) -> Path:
    """``$PLATFORM_TESTS_POSTGRES_BIN`` if set (PostgreSQL installed elsewhere), else the ``bin``
    folder of the newest PostgreSQL under ``root`` (Debian installs one folder per major)."""
    chosen = os.environ.get(BIN_VARIABLE)
    if chosen:
        if not (Path(chosen) / "pg_ctl").is_file():
            raise PostgresUnavailable(f"no pg_ctl in {BIN_VARIABLE}={chosen}")
        return Path(chosen)
    candidates = [
        path / "bin"
        for path in root.glob("*")
        if path.name.isdigit() and (path / "bin" / "pg_ctl").is_file()
    ]
    if not candidates:
        raise PostgresUnavailable(
            f"no PostgreSQL binaries under {root}/*/bin (apt-get install postgresql)"
        )
    return max(candidates, key=lambda path: int(path.parent.name))


def _ensure_user(name: str) -> pwd.struct_passwd:
    """The system user ``name``, created if missing (two sessions may race: re-read after)."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresUnavailable(f"could not create the system user {name!r}") from None


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody reaps, as in a container, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of a running test cluster."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)


class PostgresServer:
    """One throwaway PostgreSQL cluster; ``start()`` then ``stop()`` (or use it as ``with``).

    ``durable=False`` (tests) turns fsync off: a test's cluster never outlives a crash of the
    machine, and fsync on a shared disk is the slowest thing it would do. Benchmarks pass
    ``durable=True`` to measure what a real deployment pays.
    """

    def __init__(self, *, durable: bool = False, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.durable = durable
        self.port = 0
        self.root: Path | None = None
        self._run_as: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PostgresServer:
        # Under root the cluster's user must reach the folder: /tmp, not a private $TMPDIR.
        root = Path(
            tempfile.mkdtemp(prefix="platform-pg-", dir="/tmp" if os.getuid() == 0 else None)
        )
        self.root = root
        atexit.register(self.stop)  # the fixture stops it; this covers an interrupted session
        try:
            if os.getuid() == 0:
                user = _ensure_user(RUN_AS)
                self._run_as = user.pw_name
                os.chown(root, user.pw_uid, user.pw_gid)
            self._server_program(
                "initdb",
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",
                "--no-instructions",
            )
            self._pg_ctl_start()
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        # The free port can be taken between the probe and the bind: try a few.
        last = ""
        for _ in range(5):
            self.port = free_port()
            options = [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories='{self.root}'",
                f"-c fsync={'on' if self.durable else 'off'}",
                # Tests start subprocess hosts and concurrent inits; benchmarks up to 16 clients.
                "-c max_connections=200",
            ]
            if not self.durable:
                options += ["-c synchronous_commit=off", "-c full_page_writes=off"]
            result = self._server_program(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.log_file),
                "--wait",
                "--timeout",
                "60",
                "-o",
                " ".join(options),
                check=False,
            )
            if result.returncode == 0:
                return
            last = self.log()
            if "could not bind" not in last and "Address already in use" not in last:
                break
        raise PostgresUnavailable(f"pg_ctl start failed; the server's log:\n{last[-4000:]}")

    def stop(self) -> None:
        """Kill the server (no checkpoint: its data is thrown away) and delete its folder."""
        atexit.unregister(self.stop)
        root, self.root = self.root, None
        if root is None:
            return
        pid_file = root / "data" / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            subprocess.run(
                [
                    *self._as_owner(),
                    str(self.bin_dir / "pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(root / "data"),
                    "--mode",
                    "immediate",
                    "--wait",
                ],
                capture_output=True,
                check=False,
            )
            # pg_ctl returns once the pid file is gone; the postmaster may still be exiting.
            _wait_gone(pid)
        shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ paths and programs

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "the server is not started"
        return self.root / "server.log"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", self._run_as, "--"] if self._run_as else []

    def _server_program(
        self, name: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._as_owner(), str(self.bin_dir / name), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,  # runuser keeps the cwd, which pgtest may not be allowed to read
        )
        if check and result.returncode != 0:
            raise PostgresUnavailable(
                f"{name} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over TCP and return psql's unaligned output."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set",
                "ON_ERROR_STOP=1",
                "--dbname",
                self.url(database),
                "--command",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"psql failed on {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str | None = None) -> PostgresDatabase:
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return PostgresDatabase(self, name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (skipped, or failed where required, without it)."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        unavailable(PROGRAM, str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for one test, dropped after it."""
    database = postgres_server.create_database()
    try:
        yield database
    finally:
        postgres_server.drop_database(database.name)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tests.support.postgres")
    parser.add_argument("--fsync", action="store_true", help="a durable cluster (fsync on)")
    args = parser.parse_args(argv)
    # SIGTERM (how a background run is stopped) and Ctrl-C end it the same way: the cluster
    # stops and its folder goes. They only set a flag: an exception raised wherever the signal
    # lands (inside initdb, between two lines) could leave a cluster running or exit non-zero.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sys.stderr.write("starting a PostgreSQL cluster\n")
    sys.stderr.flush()
    with PostgresServer(durable=args.fsync) as server:
        print(server.url(), flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
