"""Bounds on what one sender may cost us: sessions at once (in all and per address), errors
per session, and the shape of a message (header block, MIME parts and nesting) checked
before anything is parsed or stored."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mxsmtp_web import reply_codes
from mxsmtp_web.mail.parsing import header_block_size, mime_shape
from mxsmtp_web.store.settings import Settings

if TYPE_CHECKING:
    from mxsmtp_web.smtp.handler import MailSMTP

# Reply codes that count as a client error: syntax and sequence (RFC 5321 4.2.2) and
# refused recipients (550/553), the stuff of address harvesting.
ERROR_CODES = frozenset({"500", "501", "502", "503", "504", "550", "553", "555"})


@dataclass
class SessionTracker:
    """Which sessions are open, from where, and which are inside DATA (shutdown waits for
    those)."""

    open: set[MailSMTP] = field(default_factory=set)
    per_peer: Counter[str] = field(default_factory=Counter)

    def add(self, protocol: MailSMTP, peer: str) -> None:
        self.open.add(protocol)
        self.per_peer[peer] += 1

    def discard(self, protocol: MailSMTP, peer: str) -> None:
        if protocol in self.open:
            self.open.discard(protocol)
            self.per_peer[peer] -= 1
            if self.per_peer[peer] <= 0:
                del self.per_peer[peer]

    def busy(self) -> list[MailSMTP]:
        return [protocol for protocol in self.open if protocol.in_data]

    def receiving(self) -> bool:
        """Whether a sender is inside DATA now."""
        return any(protocol.in_data for protocol in self.open)

    def refusal(self, peer: str, settings: Settings) -> str | None:
        """The 421 for a session over a limit (it is already counted), else None."""
        if len(self.open) > settings.max_sessions:
            return reply_codes.TOO_MANY_SESSIONS
        if self.per_peer[peer] > settings.max_sessions_per_peer:
            return reply_codes.TOO_MANY_SESSIONS_FROM_YOU
        return None


def content_refusal(content: bytes, settings: Settings) -> str | None:
    """The reply for a message whose shape is out of bounds, else None. Linear in its size."""
    if header_block_size(content) > settings.max_header_size:
        return reply_codes.HEADER_TOO_LARGE.format(limit=settings.max_header_size)
    parts, depth = mime_shape(content)
    if depth > settings.max_mime_depth:
        return reply_codes.NESTED_TOO_DEEP.format(limit=settings.max_mime_depth)
    if parts > settings.max_mime_parts:
        return reply_codes.TOO_MANY_PARTS.format(limit=settings.max_mime_parts)
    return None


def counts_as_error(status: str) -> bool:
    return status[:3] in ERROR_CODES
