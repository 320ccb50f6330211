"""Crash safety: a server killed with SIGKILL under load loses nothing it answered 250 for and
shows nothing half-written; a database that refuses writes (locked, read-only) answers 451,
never 250, and the listener recovers by itself once the fault is gone."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from conftest import Mailbox, answers, simple_message, wait_for
from mxsmtp_web import DATABASE_NAME
from mxsmtp_web.smtp.listener import Listener
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.extensions import db

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")
SENDERS = 20
KILL_AFTER = 300  # accepted messages before the SIGKILL
LOAD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Sent:
    """A message the server answered 250 for: what it must have stored."""

    message_id: str
    data: bytes
    attachment_sha256: str


def load_message(thread: int, number: int) -> tuple[str, bytes, str]:
    """A multipart message with a unique Message-ID and an attachment of its own."""
    message_id = f"<crash-{thread}-{number}@sender.example>"
    attachment = os.urandom(2048 + number % 512)
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    data = (
        b"From: Load <load@sender.example>\r\nTo: bob@example.com\r\n"
        b"Subject: load " + f"{thread}/{number}".encode() + b"\r\n"
        b"Message-ID: " + message_id.encode() + b"\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPart of the crash load.\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="blob.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n"
    )
    return message_id, data, hashlib.sha256(attachment).hexdigest()


class Load:
    """SENDERS threads sending one message after another over long-lived sessions, recording
    every 250, until told to stop or the server goes away."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[Sent] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._send_until_stopped, args=(n,), daemon=True)
            for n in range(SENDERS)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def _send_until_stopped(self, thread: int) -> None:
        number = 0
        while not self.stop.is_set():
            try:
                client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
            except OSError:
                return  # the server is gone
            try:
                client.ehlo("load.test.example")
                while not self.stop.is_set():
                    message_id, data, digest = load_message(thread, number)
                    number += 1
                    client.sendmail("load@sender.example", ["bob@example.com"], data)
                    with self.lock:
                        self.accepted.append(Sent(message_id, data, digest))
            except (OSError, smtplib.SMTPException):
                return  # killed mid-session: whatever got no 250 need not be stored
            finally:
                client.close()


def start_server(instance: Path) -> subprocess.Popen:
    env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
    return subprocess.Popen(
        [MXSMTP, "smtp"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def database_of(app: Flask) -> Iterator[Any]:
    """A connection of the test's own to the instance's database (SQLite file or
    PostgreSQL), outside the app: what another process would see."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def unparsed(app: Flask) -> int:
    """Messages whose raw bytes are stored but whose bodies and parts are not parsed yet (the
    listener answers 250 once the raw bytes are committed and parses right after)."""
    with database_of(app) as connection:
        return connection.execute(text("SELECT count(*) FROM message WHERE NOT parsed")).scalar()


def stored_rows(app: Flask) -> dict[str, Any]:
    """Everything the inbox could show, read straight from the database."""
    with database_of(app) as connection:
        if connection.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA integrity_check")).fetchone() == ("ok",)
        messages = connection.execute(
            text(
                "SELECT m.id, m.message_id, m.size, m.attachment_count, r.data "
                "FROM message m LEFT JOIN message_raw r ON r.message_id = m.id"
            )
        ).fetchall()
        attachments = connection.execute(
            text("SELECT message_id, sha256, size, data FROM attachment")
        ).fetchall()
        orphans = connection.execute(
            text(
                "SELECT count(*) FROM message_raw WHERE message_id NOT IN (SELECT id FROM message)"
            )
        ).scalar()
        orphans += connection.execute(
            text("SELECT count(*) FROM attachment WHERE message_id NOT IN (SELECT id FROM message)")
        ).scalar()
    return {
        "messages": [
            tuple(row[:4]) + (bytes(row[4]) if row[4] is not None else None,) for row in messages
        ],
        "attachments": [tuple(row[:3]) + (bytes(row[3]),) for row in attachments],
        "orphans": orphans,
    }


def test_sigkill_under_load_loses_no_accepted_message_and_leaves_nothing_half_written(
    app: Flask, instance: Path
) -> None:
    with app.app_context():
        port = settings_module.load().port
    server = start_server(instance)
    try:
        wait_for(lambda: answers(port), timeout=20, what="the listener")
        with Load(port) as load:
            wait_for(lambda: load.count() >= KILL_AFTER, LOAD_TIMEOUT, "messages accepted")
            server.kill()  # SIGKILL: no shutdown code runs
            server.wait(timeout=10)
        accepted = load.accepted
    finally:
        stop_server(server)
    assert len(accepted) >= KILL_AFTER

    restarted = start_server(instance)
    try:
        wait_for(lambda: answers(port), timeout=20, what="the restarted listener")
        wait_for(
            lambda: unparsed(app) == 0,
            timeout=60,
            what="the restarted listener to finish the bodies left unparsed by the kill",
        )
        rows = stored_rows(app)
        listed = subprocess.run(
            [MXSMTP, "messages", "list", "--json"],
            env={**os.environ, "MXSMTP_INSTANCE": str(instance)},
            capture_output=True,
            check=True,
        )
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            after = simple_message(message_id="<after-restart@sender.example>")
            assert client.sendmail("a@sender.example", ["b@example.com"], after) == {}
    finally:
        stop_server(restarted)

    by_message_id = {row[1]: row for row in rows["messages"]}
    parts: dict[int, list[tuple]] = {}
    for attachment in rows["attachments"]:
        parts.setdefault(attachment[0], []).append(attachment)
    # Nothing half-written: every message has its raw bytes and every part it counts.
    assert rows["orphans"] == 0
    for message_pk, _, size, attachment_count, raw in rows["messages"]:
        assert raw is not None and len(raw) == size, message_pk
        assert len(parts.get(message_pk, [])) == attachment_count, message_pk
        for _, sha256, part_size, data in parts.get(message_pk, []):
            assert len(data) == part_size and hashlib.sha256(data).hexdigest() == sha256
    # Every 250 is stored whole.
    for sent in accepted:
        row = by_message_id.get(sent.message_id)
        assert row is not None, f"{sent.message_id} got 250 but is not stored"
        assert row[4].endswith(sent.data), sent.message_id
        assert [part[1] for part in parts[row[0]]] == [sent.attachment_sha256]
    # The CLI (what scripts read) sees the same messages as the file.
    assert len(json.loads(listed.stdout)) == len(rows["messages"])


# --- faults at the storage boundary -----------------------------------------------------


@contextmanager
def writes_refused(app: Flask, error: str) -> Iterator[None]:
    """Every write of a message fails with SQLite's own `error` text while the block runs
    (a trigger raising it: the listener's writer runs in a process of its own, so the fault
    has to live in the database, where that process meets it)."""
    with app.app_context():
        db.session.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON message "
                f"BEGIN SELECT RAISE(ABORT, '{error}'); END"
            )
        )
        db.session.commit()
    try:
        yield
    finally:
        with app.app_context():
            db.session.execute(text("DROP TRIGGER refuse"))
            db.session.commit()


@pytest.fixture
def impatient_mailbox(app: Flask) -> Iterator[Mailbox]:
    """A listener whose writer waits only 300 ms for another process's write lock."""
    app.config["SQLITE_BUSY_TIMEOUT_MS"] = 300
    listener = Listener(app)
    assert listener.start().running
    yield Mailbox(app, listener)
    listener.stop(grace=5)


def deferred_reply(mailbox: Mailbox, message: bytes) -> tuple[int, bytes]:
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        mailbox.send(message)
    return deferred.value.smtp_code, deferred.value.smtp_error[:5]


@pytest.mark.sqlite_only("the fault is an SQLite trigger's error text")
def test_read_only_database_answers_451_and_the_listener_recovers(mailbox: Mailbox) -> None:
    """Writes refused as a read-only file or file system refuses them ("attempt to write a
    readonly database")."""
    with writes_refused(mailbox.app, "attempt to write a readonly database"):
        for number in range(3):
            message = simple_message(message_id=f"<ro-{number}@sender.example>")
            assert deferred_reply(mailbox, message) == (451, b"4.3.0")
    assert mailbox.send(simple_message(message_id="<ro-ok@sender.example>")) == {}
    assert [m.id for m in mailbox.messages()] and len(mailbox.messages()) == 1
    assert mailbox.listener.state.running and mailbox.listener.state.error is None


@pytest.mark.sqlite_only("SQLite's write lock")
def test_locked_database_answers_451_and_the_listener_recovers(
    impatient_mailbox: Mailbox, instance: Path
) -> None:
    """Another process holds the write lock past the busy timeout: "database is locked".
    The busy timeout is shortened for this test's listener, to keep it quick; what happens
    when it runs out is the same at any length."""
    mailbox = impatient_mailbox
    holder = sqlite3.connect(instance / DATABASE_NAME, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        try:
            assert deferred_reply(mailbox, simple_message()) == (451, b"4.3.0")
        finally:
            holder.execute("ROLLBACK")
        assert mailbox.send(simple_message(message_id="<after-lock@x>")) == {}
    finally:
        holder.close()
    assert [m.subject for m in mailbox.messages()] == ["Hello"]
    assert mailbox.listener.state.running and mailbox.listener.state.error is None


# --- the writer process ----------------------------------------------------------------


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_writer_process_that_dies_is_started_again(mailbox: Mailbox) -> None:
    writer = mailbox.listener.processor.writer
    first = writer.pid
    assert first is not None and first != os.getpid()
    assert mailbox.send(simple_message(message_id="<before@x>")) == {}
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: writer.pid != first, what="the listener to notice the writer is gone")
    assert mailbox.send(simple_message(message_id="<after@x>")) == {}
    assert writer.pid not in (None, first)
    assert len(mailbox.messages()) == 2


def test_the_writer_process_outlives_signals_to_its_group_until_the_listener_stops(
    app: Flask,
) -> None:
    """systemd and Ctrl-C signal the whole process group: the writer must stay to store
    what the listener still finishes after it was told to stop."""
    listener = Listener(app)
    assert listener.start().running
    mailbox = Mailbox(app, listener)
    writer = listener.processor.writer
    pid = writer.pid
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert mailbox.send(simple_message()) == {}
    assert writer.pid == pid
    assert [m.subject for m in mailbox.messages()] == ["Hello"]
    listener.stop(grace=5)
    wait_for(lambda: process_gone(pid), what="the writer process to end with the listener")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, waiting = set(), list(children.get(pid, []))
    while waiting:
        member = waiting.pop()
        found.add(member)
        waiting.extend(children.get(member, []))
    return found


def test_a_killed_listener_leaves_no_process_behind(app: Flask, instance: Path) -> None:
    """kill -9 (or the OOM killer): the writer, the parser and the fork server end too."""
    with app.app_context():
        port = settings_module.load().port
    server = start_server(instance)
    try:
        wait_for(lambda: answers(port), timeout=20, what="the listener")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@sender.example", ["b@example.com"], simple_message())
        wait_for(lambda: unparsed(app) == 0, what="the body parsed")
        helpers = descendants(server.pid)
        assert len(helpers) >= 3, helpers  # fork server, writer, parser (+ resource tracker)
        server.kill()
        server.wait(timeout=10)
        wait_for(
            lambda: all(process_gone(pid) for pid in helpers),
            timeout=15,
            what="the listener's helper processes to end",
        )
    finally:
        stop_server(server)


def test_ctrl_c_stops_every_process_quietly(app: Flask, instance: Path) -> None:
    """Ctrl-C in a terminal signals the whole foreground process group."""
    with app.app_context():
        port = settings_module.load().port
    env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
    server = subprocess.Popen(
        [MXSMTP, "smtp"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers(port), timeout=20, what="the listener")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@sender.example", ["b@example.com"], simple_message())
        wait_for(lambda: unparsed(app) == 0, what="the body parsed")
        helpers = descendants(server.pid)
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    finally:
        stop_server(server)
    assert server.returncode == 0
    assert b"Traceback" not in output and b"KeyboardInterrupt" not in output, output.decode()
    wait_for(lambda: all(process_gone(pid) for pid in helpers), what="every helper to end")
