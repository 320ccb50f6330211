"""Completing stored messages: read the raw bytes of messages stored with only their header
block, parse, sanitise and analyse them, and store bodies, parts and conversation facts. Runs
in worker processes (the listener's parser pool, or `mxsmtp worker`); module-level functions,
so that they pickle by name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from sqlalchemy import Connection

from mxsmtp_web.mail import conversation
from mxsmtp_web.mail.parsing import ParsedMail, parse_message
from mxsmtp_web.mail.sanitize import sanitize_html
from mxsmtp_web.store import storage, webhooks
from mxsmtp_web.store.group_commit import Database, GroupCommit
from mxsmtp_web.store.settings import Settings

log = logging.getLogger(__name__)
# Bodies a worker stores in one transaction: few, to hold the write lock briefly.
BODIES_PER_TRANSACTION = 8

#: What the parse step gives: the full parse, the HTML to store, the conversation facts.
Parse = tuple[ParsedMail, str | None, storage.ConversationFacts]


def _store_body(
    message_id: int,
    parsed: ParsedMail,
    html: str | None,
    facts: storage.ConversationFacts,
    settings: Settings,
    connection: Connection,
) -> None:
    """The body, and the message's webhooks in the same transaction: they are sent once it
    is parsed, and exist exactly when its body does."""
    storage.store_body(connection, message_id, parsed, html, facts)
    targets = webhooks.targets_for(connection, message_id, settings)
    if targets:
        webhooks.queue_deliveries(connection, message_id, targets)


_parser_writers: dict[Database, GroupCommit] = {}


def complete_bodies(database: Database, message_ids: list[int] | None, settings: Settings) -> int:
    """Runs in a parser or worker process (module-level: it pickles by name): read the
    messages (`message_ids`, or the oldest waiting ones when None), parse them, store their
    bodies in one transaction, each in a savepoint of its own; returns how many it took. A
    message that cannot be parsed stays as received; a database error raises
    StorageUnavailable."""
    writer = _parser_writers.get(database)
    if writer is None:
        writer = _parser_writers[database] = GroupCommit(database)
    if not database.is_sqlite:
        return _claim_and_complete(writer, message_ids, settings)
    if message_ids is None:
        message_ids = writer.read(_waiting, BODIES_PER_TRANSACTION)
    rows = writer.read(storage.pending_bodies, message_ids) if message_ids else []
    jobs = [(message_id, job) for message_id, job in _body_jobs(rows, settings)]
    for _, _, error in writer.write(jobs) if jobs else ():
        if error is not None:
            raise error
    return len(rows)


def _waiting(connection: Connection, limit: int) -> list[int]:
    return storage.unparsed_on(connection, limit)


def _claim_and_complete(
    writer: GroupCommit, message_ids: list[int] | None, settings: Settings
) -> int:
    """PostgreSQL: claim (rows locked, others' skipped), parse and store in one transaction,
    so a worker that dies mid-way leaves its messages to the next."""
    with writer.transaction() as connection:
        rows = storage.claim_bodies(connection, message_ids, BODIES_PER_TRANSACTION)
        for _, job in _body_jobs(rows, settings):
            # No savepoint each (two round trips apiece): a failure rolls all of them back,
            # and the bodies wait for the next claim, as they would with savepoints.
            job(connection)
    return len(rows)


def _body_jobs(
    rows: list[tuple[int, bytes, str | None]], settings: Settings
) -> list[tuple[int, Callable[[Connection], None]]]:
    jobs = []
    for message_id, raw, reply_ref in rows:
        try:
            parsed, html, facts = parse_and_sanitise(raw, settings, reply_ref)
        except Exception:
            log.exception("parsing message %s failed; it stays as received", message_id)
            continue
        jobs.append((message_id, partial(_store_body, message_id, parsed, html, facts, settings)))
    return jobs


def parse_and_sanitise(raw: bytes, settings: Settings, reply_ref: str | None = None) -> Parse:
    """Runs in the parse pool's processes: module-level so that it pickles by name. The
    conversation facts are read from the unsanitised HTML (the filter may drop the quote
    containers that mark where the history starts)."""
    parsed = parse_message(raw)
    html = parsed.html
    if html is not None and settings.xss_filter:
        html = sanitize_html(html, settings.xss_filter_level)
    return parsed, html, conversation_facts(parsed, raw, reply_ref)


def conversation_facts(
    parsed: ParsedMail, raw: bytes, reply_ref: str | None = None
) -> storage.ConversationFacts:
    """Kind, reply text and bounce details of a fully parsed message. Never raises: a
    message that confuses the analysis is a plain message with its whole text."""
    try:
        kind = conversation.classify(parsed, raw, reply_ref)
    except Exception:
        log.exception("classifying a message failed; it counts as a plain message")
        kind = conversation.Kind("message", "classification failed")
    text = conversation.reply_text(parsed.text, parsed.html)
    return storage.ConversationFacts(kind.kind, kind.reason, text, kind.bounce)
