"""The web admin's read queries: inbox search (SQLite FTS5, PostgreSQL tsvector), filters,
sort orders and pages, read marks, single parts for downloads and previews, and the refusals
list. Writes of mail stay in `storage`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update

from mxsmtp_web.store import postgresql, sqlite
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.mailboxes import in_mailboxes
from mxsmtp_web.store.models import Attachment, Message, Refusal
from mxsmtp_web.store.storage import AttachmentInfo, transaction

#: Content types that a browser shows as a plain picture and never runs (no SVG).
RASTER_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})


@dataclass(frozen=True)
class MessageFilter:
    """What the inbox shows: words to find, a received window [since, before), a status and
    whether the message must (True) or must not (False) have attachments."""

    text: str = ""
    since: datetime | None = None
    before: datetime | None = None
    status: str | None = None
    has_attachments: bool | None = None
    kind: str | None = None
    thread_id: int | None = None  # the messages of one thread (its first message's id)
    mailbox: str | None = None  # only the messages in this mailbox
    readable: frozenset[str] | None = None  # the mailboxes the user may read; None: all


@dataclass(frozen=True)
class InboxRow:
    """One line of the inbox: the summary without bodies, headers or parts."""

    id: int
    received_at: datetime
    status: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    from_header: str
    size: int
    attachment_count: int
    seen: bool
    kind: str = "message"
    thread_id: int | None = None  # the first message of the thread; its own id for a first


@dataclass(frozen=True)
class ResultPage:
    """One page of a listing; `has_more` says whether another page follows."""

    rows: tuple
    has_more: bool


MESSAGE_SORTS = {
    "received": Message.received_at,
    "size": Message.size,
    "subject": Message.subject.collate("NOCASE"),
    "from": Message.from_header.collate("NOCASE"),
}
#: PostgreSQL has no NOCASE collation: its indexes are on lower(subject), lower(from_header).
PG_MESSAGE_SORTS = {
    **MESSAGE_SORTS,
    "subject": func.lower(Message.subject),
    "from": func.lower(Message.from_header),
}


def fts_query(words: str) -> str | None:
    """The user's words as an FTS5 query: every word must occur, each as a prefix; quotes in
    the input are literal. None when nothing searchable is left."""
    terms = [term for term in words.split() if any(ch.isalnum() for ch in term)]
    if not terms:
        return None
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


def tsquery(words: str) -> str | None:
    """The user's words as a PostgreSQL tsquery, read as FTS5 reads `fts_query`'s: every word
    must occur, split into its letters-and-digits runs, the last run of each a prefix."""
    terms = [re.findall(r"[^\W_]+", term.lower()) for term in words.split()]
    terms = [runs for runs in terms if runs]
    if not terms:
        return None
    return " & ".join(
        "("
        + " & ".join(
            f"'{run}'" + (":*" if i == len(runs) - 1 else "") for i, run in enumerate(runs)
        )
        + ")"
        for runs in terms
    )


def _matching(words: str) -> object | None:
    """The condition that selects the messages containing `words`, per engine."""
    if _is_postgresql():
        query = tsquery(words)
        return None if query is None else postgresql.matching(query)
    query = fts_query(words)
    return None if query is None else sqlite.matching(query)


def _is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def _message_conditions(where: MessageFilter) -> list:
    conditions: list = []
    matching = _matching(where.text)
    if matching is not None:
        conditions.append(matching)
    if where.since is not None:
        conditions.append(Message.received_at >= where.since)
    if where.before is not None:
        conditions.append(Message.received_at < where.before)
    if where.status:
        conditions.append(Message.status == where.status)
    if where.has_attachments is True:
        conditions.append(Message.attachment_count > 0)
    elif where.has_attachments is False:
        conditions.append(Message.attachment_count == 0)
    if where.kind:
        conditions.append(Message.kind == where.kind)
    if where.thread_id is not None:
        conditions.append(or_(Message.thread_id == where.thread_id, Message.id == where.thread_id))
    if where.mailbox is not None:
        conditions.append(in_mailboxes([where.mailbox]))
    if where.readable is not None:
        conditions.append(in_mailboxes(where.readable))
    return conditions


def find_messages(
    where: MessageFilter,
    sort: str = "received",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> ResultPage:
    """A page of inbox rows. Ordered by `sort` (a key of MESSAGE_SORTS), then by id, so the
    order is total and pages never overlap; reads one row more than `limit` to tell whether
    another page follows instead of counting everything."""
    key = (PG_MESSAGE_SORTS if _is_postgresql() else MESSAGE_SORTS)[sort]
    order = (key.desc(), Message.id.desc()) if descending else (key.asc(), Message.id.asc())
    query = (
        select(
            Message.id,
            Message.received_at,
            Message.status,
            Message.mail_from,
            Message.rcpt_tos,
            Message.subject,
            Message.from_header,
            Message.size,
            Message.attachment_count,
            Message.seen,
            Message.kind,
            func.coalesce(Message.thread_id, Message.id),
        )
        .where(*_message_conditions(where))
        .order_by(*order)
        .offset(max(offset, 0))
        .limit(limit + 1)
    )
    rows = [
        InboxRow(*row[:4], tuple(json.loads(row[4])), *row[5:]) for row in db.session.execute(query)
    ]
    return ResultPage(tuple(rows[:limit]), len(rows) > limit)


def thread_sizes(
    thread_ids: Sequence[int], readable: frozenset[str] | None = None
) -> dict[int, int]:
    """How many stored messages each thread has (its first message included, if still
    stored), for the inbox's thread marks; only those in `readable` mailboxes if given."""
    wanted = sorted(set(thread_ids))
    if not wanted:
        return {}
    visible = [] if readable is None else [in_mailboxes(readable)]
    sizes = dict.fromkeys(wanted, 0)
    later = db.session.execute(
        select(Message.thread_id, func.count())
        .where(Message.thread_id.in_(wanted), *visible)
        .group_by(Message.thread_id)
    ).all()
    for thread_id, count in later:
        sizes[thread_id] += count
    firsts = select(Message.id).where(Message.id.in_(wanted), *visible)
    for first in db.session.execute(firsts).scalars():
        sizes[first] += 1
    return sizes


def count_messages(where: MessageFilter) -> int:
    return db.session.execute(
        select(func.count()).select_from(Message).where(*_message_conditions(where))
    ).scalar_one()


def set_seen(message_ids: Sequence[int], seen: bool = True) -> int:
    """Mark messages read (or unread again); returns how many rows changed."""
    if not message_ids:
        return 0
    with transaction():
        result = db.session.execute(
            update(Message)
            .where(Message.id.in_(list(message_ids)), Message.seen.is_not(seen))
            .values(seen=seen)
        )
    return result.rowcount or 0


@dataclass(frozen=True)
class StoredPart:
    """One stored attachment or inline part with its bytes."""

    message_id: int
    position: int
    info: AttachmentInfo
    data: bytes


def _part_columns() -> tuple:
    return (
        Attachment.message_id,
        Attachment.position,
        Attachment.id,
        Attachment.filename,
        Attachment.content_type,
        Attachment.content_id,
        Attachment.disposition,
        Attachment.size,
        Attachment.sha256,
        Attachment.defects,
        Attachment.data,
    )


def _stored_part(row: Sequence) -> StoredPart:
    return StoredPart(row[0], row[1], AttachmentInfo.from_row(row[2:10]), row[10])


def get_attachment(attachment_id: int) -> StoredPart | None:
    row = db.session.execute(select(*_part_columns()).where(Attachment.id == attachment_id)).first()
    return _stored_part(row) if row else None


def inline_images(message_id: int) -> dict[str, StoredPart]:
    """The message's parts that have a Content-ID and a raster image type, by Content-ID:
    what `cid:` references in its HTML may show."""
    rows = db.session.execute(
        select(*_part_columns()).where(
            Attachment.message_id == message_id,
            Attachment.content_id.is_not(None),
            func.lower(Attachment.content_type).in_(RASTER_IMAGE_TYPES),
        )
    ).all()
    return {row[5]: _stored_part(row) for row in rows}


@dataclass(frozen=True)
class RefusalFilter:
    """Words to find in sender, recipient, peer address or HELO; one check; a time window."""

    text: str = ""
    check: str | None = None
    since: datetime | None = None
    before: datetime | None = None


@dataclass(frozen=True)
class RefusalRow:
    id: int
    at: datetime
    peer_address: str
    helo: str
    mail_from: str
    recipient: str
    check: str
    reply: str
    detail: str


def find_refusals(where: RefusalFilter, offset: int = 0, limit: int = 50) -> ResultPage:
    """Newest first; every word of `text` must occur (case-insensitively) in one of the
    address fields."""
    conditions: list = []
    for word in where.text.split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                *(
                    field.ilike(pattern, escape="\\")
                    for field in (
                        Refusal.mail_from,
                        Refusal.recipient,
                        Refusal.peer_address,
                        Refusal.helo,
                    )
                )
            )
        )
    if where.check:
        conditions.append(Refusal.check == where.check)
    if where.since is not None:
        conditions.append(Refusal.at >= where.since)
    if where.before is not None:
        conditions.append(Refusal.at < where.before)
    query = (
        select(
            Refusal.id,
            Refusal.at,
            Refusal.peer_address,
            Refusal.helo,
            Refusal.mail_from,
            Refusal.recipient,
            Refusal.check,
            Refusal.reply,
            Refusal.detail,
        )
        .where(*conditions)
        .order_by(Refusal.at.desc(), Refusal.id.desc())
        .offset(max(offset, 0))
        .limit(limit + 1)
    )
    rows = [RefusalRow(*row) for row in db.session.execute(query)]
    return ResultPage(tuple(rows[:limit]), len(rows) > limit)


def refusal_checks() -> list[str]:
    """The names of the checks that have refused something, for a filter list."""
    return list(
        db.session.execute(select(Refusal.check).distinct().order_by(Refusal.check)).scalars()
    )
