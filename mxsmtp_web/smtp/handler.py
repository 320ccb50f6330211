"""The SMTP dialogue: aiosmtpd's protocol with our DATA reader, and the handler that asks the
hooks at MAIL FROM and RCPT TO and hands the message to `processing` after DATA."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mxsmtp_web import reply_codes
from mxsmtp_web.hooks import SessionInfo
from mxsmtp_web.processing import Processor, log_entry
from mxsmtp_web.smtp.data import CHUNK_LIMIT, read_data_section
from mxsmtp_web.smtp.limits import SessionTracker, content_refusal, counts_as_error
from mxsmtp_web.store import storage
from mxsmtp_web.store.mailboxes import Placement, placements_of, route
from mxsmtp_web.store.settings import Settings

log = logging.getLogger(__name__)
IDENT = "mxsmtp"
# The common shape of a MAIL FROM / RCPT TO argument: <dot-atom@domain> and maybe parameters.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(?![(\s])(.*)",
    re.DOTALL,
)


class MailEnvelope(Envelope):
    """aiosmtpd's envelope plus what we learn along the way."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_log: list[dict[str, Any]] = []
        self.probe = False  # a double-bounce verification probe: answered, never stored
        self.routes: list[Placement] = []  # each accepted recipient's mailbox, in order


def session_info(session: Session) -> SessionInfo:
    peer = session.peer if isinstance(session.peer, tuple) else (str(session.peer or ""), 0)
    cipher = None
    if session.ssl:
        cipher_info = session.ssl.get("cipher") if isinstance(session.ssl, dict) else None
        cipher = cipher_info[0] if cipher_info else None
    return SessionInfo(
        peer_address=str(peer[0]),
        peer_port=int(peer[1]) if len(peer) > 1 else 0,
        helo_name=session.host_name or "",
        tls=bool(session.ssl),
        tls_cipher=cipher,
    )


def plain_sender(address: str | None) -> str:
    """The envelope sender as hooks and storage see it: the null sender <> is ""."""
    return "" if address in (None, "<>") else address


def is_double_bounce(sender: str, configured: str) -> bool:
    """The configured double-bounce address, any letter case, also in the time-stamped form
    Postfix uses with address_verify_sender_ttl (a suffix appended to the local part)."""
    if not configured or not sender:
        return False
    local, _, domain = configured.lower().rpartition("@")
    pattern = re.escape(local) + r"(?:[+\-._=]?[a-z0-9]+)?@" + re.escape(domain)
    return re.fullmatch(pattern, sender.lower()) is not None


def envelope_of(info: SessionInfo, envelope: Envelope) -> storage.Envelope:
    return storage.Envelope(
        mail_from=plain_sender(envelope.mail_from),
        rcpt_tos=tuple(envelope.rcpt_tos),
        peer_address=info.peer_address,
        helo=info.helo_name,
        tls=info.tls,
        placements=placements_of(getattr(envelope, "routes", ())),
    )


@functools.cache
def protocol_names(cls: type) -> tuple[str, ...]:
    """The attribute names aiosmtpd's protocol looks for on itself and its handler (smtp_*
    commands, auth_* mechanisms, handle_* hooks), read once per class."""
    return tuple(name for name in dir(cls) if name.startswith(("smtp_", "auth_", "handle_")))


class MailHandler:
    """aiosmtpd handler for one connection, with the settings snapshot taken when it opened."""

    def __dir__(self) -> tuple[str, ...]:
        """aiosmtpd lists the handler's attributes on every connection: only the hooks."""
        return protocol_names(type(self))

    def __init__(
        self, processor: Processor, settings: Settings, received_with: str | None = None
    ) -> None:
        self.processor = processor
        self.settings = settings
        # The Received header's protocol when it is not this dialogue's (a pipe: "local").
        self.received_with = received_with

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # RFC 1870: advertise the limit so senders can refuse large mail before sending it.
        return [responses[0], f"250-SIZE {self.settings.max_message_size}", *responses[1:]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.settings.require_tls and not session.ssl:
            return await self._refuse(session, envelope, "tls", reply_codes.TLS_REQUIRED)
        sender = plain_sender(address)
        declared = _declared_size(mail_options)
        if declared is not None and declared > self.settings.max_message_size:
            return await self._refuse(session, envelope, "size", self._too_large(), sender=sender)
        if is_double_bounce(sender, self.settings.double_bounce_address):
            envelope.probe = True
        elif self.settings.sender_hook:
            reply = await self._ask(
                "sender_hook",
                self.settings.sender_hook,
                (sender, session_info(session)),
                session,
                envelope,
                reply_codes.REFUSED_SENDER,
                sender=sender,
            )
            if reply is not None:
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply_codes.SENDER_OK

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: MailEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return reply_codes.TOO_MANY_RECIPIENTS
        mailbox, placement = route(address, self.settings.mailboxes)
        recipient_hook = mailbox.own("recipient_hook", self.settings.recipient_hook)
        if recipient_hook:
            sender = plain_sender(envelope.mail_from)
            reply = await self._ask(
                "recipient_hook",
                recipient_hook,
                (address, sender, session_info(session)),
                session,
                envelope,
                reply_codes.REFUSED_RECIPIENT,
                recipient=address,
            )
            if reply is not None:
                return reply
        envelope.rcpt_tos.append(address)
        envelope.routes.append(placement)
        envelope.rcpt_options.extend(rcpt_options)
        return reply_codes.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: MailEnvelope) -> str:
        if envelope.probe:
            await self.processor.in_app(storage.count_probe)
            return reply_codes.PROBE_ACCEPTED
        content = envelope.original_content or b""
        refusal = content_refusal(content, self.settings)
        if refusal is not None:
            return await self._refuse(session, envelope, "message shape", refusal)
        info = session_info(session)
        raw = self._received_header(info, session, envelope) + content
        record = envelope_of(info, envelope)
        outcome = await self.processor.deliver(record, info, raw, self.settings, envelope.hook_log)
        log.info(
            "message from <%s> for %s (%d bytes): %s%s",
            record.mail_from,
            ", ".join(record.rcpt_tos),
            len(raw),
            outcome.reply,
            f" [id {outcome.message_id}]" if outcome.message_id else "",
        )
        return outcome.reply

    async def handle_exception(self, error: Exception) -> str:
        """Never a 500 with a Python exception's text: log it and let the sender retry."""
        log.error("unexpected error in the SMTP session", exc_info=error)
        return reply_codes.TEMPORARY_FAILURE

    async def refuse_too_large(self, session: Session, envelope: Envelope) -> str:
        return await self._refuse(session, envelope, "size", self._too_large())

    def _too_large(self) -> str:
        return reply_codes.TOO_LARGE.format(limit=self.settings.max_message_size)

    async def _ask(
        self,
        hook: str,
        spec: str,
        args: tuple[Any, ...],
        session: Session,
        envelope: MailEnvelope,
        refused: str,
        *,
        sender: str | None = None,
        recipient: str = "",
    ) -> str | None:
        """Run a check hook; None when it accepts, else the reply to send (and record)."""
        decision = await self.processor.runner.run(spec, args, self.settings.hook_timeout)
        envelope.hook_log.append(log_entry(hook, spec, decision, str(args[0])))
        if decision.accepted:
            return None
        reply = decision.reply or refused
        return await self._refuse(
            session, envelope, hook, reply, decision.error, sender=sender, recipient=recipient
        )

    async def _refuse(
        self,
        session: Session,
        envelope: Envelope,
        check: str,
        reply: str,
        detail: str = "",
        *,
        sender: str | None = None,
        recipient: str = "",
    ) -> str:
        record = envelope_of(session_info(session), envelope)
        if sender is not None:
            record = storage.Envelope(
                sender, record.rcpt_tos, record.peer_address, record.helo, record.tls
            )
        recipient = recipient or ", ".join(record.rcpt_tos)
        log.info("refused (%s) from %s for %s: %s", check, record.mail_from, recipient, reply)
        await self.processor.in_app(storage.record_refusal, record, recipient, check, reply, detail)
        return reply

    def _received_header(self, info: SessionInfo, session: Session, envelope: Envelope) -> bytes:
        """RFC 5321 4.4 trace header, prepended to the stored message."""
        protocol = self.received_with or (
            ("ESMTPS" if info.tls else "ESMTP") if session.extended_smtp else "SMTP"
        )
        recipient = (
            f"\r\n\tfor <{_clean(envelope.rcpt_tos[0])}>" if len(envelope.rcpt_tos) == 1 else ""
        )
        line = (
            f"Received: from {_clean(info.helo_name) or 'unknown'} "
            f"([{info.peer_address}])\r\n\tby {self.settings.effective_host_name} ({IDENT}) "
            f"with {protocol} id {secrets.token_hex(6)}{recipient};"
            f"\r\n\t{format_datetime(datetime.now().astimezone())}\r\n"
        )
        return line.encode("utf-8", "surrogateescape")


# aiosmtpd inspects the EHLO hook's signature on every connection (to support an old form);
# it is worked out here once.
MailHandler.handle_EHLO.__signature__ = inspect.signature(MailHandler.handle_EHLO)  # type: ignore[attr-defined]


class MailSMTP(SMTP):
    """aiosmtpd's protocol with a chunked DATA reader and session tracking for shutdown."""

    # Also the stream reader's buffer limit: lets DATA arrive in large chunks. Command lines
    # are still held to command_size_limit (512, RFC 5321 4.5.3.1.4).
    line_length_limit = CHUNK_LIMIT

    def __init__(
        self,
        handler: MailHandler,
        tracker: SessionTracker,
        settings_source: Callable[[], Awaitable[Settings]],
        tls_source: Callable[[Settings], ssl.SSLContext | None],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, data_size_limit=None, ident=IDENT, **kwargs)
        self.mail_handler = handler
        self.tracker = tracker
        self.settings_source = settings_source
        self.tls_source = tls_source
        self.in_data = False
        self.errors = 0
        self.peer_address = ""
        self._session_cap: asyncio.TimerHandle | None = None

    async def _handle_client(self) -> None:
        """Take the newest settings before the greeting, so a change applies to the next
        session wherever it was made; then apply the session limits."""
        settings = await self.settings_source()
        self.mail_handler.settings = settings
        self.hostname = settings.effective_host_name
        self.tls_context = self.tls_source(settings)
        self._timeout_duration = settings.idle_timeout
        self._reset_timeout()
        self._session_cap = self.loop.call_later(
            settings.session_timeout, self._close_with, reply_codes.SESSION_TOO_LONG
        )
        refusal = self.tracker.refusal(self.peer_address, settings)
        if refusal is not None:
            self._close_with(refusal)
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        """aiosmtpd closes an idle session silently; RFC 5321 4.5.3.2 prefers a 421."""
        self._close_with(reply_codes.IDLE_TIMEOUT)

    def _close_with(self, reply: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(reply.encode() + b"\r\n")
        self.transport.close()

    async def push(self, status: str | bytes) -> None:
        """Count client errors; past max_errors the session ends with a 421."""
        await super().push(status)
        if isinstance(status, str) and counts_as_error(status):
            self.errors += 1
            if self.errors >= self.mail_handler.settings.max_errors:
                self._close_with(reply_codes.TOO_MANY_ERRORS)

    def __dir__(self) -> tuple[str, ...]:
        """aiosmtpd's constructor lists (and reads) every attribute of the protocol on every
        connection to find its smtp_ and auth_ methods, a third of the cost of accepting a
        connection: it gets the short list it looks for."""
        return protocol_names(type(self))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd parses every path with the email header parser (and builds a class per
        call); the common plain shape is read directly, with the same result, and anything
        else (quoted local parts, route syntax, comments, literals) goes the full way."""
        plain = plain_path(arg)
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, rest

    def _create_envelope(self) -> MailEnvelope:
        return MailEnvelope()

    def connection_made(self, transport: Any) -> None:
        if self.transport is None:  # not the second call that STARTTLS makes
            peer = transport.get_extra_info("peername")
            self.peer_address = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
            self.tracker.add(self, self.peer_address)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.tracker.discard(self, self.peer_address)
        if self._session_cap is not None:
            self._session_cap.cancel()
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self.in_data = True
        try:
            await self._receive_data()
        finally:
            self.in_data = False

    async def _receive_data(self) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.mail_handler.settings.max_message_size
        section = await read_data_section(self._reader, limit, self._reset_timeout)
        if section.too_large:
            status = await self.mail_handler.refuse_too_large(self.session, self.envelope)
        else:
            self.envelope.content = self.envelope.original_content = section.content
            try:
                status = await self._call_handler_hook("DATA")
            except Exception as error:  # answered 451, and the session goes on cleanly
                status = await self.mail_handler.handle_exception(error)
        self._set_post_data_state()
        await self.push(status)

    def close_for_shutdown(self) -> None:
        """Tell the client we are going (RFC 5321 3.8) and close the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(reply_codes.SHUTTING_DOWN.encode() + b"\r\n")
        self.transport.close()


def plain_path(arg: str) -> tuple[str, str] | None:
    """(address, parameters) of an argument shaped `<local@domain> PARAMS` with a dot-atom
    local part; None for any other shape."""
    plain = _PLAIN_PATH.fullmatch(arg)
    return None if plain is None else (plain[1], plain[2])


def _declared_size(mail_options: list[str]) -> int | None:
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def _clean(text: str) -> str:
    """Keep header text on its line: a HELO name or address cannot inject header lines."""
    return "".join(ch for ch in text if ch.isprintable())
