"""Mailboxes as the mail path reads them: typed snapshots of the `mailbox` rows, which mailbox a
recipient falls in, where a stored message is placed, and who may read which mailbox.

A mailbox's empty key inherits the global setting; `none` turns a global hook or webhook off
for it. A recipient that no mailbox matches is in the built-in `default` mailbox, which is the
global settings. Plain mail (every recipient in `default`) is stored without mailbox rows, so
the common case costs nothing; a message that involves a named mailbox gets one row per
mailbox, `default` included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, insert, not_, or_, select

from mxsmtp_web.mail import routing
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Mailbox, Message, MessageMailbox

DEFAULT = "default"
NONE = "none"  # a mailbox's hook or webhook set to this: none, whatever the global one is
EVERYONE = "*"  # in `viewers`: every user who can log in
#: Who reads the default mailbox unless its viewers are set: everyone, as before mailboxes.
DEFAULT_VIEWERS = (EVERYONE,)


@dataclass(frozen=True)
class MailboxConfig:
    """One mailbox's rule and handling; empty text and None inherit the global setting."""

    name: str
    position: int = 0
    patterns: tuple[str, ...] = ()
    recipient_hook: str = ""
    message_hook: str = ""
    webhook_url: str = ""
    retention_days: int | None = None
    delete_after_process: bool | None = None
    viewers: tuple[str, ...] = ()

    def own(self, key: str, global_value: str) -> str:
        """A hook or URL for this mailbox: its own, else the global one; `none` is none."""
        value = getattr(self, key) or global_value
        return "" if value == NONE else value

    def can_view(self, username: str) -> bool:
        return EVERYONE in self.viewers or username in self.viewers


@dataclass(frozen=True)
class Placement:
    """A message's place in one mailbox: the recipient that put it there and the captures."""

    mailbox: str
    address: str
    captures: dict[str, str] = field(default_factory=dict)

    @property
    def route(self) -> dict[str, Any]:
        """What hooks and `messages show --json` give as `route`."""
        return {"address": self.address, "captures": dict(self.captures)}


def default_mailbox(viewers: Sequence[str] = DEFAULT_VIEWERS) -> MailboxConfig:
    return MailboxConfig(DEFAULT, position=2**31 - 1, viewers=tuple(viewers))


def read_all() -> tuple[MailboxConfig, ...]:
    """Every mailbox in matching order, `default` last (needs an app context)."""
    rows = db.session.scalars(select(Mailbox).order_by(Mailbox.position, Mailbox.name)).all()
    named = tuple(config_of(row) for row in rows if row.name != DEFAULT)
    default_row = next((row for row in rows if row.name == DEFAULT), None)
    viewers = _names(default_row.viewers) if default_row is not None else DEFAULT_VIEWERS
    return (*named, default_mailbox(viewers))


def config_of(row: Mailbox) -> MailboxConfig:
    return MailboxConfig(
        name=row.name,
        position=row.position,
        patterns=tuple(json.loads(row.patterns or "[]")),
        recipient_hook=row.recipient_hook,
        message_hook=row.message_hook,
        webhook_url=row.webhook_url,
        retention_days=row.retention_days,
        delete_after_process=row.delete_after_process,
        viewers=_names(row.viewers),
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def route(address: str, mailboxes: Sequence[MailboxConfig]) -> tuple[MailboxConfig, Placement]:
    """The first mailbox (in order) with a pattern that matches; else `default`."""
    for mailbox in mailboxes:
        for pattern in mailbox.patterns:
            found = routing.match(pattern, address)
            if found is not None:
                return mailbox, Placement(mailbox.name, address, found.captures)
    return mailboxes[-1] if mailboxes else default_mailbox(), Placement(DEFAULT, address)


def by_name(mailboxes: Sequence[MailboxConfig], name: str) -> MailboxConfig | None:
    return next((mailbox for mailbox in mailboxes if mailbox.name == name), None)


def placements_of(routes: Iterable[Placement]) -> tuple[Placement, ...]:
    """One placement per mailbox (its first recipient's route), in recipient order; none at
    all when every recipient is in `default`, so plain mail is stored as before."""
    first: dict[str, Placement] = {}
    for placement in routes:
        first.setdefault(placement.mailbox, placement)
    if set(first) <= {DEFAULT}:
        return ()
    return tuple(first.values())


def place(connection: Connection, message_id: int, placements: Sequence[Placement]) -> None:
    """Write a message's mailbox rows, in the caller's transaction."""
    connection.execute(
        insert(MessageMailbox),
        [
            {
                "message_id": message_id,
                "mailbox": placement.mailbox,
                "position": position,
                "address": placement.address,
                "captures": json.dumps(placement.captures),
            }
            for position, placement in enumerate(placements)
        ],
    )


def placements_for(message_ids: Sequence[int]) -> dict[int, tuple[Placement, ...]]:
    """The mailbox rows of these messages (a message without rows is only in `default`)."""
    found: dict[int, list[Placement]] = {}
    if not message_ids:
        return {}
    rows = db.session.execute(
        select(
            MessageMailbox.message_id,
            MessageMailbox.mailbox,
            MessageMailbox.address,
            MessageMailbox.captures,
        )
        .where(MessageMailbox.message_id.in_(message_ids))
        .order_by(MessageMailbox.message_id, MessageMailbox.position)
    )
    for message_id, mailbox, address, captures in rows:
        found.setdefault(message_id, []).append(
            Placement(mailbox, address, json.loads(captures or "{}"))
        )
    return {key: tuple(value) for key, value in found.items()}


def in_mailboxes(names: Iterable[str]) -> ColumnElement[bool]:
    """SQL: the message is in one of these mailboxes (`default` also means: no rows)."""
    names = set(names)
    placed = exists().where(
        MessageMailbox.message_id == Message.id, MessageMailbox.mailbox.in_(names)
    )
    if DEFAULT not in names:
        return placed
    unplaced = not_(exists().where(MessageMailbox.message_id == Message.id))
    return or_(placed, unplaced)


def message_visible(message_id: int, names: Iterable[str]) -> bool:
    found = db.session.execute(
        select(Message.id).where(Message.id == message_id, in_mailboxes(names))
    ).first()
    return found is not None


def visible_names(mailboxes: Sequence[MailboxConfig], username: str) -> frozenset[str]:
    """The mailboxes a non-admin user may read: those whose viewers name them (or `*`)."""
    return frozenset(mailbox.name for mailbox in mailboxes if mailbox.can_view(username))


def counts(names: Iterable[str] | None = None) -> dict[str, int]:
    """Messages per mailbox, for the inbox filter; `names` None: every mailbox."""
    query = select(MessageMailbox.mailbox, db.func.count()).group_by(MessageMailbox.mailbox)
    result = dict(db.session.execute(query).all())
    unplaced = db.session.scalar(
        select(db.func.count())
        .select_from(Message)
        .where(not_(exists().where(MessageMailbox.message_id == Message.id)))
    )
    result[DEFAULT] = result.get(DEFAULT, 0) + (unplaced or 0)
    if names is not None:
        wanted = set(names)
        result = {name: count for name, count in result.items() if name in wanted}
    return result


def leave(connection: Connection, message_id: int, names: Iterable[str]) -> bool:
    """Take a message out of these mailboxes; True when it is in no mailbox any more."""
    names = list(names)
    connection.execute(
        MessageMailbox.__table__.delete().where(
            and_(MessageMailbox.message_id == message_id, MessageMailbox.mailbox.in_(names))
        )
    )
    left = connection.execute(
        select(MessageMailbox.mailbox).where(MessageMailbox.message_id == message_id).limit(1)
    ).first()
    return left is None
