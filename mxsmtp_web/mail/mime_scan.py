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
from collections.abc import Container, Iterator
from dataclasses import dataclass, field

#: RFC 5322 4.5.3 obs-optional: a field name, then blanks, then the colon.
_OBSOLETE_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BARE_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*\r?\n?$")
_COLON_CONTINUES = re.compile(rb"^[ \t]+:")
_PARAMETER_LINE = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9_.-]*\*?[0-9]*\*?=")
#: Lines after a line that is no field, searched for a field that continues the block.
_LOOK_AHEAD = 50
#: RFC 2046 allows 70 characters, but `email` reads a boundary of any length, so the bounds
#: and the repairs do too (a longer one would slip past both).
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]+)"|([^\s;"]+))', re.I)
_ENCLOSED_TYPE = re.compile(rb"^content-type\s*:\s*(message/[\x21-\x3a\x3c-\x7e]+)", re.I | re.M)
_TRANSFER_ENCODING = re.compile(rb"^content-transfer-encoding\s*:\s*([^\s;]*)", re.I | re.M)
_UNFOLD = re.compile(rb"\r?\n[ \t]+")
_BLANK = re.compile(rb"[ \t]")
_WORD_THEN_TEXT = re.compile(rb"\n--([^\s]+)[ \t]+[^\s]")
_CONTENT_TYPE_FIELD = re.compile(rb"^content-type[ \t]*:([^\r\n]*)", re.I | re.M)


@dataclass(frozen=True)
class EnclosedMessage:
    """The body of one message/* part as received, its type (lower case) and its
    Content-Transfer-Encoding."""

    data: bytes
    transfer_encoding: str
    content_type: str = "message/rfc822"


@dataclass
class _Part:
    """A part whose header block is being read, or whose body is being passed over."""

    boundary: bytes | None  # the delimiter that opened it (None: the message itself)
    header: list[bytes] = field(default_factory=list)
    body_start: int | None = None
    skip_next: bool = False  # the next line was joined to this one (a name split from ":")


@dataclass(frozen=True)
class Repaired:
    """A copy for `email` to read; `renamed` maps each boundary written differently in it
    (one that ends in blanks) back to the boundary as the message declared it; `skipped`
    lists the lines of the message's header that were left out (no fields)."""

    data: bytes
    renamed: dict[str, str]
    skipped: tuple[str, ...] = ()


def repaired(raw: bytes) -> Repaired:
    """`raw` with the syntax `email` misreads rewritten (see the module docstring)."""
    boundaries: dict[bytes, bytes] = {}
    skipped: list[bytes] = []
    data = b"".join(line for line, _ in _lines(raw, True, boundaries, skipped))
    renamed = {
        written.decode("ascii", "surrogateescape"): declared.decode("ascii", "surrogateescape")
        for declared, written in boundaries.items()
        if written != declared
    }
    lines = tuple(line.rstrip(b"\r\n").decode("utf-8", "replace") for line in skipped)
    return Repaired(data, renamed, lines)


def has_delimiter_with_text(raw: bytes, boundaries: list[str]) -> bool:
    """Whether a delimiter line of one of `boundaries` has text after the boundary, which
    `email` does not take for a delimiter: one pass over the lines "--WORD text"."""
    known = {b.encode("utf-8", "surrogateescape") for b in boundaries}
    for match in _WORD_THEN_TEXT.finditer(raw):
        word = match.group(1)
        if word in known or (word.endswith(b"--") and word[:-2] in known):
            return True
    return False


def enclosed_messages(raw: bytes) -> list[EnclosedMessage]:
    """The message/* body parts of the message (every subtype) in document order, outermost
    only, so that the n-th one is the n-th message/* part `email` meets on its walk."""
    found: list[EnclosedMessage] = []
    for _, enclosed in _lines(raw, False, {}, []):
        if enclosed is not None:
            found.append(enclosed)
    return found


def _lines(
    raw: bytes, repair: bool, boundaries: dict[bytes, bytes], skipped: list[bytes]
) -> Iterator[tuple[bytes, EnclosedMessage | None]]:
    """Each line (repaired if asked), with an enclosed message once its body has ended.
    Header lines are held until their block ends, when its boundaries are known; they are
    collected in `boundaries` (as declared -> as written into a repaired copy)."""
    part = _Part(None)
    offset = 0
    lines = raw.splitlines(keepends=True)
    for index, line in enumerate(lines):
        start, offset = offset, offset + len(line)
        if part.skip_next:
            part.skip_next = False
            continue
        delimiter = _delimiter(line, boundaries) if line.startswith(b"--") else None
        if part.body_start is None and delimiter is None:
            if _in_header(line, lines, index, part, repair):
                continue
            no_field = line.strip(b"\r\n") and part.boundary is None
            if repair and no_field and _fields_follow(lines, index + 1):
                skipped.append(line)
                continue
            yield from _end_header(part, boundaries, repair)
            part.body_start = offset if not line.strip(b"\r\n") else start
        if delimiter is None:
            yield line, None
            continue
        if part.body_start is None:
            yield from _end_header(part, boundaries, repair)
            part.body_start = start
        boundary, closing = delimiter
        yield from _end_part(raw, part, boundary, start)
        written = boundaries[boundary] if repair else boundary
        yield (_delimiter_line(line, written, closing) if repair else line), None
        part = _Part(None if closing else boundary, body_start=start if closing else None)
        if not closing and repair and _starts_delimiter(lines, index + 1, boundaries):
            yield _line_end(line), None  # an empty part: no header, no body
    if part.body_start is None:
        yield from _end_header(part, boundaries, repair)
    yield from _end_part(raw, part, None, len(raw))


def _in_header(line: bytes, lines: list[bytes], index: int, part: _Part, repair: bool) -> bool:
    """Whether `line` belongs to the header block being read (kept in `part.header`). The
    blank line ends it; so does a line that is not a field (`email` starts the body there
    too). In a repaired copy a field name folded away from its colon is joined to it, and
    (in `_lines`) a line of the message's own header that is no field is left out when
    fields follow before the blank line, as mime4j and zbateson read it; not in a part's
    header, where such a line is more likely the first line of a body without a blank
    line before it."""
    if line[:1] in b" \t" or _FIELD.match(line):
        part.header.append(_OBSOLETE_FIELD.sub(rb"\1:", line, count=1) if repair else line)
        return True
    if not repair or not line.strip(b"\r\n"):
        return False
    following = lines[index + 1] if index + 1 < len(lines) else b""
    name = _BARE_NAME.match(line)
    if name and _COLON_CONTINUES.match(following):
        # "From\r\n : <a@x>": a field whose name the sender folded away from its colon
        part.header.append(name.group(1) + b":" + following.lstrip(b" \t")[1:])
        part.skip_next = True
        return True
    if part.header and _PARAMETER_LINE.match(line):
        part.header.append(b" " + line)  # 'name="a.zip"': a parameter that lost its indent
        return True
    return False


def _fields_follow(lines: list[bytes], index: int) -> bool:
    for line in lines[index : index + _LOOK_AHEAD]:
        if not line.strip(b"\r\n") or line.startswith(b"--"):
            return False
        if _FIELD.match(line):
            return True
    return False


def _end_header(
    part: _Part, boundaries: dict[bytes, bytes], repair: bool
) -> Iterator[tuple[bytes, EnclosedMessage | None]]:
    """Close the header block of `part`: note its boundaries and give its lines out. A
    boundary that ends in blanks (RFC 2046 5.1.1 forbids it, `email` strips them, mime4j
    keeps them) is written with underscores instead, in the field and its delimiters."""
    lines = part.header
    header = _UNFOLD.sub(b" ", b"".join(lines))
    content_type = _CONTENT_TYPE_FIELD.search(header)
    for match in _BOUNDARY.finditer(content_type.group(1) if content_type else b""):
        declared = match.group(1) or match.group(2)
        kept = declared.rstrip(b" \t")
        written = kept + b"_" * (len(declared) - len(kept))
        boundaries.setdefault(declared, written)
        if repair and written != declared:
            lines = [line.replace(b'"' + declared + b'"', b'"' + written + b'"') for line in lines]
    part.header = [header]
    for line in lines:
        yield line, None


def _end_part(
    raw: bytes, part: _Part, boundary: bytes | None, end: int
) -> Iterator[tuple[bytes, EnclosedMessage | None]]:
    """The enclosed message of `part`, if it is a message/* part that `boundary` ends."""
    if part.body_start is None or not part.header or part.boundary is None:
        return
    if boundary is not None and boundary != part.boundary:
        return
    header = part.header[0]
    enclosed_type = _ENCLOSED_TYPE.search(header)
    if not enclosed_type:
        return
    body_end = end - 2 if raw[end - 2 : end] == b"\r\n" else end - (raw[end - 1 : end] == b"\n")
    encoding = _TRANSFER_ENCODING.search(header)
    label = encoding.group(1).decode("ascii", "replace") if encoding else ""
    data = raw[part.body_start : max(part.body_start, body_end)]
    content_type = enclosed_type.group(1).decode("ascii").lower()
    yield b"", EnclosedMessage(data, label, content_type)


def delimiter_of(text: bytes, boundaries: Container[bytes]) -> tuple[bytes, bool] | None:
    """(boundary, closing) when `text`, a line after its "--" and without its line end, is
    a delimiter of one of `boundaries`: the boundary alone, with blanks after it (transport
    padding), with "--" after it, or followed by a blank and text (RFC 2046 5.1.1: "it is
    sufficient that the boundary appear in its entirety"). Looked up, not searched, so the
    cost does not grow with the number of boundaries. The one rule for the MIME bounds
    (`parsing.mime_shape`) and the repairs."""
    for candidate in (text, text.rstrip(b" \t"), _BLANK.split(text, 1)[0]):
        if candidate in boundaries:
            return candidate, False
        if candidate.endswith(b"--") and candidate[:-2] in boundaries:
            return candidate[:-2], True
    return None


def _delimiter(line: bytes, boundaries: dict[bytes, bytes]) -> tuple[bytes, bool] | None:
    return delimiter_of(line[2:].rstrip(b"\r\n"), boundaries)


def _starts_delimiter(lines: list[bytes], index: int, boundaries: dict[bytes, bytes]) -> bool:
    return index < len(lines) and _delimiter(lines[index], boundaries) is not None


def _delimiter_line(line: bytes, boundary: bytes, closing: bool) -> bytes:
    return b"--" + boundary + (b"--" if closing else b"") + _line_end(line)


def _line_end(line: bytes) -> bytes:
    return line[len(line.rstrip(b"\r\n")) :] or b"\r\n"
