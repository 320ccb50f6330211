"""Saving, reading, listing, deleting and purging stored mail; the only module that writes
messages. Every write is one transaction; storage faults surface as `StorageFull` or
`StorageUnavailable` so the SMTP side can answer 452/451 instead of 250."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db
from .models import Attachment, Message, MessageRaw, Refusal, Revision, Status, utcnow
from .parsing import ParsedMail

PROBES_COUNTER = "double_bounce_probes"
PURGE_BATCH = 500


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


@dataclass(frozen=True)
class AttachmentInfo:
    id: int
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str
    size: int
    sha256: str


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


@contextmanager
def _transaction() -> Iterator[None]:
    """Commit on success; on any database error roll back and raise a storage error whose
    kind tells the SMTP side which code to answer."""
    try:
        yield
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        if "full" in str(error).lower():
            raise StorageFull(str(error.orig if hasattr(error, "orig") else error)) from error
        raise StorageUnavailable(str(getattr(error, "orig", error))) from error


def save_message(
    envelope: Envelope,
    parsed: ParsedMail,
    raw: bytes,
    html_body: str | None,
    status: Status,
    hook_log: Sequence[dict] = (),
) -> int:
    """Store the raw bytes, the summary and every part in one transaction; returns the id."""
    message = Message(
        status=status.value,
        peer_address=envelope.peer_address,
        helo=envelope.helo,
        tls=envelope.tls,
        mail_from=envelope.mail_from,
        rcpt_tos=json.dumps(list(envelope.rcpt_tos)),
        subject=parsed.subject,
        from_header=parsed.from_,
        to_header=json.dumps(list(parsed.to)),
        cc_header=json.dumps(list(parsed.cc)),
        date_header=_naive_utc(parsed.date),
        message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=json.dumps(list(parsed.references)),
        headers=json.dumps([list(pair) for pair in parsed.headers]),
        text_body=parsed.text,
        html_body=html_body,
        size=len(raw),
        attachment_count=len(parsed.attachments),
        hook_log=json.dumps(list(hook_log)),
        defects=json.dumps(list(parsed.defects)),
    )
    message.raw = MessageRaw(data=raw)
    message.attachments = [
        Attachment(
            position=position,
            filename=part.filename,
            content_type=part.content_type,
            content_id=part.content_id,
            disposition=part.disposition,
            size=len(part.data),
            sha256=hashlib.sha256(part.data).hexdigest(),
            data=part.data,
        )
        for position, part in enumerate(parsed.attachments)
    ]
    with _transaction():
        db.session.add(message)
    return message.id


def set_outcome(message_id: int, status: Status, hook_log: Sequence[dict]) -> None:
    with _transaction():
        db.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=status.value, hook_log=json.dumps(list(hook_log)))
        )


def delete_messages(message_ids: Sequence[int]) -> int:
    """Delete messages with their raw bytes and attachments; returns how many went."""
    if not message_ids:
        return 0
    with _transaction():
        result = db.session.execute(delete(Message).where(Message.id.in_(list(message_ids))))
    return result.rowcount or 0


def remove_failed_copies(message_id_header: str | None, envelope: Envelope, keep_id: int) -> int:
    """When a sender's retry is accepted, the copies that failed in a hook (same Message-ID,
    same envelope) have served their purpose."""
    if not message_id_header:
        return 0
    ids = (
        db.session.execute(
            select(Message.id).where(
                Message.message_id == message_id_header,
                Message.status == Status.HOOK_ERROR.value,
                Message.mail_from == envelope.mail_from,
                Message.rcpt_tos == json.dumps(list(envelope.rcpt_tos)),
                Message.id != keep_id,
            )
        )
        .scalars()
        .all()
    )
    return delete_messages(ids)


def record_refusal(
    envelope: Envelope, recipient: str, check: str, reply: str, detail: str = ""
) -> None:
    """Remember why we refused something, without the content. Best effort: a refusal must
    still be answered when the database is down."""
    try:
        with _transaction():
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
    with _transaction():
        counter = db.session.get(Revision, PROBES_COUNTER)
        if counter is None:
            db.session.add(Revision(name=PROBES_COUNTER, value=1))
        else:
            counter.value += 1


def probe_count() -> int:
    counter = db.session.get(Revision, PROBES_COUNTER)
    return counter.value if counter else 0


def list_messages(limit: int | None = None) -> list[MessageSummary]:
    """Newest first; all of them unless `limit` is given."""
    query = select(Message).order_by(Message.received_at.desc(), Message.id.desc()).limit(limit)
    messages = db.session.execute(query).scalars().all()
    attachments = _attachments_of([message.id for message in messages])
    return [_summary(message, attachments.get(message.id, ())) for message in messages]


def get_message(message_id: int) -> StoredMessage | None:
    message = db.session.get(Message, message_id)
    if message is None:
        return None
    summary = _summary(message, _attachments_of([message_id]).get(message_id, ()))
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


def get_raw(message_id: int) -> bytes | None:
    return db.session.execute(
        select(MessageRaw.data).where(MessageRaw.message_id == message_id)
    ).scalar()


def get_attachment_data(attachment_id: int) -> bytes | None:
    return db.session.execute(
        select(Attachment.data).where(Attachment.id == attachment_id)
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
        )
        .where(Attachment.message_id.in_(list(message_ids)))
        .order_by(Attachment.message_id, Attachment.position)
    ).all()
    grouped: dict[int, list[AttachmentInfo]] = {}
    for message_id, *fields in rows:
        grouped.setdefault(message_id, []).append(AttachmentInfo(*fields))
    return {key: tuple(value) for key, value in grouped.items()}


def _summary(message: Message, attachments: tuple[AttachmentInfo, ...]) -> MessageSummary:
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
    )


def _naive_utc(value: datetime | None) -> datetime | None:
    """SQLite keeps naive datetimes: store the Date header in UTC; drop out-of-range dates."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None
