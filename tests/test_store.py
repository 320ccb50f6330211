"""The store on both engines, below the SMTP side: the queue's claims, search, what hostile
text becomes, threads, purge. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from conftest import Mailbox, simple_message, wait_for
from mxsmtp_web.mail.parsing import parse_headers, parse_message
from mxsmtp_web.store import search, storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.group_commit import Database, GroupCommit
from mxsmtp_web.store.models import Status


def store_received(app: Flask, raw: bytes, parsed: bool = False) -> int:
    """A message as the SMTP side stores it: header facts only, body waiting (or whole)."""
    envelope = storage.Envelope("a@relay.example", ("b@example.com",), "192.0.2.1", "client")
    with app.app_context():
        with storage.transaction():
            summary = parse_message(raw) if parsed else parse_headers(raw)
            return storage.insert_message(
                db.session.connection(),
                envelope,
                summary,
                raw,
                summary.html if parsed else None,
                Status.RECEIVED,
                body_parsed=parsed,
            )


def test_claims_lock_their_rows_and_skip_those_another_worker_holds(
    app: Flask, engine: str
) -> None:
    if engine == "sqlite":
        pytest.skip("SQLite has one writer at a time: there is nothing to skip")
    ids = [store_received(app, simple_message(message_id=f"<q{n}@x>")) for n in range(5)]
    other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    try:
        with other.connect() as first, other.connect() as second:
            with first.begin():
                taken = storage.claim_bodies(first, None, 3)
                with second.begin():
                    rest = storage.claim_bodies(second, None, 3)
            assert [row[0] for row in taken] == ids[:3]
            assert [row[0] for row in rest] == ids[3:]  # skipped what the first one holds
            assert taken[0][1].endswith(b"Hi Bob.\r\n")
    finally:
        other.dispose()


def test_a_stored_body_completes_the_message_once(app: Flask) -> None:
    raw = simple_message(subject="Once")
    message_id = store_received(app, raw)
    parsed = parse_message(raw)
    with app.app_context():
        for _ in range(2):  # a second completion (a repeated claim) changes nothing
            with storage.transaction():
                storage.store_body(db.session.connection(), message_id, parsed, None)
        stored = storage.get_message(message_id)
        assert stored is not None and stored.summary.parsed and stored.text == "Hi Bob.\n"
        assert storage.unparsed_messages() == []


@pytest.mark.parametrize(
    "words, found",
    [
        ("hello", True),
        ("HELLO", True),
        ("hel", True),  # a prefix
        ("sender", True),  # a part of alice@sender.example
        ("alice@sender", True),
        ("cafe", True),  # café, accents ignored
        ("grusse", False),
        ("nowhere", False),
        ("hello nowhere", False),  # every word must occur
        ('"', None),  # nothing searchable: no filter
    ],
)
def test_search_finds_the_same_words_on_both_engines(
    app: Flask, words: str, found: bool | None
) -> None:
    raw = (
        "From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: Hello there\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nLunch at the café?\r\n"
    ).encode()
    message_id = store_received(app, raw, parsed=True)
    other = b"From: carol@other.example\r\nSubject: Other\r\n\r\nUnrelated.\r\n"
    store_received(app, other, parsed=True)
    with app.app_context():
        page = search.find_messages(search.MessageFilter(text=words))
    ids = [row.id for row in page.rows]
    if found is None:
        assert len(ids) == 2
    else:
        assert (message_id in ids) is found and len(ids) == int(found)


def test_a_message_waiting_for_its_body_is_not_found_yet(app: Flask) -> None:
    store_received(app, simple_message(subject="Pending words"))
    with app.app_context():
        assert search.find_messages(search.MessageFilter(text="pending")).rows == ()


def test_nul_in_mail_text_is_stored(app: Flask, engine: str) -> None:
    """PostgreSQL's text cannot hold NUL: it is stored as U+FFFD there, as it came on SQLite."""
    raw = b"Subject: a\x00b\r\nFrom: x@y.example\r\n\r\nbody\x00text\r\n"
    message_id = store_received(app, raw, parsed=True)
    with app.app_context():
        stored = storage.get_message(message_id)
        assert stored is not None and storage.get_raw(message_id) == raw
    expected = "\x00" if engine == "sqlite" else "\ufffd"
    assert stored.text == f"body{expected}text\n"


def test_replies_join_the_thread_of_what_they_answer(app: Flask) -> None:
    first = store_received(app, simple_message(message_id="<root@x>"))
    answer = (
        b"From: b@example.com\r\nSubject: Re: Hello\r\nMessage-ID: <re@x>\r\n"
        b"In-Reply-To: <root@x>\r\nReferences: <root@x>\r\n\r\nYes.\r\n"
    )
    second = store_received(app, answer)
    with app.app_context():
        summary = storage.get_message(second).summary
    assert (summary.parent_id, summary.thread_id) == (first, first)


def test_purge_counts_and_deletes_on_both_engines(app: Flask, tmp_path: Path) -> None:
    for number in range(3):
        store_received(app, simple_message(message_id=f"<p{number}@x>"), parsed=True)
    with app.app_context():
        counted = storage.purge_older_than(0, dry_run=True)
        assert counted.messages == 3
        assert storage.purge_older_than(0).messages == 3
        assert storage.list_messages() == []


def test_a_message_committed_late_with_a_lower_id_still_gets_its_body(
    mailbox: Mailbox, engine: str
) -> None:
    """On PostgreSQL ids are taken at insert but seen at commit, from many connections at
    once: a message whose commit lands after a later one's must still be parsed (the body
    feed once skipped it for good)."""
    if engine == "sqlite":
        pytest.skip("SQLite's single writer commits in id order")
    app = mailbox.app
    late = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    envelope = storage.Envelope("a@relay.example", ("b@example.com",), "192.0.2.1", "client")
    raw = simple_message(subject="Late", message_id="<late@x>")
    try:
        with late.connect() as connection:
            transaction = connection.begin()
            storage.insert_message(
                connection, envelope, parse_headers(raw), raw, None, Status.RECEIVED,
                body_parsed=False,
            )  # fmt: skip
            assert mailbox.send(simple_message(subject="Early", message_id="<early@x>")) == {}
            wait_for(lambda: unparsed_count(app) == 0, timeout=60, what="the later id parsed")
            transaction.commit()
        mailbox.bodies_parsed()  # the lower id too, without a restart
    finally:
        late.dispose()
    assert {m.subject for m in mailbox.messages()} == {"Late", "Early"}


def unparsed_count(app: Flask) -> int:
    with app.app_context():
        return len(storage.unparsed_messages())


def _insert_job(subject: str, connection: Connection) -> int:
    raw = simple_message(subject=subject, message_id=f"<{subject}@x>")
    envelope = storage.Envelope("a@relay.example", ("b@example.com",), "192.0.2.1", "client")
    return storage.insert_message(
        connection, envelope, parse_headers(raw), raw, None, Status.RECEIVED, body_parsed=False
    )


def _failing_sql_job(connection: Connection) -> None:
    connection.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")


def _buggy_job(connection: Connection) -> None:
    _insert_job("Undone", connection)  # written, then undone with the job
    raise ValueError("a bug in one job")


def test_one_failing_job_does_not_take_its_batch_down(app: Flask) -> None:
    """The writer commits a batch in one transaction (on PostgreSQL first without a savepoint
    per job): a job that fails in SQL or raises fails alone, and what it wrote is undone."""
    writer = GroupCommit(Database.of(app))
    try:
        outcomes = writer.write(
            [
                (1, partial(_insert_job, "First")),
                (2, _failing_sql_job),
                (3, _buggy_job),
                (4, partial(_insert_job, "Last")),
            ]
        )
        again = writer.write([(5, partial(_insert_job, "Next"))])  # the writer goes on
    finally:
        writer.close()
    values = {job_id: (value, error) for job_id, value, error in outcomes}
    assert isinstance(values[2][1], storage.StorageUnavailable)
    assert isinstance(values[3][1], ValueError)
    assert values[1][1] is None and values[4][1] is None and again[0][2] is None
    with app.app_context():
        subjects = {m.id: m.subject for m in storage.list_messages()}
    assert subjects == {values[1][0]: "First", values[4][0]: "Last", again[0][1]: "Next"}


def test_a_batch_fails_whole_when_the_database_is_gone(app: Flask, engine: str) -> None:
    if engine == "sqlite":
        pytest.skip("a SQLite file does not go away mid-batch")
    writer = GroupCommit(Database.of(app))
    try:
        assert writer.write([(1, partial(_insert_job, "Before"))])[0][2] is None
        with app.app_context():
            db.session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid != pg_backend_pid()"
                )
            )
        outcomes = writer.write([(2, partial(_insert_job, "Lost")), (3, _failing_sql_job)])
        assert all(isinstance(error, storage.StorageUnavailable) for _, _, error in outcomes)
        assert writer.write([(4, partial(_insert_job, "After"))])[0][2] is None  # reconnected
    finally:
        writer.close()
    with app.app_context():
        assert sorted(m.subject for m in storage.list_messages()) == ["After", "Before"]
