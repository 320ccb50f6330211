"""Mailboxes, the mailboxes each message is in, webhook deliveries and signing secrets.

Messages stored before this have no mailbox row: they are in the built-in `default` mailbox.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted by 0001 (no alembic_version) may hold these already: keep them.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "mailbox" not in existing:
        _mailboxes()
    if "message_mailbox" not in existing:
        _message_mailboxes()
    if "webhook_delivery" not in existing:
        _deliveries()
    if "webhook_secret" not in existing:
        _secrets()


def _mailboxes() -> None:
    op.create_table(
        "mailbox",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("patterns", sa.Text, nullable=False, server_default="[]"),
        sa.Column("recipient_hook", sa.Text, nullable=False, server_default=""),
        sa.Column("message_hook", sa.Text, nullable=False, server_default=""),
        sa.Column("webhook_url", sa.Text, nullable=False, server_default=""),
        sa.Column("retention_days", sa.Integer),
        sa.Column("delete_after_process", sa.Boolean),
        sa.Column("viewers", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def _message_mailboxes() -> None:
    op.create_table(
        "message_mailbox",
        sa.Column(
            "message_id",
            sa.Integer,
            sa.ForeignKey("message.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("mailbox", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("address", sa.Text, nullable=False, server_default=""),
        sa.Column("captures", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_message_mailbox_mailbox", "message_mailbox", ["mailbox", "message_id"])


def _deliveries() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("webhook_id", sa.String(64), nullable=False, unique=True),
        sa.Column("message_id", sa.Integer),
        sa.Column("mailbox", sa.String(64), nullable=False, server_default="default"),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_attempt_at", sa.DateTime),
        sa.Column("delivered_at", sa.DateTime),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_response", sa.Text, nullable=False, server_default=""),
        sa.Column("payload", sa.Text),
    )
    op.create_index("ix_webhook_delivery_message_id", "webhook_delivery", ["message_id"])
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])


def _secrets() -> None:
    op.create_table(
        "webhook_secret",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("retired_at", sa.DateTime),
    )
