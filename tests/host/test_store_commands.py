"""``python -m host store init|status`` against a real PostgreSQL, in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from platform_shim.store.postgres import LATEST_VERSION, MIGRATIONS
from tests.support.hostproc import ROOT, free_port
from tests.support.postgres import PostgresDatabase


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "PLATFORM_STORE"}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def store(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", "store", *args],
        capture_output=True,
        text=True,
        env=env(**extra_env),
        timeout=60,
        check=False,
    )


def version_rows(db: PostgresDatabase) -> list[str]:
    return db.server.psql("SELECT version FROM platform.schema_version ORDER BY 1", db.name).split()


def test_init_applies_the_migrations_and_prints_the_version(postgres_db: PostgresDatabase) -> None:
    first = store("init", postgres_db.url)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == (
        f"schema version {LATEST_VERSION} (migrated from 0;"
        f" applied {', '.join(str(m.version) for m in MIGRATIONS)})\n"
    )

    again = store("init", postgres_db.url)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == f"schema version {LATEST_VERSION} (up to date)\n"
    assert version_rows(postgres_db) == [str(m.version) for m in MIGRATIONS]


def test_status_before_and_after_init(postgres_db: PostgresDatabase) -> None:
    before = store("status", postgres_db.url)
    assert (before.returncode, before.stderr) == (0, "")
    assert "schema version: 0\n" in before.stdout
    assert f"latest known:   {LATEST_VERSION}\n" in before.stdout
    assert f"pending:        {len(MIGRATIONS)} migration(s)\n" in before.stdout
    assert f"     1  {MIGRATIONS[0].description}\n" in before.stdout
    # status only reads: nothing was created
    assert (
        postgres_db.server.psql("SELECT to_regclass('platform.schema_version')", postgres_db.name)
        == ""
    )

    assert store("init", postgres_db.url).returncode == 0
    after = store("status", "--json", postgres_db.url)
    assert after.returncode == 0
    assert after.stdout.replace(" ", "").replace("\n", "") == (
        f'{{"database":"{postgres_db.url}","current":{LATEST_VERSION},'
        f'"latest":{LATEST_VERSION},"pending":[]}}'
    )


def test_the_url_comes_from_platform_store_when_not_given(postgres_db: PostgresDatabase) -> None:
    result = store("init", PLATFORM_STORE=postgres_db.url)
    assert (result.returncode, result.stderr) == (0, "")
    assert version_rows(postgres_db) == [str(m.version) for m in MIGRATIONS]


def test_concurrent_inits_all_succeed_and_migrate_once(postgres_db: PostgresDatabase) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "host", "store", "init", postgres_db.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for _ in range(6)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 6, outputs
    assert all(err == "" for _, err in outputs), outputs
    migrated = [out for out, _ in outputs if "migrated from 0" in out]
    assert len(migrated) == 1, outputs
    assert version_rows(postgres_db) == [str(m.version) for m in MIGRATIONS]


def test_a_newer_schema_is_refused_naming_both_versions(postgres_db: PostgresDatabase) -> None:
    assert store("init", postgres_db.url).returncode == 0
    newer = LATEST_VERSION + 4
    postgres_db.server.psql(
        f"INSERT INTO platform.schema_version (version, description) VALUES ({newer}, 'future')",
        postgres_db.name,
    )

    init = store("init", postgres_db.url)
    assert (init.returncode, init.stdout) == (1, "")
    assert init.stderr.startswith("error: ")
    assert f"version {newer}, newer than the latest this platform knows ({LATEST_VERSION})" in (
        init.stderr
    )
    assert "Traceback" not in init.stderr
    assert version_rows(postgres_db) == [*(str(m.version) for m in MIGRATIONS), str(newer)]

    status = store("status", postgres_db.url)
    assert status.returncode == 1
    assert f"schema version: {newer}\n" in status.stdout
    assert f"version {newer}" in status.stderr


def test_an_unreachable_database_is_one_clear_line() -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/db"
    for command in ("init", "status"):
        result = store(command, url)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == (
            f"error: cannot connect to {url.replace('s3cret', '***')}: Connection refused\n"
        )


def test_bad_urls_and_a_missing_url_are_usage_errors() -> None:
    bad = store("status", "mysql://u@h/db")
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: bad store URL 'mysql://u@h/db': the scheme must be postgresql://, not mysql://\n"
    )
    missing = store("init")
    assert missing.returncode == 2
    assert missing.stderr == "error: no store URL: pass one or set $PLATFORM_STORE\n"


def host(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", *args],
        capture_output=True,
        text=True,
        env=env(**extra_env),
        timeout=60,
        check=False,
    )


def test_the_url_comes_from_store_on_either_side_of_the_subcommand(
    postgres_db: PostgresDatabase,
) -> None:
    # --store is the flag every other command takes: `store init` reads it too, before or after
    # the subcommand, and it beats $PLATFORM_STORE (here a URL that cannot be reached).
    unreachable = f"postgresql://u@127.0.0.1:{free_port()}/db"
    before = host("--store", postgres_db.url, "store", "init", PLATFORM_STORE=unreachable)
    assert (before.returncode, before.stderr) == (0, "")
    assert version_rows(postgres_db) == [str(m.version) for m in MIGRATIONS]
    after = host("store", "status", "--store", postgres_db.url, "--json")
    assert (after.returncode, after.stderr) == (0, "")
    assert f'"current": {LATEST_VERSION}' in after.stdout


def test_store_commands_refuse_a_folder_and_two_different_urls(
    postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    folder = host("--data", str(tmp_path), "store", "status")
    assert folder.returncode == 2
    assert folder.stderr == (
        "error: store init|status act on a PostgreSQL store; --data names a folder\n"
    )
    other = postgres_db.url.rsplit("/", 1)[0] + "/other"
    both = host("--store", other, "store", "init", postgres_db.url)
    assert both.returncode == 2
    assert both.stderr.startswith("error: two store URLs: ")
    assert (
        postgres_db.server.psql("SELECT to_regclass('platform.schema_version')", postgres_db.name)
        == ""
    )
