"""Alembic's entry point: migrations run on the connection `database.upgrade_to_head` gives,
one history for SQLite and PostgreSQL (SQLite alters tables in batch mode)."""

from alembic import context

from mxsmtp_web.store.extensions import db

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=db.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
