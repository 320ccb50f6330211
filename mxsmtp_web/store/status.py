"""What the listener reports about itself, kept in the database so that every process (any web
worker, the CLI) can show it, whichever process runs the listener; and the mail at a glance
for the start page (counts, refusals per check, hook errors, traffic per hour)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.mailboxes import in_mailboxes
from mxsmtp_web.store.models import ListenerStatus, Message, Refusal, utcnow

# A report older than this means the process that wrote it is gone.
STALE_AFTER = timedelta(seconds=30)
HEARTBEAT_SECONDS = 10.0


def this_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ListenerReport:
    node: str
    role: str
    state: str
    listening: bool
    address: str | None
    port: int | None
    error: str | None
    updated_at: datetime

    @property
    def stale(self) -> bool:
        return utcnow() - self.updated_at > STALE_AFTER


def report(
    state: str,
    listening: bool,
    address: str | None,
    port: int | None,
    error: str | None,
    role: str = "smtp",
) -> None:
    """Record this process's state (an upsert), and forget reports long gone. `role` is
    smtp (a listener) or worker."""
    db.session.merge(
        ListenerStatus(
            node=this_node(),
            role=role,
            state=state,
            listening=listening,
            address=address,
            port=port,
            error=error,
            updated_at=utcnow(),
        )
    )
    db.session.execute(
        delete(ListenerStatus).where(ListenerStatus.updated_at < utcnow() - 10 * STALE_AFTER)
    )
    db.session.commit()


def withdraw() -> None:
    """The listener of this process stopped for good."""
    db.session.execute(delete(ListenerStatus).where(ListenerStatus.node == this_node()))
    db.session.commit()


def reports(role: str | None = None) -> list[ListenerReport]:
    """Every listener and worker (or those of `role`) that reported recently, newest first."""
    query = select(ListenerStatus).order_by(ListenerStatus.updated_at.desc())
    if role is not None:
        query = query.where(ListenerStatus.role == role)
    rows = db.session.execute(query)
    found = [
        ListenerReport(
            r.node, r.role, r.state, r.listening, r.address, r.port, r.error, r.updated_at
        )
        for r in rows.scalars()
    ]
    return [r for r in found if not r.stale]


# --- mail at a glance, for the start page ---------------------------------------------------

HOUR = timedelta(hours=1)
_HOUR_KEY = "%Y-%m-%d %H"  # SQLite strftime and Python strftime agree on this format
_PG_HOUR_KEY = "YYYY-MM-DD HH24"  # the same text from PostgreSQL's to_char


@dataclass(frozen=True)
class MailCounts:
    received_today: int
    received_total: int


@dataclass(frozen=True)
class HookError:
    """A refusal or deferral caused by a hook that raised or timed out."""

    at: datetime
    check: str
    mail_from: str
    recipient: str
    reply: str
    traceback: str


@dataclass(frozen=True)
class HourOfMail:
    """One hour (UTC) of traffic: `start` is the top of the hour."""

    start: datetime
    accepted: int
    refused: int


def start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def mail_counts(now: datetime | None = None, readable: frozenset[str] | None = None) -> MailCounts:
    """Stored messages received since midnight UTC, and all stored messages (only those in
    the `readable` mailboxes, when given)."""
    since = start_of_day(now or utcnow())
    visible = _in(readable)
    today = db.session.execute(
        select(func.count(Message.id)).where(Message.received_at >= since, *visible)
    ).scalar()
    total = db.session.execute(select(func.count(Message.id)).where(*visible)).scalar()
    return MailCounts(today or 0, total or 0)


def refusals_by_check(since: datetime) -> list[tuple[str, int]]:
    """How many refusals each check (sender_hook, recipient_hook, message_hook, size...) made
    since `since`, most first."""
    count = func.count(Refusal.id)
    rows = db.session.execute(
        select(Refusal.check, count)
        .where(Refusal.at >= since)
        .group_by(Refusal.check)
        .order_by(count.desc(), Refusal.check)
    )
    return [(check, n) for check, n in rows]


def last_hook_errors(limit: int = 5) -> list[HookError]:
    """The newest refusals that carry a hook's traceback."""
    rows = db.session.execute(
        select(Refusal)
        .where(Refusal.detail != "")
        .order_by(Refusal.at.desc(), Refusal.id.desc())
        .limit(limit)
    ).scalars()
    return [HookError(r.at, r.check, r.mail_from, r.recipient, r.reply, r.detail) for r in rows]


def _in(readable: frozenset[str] | None) -> list[Any]:
    return [] if readable is None else [in_mailboxes(readable)]


def mail_per_hour(
    hours: int, now: datetime | None = None, readable: frozenset[str] | None = None
) -> list[HourOfMail]:
    """The last `hours` hours (UTC) up to and including the current one, oldest first; hours
    without mail are there with zeros. One GROUP BY per table over an indexed time range, so it
    stays fast however much mail is stored."""
    current = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    first = current - (hours - 1) * HOUR
    accepted = _count_per_hour(Message.received_at, first, *_in(readable))
    refused = _count_per_hour(Refusal.at, first)
    starts = [first + i * HOUR for i in range(hours)]
    return [
        HourOfMail(s, accepted.get(s.strftime(_HOUR_KEY), 0), refused.get(s.strftime(_HOUR_KEY), 0))
        for s in starts
    ]


def _count_per_hour(column: Any, since: datetime, *where: Any) -> dict[str, int]:
    if db.engine.dialect.name == "postgresql":
        hour = func.to_char(column, _PG_HOUR_KEY)
    else:
        hour = func.strftime(_HOUR_KEY, column)
    query = select(hour, func.count()).where(column >= since, *where).group_by(hour)
    rows = db.session.execute(query)
    return {key: n for key, n in rows}
