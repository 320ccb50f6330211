"""The database tables. ORM objects stay inside `storage`, `settings` and `web`; other modules
get plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, LargeBinary
from sqlalchemy import String as _String
from sqlalchemy import Text as _Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mxsmtp_web.store.extensions import db


def without_nul(value: object) -> object:
    """PostgreSQL's text cannot hold NUL, which hostile mail puts anywhere (a subject, a
    body, a file name): there a text's NUL is stored as U+FFFD; anything else is left."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


class _NoNul(TypeDecorator):
    """`without_nul` on PostgreSQL for statements through SQLAlchemy (postgresql.py applies
    it to those it sends to psycopg itself). SQLite keeps NUL as it came."""

    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> str | None:
        if dialect.name == "postgresql":  # type: ignore[attr-defined]
            return without_nul(value)  # type: ignore[return-value]
        return value


class Text(_NoNul):
    impl = _Text
    cache_ok = True


class String(_NoNul):
    impl = _String
    cache_ok = True


class Status(StrEnum):
    """The lifecycle of a stored message."""

    RECEIVED = "received"  # stored; no message hook was registered
    PROCESSED = "processed"  # the message hook accepted it
    REJECTED = "rejected"  # the message hook refused it on a reprocess (refused at SMTP: not kept)
    HOOK_ERROR = "hook error"  # the message hook raised or timed out; the sender was told 451


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class User(UserMixin, db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="viewer")
    active: Mapped[bool] = mapped_column(default=True)
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of every session and remember-me cookie; replaced at logout and password change so
    # that a copied cookie stops working.
    session_token: Mapped[str] = mapped_column(String(64), default="")

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot log in
        return self.active

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        """Flask-Login keeps this in the session and the remember-me cookie."""
        return f"{self.id}:{self.session_token}"


class LoginFailure(db.Model):
    """A failed login, kept for a while to slow down guessing from one address."""

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ListenerStatus(db.Model):
    """What each process's listener last reported, so any web worker can show it."""

    node: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid
    role: Mapped[str] = mapped_column(String(16), default="smtp")  # smtp or worker
    state: Mapped[str] = mapped_column(Text, default="")
    listening: Mapped[bool] = mapped_column(default=False)
    address: Mapped[str | None] = mapped_column(String(255), default=None)
    port: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(db.Model):
    """One runtime setting; absent keys take their defaults from `settings.SPECS`."""

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ClusterFact(db.Model):
    """What every node of one database must agree on, written by the first node to start."""

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Revision(db.Model):
    """Counters that other processes poll cheaply to notice a change (e.g. `settings`)."""

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class Message(db.Model):
    """The summary of one stored message; the raw bytes live in `MessageRaw` so that listing
    messages never reads them."""

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by (received_at, id) and (status, received_at) below and in schema.init_schema;
    # every index costs each insert, so none is doubled.
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20))
    peer_address: Mapped[str] = mapped_column(String(64), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    tls: Mapped[bool] = mapped_column(default=False)
    mail_from: Mapped[str] = mapped_column(Text, default="")
    rcpt_tos: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, as sent
    subject: Mapped[str] = mapped_column(Text, default="")
    from_header: Mapped[str] = mapped_column(Text, default="")
    to_header: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    cc_header: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    date_header: Mapped[datetime | None] = mapped_column(default=None)
    message_id: Mapped[str | None] = mapped_column(Text, default=None, index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text, default=None)
    references: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    headers: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of [name, value]
    text_body: Mapped[str | None] = mapped_column(Text, default=None)
    html_body: Mapped[str | None] = mapped_column(Text, default=None)  # sanitised per settings
    size: Mapped[int] = mapped_column(default=0)
    attachment_count: Mapped[int] = mapped_column(default=0)
    hook_log: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of hook outcomes
    defects: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    seen: Mapped[bool] = mapped_column(default=False)  # opened in the web admin
    # False while only the header block is parsed: the listener answers 250 once the raw bytes
    # are committed and parses bodies and attachments right after, on another core.
    parsed: Mapped[bool] = mapped_column(default=True)
    # Conversations (issue 6). reply_ref: the ref of the valid reply address the message was
    # sent to, set at insert. kind, reply_text and bounce_*: from the body parse. parent_id:
    # the stored message it answers (In-Reply-To/References, else the same reply_ref), and
    # thread_id the first message of that thread, both set at insert from the header block;
    # thread_id is NULL for a message that starts its own thread (read as its own id), so
    # plain mail costs no index entries for them.
    reply_ref: Mapped[str | None] = mapped_column(String(32), default=None)
    reply_text: Mapped[str | None] = mapped_column(Text, default=None)
    kind: Mapped[str] = mapped_column(String(16), default="message")
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="SET NULL"), default=None
    )
    thread_id: Mapped[int | None] = mapped_column(default=None)
    bounce_recipient: Mapped[str | None] = mapped_column(Text, default=None)
    bounce_status: Mapped[str | None] = mapped_column(Text, default=None)
    bounce_diagnostic: Mapped[str | None] = mapped_column(Text, default=None)

    raw: Mapped[MessageRaw] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )
    attachments: Mapped[list[Attachment]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Attachment.position"
    )


class MessageRaw(db.Model):
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    filename: Mapped[str | None] = mapped_column(Text, default=None)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    content_id: Mapped[str | None] = mapped_column(Text, default=None)
    disposition: Mapped[str] = mapped_column(String(20), default="attachment")
    size: Mapped[int] = mapped_column(default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # JSON list: what was wrong with the part's encoding; non-empty when `data` is undecoded
    defects: Mapped[str] = mapped_column(Text, default="[]")


class Refusal(db.Model):
    """A refused or deferred SMTP command, recorded without the message content."""

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    peer_address: Mapped[str] = mapped_column(String(64), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    mail_from: Mapped[str] = mapped_column(Text, default="")
    recipient: Mapped[str] = mapped_column(Text, default="")
    check: Mapped[str] = mapped_column(String(40))
    reply: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")  # a hook's traceback, if any


Index("ix_message_status_received", Message.status, Message.received_at)
Index("ix_message_kind_received", Message.kind, Message.received_at)
# Partial: most mail is no reply, and a NULL costs no index entry. parent_id's index also
# serves ON DELETE SET NULL, so a purge does not scan the table for each deleted message.
Index(
    "ix_message_reply_ref",
    Message.reply_ref,
    sqlite_where=Message.reply_ref.is_not(None),
    postgresql_where=Message.reply_ref.is_not(None),
)
Index(
    "ix_message_parent",
    Message.parent_id,
    sqlite_where=Message.parent_id.is_not(None),
    postgresql_where=Message.parent_id.is_not(None),
)
Index(
    "ix_message_thread",
    Message.thread_id,
    sqlite_where=Message.thread_id.is_not(None),
    postgresql_where=Message.thread_id.is_not(None),
)
# Small: only the few messages whose bodies wait to be parsed are in it.
Index(
    "ix_message_unparsed",
    Message.id,
    sqlite_where=Message.parsed.is_(False),
    postgresql_where=Message.parsed.is_(False),
)


class Mailbox(db.Model):
    """A named rule for recipients with its own hooks and handling (issue 12). Empty values
    inherit the global setting; `default` is built in and never needs a row (one holds only its
    viewers)."""

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    patterns: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, in order
    recipient_hook: Mapped[str] = mapped_column(Text, default="")
    message_hook: Mapped[str] = mapped_column(Text, default="")
    webhook_url: Mapped[str] = mapped_column(Text, default="")
    retention_days: Mapped[int | None] = mapped_column(default=None)  # None: the global one
    delete_after_process: Mapped[bool | None] = mapped_column(default=None)
    viewers: Mapped[str] = mapped_column(Text, default="")  # comma-separated user names
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageMailbox(db.Model):
    """A stored message's place in one mailbox, with the route that put it there. A message
    with no row is in the built-in `default` mailbox only (plain mail costs no extra row)."""

    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)  # in the order of the recipients
    address: Mapped[str] = mapped_column(Text, default="")  # the recipient that matched
    captures: Mapped[str] = mapped_column(Text, default="{}")  # JSON object


class WebhookDelivery(db.Model):
    """One POST of one message to one URL, retried until delivered or given up: a row, so it
    survives restarts and any worker on any node can send it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)  # webhook-id header
    message_id: Mapped[int | None] = mapped_column(default=None, index=True)  # kept if purged
    mailbox: Mapped[str] = mapped_column(String(64), default="default")
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status: Mapped[int | None] = mapped_column(default=None)  # HTTP status, if any
    last_response: Mapped[str] = mapped_column(Text, default="")  # an excerpt, or the error
    payload: Mapped[str | None] = mapped_column(Text, default=None)  # built at the first send


class WebhookSecret(db.Model):
    """A `whsec_…` signing secret. After a rotation the old one signs beside the new one until
    `retired_at`."""

    id: Mapped[int] = mapped_column(primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


Index("ix_message_mailbox_mailbox", MessageMailbox.mailbox, MessageMailbox.message_id)
Index("ix_webhook_delivery_due", WebhookDelivery.status, WebhookDelivery.next_attempt_at)
