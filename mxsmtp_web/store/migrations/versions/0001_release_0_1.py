"""The schema of release 0.1 on SQLite and PostgreSQL; adopts a database made by it.

A database made before migrations has the tables but no alembic_version: its tables get the
columns and indexes they lack (as release 0.1 added them at start-up) and it is stamped. The
tables are written out here, not taken from the models, so that later model changes come as
later migrations.

Search: SQLite keeps an FTS5 index in step by triggers; PostgreSQL a generated tsvector
column with a GIN index. Both index a message once its body is parsed, split words at every
character that is neither letter nor digit, ignore case and diacritics, and match prefixes.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

meta = sa.MetaData()
DateTime = sa.DateTime()


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True)


sa.Table(
    "user",
    meta,
    _id(),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(20), nullable=False, server_default="viewer"),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("must_change_password", sa.Boolean, nullable=False),
    sa.Column("created_at", DateTime, nullable=False),
    sa.Column("session_token", sa.String(64), nullable=False, server_default=""),
)
sa.Table(
    "login_failure",
    meta,
    _id(),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at", DateTime, nullable=False, index=True),
)
sa.Table(
    "listener_status",
    meta,
    sa.Column("node", sa.String(255), primary_key=True),
    sa.Column("state", sa.Text, nullable=False, server_default=""),
    sa.Column("listening", sa.Boolean, nullable=False),
    sa.Column("address", sa.String(255)),
    sa.Column("port", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", DateTime, nullable=False),
)
sa.Table(
    "setting",
    meta,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
sa.Table(
    "revision",
    meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
message = sa.Table(
    "message",
    meta,
    _id(),
    sa.Column("received_at", DateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("peer_address", sa.String(64), nullable=False, server_default=""),
    sa.Column("helo", sa.String(255), nullable=False, server_default=""),
    sa.Column("tls", sa.Boolean, nullable=False),
    sa.Column("mail_from", sa.Text, nullable=False, server_default=""),
    sa.Column("rcpt_tos", sa.Text, nullable=False, server_default="[]"),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("from_header", sa.Text, nullable=False, server_default=""),
    sa.Column("to_header", sa.Text, nullable=False, server_default="[]"),
    sa.Column("cc_header", sa.Text, nullable=False, server_default="[]"),
    sa.Column("date_header", DateTime),
    sa.Column("message_id", sa.Text, index=True),
    sa.Column("in_reply_to", sa.Text),
    sa.Column("references", sa.Text, nullable=False, server_default="[]"),
    sa.Column("headers", sa.Text, nullable=False, server_default="[]"),
    sa.Column("text_body", sa.Text),
    sa.Column("html_body", sa.Text),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("attachment_count", sa.Integer, nullable=False),
    sa.Column("hook_log", sa.Text, nullable=False, server_default="[]"),
    sa.Column("defects", sa.Text, nullable=False, server_default="[]"),
    sa.Column("seen", sa.Boolean, nullable=False),
    sa.Column("parsed", sa.Boolean, nullable=False),
    sa.Column("reply_ref", sa.String(32)),
    sa.Column("reply_text", sa.Text),
    sa.Column("kind", sa.String(16), nullable=False, server_default="message"),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("message.id", ondelete="SET NULL")),
    sa.Column("thread_id", sa.Integer),
    sa.Column("bounce_recipient", sa.Text),
    sa.Column("bounce_status", sa.Text),
    sa.Column("bounce_diagnostic", sa.Text),
)
sa.Table(
    "message_raw",
    meta,
    sa.Column(
        "message_id",
        sa.Integer,
        sa.ForeignKey("message.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
sa.Table(
    "attachment",
    meta,
    _id(),
    sa.Column(
        "message_id",
        sa.Integer,
        sa.ForeignKey("message.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("filename", sa.Text),
    sa.Column("content_type", sa.String(255), nullable=False, server_default=""),
    sa.Column("content_id", sa.Text),
    sa.Column("disposition", sa.String(20), nullable=False, server_default="attachment"),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, server_default=""),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("defects", sa.Text, nullable=False, server_default="[]"),
)
refusal = sa.Table(
    "refusal",
    meta,
    _id(),
    sa.Column("at", DateTime, nullable=False, index=True),
    sa.Column("peer_address", sa.String(64), nullable=False, server_default=""),
    sa.Column("helo", sa.String(255), nullable=False, server_default=""),
    sa.Column("mail_from", sa.Text, nullable=False, server_default=""),
    sa.Column("recipient", sa.Text, nullable=False, server_default=""),
    sa.Column("check", sa.String(40), nullable=False),
    sa.Column("reply", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)


def _partial(name: str, column: str, where: str) -> sa.Index:
    clause = sa.text(where)
    return sa.Index(name, message.c[column], sqlite_where=clause, postgresql_where=clause)


_INDEXES = (
    sa.Index("ix_message_status_received", message.c.status, message.c.received_at),
    sa.Index("ix_message_kind_received", message.c.kind, message.c.received_at),
    _partial("ix_message_reply_ref", "reply_ref", "reply_ref IS NOT NULL"),
    _partial("ix_message_parent", "parent_id", "parent_id IS NOT NULL"),
    _partial("ix_message_thread", "thread_id", "thread_id IS NOT NULL"),
    _partial("ix_message_unparsed", "id", "NOT parsed"),
    sa.Index("ix_message_received_id", message.c.received_at, message.c.id),
    sa.Index("ix_message_size_id", message.c.size, message.c.id),
    sa.Index("ix_refusal_at_id", refusal.c.at, refusal.c.id),
)

# --- SQLite: FTS5 kept in step by triggers ------------------------------------------------

FTS_COLUMNS = ("subject", "mail_from", "rcpt_tos", "from_header", "text_body", "html_body")
_LIST = ", ".join(FTS_COLUMNS)
_NEW = ", ".join(f"new.{name}" for name in FTS_COLUMNS)
_OLD = ", ".join(f"old.{name}" for name in FTS_COLUMNS)
SQLITE_SEARCH = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5({_LIST}, "
    "content='message', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON message "
    f"WHEN new.parsed BEGIN INSERT INTO message_fts(rowid, {_LIST}) VALUES (new.id, {_NEW}); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_delete AFTER DELETE ON message "
    f"WHEN old.parsed BEGIN INSERT INTO message_fts(message_fts, rowid, {_LIST}) "
    f"VALUES ('delete', old.id, {_OLD}); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_parsed AFTER UPDATE OF parsed ON message "
    "WHEN new.parsed AND NOT old.parsed BEGIN "
    f"INSERT INTO message_fts(rowid, {_LIST}) VALUES (new.id, {_NEW}); END",
    f"CREATE TRIGGER IF NOT EXISTS message_fts_update AFTER UPDATE OF {_LIST} ON message "
    "WHEN old.parsed AND new.parsed BEGIN "
    f"INSERT INTO message_fts(message_fts, rowid, {_LIST}) VALUES ('delete', old.id, {_OLD}); "
    f"INSERT INTO message_fts(rowid, {_LIST}) VALUES (new.id, {_NEW}); END",
    "CREATE INDEX IF NOT EXISTS ix_message_subject_id ON message (subject COLLATE NOCASE, id)",
    "CREATE INDEX IF NOT EXISTS ix_message_from_id ON message (from_header COLLATE NOCASE, id)",
)

# --- PostgreSQL: a generated tsvector with a GIN index --------------------------------------

#: ASCII punctuation becomes blanks before PostgreSQL's parser sees the text, so that
#: `alice@sender.example` is the words alice, sender, example, as FTS5's unicode61 reads it.
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
#: A tsvector holds at most 1 MB: each body is indexed up to this many characters.
PG_INDEXED_CHARACTERS = 300_000


def _pg_document() -> str:
    parts = " || ' ' || ".join(
        f"left(coalesce({name}, ''), {PG_INDEXED_CHARACTERS})" for name in FTS_COLUMNS
    )
    punctuation = PUNCTUATION.replace("'", "''")
    blanks = " " * len(PUNCTUATION)
    return f"mxsmtp_unaccent(translate({parts}, '{punctuation}', '{blanks}'))"


PG_SEARCH = (
    "ALTER TABLE message ADD COLUMN search tsvector GENERATED ALWAYS AS "
    f"(CASE WHEN parsed THEN strip(to_tsvector('simple'::regconfig, {_pg_document()})) END) "
    "STORED",
    "CREATE INDEX ix_message_search ON message USING gin (search)",
    "CREATE INDEX ix_message_subject_id ON message (lower(subject), id)",
    "CREATE INDEX ix_message_from_id ON message (lower(from_header), id)",
)


def _pg_unaccent() -> None:
    """mxsmtp_unaccent: the unaccent extension where it can be created (it ships with
    PostgreSQL's contrib and is trusted, so a database owner may), else the text as it is."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
        body = "SELECT unaccent('unaccent'::regdictionary, $1)"
    except sa.exc.SQLAlchemyError:
        body = "SELECT $1"
    bind.exec_driver_sql(
        "CREATE OR REPLACE FUNCTION mxsmtp_unaccent(text) RETURNS text "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ {body} $$"
    )


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table in meta.sorted_tables:
        if table.name in existing:
            _add_missing_columns(table)
        else:
            table.create(bind)
    for index in _INDEXES:
        index.create(bind, checkfirst=True)
    if bind.dialect.name == "sqlite":
        had_index = "message_fts" in existing
        for statement in SQLITE_SEARCH:
            bind.exec_driver_sql(statement)
        if not had_index:  # a release-0.1 dump without its index: fill it once
            bind.exec_driver_sql("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")
    else:
        _pg_unaccent()
        for statement in PG_SEARCH:
            bind.exec_driver_sql(statement.replace("%", "%%"))  # psycopg's placeholder mark


def _add_missing_columns(table: sa.Table) -> None:
    """What release 0.1 did at each start for a database made by an earlier build: add the
    columns it lacks, in place (nullable, or with the column's default)."""
    bind = op.get_bind()
    present = {column["name"] for column in sa.inspect(bind).get_columns(table.name)}
    for column in table.columns:
        if column.name in present:
            continue
        added = sa.Column(column.name, column.type, server_default=column.server_default)
        with op.batch_alter_table(table.name) as batch:
            batch.add_column(added)
