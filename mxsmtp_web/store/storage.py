"""Saving, reading, listing, deleting and purging stored mail; the only module that writes
messages. Every write is one transaction; storage faults surface as `StorageFull` or
`StorageUnavailable` so the SMTP side can answer 452/451 instead of 250."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    DateTime,
    case,
    delete,
    exists,
    func,
    literal,
    not_,
    null,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from mxsmtp_web.store import mailboxes, postgresql, sqlite
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.mailboxes import Placement
from mxsmtp_web.store.models import (
    Attachment,
    Message,
    MessageMailbox,
    MessageRaw,
    Refusal,
    Revision,
    Status,
    utcnow,
)
from mxsmtp_web.store.settings import Settings

if TYPE_CHECKING:  # only for annotations: the light CLI commands must not load the parser
    from mxsmtp_web.mail.conversation import BounceInfo
    from mxsmtp_web.mail.parsing import ParsedMail

T = TypeVar("T")
PROBES_COUNTER = "double_bounce_probes"
PURGE_TURN = "retention_purged_at"  # seconds since the epoch of the cluster's last auto-purge
PURGE_BATCH = 500
#: A hostile References header may list thousands of ids; the nearest parents are at its end.
MAX_THREAD_REFERENCES = 20


#: How each engine says the disk is full (SQLite: SQLITE_FULL; PostgreSQL: ENOSPC), and
#: nothing else does ("rolled back fully" is not full).
FULL_WORDS = ("database or disk is full", "disk full", "no space left on device")


#: What a write can raise when the database fails it: through SQLAlchemy, or from a driver
#: that the hot statements use directly (sqlite.py, postgresql.py).
def database_errors() -> tuple[type[Exception], ...]:
    """The error classes as a tuple for `except`; psycopg's only once it is loaded, so an
    SQLite node (and `mxsmtp ingest`, which must start fast) never imports it."""
    psycopg = sys.modules.get("psycopg")
    return (SQLAlchemyError, sqlite3.Error) + ((psycopg.Error,) if psycopg else ())


class StorageUnavailable(Exception):
    """The database could not take the write (locked, read-only, gone): the sender should retry."""


class StorageFull(StorageUnavailable):
    """The disk or database is full."""


@dataclass(frozen=True)
class Envelope:
    """What the SMTP dialogue established about one message, as plain values."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer_address: str = ""
    helo: str = ""
    tls: bool = False
    # The mailboxes it goes into (see `mailboxes`); empty: only `default`, as plain mail.
    placements: tuple[Placement, ...] = ()


@dataclass(frozen=True)
class ConversationFacts:
    """What the body says about the message's place in a conversation (see `conversation`):
    its kind, why, the new text of a reply, and for a bounce the failed delivery."""

    kind: str = "message"
    reason: str = ""
    reply_text: str | None = None
    bounce: BounceInfo | None = None


@dataclass(frozen=True)
class Bounce:
    """The failed delivery a bounce reports; any field may be None."""

    recipient: str | None
    status: str | None
    diagnostic: str | None


@dataclass(frozen=True)
class AttachmentInfo:
    id: int
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str
    size: int
    sha256: str
    defects: tuple[str, ...] = ()  # what was wrong with its encoding (see ParsedPart)

    @classmethod
    def from_row(cls, fields: Sequence[Any]) -> AttachmentInfo:
        """From the columns id .. sha256 and the JSON `defects` column, in that order."""
        return cls(*fields[:-1], defects=tuple(json.loads(fields[-1] or "[]")))


@dataclass(frozen=True)
class MessageSummary:
    id: int
    received_at: datetime
    status: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    from_header: str
    size: int
    attachments: tuple[AttachmentInfo, ...]
    kind: str = "message"
    reply_ref: str | None = None
    parent_id: int | None = None
    thread_id: int | None = None  # the first message of the thread; its own id for a first
    reply_text: str | None = None
    bounce: Bounce | None = None
    parsed: bool = True  # False for the moments between the 250 and the body's parse
    # Its mailboxes, each with the route that put it there; empty: only `default`.
    placements: tuple[Placement, ...] = ()

    @property
    def mailbox_names(self) -> tuple[str, ...]:
        return tuple(p.mailbox for p in self.placements) or (mailboxes.DEFAULT,)


@dataclass(frozen=True)
class StoredMessage:
    summary: MessageSummary
    peer_address: str
    helo: str
    tls: bool
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None
    hook_log: tuple[dict, ...]
    defects: tuple[str, ...]


@dataclass(frozen=True)
class PurgeResult:
    messages: int
    attachments: int
    bytes: int


def storage_error(error: Exception) -> StorageUnavailable:
    """The storage error an SQLAlchemy error means for the sender: full, or try again later."""
    detail = str(getattr(error, "orig", None) or error)
    if any(words in detail.lower() for words in FULL_WORDS):
        return StorageFull(detail)
    return StorageUnavailable(detail)


@contextmanager
def transaction() -> Iterator[None]:
    """Commit on success; on any database error roll back and raise a storage error whose
    kind tells the SMTP side which code to answer."""
    try:
        yield
        db.session.commit()
    except database_errors() as error:
        db.session.rollback()
        raise storage_error(error) from error


def save_message(
    envelope: Envelope,
    parsed: ParsedMail,
    raw: bytes,
    html_body: str | None,
    status: Status,
    hook_log: Sequence[dict] = (),
    *,
    reply_ref: str | None = None,
    conversation: ConversationFacts | None = None,
) -> int:
    """Store the raw bytes, the summary and every part in one transaction; returns the id."""
    with transaction():
        connection = db.session.connection()
        message_id = insert_message(
            connection,
            envelope,
            parsed,
            raw,
            html_body,
            status,
            hook_log,
            reply_ref=reply_ref,
            conversation=conversation,
        )
    return message_id


def insert_message(
    connection: Connection,
    envelope: Envelope,
    parsed: ParsedMail,
    raw: bytes,
    html_body: str | None,
    status: Status,
    hook_log: Sequence[dict] = (),
    *,
    body_parsed: bool = True,
    reply_ref: str | None = None,
    conversation: ConversationFacts | None = None,
    replacing_failed: bool = False,
) -> int:
    """Write one message (summary, raw bytes, parts) on `connection`, inside the caller's
    transaction; returns its id. With `body_parsed=False`, `parsed` holds only the header
    block and `store_body` completes the message later (with its `conversation` facts).
    With `replacing_failed`, the copies that failed in a hook (see `remove_failed_copies`)
    go in the same write.

    `reply_ref` is the ref of the reply address the message was sent to. The message is
    linked to its parent here, from the header block, so that a thread never depends on
    the order in which bodies get parsed.

    This is the listener's hot path; how each engine writes it: `sqlite`, `postgresql`."""
    parent_id, thread_id = _find_parent(connection, parsed, reply_ref)
    row = {
        **_summary_values(parsed),
        **_conversation_values(conversation or ConversationFacts()),
        "reply_ref": reply_ref,
        "parent_id": parent_id,
        "thread_id": thread_id,
        "status": status.value,
        "peer_address": envelope.peer_address,
        "helo": envelope.helo,
        "tls": envelope.tls,
        "mail_from": envelope.mail_from,
        "rcpt_tos": json.dumps(list(envelope.rcpt_tos)),
        "html_body": html_body,
        "size": len(raw),
        "hook_log": json.dumps(list(hook_log)),
        "parsed": body_parsed,
        "seen": False,
        "received_at": utcnow(),
    }
    failed_copy = (
        (parsed.message_id, Status.HOOK_ERROR.value, envelope.mail_from, row["rcpt_tos"])
        if replacing_failed and parsed.message_id
        else None
    )
    message_id = _engine(connection).insert_message(
        connection, row, raw, parsed.attachments, failed_copy
    )
    if envelope.placements:
        mailboxes.place(connection, message_id, envelope.placements)
    return message_id


def store_body(
    connection: Connection,
    message_id: int,
    parsed: ParsedMail,
    html_body: str | None,
    conversation: ConversationFacts | None = None,
) -> None:
    """Complete a message stored with only its header block: bodies, parts, the summary as the
    full parse reads it, and what the body says about the conversation."""
    values = {
        **_summary_values(parsed),
        **_conversation_values(conversation or ConversationFacts()),
        "html_body": html_body,
    }
    _engine(connection).store_body(connection, message_id, values, parsed.attachments)


def _find_parent(
    connection: Connection, parsed: ParsedMail, reply_ref: str | None
) -> tuple[int | None, int | None]:
    """(parent_id, thread_id) for a new message: the newest stored message with the nearest
    Message-ID in In-Reply-To/References, else the latest message sent to the same reply ref;
    the thread is the parent's. (None, None) starts a thread. Costs no query for mail that
    answers nothing."""
    wanted: list[str] = []
    for message_id in (parsed.in_reply_to, *reversed(parsed.references)):
        if message_id and message_id not in wanted and len(wanted) < MAX_THREAD_REFERENCES:
            wanted.append(message_id)
    if not wanted and reply_ref is None:
        return None, None
    thread = func.coalesce(Message.thread_id, Message.id)
    if wanted:
        found: dict[str, tuple[int, int]] = {}
        rows = connection.execute(
            select(Message.message_id, Message.id, thread)
            .where(Message.message_id.in_(wanted))
            .order_by(Message.id)
        )
        for message_id, row_id, thread_id in rows:
            found[message_id] = (row_id, thread_id)  # the newest copy wins
        for message_id in wanted:
            if message_id in found:
                return found[message_id]
    if reply_ref is not None:
        row = connection.execute(
            select(Message.id, thread)
            .where(Message.reply_ref == reply_ref)
            .order_by(Message.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return row[0], row[1]
    return None, None


@dataclass(frozen=True)
class ThreadLink:
    """Where a stored message sits in its conversation."""

    id: int
    reply_ref: str | None
    parent_id: int | None
    thread_id: int  # the first message of the thread; its own id for a first


def thread_link(connection: Connection, message_id: int) -> ThreadLink:
    """The ThreadLink of a message written on `connection` (inside the caller's transaction)."""
    reply_ref, parent_id, thread_id = connection.execute(
        select(
            Message.reply_ref, Message.parent_id, func.coalesce(Message.thread_id, Message.id)
        ).where(Message.id == message_id)
    ).one()
    return ThreadLink(message_id, reply_ref, parent_id, thread_id)


def _conversation_values(facts: ConversationFacts) -> dict:
    bounce = facts.bounce
    return {
        "kind": facts.kind,
        "reply_text": facts.reply_text,
        "bounce_recipient": bounce.recipient if bounce else None,
        "bounce_status": bounce.status if bounce else None,
        "bounce_diagnostic": bounce.diagnostic if bounce else None,
    }


def _engine(connection: Connection) -> ModuleType:
    """The module with what this connection's engine does its own way."""
    return sqlite if connection.dialect.name == "sqlite" else postgresql


def claim_bodies(
    connection: Connection, message_ids: Sequence[int] | None, limit: int
) -> list[tuple[int, bytes, str | None]]:
    """PostgreSQL's queue: like `pending_bodies` (or the oldest waiting messages when
    `message_ids` is None), each row locked until the caller's transaction ends and rows
    another worker holds skipped (see postgresql.claim_bodies)."""
    return postgresql.claim_bodies(connection, message_ids, limit)


def unparsed_messages(limit: int = 1000, after: int = 0) -> list[int]:
    """Messages whose bodies still wait to be parsed, oldest first, with ids above `after`."""
    return unparsed_on(db.session.connection(), limit, after)


def unparsed_on(connection: Connection, limit: int, after: int = 0) -> list[int]:
    """`unparsed_messages` on any connection (a worker's)."""
    query = (
        select(Message.id)
        .where(Message.parsed.is_(False), Message.id > after)
        .order_by(Message.id)
        .limit(limit)
    )
    return list(connection.execute(query).scalars())


def unparsed_among(message_ids: Sequence[int]) -> list[int]:
    """Which of these messages still wait for their body to be parsed."""
    if not message_ids:
        return []
    query = select(Message.id).where(Message.id.in_(list(message_ids)), Message.parsed.is_(False))
    return list(db.session.execute(query).scalars())


def _summary_values(parsed: ParsedMail) -> dict:
    return {
        "subject": parsed.subject,
        "from_header": parsed.from_,
        "to_header": json.dumps(list(parsed.to)),
        "cc_header": json.dumps(list(parsed.cc)),
        "date_header": _naive_utc(parsed.date),
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": json.dumps(list(parsed.references)),
        "headers": json.dumps([list(pair) for pair in parsed.headers]),
        "text_body": parsed.text,
        "attachment_count": len(parsed.attachments),
        "defects": json.dumps(list(parsed.defects)),
    }


def set_outcome(message_id: int, status: Status, hook_log: Sequence[dict]) -> None:
    with transaction():
        db.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=status.value, hook_log=json.dumps(list(hook_log)))
        )


def delete_messages(message_ids: Sequence[int]) -> int:
    """Delete messages with their raw bytes and attachments; returns how many went."""
    if not message_ids:
        return 0
    with transaction():
        result = db.session.execute(delete(Message).where(Message.id.in_(list(message_ids))))
    return result.rowcount or 0


def leave_mailboxes(message_id: int, names: Sequence[str], placed: bool) -> bool:
    """Take a message out of these mailboxes, and delete it when it is in none any more (a
    message stored without mailbox rows, `placed` False, is only in `default`). True when it
    was deleted."""
    if not names:
        return False
    with transaction():
        connection = db.session.connection()
        if placed and not mailboxes.leave(connection, message_id, names):
            return False
        connection.execute(delete(Message).where(Message.id == message_id))
    return True


def remove_failed_copies(message_id_header: str | None, envelope: Envelope, keep_id: int) -> int:
    """When a sender's retry is accepted, the copies that failed in a hook (same Message-ID,
    same envelope) have served their purpose. (Without a message hook, `insert_message`
    removes them in the same write: `replacing_failed`.)"""
    if not message_id_header:
        return 0
    with transaction():
        connection = db.session.connection()
        removed = _engine(connection).remove_failed_copies(
            connection,
            message_id_header,
            Status.HOOK_ERROR.value,
            envelope.mail_from,
            json.dumps(list(envelope.rcpt_tos)),
            keep_id,
        )
    return removed


def run_in_transaction(job: Callable[[Connection], T]) -> T:
    """Run a write job (as the listener's group-commit writer would) in its own transaction."""
    with transaction():
        value = job(db.session.connection())
    return value


def record_refusal(
    envelope: Envelope, recipient: str, check: str, reply: str, detail: str = ""
) -> None:
    """Remember why we refused something, without the content. Best effort: a refusal must
    still be answered when the database is down."""
    try:
        with transaction():
            db.session.add(
                Refusal(
                    peer_address=envelope.peer_address,
                    helo=envelope.helo,
                    mail_from=envelope.mail_from,
                    recipient=recipient,
                    check=check,
                    reply=reply,
                    detail=detail,
                )
            )
    except StorageUnavailable:
        return


def list_refusals(limit: int | None = None) -> list[Refusal]:
    query = select(Refusal).order_by(Refusal.at.desc(), Refusal.id.desc()).limit(limit)
    return list(db.session.execute(query).scalars())


def count_probe() -> None:
    """Double-bounce probes are counted, never stored."""
    with transaction():
        counter = db.session.get(Revision, PROBES_COUNTER)
        if counter is None:
            db.session.add(Revision(name=PROBES_COUNTER, value=1))
        else:
            counter.value += 1


def take_purge_turn(every_seconds: float) -> bool:
    """Whether this node runs the retention purge now: true for one node of the cluster per
    `every_seconds`, by moving the time of the last purge in one conditional update."""
    now = int(time.time())
    with transaction():
        moved = db.session.execute(
            update(Revision)
            .where(Revision.name == PURGE_TURN, Revision.value <= now - every_seconds)
            .values(value=now)
        ).rowcount
        if not moved and db.session.get(Revision, PURGE_TURN) is None:
            db.session.add(Revision(name=PURGE_TURN, value=now))
            moved = 1
    return bool(moved)


def probe_count() -> int:
    counter = db.session.get(Revision, PROBES_COUNTER)
    return counter.value if counter else 0


def list_messages(limit: int | None = None) -> list[MessageSummary]:
    """Newest first; all of them unless `limit` is given."""
    query = select(Message).order_by(Message.received_at.desc(), Message.id.desc()).limit(limit)
    messages = db.session.execute(query).scalars().all()
    ids = [message.id for message in messages]
    attachments = _attachments_of(ids)
    placements = mailboxes.placements_for(ids)
    return [
        _summary(message, attachments.get(message.id, ()), placements.get(message.id, ()))
        for message in messages
    ]


def get_message(message_id: int) -> StoredMessage | None:
    message = db.session.get(Message, message_id)
    if message is None:
        return None
    summary = _summary(
        message,
        _attachments_of([message_id]).get(message_id, ()),
        mailboxes.placements_for([message_id]).get(message_id, ()),
    )
    return StoredMessage(
        summary=summary,
        peer_address=message.peer_address,
        helo=message.helo,
        tls=message.tls,
        to=tuple(json.loads(message.to_header)),
        cc=tuple(json.loads(message.cc_header)),
        date=message.date_header,
        message_id=message.message_id,
        in_reply_to=message.in_reply_to,
        references=tuple(json.loads(message.references)),
        headers=tuple(tuple(pair) for pair in json.loads(message.headers)),
        text=message.text_body,
        html=message.html_body,
        hook_log=tuple(json.loads(message.hook_log)),
        defects=tuple(json.loads(message.defects)),
    )


def _bounce(message: Message) -> Bounce | None:
    if message.kind != "bounce":
        return None
    return Bounce(message.bounce_recipient, message.bounce_status, message.bounce_diagnostic)


def get_raw(message_id: int) -> bytes | None:
    return db.session.execute(
        select(MessageRaw.data).where(MessageRaw.message_id == message_id)
    ).scalar()


def pending_bodies(
    connection: Connection, message_ids: Sequence[int]
) -> list[tuple[int, bytes, str | None]]:
    """What the body parse of stored messages needs: id, bytes and reply ref of each of
    `message_ids` still waiting for its body, on any connection (the parser processes')."""
    rows = connection.execute(
        select(Message.id, MessageRaw.data, Message.reply_ref)
        .join(MessageRaw, MessageRaw.message_id == Message.id)
        .where(Message.parsed.is_(False), Message.id.in_(list(message_ids)))
        .order_by(Message.id)
    )
    return [(row[0], bytes(row[1]), row[2]) for row in rows]


def get_attachment_data(attachment_id: int) -> bytes | None:
    return db.session.execute(
        select(Attachment.data).where(Attachment.id == attachment_id)
    ).scalar()


def find_by_message_id(message_id: str) -> int | None:
    """The id of the newest stored message with this Message-ID header (angle brackets
    included, as stored), or None."""
    return db.session.execute(
        select(Message.id)
        .where(Message.message_id == message_id)
        .order_by(Message.id.desc())
        .limit(1)
    ).scalar()


def purge_older_than(
    days: float, status: str | None = None, *, dry_run: bool = False
) -> PurgeResult:
    """Select messages received at least `days` ago (0 selects everything received until now),
    optionally only those with `status`; delete them in small batches so the listener is never
    kept waiting for long. With `dry_run`, only count."""
    cutoff = utcnow() - timedelta(days=days)
    where = [Message.received_at <= cutoff]
    if status:
        where.append(Message.status == status)
    selected = select(Message.id).where(*where).scalar_subquery()
    counts = db.session.execute(
        select(
            func.count(Message.id),
            func.coalesce(func.sum(Message.size), 0),
            func.coalesce(func.sum(Message.attachment_count), 0),
        ).where(Message.id.in_(selected))
    ).one()
    result = PurgeResult(messages=counts[0], attachments=counts[2], bytes=counts[1])
    if dry_run:
        return result
    while (
        ids := db.session.execute(select(Message.id).where(*where).limit(PURGE_BATCH))
        .scalars()
        .all()
    ):
        delete_messages(ids)
    return result


def purge_by_retention(settings: Settings) -> PurgeResult:
    """Automatic retention: a message goes once it is older than what every mailbox it is in
    keeps (each mailbox's retention_days, else the global one; 0 keeps it forever), so a
    message in two mailboxes stays as long as either wants it."""
    result = PurgeResult(0, 0, 0)
    if settings.retention_days:
        unplaced = not_(exists().where(MessageMailbox.message_id == Message.id))
        result = _purge_where(Message.received_at <= _cutoff(settings.retention_days), unplaced)
    cutoff = _mailbox_cutoffs(settings)
    if cutoff is None:
        return result
    due = (
        select(MessageMailbox.message_id)
        .join(Message, Message.id == MessageMailbox.message_id)
        .group_by(MessageMailbox.message_id)
        .having(
            func.count(cutoff) == func.count(), func.max(Message.received_at) <= func.min(cutoff)
        )
    )
    placed = _purge_where(Message.id.in_(due.scalar_subquery()))
    return PurgeResult(
        result.messages + placed.messages,
        result.attachments + placed.attachments,
        result.bytes + placed.bytes,
    )


def _cutoff(days: float) -> datetime:
    return utcnow() - timedelta(days=days)


def _mailbox_cutoffs(settings: Settings) -> Any:
    """SQL: the received_at a message must be older than to leave each of its mailbox rows;
    NULL where the mailbox keeps mail forever. None when no mailbox ever lets mail go."""
    days = {m.name: m.retention_days for m in settings.mailboxes if m.retention_days is not None}
    days.pop(mailboxes.DEFAULT, None)
    if not settings.retention_days and not any(days.values()):
        return None

    def bound(value: int) -> Any:
        return literal(_cutoff(value), DateTime()) if value else null()

    whens = [(MessageMailbox.mailbox == name, bound(value)) for name, value in days.items()]
    otherwise = bound(settings.retention_days)
    return case(*whens, else_=otherwise) if whens else otherwise


def _purge_where(*where: Any) -> PurgeResult:
    """Count, then delete in small batches, the messages matching `where`."""
    counts = db.session.execute(
        select(
            func.count(Message.id),
            func.coalesce(func.sum(Message.size), 0),
            func.coalesce(func.sum(Message.attachment_count), 0),
        ).where(*where)
    ).one()
    while (
        ids := db.session.execute(select(Message.id).where(*where).limit(PURGE_BATCH))
        .scalars()
        .all()
    ):
        delete_messages(ids)
    return PurgeResult(messages=counts[0], attachments=counts[2], bytes=counts[1])


def _attachments_of(message_ids: Sequence[int]) -> dict[int, tuple[AttachmentInfo, ...]]:
    if not message_ids:
        return {}
    rows = db.session.execute(
        select(
            Attachment.message_id,
            Attachment.id,
            Attachment.filename,
            Attachment.content_type,
            Attachment.content_id,
            Attachment.disposition,
            Attachment.size,
            Attachment.sha256,
            Attachment.defects,
        )
        .where(Attachment.message_id.in_(list(message_ids)))
        .order_by(Attachment.message_id, Attachment.position)
    ).all()
    grouped: dict[int, list[AttachmentInfo]] = {}
    for message_id, *fields in rows:
        grouped.setdefault(message_id, []).append(AttachmentInfo.from_row(fields))
    return {key: tuple(value) for key, value in grouped.items()}


def _summary(
    message: Message,
    attachments: tuple[AttachmentInfo, ...],
    placements: tuple[Placement, ...] = (),
) -> MessageSummary:
    return MessageSummary(
        id=message.id,
        received_at=message.received_at,
        status=message.status,
        mail_from=message.mail_from,
        rcpt_tos=tuple(json.loads(message.rcpt_tos)),
        subject=message.subject,
        from_header=message.from_header,
        size=message.size,
        attachments=attachments,
        kind=message.kind,
        reply_ref=message.reply_ref,
        parent_id=message.parent_id,
        thread_id=message.thread_id or message.id,
        reply_text=message.reply_text,
        bounce=_bounce(message),
        parsed=message.parsed,
        placements=placements,
    )


def _naive_utc(value: datetime | None) -> datetime | None:
    """SQLite keeps naive datetimes: store the Date header in UTC; drop out-of-range dates."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None
