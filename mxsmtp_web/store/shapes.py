"""The JSON shapes of stored messages, one definition for `mxsmtp messages show --json`, the
webhook payload and HTTP hooks: what a user's code parses must not differ between them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mxsmtp_web.store.mailboxes import DEFAULT, Placement
from mxsmtp_web.store.storage import AttachmentInfo, Bounce, MessageSummary, StoredMessage


def iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def attachment_json(attachment: AttachmentInfo) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "content_id": attachment.content_id,
        "disposition": attachment.disposition,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "defects": list(attachment.defects),
    }


def summary_json(summary: MessageSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "received_at": iso(summary.received_at),
        "status": summary.status,
        "sender": summary.mail_from,
        "recipients": list(summary.rcpt_tos),
        "mail_from": summary.mail_from,
        "rcpt_tos": list(summary.rcpt_tos),
        "subject": summary.subject,
        "from": summary.from_header,
        "size": summary.size,
        "attachments": [attachment_json(a) for a in summary.attachments],
        "parsed": summary.parsed,
        "kind": summary.kind,
        "reply_ref": summary.reply_ref,
        "parent_id": summary.parent_id,
        "thread_id": summary.thread_id,
        "reply_text": summary.reply_text,
        "bounce": bounce_json(summary.bounce),
        **mailbox_json(summary),
    }


def mailbox_json(summary: MessageSummary) -> dict[str, Any]:
    """`mailbox` and `route` as the first mailbox's hook saw them, and every mailbox it is in
    (a message in two mailboxes is stored once)."""
    placements = summary.placements or (
        Placement(DEFAULT, summary.rcpt_tos[0] if summary.rcpt_tos else ""),
    )
    return {
        "mailbox": placements[0].mailbox,
        "route": placements[0].route,
        "mailboxes": [{"name": p.mailbox, "route": p.route} for p in placements],
    }


def message_json(stored: StoredMessage) -> dict[str, Any]:
    data = summary_json(stored.summary)
    data.update(
        peer_address=stored.peer_address,
        helo=stored.helo,
        tls=stored.tls,
        to=list(stored.to),
        cc=list(stored.cc),
        date=iso(stored.date),
        message_id=stored.message_id,
        in_reply_to=stored.in_reply_to,
        references=list(stored.references),
        headers=[list(pair) for pair in stored.headers],
        text=stored.text,
        html=stored.html,
        hook_log=list(stored.hook_log),
        defects=list(stored.defects),
    )
    return data


def bounce_json(bounce: Bounce | None) -> dict[str, Any] | None:
    if bounce is None:
        return None
    return {
        "recipient": bounce.recipient,
        "status": bounce.status,
        "diagnostic": bounce.diagnostic,
    }
