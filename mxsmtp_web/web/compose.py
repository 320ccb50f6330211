"""A test message from the settings page: composed here and delivered over real SMTP to our own
listener, so the hooks run exactly as they do for mail from outside."""

from __future__ import annotations

import mimetypes
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

SMTP_TIMEOUT_SECONDS = 30.0
# A listener bound to every interface is reached on the loopback of the same family.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: `step` is "MAIL FROM", "RCPT TO <address>" or "DATA"."""

    step: str
    code: int
    text: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 400


@dataclass(frozen=True)
class Delivery:
    """What the listener answered. `error` is set when there was no SMTP answer at all."""

    host: str
    port: int
    message_id: str
    replies: tuple[Reply, ...] = ()
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """The data was taken: the message is stored (or handed to the message hook)."""
        return bool(self.replies) and self.replies[-1].step == "DATA" and self.replies[-1].accepted


def listener_host(listen_address: str) -> str:
    """Where to connect to reach a listener bound to `listen_address`."""
    return _WILDCARD_TO_LOOPBACK.get(listen_address, listen_address)


def compose(
    sender: str,
    recipients: list[str],
    subject: str,
    body: str,
    attachment: Attachment | None,
    domain: str,
) -> EmailMessage:
    """A complete message with a fresh Message-ID under `domain` (our host name)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("mxsmtp-test", domain=domain)
    message.set_content(body or "")
    if attachment is not None:
        content_type = attachment.content_type or _guess_type(attachment.filename)
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(
            attachment.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return message


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def deliver(
    message: EmailMessage, sender: str, recipients: list[str], host: str, port: int
) -> Delivery:
    """Speak SMTP step by step so every reply (per recipient, then for the data) is kept.
    Never raises for network trouble: the outcome says what happened in words."""
    message_id = str(message["Message-ID"])
    replies: list[Reply] = []
    try:
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS) as client:
            client.ehlo()
            replies.extend(_converse(client, message, sender, recipients))
    except ConnectionRefusedError:
        error = f"the listener is not running on {host}:{port} (connection refused)"
        return Delivery(host, port, message_id, tuple(replies), error)
    except (OSError, smtplib.SMTPException) as error:
        text = f"no answer from {host}:{port}: {error or type(error).__name__}"
        return Delivery(host, port, message_id, tuple(replies), text)
    return Delivery(host, port, message_id, tuple(replies))


def _converse(
    client: smtplib.SMTP, message: EmailMessage, sender: str, recipients: list[str]
) -> list[Reply]:
    replies = [_reply("MAIL FROM", client.mail(sender))]
    if not replies[0].accepted:
        return replies
    for recipient in recipients:
        replies.append(_reply(f"RCPT TO {recipient}", client.rcpt(recipient)))
    if not any(reply.accepted for reply in replies[1:]):
        client.rset()
        return replies
    replies.append(_reply("DATA", client.data(message.as_bytes())))
    return replies


def _reply(step: str, answer: tuple[int, bytes]) -> Reply:
    code, text = answer
    return Reply(step, code, text.decode("utf-8", "replace"))
