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
    with op.batch_alter_table("listener_status") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="smtp"))
    op.create_table(
        "cluster_fact",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
