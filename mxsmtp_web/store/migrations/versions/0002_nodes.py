"""Nodes: the role of each reporting process, and facts every node must agree on.

Which role each reporting process plays (smtp, worker), and the fingerprint of the secret key
that signs reply addresses, which every node of a database must share.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What is there already is kept: a database adopted by 0001 may come from a build made
    # between release 0.1 and this migration.
    inspector = sa.inspect(op.get_bind())
    if "role" not in {column["name"] for column in inspector.get_columns("listener_status")}:
        with op.batch_alter_table("listener_status") as batch:
            batch.add_column(
                sa.Column("role", sa.String(16), nullable=False, server_default="smtp")
            )
    if not inspector.has_table("cluster_fact"):
        op.create_table(
            "cluster_fact",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
