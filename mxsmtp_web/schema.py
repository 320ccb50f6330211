"""What `db.create_all()` cannot do: the full-text index with its triggers, the indexes that
keep every inbox sort order an index walk, and bringing a database made by an older version up
to the models. Runs once at start-up."""

from __future__ import annotations

from sqlalchemy import Connection, Table

from .extensions import db
from .models import Attachment, Message

#: Full-text index over the searchable columns of `message`, kept in step by triggers, so every
#: write (save, set_outcome, delete, purge) updates it in its own transaction.
FTS_COLUMNS = ("subject", "mail_from", "rcpt_tos", "from_header", "text_body", "html_body")
_FTS_LIST = ", ".join(FTS_COLUMNS)
_FTS_NEW = ", ".join(f"new.{name}" for name in FTS_COLUMNS)
_FTS_OLD = ", ".join(f"old.{name}" for name in FTS_COLUMNS)
# A message enters the index once its body is parsed (the listener stores the header block
# first), so the fast path's insert does no full-text work.
_FTS_SCHEMA = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5({_FTS_LIST}, "
    "content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON message "
    "WHEN new.parsed BEGIN "
    f"INSERT INTO message_fts(rowid, {_FTS_LIST}) VALUES (new.id, {_FTS_NEW}); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_delete AFTER DELETE ON message "
    "WHEN old.parsed BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, {_FTS_LIST}) "
    f"VALUES ('delete', old.id, {_FTS_OLD}); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_parsed AFTER UPDATE OF parsed ON message "
    f"WHEN new.parsed AND NOT old.parsed BEGIN "
    f"INSERT INTO message_fts(rowid, {_FTS_LIST}) VALUES (new.id, {_FTS_NEW}); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_update AFTER UPDATE OF {_FTS_LIST} ON message "
    f"WHEN old.parsed AND new.parsed "
    f"BEGIN INSERT INTO message_fts(message_fts, rowid, {_FTS_LIST}) "
    f"VALUES ('delete', old.id, {_FTS_OLD}); "
    f"INSERT INTO message_fts(rowid, {_FTS_LIST}) VALUES (new.id, {_FTS_NEW}); END",
)
#: Indexes that keep each inbox sort order an index walk (ORDER BY ... LIMIT), even at 100k rows.
_SORT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_message_received_id ON message (received_at, id)",
    "CREATE INDEX IF NOT EXISTS ix_message_size_id ON message (size, id)",
    "CREATE INDEX IF NOT EXISTS ix_message_subject_id ON message (subject COLLATE NOCASE, id)",
    "CREATE INDEX IF NOT EXISTS ix_message_from_id ON message (from_header COLLATE NOCASE, id)",
    "CREATE INDEX IF NOT EXISTS ix_refusal_at_id ON refusal (at, id)",
)


def init_schema() -> None:
    """Create what `db.create_all()` cannot: the full-text index with its triggers, the sort
    indexes, and the columns and indexes that later versions added to `message`. Idempotent;
    a database from before the index gets it filled once."""
    connection = db.session.connection()
    for model in (Message, Attachment):
        _add_new_columns(connection, model.__table__)
    existed = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE name = 'message_fts'"
    ).first()
    for statement in (*_FTS_SCHEMA, *_SORT_INDEXES):
        connection.exec_driver_sql(statement)
    if not existed:
        connection.exec_driver_sql("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")
    db.session.commit()


def _add_new_columns(connection: Connection, table: Table) -> None:
    """Bring a table made by an older version up to the model: SQLite adds a nullable or
    defaulted column in place (ALTER TABLE ... ADD COLUMN)."""
    pragma = f"PRAGMA table_info({table.name})"
    present = {row[1] for row in connection.exec_driver_sql(pragma)}
    missing = [c for c in table.columns if c.name not in present]
    for column_ in missing:
        kind = column_.type.compile(dialect=connection.dialect)
        default = column_.default.arg if column_.default is not None else None
        clause = ""
        if isinstance(default, str):
            clause = " DEFAULT '" + default.replace("'", "''") + "'"
        for key in column_.foreign_keys:
            target = key.column
            clause += f" REFERENCES {target.table.name}({target.name})"
            clause += f" ON DELETE {key.ondelete}" if key.ondelete else ""
        connection.exec_driver_sql(
            f'ALTER TABLE {table.name} ADD COLUMN "{column_.name}" {kind}{clause}'
        )
    if missing:
        for index in table.indexes:
            index.create(connection, checkfirst=True)
