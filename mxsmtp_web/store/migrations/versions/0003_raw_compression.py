"""PostgreSQL: the raw message and attachment bytes are compressed with lz4, not pglz.

pglz compressing a 1 MiB message (base64 compresses a little, so it does not give up early)
was measured as half of all CPU while receiving large mail; lz4 costs a fraction of that and
still shrinks text. A server without lz4 (PostgreSQL 13, or built without it) stores the
bytes uncompressed instead (STORAGE EXTERNAL): most of their weight is base64 and already
compressed files. Values stored earlier stay as they are. SQLite: nothing to do.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (("message_raw", "data"), ("attachment", "data"))


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        try:
            with bind.begin_nested():
                bind.exec_driver_sql(
                    f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4"
                )
        except sa.exc.SQLAlchemyError:  # no lz4 here: leave it uncompressed
            bind.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL")
