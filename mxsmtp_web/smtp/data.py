"""Reading the DATA section in large chunks instead of line by line (aiosmtpd reads one line
per await), with dot-unstuffing and the size limit applied on the fly (RFC 5321 4.5.2).

The end of data is CRLF "." CRLF. We search for ".\\r\\n" and look at the two bytes before it,
so the mark is also found at the very start of the data, where the CRLF ending the DATA
command line lies before the section. Only CRLF "." CRLF ends the data: a bare LF "." LF does
not (the SMTP smuggling ambiguity); it is a line with a stuffed dot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

DOT_LINE = b".\r\n"
CRLF = b"\r\n"
# The stream reader's buffer limit, and so the largest chunk handed to us at once.
CHUNK_LIMIT = 256 * 1024


@dataclass(frozen=True)
class DataSection:
    """The unstuffed message bytes, or `too_large` with the bytes dropped as they came."""

    content: bytes
    too_large: bool
    size: int


class _Unstuffer:
    """Turns the transmitted (dot-stuffed) stream into message bytes, chunk by chunk."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.too_large = False
        # The last two transmitted bytes: CRLF at the start, as the DATA command line ended so.
        self.tail = CRLF

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        unstuffed = self._unstuff(chunk)
        self.tail = (self.tail + chunk[-2:])[-2:]
        self.size += len(unstuffed)
        if self.too_large:
            return
        if self.size > self.limit:
            self.too_large = True
            self.parts.clear()  # the excess is never buffered
            return
        self.parts.append(unstuffed)

    def _unstuff(self, chunk: bytes) -> bytes:
        """Drop the dot that starts a line, also where the previous chunk ended the line
        before. A bare LF ends a line here too, as for aiosmtpd and Postfix: clients such as
        Python's smtplib stuff the dots of bare-LF lines. Most chunks have no stuffed dot,
        and then `replace` returns the chunk itself: no copy."""
        if chunk[:1] == b"." and self.tail[-1:] == b"\n":
            chunk = chunk[1:]
        if b"." not in chunk:  # one memchr: base64 bodies have no dots at all
            return chunk
        return chunk.replace(b"\n.", b"\n")

    def ends_line_before(self, chunk: bytes) -> bool:
        """Whether the bytes before the trailing ".\\r\\n" of `chunk` end a line."""
        before = (self.tail + chunk[:-3])[-2:]
        return before == CRLF

    def result(self) -> DataSection:
        content = b"" if self.too_large else b"".join(self.parts)
        return DataSection(content=content, too_large=self.too_large, size=self.size)


async def read_data_section(
    reader: asyncio.StreamReader, limit: int, progress: Callable[[], None] = lambda: None
) -> DataSection:
    """Read up to and including the end-of-data mark; never holds more than `limit` message
    bytes plus one chunk. `progress` is called for every chunk (the idle timer: a slow but
    steady sender is not idle). Raises what the reader raises if the connection goes away."""
    unstuffer = _Unstuffer(limit)
    while True:
        progress()
        try:
            chunk = await reader.readuntil(DOT_LINE)
        except asyncio.LimitOverrunError as overrun:
            # No ".\r\n" in a full buffer: take what cannot be part of one and go on.
            unstuffer.feed(await reader.readexactly(overrun.consumed))
            continue
        if unstuffer.ends_line_before(chunk):
            unstuffer.feed(chunk[:-3])
            return unstuffer.result()
        unstuffer.feed(chunk)
