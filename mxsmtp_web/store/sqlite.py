"""What SQLite does its own way. The listener's hot statements go to the sqlite3 driver
directly, prepared once (sqlite3 caches them), without SQLAlchemy's per-statement work;
datetimes are written in the text form SQLAlchemy's SQLite DateTime reads (and sorts by).
Search is FTS5 (the index and its triggers: migrations/versions/0001)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, column
from sqlalchemy import text as sql_text

from mxsmtp_web.store.models import Message
from mxsmtp_web.store.rows import ATTACHMENT_COLUMNS, part_rows

if TYPE_CHECKING:
    from mxsmtp_web.mail.parsing import ParsedPart

_MESSAGE_COLUMNS = [c.name for c in Message.__table__.columns if c.name != "id"]
_QUOTED_COLUMNS = ", ".join('"' + name + '"' for name in _MESSAGE_COLUMNS)
_INSERT_MESSAGE = (
    f"INSERT INTO message ({_QUOTED_COLUMNS}) "
    f"VALUES ({', '.join(':' + name for name in _MESSAGE_COLUMNS)})"
)
_INSERT_RAW = "INSERT INTO message_raw (message_id, data) VALUES (?, ?)"
_INSERT_ATTACHMENT = (
    f"INSERT INTO attachment ({', '.join(ATTACHMENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTACHMENT_COLUMNS))})"
)
_REMOVE_FAILED_COPIES = (
    "DELETE FROM message WHERE message_id = ? AND status = ? AND mail_from = ? "
    "AND rcpt_tos = ? AND id != ?"
)


def insert_message(
    connection: Connection,
    row: dict,
    raw: bytes,
    parts: Sequence[ParsedPart],
    failed_copy: tuple[str, str, str, str] | None = None,
) -> int:
    """The summary row, the raw bytes and the parts; returns the message's id. `failed_copy`
    (Message-ID, status, mail_from, rcpt_tos): stored copies to remove."""
    driver = _driver(connection)
    row = {**row, "received_at": sql_datetime(row["received_at"])}
    row["date_header"] = sql_datetime(row["date_header"])
    message_id = driver.execute(_INSERT_MESSAGE, row).lastrowid
    driver.execute(_INSERT_RAW, (message_id, raw))
    if parts:
        driver.executemany(_INSERT_ATTACHMENT, part_rows(message_id, parts))
    if failed_copy is not None:
        driver.execute(_REMOVE_FAILED_COPIES, (*failed_copy, message_id))
    return message_id


def store_body(
    connection: Connection, message_id: int, values: dict, parts: Sequence[ParsedPart]
) -> None:
    """The body columns and the parts of a message still waiting for them (else nothing)."""
    driver = _driver(connection)
    values = {**values, "date_header": sql_datetime(values["date_header"]), "id": message_id}
    statement = (
        "UPDATE message SET "
        + ", ".join(f'"{name}" = :{name}' for name in values if name != "id")
        + ", parsed = 1 WHERE id = :id AND parsed = 0"
    )
    if driver.execute(statement, values).rowcount and parts:
        driver.executemany(_INSERT_ATTACHMENT, part_rows(message_id, parts))


def remove_failed_copies(connection: Connection, *where: Any) -> int:
    """Delete by (message_id, status, mail_from, rcpt_tos), keeping the id last given."""
    return _driver(connection).execute(_REMOVE_FAILED_COPIES, where).rowcount or 0


def matching(fts: str) -> Any:
    """The condition that selects messages whose FTS5 index matches `fts`."""
    found = sql_text("SELECT rowid FROM message_fts WHERE message_fts MATCH :fts")
    return Message.id.in_(found.bindparams(fts=fts).columns(column("rowid")))


def sql_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    # strftime's %Y does not pad years before 1000 ("Date: 1 Mar 100"); the reader needs 4.
    return f"{value.year:04d}-{value:%m-%d %H:%M:%S.%f}"


def _driver(connection: Connection) -> Any:
    """The sqlite3 connection under a SQLAlchemy connection."""
    return connection.connection.driver_connection
