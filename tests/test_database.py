"""The database as users meet it: MXSMTP_DATABASE_URL, `mxsmtp db upgrade` / `db current`,
one clear line for a database that cannot be used, migrations that run once when processes
start together, and a node that refuses a database newer than its code."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from conftest import Mailbox, free_port, postgres_server, simple_message
from mxsmtp_web import create_app
from mxsmtp_web.smtp.listener import Listener
from mxsmtp_web.store import database
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.extensions import db
from pgcluster import Cluster, start_cluster

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")


def mxsmtp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it, in a process of its own."""
    return subprocess.run(
        [MXSMTP, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def empty_database(instance: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The instance's database exists but holds nothing yet (a new PostgreSQL database, no
    SQLite file)."""
    if engine == "sqlite":
        yield
        return
    server = postgres_server()
    assert server is not None
    name = f"empty_{free_port()}"
    server._execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv(database.URL_SETTING, server.url_of(name))
    yield
    server.drop(name)


def test_db_current_and_upgrade_on_a_new_database(empty_database: None) -> None:
    current = mxsmtp("db", "current")
    assert current.returncode == 0 and current.stdout.startswith("none"), current
    upgraded = mxsmtp("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"upgraded to {database.HEAD} (head)"
    assert mxsmtp("db", "upgrade").stdout.strip() == f"already at {database.HEAD} (head)"
    assert mxsmtp("db", "current").stdout.strip() == f"{database.HEAD} (head)"


def test_processes_started_together_on_a_new_database_migrate_once(
    empty_database: None,
) -> None:
    """Four commands at the same moment on a database nobody has opened yet (this used to
    crash with `table message_raw already exists`)."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: mxsmtp("settings", "show", "--json"), range(4)))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert mxsmtp("db", "current").stdout.strip() == f"{database.HEAD} (head)"


def test_a_database_newer_than_the_code_is_refused_with_one_line(app: Flask) -> None:
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        db.session.commit()
    for command in (("messages", "list"), ("smtp",), ("worker",)):
        result = mxsmtp(*command)
        assert result.returncode == 1, (command, result)
        [line] = result.stderr.strip().splitlines()
        assert "schema revision 9999, newer than this mxsmtp" in line
        assert "upgrade this one" in line


@pytest.mark.parametrize(
    "url, says",
    [
        ("postgresql://mail:secret-pw@127.0.0.1:{port}/mail", "cannot use the database"),
        ("mysql://mail@127.0.0.1/mail", "which mxsmtp does not support"),
        ("not a url", "is not a database URL"),
        ("sqlite://", "needs a file"),
    ],
)
def test_a_bad_or_unreachable_url_gets_one_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    monkeypatch.setenv("MXSMTP_INSTANCE", str(tmp_path / "instance"))
    env = {database.URL_SETTING: url.format(port=free_port())}
    for command in (("messages", "list"), ("smtp",), ("worker",), ("db", "current")):
        result = mxsmtp(*command, env=env)
        assert result.returncode == 1, (command, result)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: MXSMTP_DATABASE_URL") and says in line, line
        assert "secret-pw" not in line  # the password is never shown


@pytest.mark.sqlite_only("the URL it names is an SQLite file")
def test_database_url_from_the_instance_config(instance: Path) -> None:
    """DATABASE_URL in instance/config.py, as MXSMTP_DATABASE_URL would."""
    target = instance.parent / "elsewhere.sqlite3"
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "config.py").write_text(f"DATABASE_URL = 'sqlite:///{target}'\n")
    env = dict(os.environ)
    env.pop(database.URL_SETTING, None)
    result = subprocess.run(
        [MXSMTP, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert target.exists() and not (instance / "mxsmtp.sqlite3").exists()


@pytest.fixture
def own_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A PostgreSQL server of this test's own, to stop and start again."""
    if postgres_server() is None:
        pytest.skip("PostgreSQL is not available here")
    cluster = start_cluster()
    monkeypatch.setenv("MXSMTP_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv(database.URL_SETTING, cluster.url)
    yield cluster
    cluster.stop()


def test_postgresql_down_answers_451_in_time_and_mail_flows_again_once_back(
    own_cluster: Cluster,
) -> None:
    app = create_app({"TESTING": True})
    port = free_port()
    with app.app_context():
        settings_module.save({"port": str(port), "hook_timeout": "5"})
    listener = Listener(app)
    assert listener.start().running

    def send(message_id: str) -> dict:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            return client.sendmail(
                "a@x.example", ["b@example.com"], simple_message(message_id=message_id)
            )

    try:
        assert send("<before@x>") == {}
        own_cluster.pause()
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPResponseException) as deferred:
            send("<while-down@x>")
        assert (deferred.value.smtp_code, deferred.value.smtp_error[:5]) == (451, b"4.3.0")
        assert time.monotonic() - started < 10  # within the hook timeout (5 s) and a margin
        own_cluster.resume()
        assert send("<after@x>") == {}  # no restart
        mailbox = Mailbox(app, listener)
        assert {m.message_id for m in map(mailbox.message, [m.id for m in mailbox.messages()])} == {
            "<before@x>",
            "<after@x>",
        }
    finally:
        listener.stop(grace=5)
        with app.app_context():
            db.engine.dispose()


def test_head_is_the_newest_migration() -> None:
    """HEAD is written by hand (start-up reads no migration scripts): a new migration that
    forgets it fails here."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(database.alembic_config())
    assert script.get_heads() == [database.HEAD]


def test_raw_bytes_are_not_compressed_with_pglz(app: Flask, engine: str) -> None:
    """PostgreSQL: pglz on a 1 MiB message took half the CPU of receiving it (migration 0003)."""
    if engine == "sqlite":
        pytest.skip("SQLite does not compress")
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT attrelid::regclass::text, attcompression, attstorage FROM pg_attribute "
                "WHERE attrelid IN ('message_raw'::regclass, 'attachment'::regclass) "
                "AND attname = 'data'"
            )
        ).all()
    assert sorted(table for table, _, _ in rows) == ["attachment", "message_raw"]
    assert all(compression == "l" or storage == "e" for _, compression, storage in rows), rows
