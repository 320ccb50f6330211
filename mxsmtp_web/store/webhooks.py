"""Webhook deliveries: one row per stored message and URL, so that a delivery survives
restarts and any node's sender can make it. Every query about them is here: queue them in
the transaction that stores a message, claim the due ones (a lease, so two senders never
POST the same delivery at once), record how an attempt went, and list and retry them.

The JSON body is built at the first attempt and kept in `payload`, so queueing costs one
insert and every retry sends the same bytes; `webhook_id` (the `webhook-id` header) stays
the same across retries, so a receiver can recognise a delivery it already has."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from mxsmtp_web.store import mailboxes
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import MessageMailbox, WebhookDelivery, utcnow
from mxsmtp_web.store.settings import Settings
from mxsmtp_web.store.shapes import iso

#: A claimed delivery is not claimed again for this long: far longer than one POST may take
#: (a 10 s timeout per read), so only a sender that died mid-way leaves it to the next.
LEASE = timedelta(minutes=2)
#: How much of a receiver's answer (or of an error) is kept with the delivery.
EXCERPT_CHARS = 1000
DEFAULT_MAILBOX = mailboxes.DEFAULT


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being sent)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # 410 Gone, or still failing when its retry time was over


@dataclass(frozen=True)
class WebhookTarget:
    """Where one message's webhook goes: the mailbox it is for and that mailbox's URL."""

    mailbox: str
    url: str


@dataclass(frozen=True)
class Delivery:
    """A delivery as pages and the CLI show it."""

    id: int
    webhook_id: str
    message_id: int | None
    mailbox: str
    url: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_response: str

    def as_json(self) -> dict[str, Any]:
        """What `mxsmtp webhooks list --json` prints for it."""
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "message_id": self.message_id,
            "mailbox": self.mailbox,
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at)
            if self.status == DeliveryStatus.PENDING
            else None,
            "last_attempt_at": iso(self.last_attempt_at),
            "delivered_at": iso(self.delivered_at),
            "last_status": self.last_status,
            "last_response": self.last_response,
        }


@dataclass(frozen=True)
class Claim:
    """A delivery a sender has leased for one attempt."""

    id: int
    webhook_id: str
    message_id: int | None
    url: str
    attempt: int  # this attempt's number, 1 for the first
    created_at: datetime
    payload: str | None  # None until the first attempt built it


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt went and what follows: delivered, failed for good, or pending again
    at `next_attempt_at`."""

    status: DeliveryStatus
    http_status: int | None
    response: str
    next_attempt_at: datetime | None = None


_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.webhook_id,
    WebhookDelivery.message_id,
    WebhookDelivery.mailbox,
    WebhookDelivery.url,
    WebhookDelivery.status,
    WebhookDelivery.attempts,
    WebhookDelivery.created_at,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.last_attempt_at,
    WebhookDelivery.delivered_at,
    WebhookDelivery.last_status,
    WebhookDelivery.last_response,
)


# --- queueing, in the transaction that stores the message ----------------------------------


def targets_for(connection: Connection, message_id: int, settings: Settings) -> list[WebhookTarget]:
    """Where the webhooks of a stored message go: for each mailbox it is in, that mailbox's
    `webhook_url` (else the global one; `none`: no webhook), one delivery per URL however many
    of its mailboxes share it. Costs no query while no URL is set anywhere, so mail without
    webhooks is stored as fast as before."""
    if not settings.webhook_url and not any(m.webhook_url for m in settings.mailboxes):
        return []
    names = connection.execute(
        select(MessageMailbox.mailbox)
        .where(MessageMailbox.message_id == message_id)
        .order_by(MessageMailbox.position)
    ).scalars().all() or [DEFAULT_MAILBOX]
    targets: dict[str, WebhookTarget] = {}
    for name in names:
        mailbox = mailboxes.by_name(settings.mailboxes, name) or mailboxes.MailboxConfig(name)
        url = mailbox.own("webhook_url", settings.webhook_url)
        if url:
            targets.setdefault(url, WebhookTarget(name, url))
    return list(targets.values())


def new_webhook_id() -> str:
    """A `webhook-id`: unguessable, without the `.` that separates the signed parts."""
    return "msg_" + secrets.token_urlsafe(18)


def queue_deliveries(
    connection: Connection, message_id: int, targets: Sequence[WebhookTarget]
) -> int:
    """Queue one delivery per target, due now, in the caller's transaction (so they exist
    exactly when the message does); returns how many."""
    if not targets:
        return 0
    now = utcnow()
    connection.execute(
        insert(WebhookDelivery),
        [
            {
                "webhook_id": new_webhook_id(),
                "message_id": message_id,
                "mailbox": target.mailbox,
                "url": target.url,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "last_response": "",
            }
            for target in targets
        ],
    )
    return len(targets)


# --- the sender's side ---------------------------------------------------------------------


def _due(now: datetime) -> tuple[Any, ...]:
    return (
        WebhookDelivery.status == DeliveryStatus.PENDING.value,
        WebhookDelivery.next_attempt_at <= now,
    )


def has_due(connection: Connection, now: datetime) -> bool:
    """Whether any delivery is due: a read of the index, so an idle sender's poll takes no
    write lock (on SQLite the listener's writer would wait for it)."""
    found = connection.execute(select(WebhookDelivery.id).where(*_due(now)).limit(1)).first()
    return found is not None


def claim_due(
    connection: Connection, now: datetime, limit: int, busy_urls: Sequence[str] = ()
) -> list[Claim]:
    """Lease up to `limit` due deliveries (oldest due first) for one attempt each: their
    next attempt moves LEASE ahead and the attempt is counted, in one statement, so another
    sender skips them. On PostgreSQL the rows are picked FOR UPDATE SKIP LOCKED (a sender
    never waits for another's pick); SQLite has one writer at a time. `busy_urls`: URLs this
    sender has enough requests open to, left for later so that one slow receiver does not
    take every thread."""
    if limit <= 0:
        return []
    picked = select(WebhookDelivery.id).where(*_due(now))
    if busy_urls:
        picked = picked.where(WebhookDelivery.url.not_in(list(busy_urls)))
    picked = (
        picked.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    if connection.dialect.name == "postgresql":
        # Picked once: as a subquery of the UPDATE, PostgreSQL may run the pick again for
        # each row it updates, and each run skips the rows updated so far (more than `limit`).
        picked = picked.prefix_with("MATERIALIZED")
    rows = connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(select(picked.c.id)), *_due(now))
        .values(
            next_attempt_at=now + LEASE,
            attempts=WebhookDelivery.attempts + 1,
            last_attempt_at=now,
        )
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.message_id,
            WebhookDelivery.url,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
            WebhookDelivery.payload,
        )
    ).all()
    return sorted((Claim(*row) for row in rows), key=lambda claim: claim.id)


def save_payload(connection: Connection, claim: Claim, payload: str) -> str:
    """Keep the body built at the first attempt, so every retry sends the same bytes;
    returns the body kept (another sender's, should it have been first)."""
    written = connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claim.id, WebhookDelivery.payload.is_(None))
        .values(payload=payload)
    )
    if written.rowcount == 1:
        return payload
    kept = connection.execute(
        select(WebhookDelivery.payload).where(WebhookDelivery.id == claim.id)
    ).scalar()
    return kept or payload


def record_attempt(connection: Connection, claim: Claim, outcome: AttemptOutcome) -> bool:
    """Keep how the attempt went. Ignored (False) when the delivery was claimed again since
    (its lease ran out, or an admin retried it): the later attempt's result counts."""
    values: dict[str, Any] = {
        "status": outcome.status.value,
        "last_status": outcome.http_status,
        "last_response": outcome.response[:EXCERPT_CHARS],
    }
    if outcome.status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = utcnow()
    if outcome.next_attempt_at is not None:
        values["next_attempt_at"] = outcome.next_attempt_at
    result = connection.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claim.id, WebhookDelivery.attempts == claim.attempt)
        .values(**values)
    )
    return result.rowcount == 1


# --- pages and the CLI (need an app context) -----------------------------------------------


def list_deliveries(
    status: str | None = None, limit: int | None = None, offset: int = 0
) -> list[Delivery]:
    """Newest first; only those with `status` when given."""
    query = select(*_COLUMNS).order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return [Delivery(*row) for row in db.session.execute(query)]


def deliveries_of(message_id: int) -> list[Delivery]:
    """The deliveries of one message, oldest first."""
    query = (
        select(*_COLUMNS)
        .where(WebhookDelivery.message_id == message_id)
        .order_by(WebhookDelivery.id)
    )
    return [Delivery(*row) for row in db.session.execute(query)]


def get_delivery(delivery_id: int) -> Delivery | None:
    row = db.session.execute(select(*_COLUMNS).where(WebhookDelivery.id == delivery_id)).first()
    return Delivery(*row) if row is not None else None


def count_by_status() -> dict[str, int]:
    """How many deliveries each status has (every status, zeros included)."""
    rows = db.session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    )
    counts = {status.value: 0 for status in DeliveryStatus}
    counts.update({status: count for status, count in rows})
    return counts


def retry(delivery_id: int) -> bool:
    """Make a delivery due now, whatever its state (delivered ones are sent again, with the
    same webhook-id). A retry after its retry time is one more attempt. False: no such
    delivery."""
    changed = _make_due(WebhookDelivery.id == delivery_id)
    return changed == 1


def retry_failed() -> int:
    """Make every failed delivery due now; returns how many."""
    return _make_due(WebhookDelivery.status == DeliveryStatus.FAILED.value)


def _make_due(condition: Any) -> int:
    result = db.session.execute(
        update(WebhookDelivery)
        .where(condition)
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=utcnow())
    )
    db.session.commit()
    return result.rowcount
