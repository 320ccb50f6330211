"""Content-Transfer-Encoding, read the way tolerant mail parsers read it.

`email` decodes a part only when its Content-Transfer-Encoding is spelt exactly
(``base64 `` with a trailing blank is kept encoded), and hands back the *encoded* text when
base64 has an impossible length. Both put encoded characters where the application expects
a file. Here the label is read case- and blank-insensitively, base64 is decoded as far as it
goes (characters outside the alphabet skipped, padded chunks joined, a dangling last
character dropped), and whatever still cannot be decoded is returned as its undecoded bytes
with a defect that says so, never silently as the content.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

#: RFC 2045 6.1 names, and what senders write for them.
_LABELS = {
    "base64": "base64",
    "base-64": "base64",
    "quoted-printable": "quoted-printable",
    "quotedprintable": "quoted-printable",
    "quoted_printable": "quoted-printable",
    "qp": "quoted-printable",
    "7bit": "identity",
    "8bit": "identity",
    "7-bit": "identity",
    "8-bit": "identity",
    "binary": "identity",
    "": "identity",
    "x-uuencode": "uuencode",
    "uuencode": "uuencode",
    "x-uue": "uuencode",
    "uue": "uuencode",
}

_BLANKS = b" \t\r\n\f\v"
_COMMENT = re.compile(r"\([^()]*\)")  # RFC 2045 5.1: comments are allowed in the field
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]+")
_PADDING = re.compile(rb"=+")
_BASE64_RUNS = re.compile(rb"[A-Za-z0-9+/=]+")  # removed, it leaves what base64 never holds
_STRAY_CHARACTERS = 2


@dataclass(frozen=True)
class Decoded:
    """The decoded bytes of one part, and what was wrong with its encoding (empty: nothing)."""

    data: bytes
    defects: tuple[str, ...] = ()


def transfer_encoding(label: object) -> str:
    """The encoding a Content-Transfer-Encoding value means: ``base64``,
    ``quoted-printable``, ``uuencode``, ``identity``, or the cleaned label when unknown."""
    text = _COMMENT.sub(" ", str(label or "")).strip().strip("\"'").split(";")[0].strip().lower()
    return _LABELS.get(text, text)


def decode_base64(encoded: bytes) -> Decoded:
    """Base64 decoded as far as it goes. Well-formed input takes one pass in C."""
    compact = encoded.translate(None, _BLANKS)
    body = compact.rstrip(b"=")
    if b"=" not in body and not len(body) % 4 == 1:
        try:
            return Decoded(base64.b64decode(body + b"=" * (-len(body) % 4), validate=True))
        except binascii.Error:
            pass  # characters outside the alphabet: the careful path below
    return _decode_damaged_base64(encoded)


def _decode_damaged_base64(encoded: bytes) -> Decoded:
    """Base64 as far as it goes. A line that holds what base64 never does (blanks between
    words, more than a stray character or two) is text, not data: a list footer, an
    epilogue after a broken boundary, a signature. It is skipped whole, rather than its
    letters decoded into bytes at the end of the file; a stray character in a line of
    base64 is skipped alone. When nothing is left, the part is no base64 at all: it is
    kept undecoded."""
    defects = []
    lines = [line.strip(_BLANKS) for line in encoded.splitlines()]
    kept = [_base64_line(line) for line in lines]
    if any(line is None for line in kept):
        defects.append("base64 held lines that are not base64; they were skipped")
    if any(line is not None and line != lines[i] for i, line in enumerate(kept)):
        defects.append("base64 held characters outside its alphabet; they were skipped")
    cleaned = b"".join(line for line in kept if line)
    if not cleaned and encoded.strip(_BLANKS):
        return Decoded(encoded, ("not base64 at all; kept undecoded",))
    chunks = [chunk for chunk in _PADDING.split(cleaned) if chunk]
    if len(chunks) > 1:
        defects.append("base64 held padding before its end; the pieces were joined")
    out = bytearray()
    for chunk in chunks:
        if len(chunk) % 4 == 1:  # no byte ends in the last character: it is lost
            chunk = chunk[:-1]
            defects.append("base64 had an impossible length; its last character was dropped")
        out += base64.b64decode(chunk + b"=" * (-len(chunk) % 4))
    return Decoded(bytes(out), tuple(dict.fromkeys(defects)))


def _base64_line(line: bytes) -> bytes | None:
    """The base64 of one line: as it is, without a stray character or two, or None."""
    foreign = len(_BASE64_RUNS.sub(b"", line))
    if not foreign:
        return line
    if foreign > _STRAY_CHARACTERS or b" " in line or b"\t" in line:
        return None
    return _NOT_BASE64.sub(b"", line)


def decode_quoted_printable(encoded: bytes) -> Decoded:
    """RFC 2045 6.7; binascii keeps a malformed ``=XY`` as it is, as tolerant readers do."""
    return Decoded(binascii.a2b_qp(encoded))


def decode(label: object, encoded: bytes) -> Decoded | None:
    """`encoded` decoded per the Content-Transfer-Encoding `label`; None for uuencode
    (left to `email`, which reads its variants). An unknown label keeps the bytes as they
    are, with a defect."""
    encoding = transfer_encoding(label)
    if encoding == "identity":
        return Decoded(encoded)
    if encoding == "base64":
        return decode_base64(encoded)
    if encoding == "quoted-printable":
        return decode_quoted_printable(encoded)
    if encoding == "uuencode":
        return None
    return Decoded(encoded, (f"unknown transfer encoding {encoding!r}; kept undecoded",))
