"""One pass over a message's lines that knows its MIME skeleton: header blocks and
delimiter lines, nothing else. Two uses, both only for messages that need them:

- :func:`repaired` rewrites what `email` cannot read but RFCs tell receivers to accept:
  blanks before a field's colon (RFC 5322 4.5), a delimiter line with text after the
  boundary (RFC 2046 5.1.1: "it is sufficient that the boundary appear in its entirety"),
  and an empty body part (a delimiter straight after a delimiter). Only those lines change,
  so every body and attachment byte stays as received.
- :func:`enclosed_messages` gives the bytes of each ``message/*`` body part exactly as they
  were in the message, where `email` could only re-serialise the parsed copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

#: RFC 5322 4.5.3 obs-optional: a field name, then blanks, then the colon.
_OBSOLETE_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BAD_FIELD = re.compile(rb"^[^\x00-\x20:]{1,76}:")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_ENCLOSED_TYPE = re.compile(rb"^content-type\s*:\s*message/(?:rfc822|global)\b", re.I | re.M)
_TRANSFER_ENCODING = re.compile(rb"^content-transfer-encoding\s*:\s*([^\s;]*)", re.I | re.M)
_UNFOLD = re.compile(rb"\r?\n[ \t]+")


@dataclass(frozen=True)
class EnclosedMessage:
    """The body of one message/* part as received, and its Content-Transfer-Encoding."""

    data: bytes
    transfer_encoding: str


@dataclass
class _Part:
    """A part whose header block is being read, or whose body is being passed over."""

    boundary: bytes | None  # the delimiter that opened it (None: the message itself)
    header: list[bytes] = field(default_factory=list)
    body_start: int | None = None


def repaired(raw: bytes) -> bytes:
    """`raw` with the syntax `email` misreads rewritten (see the module docstring)."""
    return b"".join(line for line, _ in _lines(raw, repair=True))


def has_delimiter_with_text(raw: bytes, boundaries: list[str]) -> bool:
    """Whether a delimiter line of one of `boundaries` has text after the boundary, which
    `email` does not take for a delimiter. One regular-expression pass over `raw`: the
    search jumps from one "\\n--" to the next and tries the boundaries only there."""
    literals = []
    for boundary in dict.fromkeys(boundaries):
        try:
            literals.append(re.escape(boundary.encode("ascii", "surrogateescape")))
        except UnicodeEncodeError:
            continue
    if not literals:
        return False
    pattern = rb"\n--(?:" + b"|".join(literals) + rb")(?:--)?[ \t]+[^\s]"
    return re.search(pattern, raw) is not None


def enclosed_messages(raw: bytes) -> list[EnclosedMessage]:
    """The message/* body parts of the message in document order, outermost only."""
    found: list[EnclosedMessage] = []
    for _, enclosed in _lines(raw, repair=False):
        if enclosed is not None:
            found.append(enclosed)
    return found


def _lines(raw: bytes, repair: bool) -> Iterator[tuple[bytes, EnclosedMessage | None]]:
    """Each line (repaired if asked), with an enclosed message once its body has ended."""
    boundaries: set[bytes] = set()
    part = _Part(None)
    offset = 0
    lines = raw.splitlines(keepends=True)
    for index, line in enumerate(lines):
        start, offset = offset, offset + len(line)
        delimiter = _delimiter(line, boundaries) if line.startswith(b"--") else None
        if delimiter is not None:
            boundary, closing = delimiter
            yield from _end_part(raw, part, boundary, start)
            yield (_delimiter_line(line, boundary, closing) if repair else line), None
            part = _Part(None if closing else boundary, body_start=start if closing else None)
            if not closing and repair and _starts_delimiter(lines, index + 1, boundaries):
                yield _line_end(line), None  # an empty part: no header, no body
            continue
        if part.body_start is None:
            line = _header_line(line, part, offset, boundaries, repair)
        yield line, None
    yield from _end_part(raw, part, None, len(raw))


def _header_line(
    line: bytes, part: _Part, offset: int, boundaries: set[bytes], repair: bool
) -> bytes:
    """A line of a header block: the blank line ends it, and so does a line that is not a
    field (`email` then starts the body there, too)."""
    blank = not line.strip(b"\r\n")
    if not blank and (line[:1] in b" \t" or _FIELD.match(line)):
        if repair:
            line = _OBSOLETE_FIELD.sub(rb"\1:", line, count=1)
        part.header.append(line)
        return line
    if repair and _BAD_FIELD.match(line):
        return b""  # not a field (8-bit or control bytes in its name): skipped, as mime4j does
    header = _UNFOLD.sub(b" ", b"".join(part.header))
    for match in _BOUNDARY.finditer(header):
        boundaries.add(match.group(1) or match.group(2))
    part.header = [header]
    part.body_start = offset if blank else offset - len(line)
    return line


def _end_part(
    raw: bytes, part: _Part, boundary: bytes | None, end: int
) -> Iterator[tuple[bytes, EnclosedMessage | None]]:
    """The enclosed message of `part`, if it is a message/* part that `boundary` ends."""
    if part.body_start is None or not part.header or part.boundary is None:
        return
    if boundary is not None and boundary != part.boundary:
        return
    header = part.header[0]
    if not _ENCLOSED_TYPE.search(header):
        return
    body_end = end - 2 if raw[end - 2 : end] == b"\r\n" else end - (raw[end - 1 : end] == b"\n")
    encoding = _TRANSFER_ENCODING.search(header)
    label = encoding.group(1).decode("ascii", "replace") if encoding else ""
    data = raw[part.body_start : max(part.body_start, body_end)]
    yield b"", EnclosedMessage(data, label)


def _delimiter(line: bytes, boundaries: set[bytes]) -> tuple[bytes, bool] | None:
    """(boundary, closing) when `line` is a delimiter line of a known boundary."""
    text = line[2:].rstrip(b"\r\n")
    for boundary in boundaries:
        if not text.startswith(boundary):
            continue
        rest = text[len(boundary) :]
        if rest.startswith(b"--"):
            return boundary, True
        if not rest.strip(b" \t") or rest[:1] in b" \t":
            return boundary, False
    return None


def _starts_delimiter(lines: list[bytes], index: int, boundaries: set[bytes]) -> bool:
    return index < len(lines) and _delimiter(lines[index], boundaries) is not None


def _delimiter_line(line: bytes, boundary: bytes, closing: bool) -> bytes:
    return b"--" + boundary + (b"--" if closing else b"") + _line_end(line)


def _line_end(line: bytes) -> bytes:
    return line[len(line.rstrip(b"\r\n")) :] or b"\r\n"
