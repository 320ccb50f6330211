"""`mxsmtp ingest`: one message on standard input, as an MTA's pipe gives it (Postfix's
pipe(8), Exim's pipe transport, a `.forward`), through exactly the SMTP path: the same handler
asks the same hooks at MAIL FROM and RCPT TO, applies the same limits and double-bounce rules,
and hands the message to the same processor. The answer is an exit status from sysexits.h, so
that the MTA bounces what was refused and retries what could not be taken now, and the
SMTP-style reply of the deciding step."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import Session
from flask import Flask

from mxsmtp_web import reply_codes
from mxsmtp_web.hooks import HookRunner
from mxsmtp_web.processing import Processor
from mxsmtp_web.smtp.handler import MailEnvelope, MailHandler
from mxsmtp_web.smtp.limits import content_refusal
from mxsmtp_web.store.settings import Settings

log = logging.getLogger(__name__)

# sysexits.h, as MTAs read a pipe command's status.
EX_OK = 0
EX_DATAERR = 65  # too large, or malformed beyond the limits: bounce
EX_NOUSER = 67  # every recipient refused: bounce
EX_TEMPFAIL = 75  # a hook failed or timed out, the database is unavailable: retry later
EX_NOPERM = 77  # the sender or the message refused: bounce

#: The "From sender date" line an mbox-style pipe (Postfix's flag F) puts before the headers.
_MBOX_FROM_LINE = re.compile(rb"\AFrom [^\r\n]*\r?\n")
_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class Delivery:
    """What became of a piped message: the exit status and the replies to show, in order."""

    status: int
    replies: tuple[str, ...]


def as_smtp_data(message: bytes) -> bytes:
    """The bytes as an SMTP DATA section would have carried them: CRLF line ends (pipes give
    LF), ending with a line end, without an mbox From_ line."""
    message = _MBOX_FROM_LINE.sub(b"", message, count=1)
    message = _LINE_END.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def ingest(
    app: Flask,
    message: bytes,
    sender: str,
    recipients: Sequence[str],
    peer: str = "127.0.0.1",
    helo: str = "localhost",
) -> Delivery:
    """Receive one message as the SMTP listener would, and say how it went."""
    runner = HookRunner(Path(app.config["HOOKS_DIR"]), context=app.app_context)
    try:
        return asyncio.run(_deliver(app, runner, peer, helo, message, sender, recipients))
    finally:
        runner.close()


async def _deliver(
    app: Flask,
    runner: HookRunner,
    peer: str,
    helo: str,
    message: bytes,
    sender: str,
    recipients: Sequence[str],
) -> Delivery:
    return await _PipeDialogue(app, runner, peer, helo).run(message, sender, recipients)


class _PipeProcessor(Processor):
    """The processor of one piped message: its body is parsed before the command ends (no
    listener of this process will), and failures to do so leave it to the next worker."""

    def __init__(self, app: Flask, runner: HookRunner) -> None:
        super().__init__(app, runner, completes_bodies=False)
        self.stored: list[int] = []

    def complete_later(self, message_id: int, settings: Settings) -> None:
        self.stored.append(message_id)


class _PipeDialogue:
    def __init__(self, app: Flask, runner: HookRunner, peer: str, helo: str) -> None:
        self.processor = _PipeProcessor(app, runner)
        self.session = Session(asyncio.get_running_loop())
        self.session.peer = (peer, 0)
        self.session.host_name = helo
        self.envelope = MailEnvelope()

    async def run(self, message: bytes, sender: str, recipients: Sequence[str]) -> Delivery:
        # The MTA that pipes the message received it; whether it came over TLS was its call.
        settings = dataclasses.replace(await self.processor.settings(), require_tls=False)
        handler = MailHandler(self.processor, settings, received_with="local")
        reply = await handler.handle_MAIL(None, self.session, self.envelope, _path(sender), [])
        if not reply.startswith("2"):
            return Delivery(EX_TEMPFAIL if reply.startswith("4") else EX_NOPERM, (reply,))
        refused = []
        for recipient in recipients:
            reply = await handler.handle_RCPT(None, self.session, self.envelope, recipient, [])
            if not reply.startswith("2"):
                refused.append(f"{reply} <{recipient}>")
        if not self.envelope.rcpt_tos:
            temporary = any(line.startswith("4") for line in refused)
            return Delivery(EX_TEMPFAIL if temporary else EX_NOUSER, tuple(refused))
        data = as_smtp_data(message)
        if len(data) > settings.max_message_size:
            reply = await handler.refuse_too_large(self.session, self.envelope)
            return Delivery(EX_DATAERR, (*refused, reply))
        malformed = content_refusal(data, settings) is not None
        self.envelope.content = self.envelope.original_content = data
        reply = await handler.handle_DATA(None, self.session, self.envelope)
        await self._complete(settings)
        return Delivery(_data_status(reply, malformed), (*refused, reply))

    async def _complete(self, settings: Settings) -> None:
        if not self.processor.stored:
            return
        try:
            await self.processor.complete(self.processor.stored, settings)
        except Exception as error:  # stored and answered: a worker parses it later
            log.warning(
                "the body of message %s waits for a worker: %s", self.processor.stored, error
            )


def _path(sender: str) -> str:
    """The MAIL FROM address as aiosmtpd hands it to the handler: <> for the null sender."""
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    return sender or "<>"


def _data_status(reply: str, malformed: bool) -> int:
    if reply.startswith("2"):
        return EX_OK
    if reply.startswith("4"):
        return EX_TEMPFAIL
    return EX_DATAERR if malformed else EX_NOPERM


#: What the command answers when it cannot run the SMTP path at all (no database, a bad
#: setting, a bug): the MTA keeps the message and retries.
UNAVAILABLE = Delivery(EX_TEMPFAIL, (reply_codes.STORAGE_UNAVAILABLE,))
