"""What PostgreSQL does its own way: the listener's hot statements go to psycopg directly (one
round trip per message: the summary row, the raw bytes and the removal of a copy that failed
in a hook are one statement; psycopg prepares it after a few uses), the queue's claims
(`FOR UPDATE SKIP LOCKED`), and search through the generated tsvector column
(migrations/versions/0001)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select
from sqlalchemy import text as sql_text

from mxsmtp_web.store.models import Message, without_nul
from mxsmtp_web.store.rows import ATTACHMENT_COLUMNS, part_rows

if TYPE_CHECKING:
    from mxsmtp_web.mail.parsing import ParsedPart

_MESSAGE = Message.__table__
_MESSAGE_COLUMNS = [c.name for c in _MESSAGE.columns if c.name != "id"]
# A CTE's statements all see the snapshot from before it: the DELETE cannot meet the new row.
_INSERT_MESSAGE = (
    "WITH m AS (INSERT INTO message ("
    + ", ".join(f'"{name}"' for name in _MESSAGE_COLUMNS)
    + ") VALUES ("
    + ", ".join(f"%({name})s" for name in _MESSAGE_COLUMNS)
    + ") RETURNING id), "
    "r AS (INSERT INTO message_raw (message_id, data) SELECT id, %(_raw)s FROM m), "
    "d AS (DELETE FROM message WHERE message_id = %(_failed_message_id)s "
    "AND status = %(_failed_status)s AND mail_from = %(_failed_mail_from)s "
    "AND rcpt_tos = %(_failed_rcpt_tos)s) "
    "SELECT id FROM m"
)
_INSERT_ATTACHMENT = (
    f"INSERT INTO attachment ({', '.join(ATTACHMENT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(ATTACHMENT_COLUMNS))})"
)


def insert_message(
    connection: Connection,
    row: dict,
    raw: bytes,
    parts: Sequence[ParsedPart],
    failed_copy: tuple[str, str, str, str] | None = None,
) -> int:
    """The summary row, the raw bytes and the parts; returns the message's id. `failed_copy`
    (Message-ID, status, mail_from, rcpt_tos): stored copies to remove in the same statement."""
    message_id_header, status, mail_from, rcpt_tos = failed_copy or (None, None, None, None)
    values = {
        **{name: without_nul(value) for name, value in row.items()},
        "_raw": raw,
        "_failed_message_id": without_nul(message_id_header),
        "_failed_status": status,
        "_failed_mail_from": without_nul(mail_from),
        "_failed_rcpt_tos": without_nul(rcpt_tos),
    }
    with _driver(connection).cursor() as cursor:
        message_id = cursor.execute(_INSERT_MESSAGE, values).fetchone()[0]
    _insert_parts(connection, message_id, parts)
    return message_id


def store_body(
    connection: Connection, message_id: int, values: dict, parts: Sequence[ParsedPart]
) -> None:
    """The body columns and the parts of a message still waiting for them (else nothing)."""
    names = sorted(values)  # the same statement for every body: psycopg prepares it once
    statement = (
        "UPDATE message SET "
        + ", ".join(f'"{name}" = %({name})s' for name in names)
        + ", parsed = true WHERE id = %(_id)s AND NOT parsed"
    )
    row = {name: without_nul(values[name]) for name in names}
    with _driver(connection).cursor() as cursor:
        stored = cursor.execute(statement, {**row, "_id": message_id}).rowcount
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
    # bytea in binary: as text it travels hex-encoded, twice its size, coded at both ends
    with _driver(connection).cursor(binary=True) as cursor:
        cursor.execute(
            "SELECT message_id, data FROM message_raw WHERE message_id = ANY(%s)",
            ([row[0] for row in claimed],),
        )
        raws = dict(cursor.fetchall())
    return [(row[0], bytes(raws[row[0]]), row[1]) for row in claimed if row[0] in raws]


def matching(tsquery: str) -> Any:
    """The condition that selects messages whose tsvector matches `tsquery`."""
    condition = "message.search @@ to_tsquery('simple', mxsmtp_unaccent(:words))"
    return sql_text(condition).bindparams(words=tsquery)


def _insert_parts(connection: Connection, message_id: int, parts: Sequence[ParsedPart]) -> None:
    """psycopg's executemany sends every row before it waits: one round trip."""
    if parts:
        rows = [tuple(map(without_nul, row)) for row in part_rows(message_id, parts)]
        with _driver(connection).cursor() as cursor:
            cursor.executemany(_INSERT_ATTACHMENT, rows)


def _driver(connection: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy connection (inside its transaction)."""
    return connection.connection.driver_connection
