"""What PostgreSQL does its own way: SQLAlchemy Core statements (one commit per message; the
server groups concurrent commits itself), the queue's claims (`FOR UPDATE SKIP LOCKED`), and
search through the generated tsvector column (migrations/versions/0001)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy import text as sql_text

from mxsmtp_web.store.models import Attachment, Message, MessageRaw
from mxsmtp_web.store.rows import ATTACHMENT_COLUMNS, part_rows

if TYPE_CHECKING:
    from mxsmtp_web.mail.parsing import ParsedPart

_MESSAGE = Message.__table__


def insert_message(
    connection: Connection, row: dict, raw: bytes, parts: Sequence[ParsedPart]
) -> int:
    """The summary row, the raw bytes and the parts; returns the message's id."""
    message_id = connection.execute(insert(_MESSAGE).returning(_MESSAGE.c.id), row).scalar_one()
    connection.execute(insert(MessageRaw.__table__), {"message_id": message_id, "data": raw})
    _insert_parts(connection, message_id, parts)
    return message_id


def store_body(
    connection: Connection, message_id: int, values: dict, parts: Sequence[ParsedPart]
) -> None:
    """The body columns and the parts of a message still waiting for them (else nothing)."""
    stored = connection.execute(
        update(_MESSAGE)
        .where(_MESSAGE.c.id == message_id, _MESSAGE.c.parsed.is_(False))
        .values(**values, parsed=True)
    ).rowcount
    if stored:
        _insert_parts(connection, message_id, parts)


def remove_failed_copies(
    connection: Connection, message_id: str, status: str, mail_from: str, rcpt_tos: str, keep: int
) -> int:
    """Delete by (message_id, status, mail_from, rcpt_tos), keeping `keep`."""
    statement = delete(Message).where(
        Message.message_id == message_id,
        Message.status == status,
        Message.mail_from == mail_from,
        Message.rcpt_tos == rcpt_tos,
        Message.id != keep,
    )
    return connection.execute(statement).rowcount or 0


def claim_bodies(
    connection: Connection, message_ids: Sequence[int] | None, limit: int
) -> list[tuple[int, bytes, str | None]]:
    """Id, raw bytes and reply ref of up to `limit` messages waiting for their body (among
    `message_ids`, or the oldest), each row locked until the caller's transaction ends and
    rows another worker holds skipped, so that workers on any number of machines never parse
    the same message twice."""
    query = select(Message.id, Message.reply_ref).where(Message.parsed.is_(False))
    if message_ids is not None:
        query = query.where(Message.id.in_(list(message_ids)))
    claimed = connection.execute(
        query.order_by(Message.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not claimed:
        return []
    raws = dict(
        connection.execute(
            select(MessageRaw.message_id, MessageRaw.data).where(
                MessageRaw.message_id.in_([row[0] for row in claimed])
            )
        ).all()
    )
    return [(row[0], bytes(raws[row[0]]), row[1]) for row in claimed if row[0] in raws]


def matching(tsquery: str) -> Any:
    """The condition that selects messages whose tsvector matches `tsquery`."""
    condition = "message.search @@ to_tsquery('simple', mxsmtp_unaccent(:words))"
    return sql_text(condition).bindparams(words=tsquery)


def _insert_parts(connection: Connection, message_id: int, parts: Sequence[ParsedPart]) -> None:
    if parts:
        rows = [
            dict(zip(ATTACHMENT_COLUMNS, row, strict=True)) for row in part_rows(message_id, parts)
        ]
        connection.execute(insert(Attachment.__table__), rows)
