"""Raw message bytes -> a plain, frozen ``ParsedMail`` value.

Everything that arrives on port 25 goes through :func:`parse_message`, so it must never
raise: whatever cannot be decoded is replaced and noted in ``ParsedMail.defects``. No Flask,
no database, no HTML sanitising here (see ``sanitize.py``).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import errors, message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from html import escape as html_escape
from typing import Any

from mxsmtp_web.mail import addresses, charsets, mime_scan, tnef, transfer
from mxsmtp_web.mail.transfer import Decoded

#: Defects listed per message at most.
MAX_DEFECTS = 100
#: Deeper MIME nesting than this is not walked (real mail rarely passes 5 levels).
MAX_MIME_DEPTH = 40

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]+")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MESSAGE_ID = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class ParsedPart:
    """One attachment or inline non-body part; ``data`` is the exact decoded bytes, or the
    undecoded bytes when `defects` says they could not be decoded."""

    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str
    data: bytes
    defects: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ParsedMail:
    """What the rest of the app needs from one message; every string is valid Unicode."""

    headers: tuple[tuple[str, str], ...]
    subject: str
    from_: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str | None
    html: str | None
    attachments: tuple[ParsedPart, ...]
    defects: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """The first header field called `name` (case-insensitive), decoded; else None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


@dataclass
class _Walk:
    """Mutable state while walking one MIME tree. A mail client shows every inline text part
    of a multipart/mixed in its place, so the body is kept as fragments; inline images met
    between two HTML fragments are waiting in `images_between` to be placed there."""

    defects: list[str] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    attachments: list[ParsedPart] = field(default_factory=list)
    tnef_bodies: list[tnef.Winmail] = field(default_factory=list)
    images_between: list[int] = field(default_factory=list)
    named_text: str | None = None  # an inline text/plain file: the body if there is no other
    raw: bytes = b""
    root: Message | None = None
    _enclosed: list[mime_scan.EnclosedMessage] | None = None

    def next_enclosed(self) -> mime_scan.EnclosedMessage | None:
        """The next message/* part's bytes as received (read from `raw` on first use)."""
        if self._enclosed is None:
            self._enclosed = mime_scan.enclosed_messages(self.raw)[::-1]
        return self._enclosed.pop() if self._enclosed else None

    def note(self, defect: str) -> None:
        """Record `defect` once; at most MAX_DEFECTS of them (a header of 15,000 broken
        encoded words must not make a list of 15,000)."""
        defect = _repair(defect)
        if defect in self.defects or len(self.defects) > MAX_DEFECTS:
            return
        if len(self.defects) == MAX_DEFECTS:
            defect = f"more than {MAX_DEFECTS} defects; the rest are not listed"
        self.defects.append(defect)

    @property
    def text(self) -> str | None:
        return _join_text(self.text_parts) if self.text_parts else None

    @property
    def html(self) -> str | None:
        return "".join(self.html_parts) if self.html_parts else None


def parse_message(raw: bytes) -> ParsedMail:
    """Parse one message as received. Never raises: undecodable input is noted in ``defects``."""
    try:
        return _parse(bytes(raw))
    except Exception as exc:  # the contract is "never raises"; keep what we can
        return _unparseable(raw, exc)


#: Read as compat32 reads them (plain strings, parameters split by `email.message`'s own
#: tolerant reader): policy.default's strict grammar cuts an unquoted value at its first
#: "=" or blank (``boundary=----=_NextPart_0``, ``name=This is a test.txt``), which makes a
#: multipart unreadable. RFC 2231 continuations are still joined by `get_param`.
MIME_PARAMETER_HEADERS = frozenset({"content-type", "content-disposition"})


class _OneMessagePolicy(EmailPolicy):
    """policy.default, except that a header value is parsed once per message. `email` parses
    a header again on every access, and it reads Content-Type many times per part while it
    parses and while we walk the parts: half the time of a parse. Header objects are
    immutable and a value always parses the same, so handing one out again is safe (also to
    a parse in another thread). `_parse` starts each message with an empty cache, so it never
    holds more than the headers of the messages being parsed."""

    parsed_headers: dict[tuple[str, str], Any] = {}

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if name.lower() in MIME_PARAMETER_HEADERS:
            return _FOLD.sub("", value).strip()
        key = (name, value)
        header = self.parsed_headers.get(key)
        if header is None:
            header = self.parsed_headers[key] = super().header_fetch_parse(name, value)
        return header


_ONE_MESSAGE_POLICY = _OneMessagePolicy()


#: What `email` reports when it misread the MIME skeleton that `mime_scan.repaired` fixes.
_SKELETON_DEFECTS = (
    errors.MissingHeaderBodySeparatorDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
)


def _read(raw: bytes) -> tuple[Message, mime_scan.Repaired | None]:
    """The `email` tree of `raw`; read again from a repaired copy when `email` misread its
    skeleton (obsolete header syntax, delimiter lines with text after the boundary). With
    the boundaries the copy writes differently (see `mime_scan.Repaired`)."""
    _OneMessagePolicy.parsed_headers = {}
    msg = message_from_bytes(raw, policy=_ONE_MESSAGE_POLICY)
    parts = list(msg.walk())
    misread = any(isinstance(d, _SKELETON_DEFECTS) for part in parts for d in part.defects)
    boundaries = [b for part in parts if part.is_multipart() for b in [part.get_boundary()] if b]
    if not misread and not mime_scan.has_delimiter_with_text(raw, boundaries):
        return msg, None
    copy = mime_scan.repaired(raw)
    if copy.data == raw:
        return msg, None
    return message_from_bytes(copy.data, policy=_ONE_MESSAGE_POLICY), copy


def _parse(raw: bytes) -> ParsedMail:
    msg, repaired = _read(raw)
    walk = _Walk(raw=raw, root=msg)
    for line in repaired.skipped if repaired else ():
        walk.note(f"header: a line that is no field was left out: {line[:200]!r}")
    headers = _headers(msg, walk, repaired.renamed if repaired else {})
    _walk_part(msg, walk, depth=0, blocked=frozenset())
    _apply_tnef_bodies(walk)
    if walk.named_text is not None and not walk.text_parts and not walk.html_parts:
        walk.text_parts.append(walk.named_text)
    return ParsedMail(
        headers=headers,
        subject=_first(headers, "subject") or "",
        from_=", ".join(_addresses(msg, headers, "from", walk)),
        to=_addresses(msg, headers, "to", walk),
        cc=_addresses(msg, headers, "cc", walk),
        date=_date(_first(headers, "date")),
        message_id=_compact(_first(headers, "message-id")),
        in_reply_to=next(iter(_message_ids(_first(headers, "in-reply-to"))), None),
        references=_message_ids(_first(headers, "references")),
        text=walk.text,
        html=walk.html,
        attachments=tuple(walk.attachments),
        defects=tuple(walk.defects),
    )


def _unparseable(raw: object, exc: Exception) -> ParsedMail:
    data = bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else b""
    reason = _repair(f"{type(exc).__name__}: {exc}")
    defect = f"message could not be parsed ({reason}); kept as plain text"
    return ParsedMail(
        headers=(),
        subject="",
        from_="",
        to=(),
        cc=(),
        date=None,
        message_id=None,
        in_reply_to=None,
        references=(),
        text=data.decode("utf-8", "replace") if data else None,
        html=None,
        attachments=(),
        defects=(defect,),
    )


# --- text and headers -------------------------------------------------------------------


def _repair(text: str) -> str:
    """Turn bytes the parser smuggled in as surrogates back into text (UTF-8, else cp1252)."""

    def decode_run(match: re.Match[str]) -> str:
        data = match.group().encode("utf-8", "surrogateescape")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start >= len(data) - 3 and error.reason == "unexpected end of data":
                return data[: error.start].decode("utf-8") + "\ufffd"  # a name cut mid-letter
            return data.decode("cp1252", "replace")

    return _LONE_SURROGATES.sub("\ufffd", _ESCAPED_BYTES.sub(decode_run, text))


def _decode_bytes(data: bytes, charset: str | None, walk: _Walk, where: str) -> str:
    """Decode with the declared charset or a known superset; else UTF-8, else Latin-1."""
    label = (charset or "").strip().strip("\"'").lower() or None
    known = True
    for codec in charsets.codecs_for(label):
        try:
            return charsets.decode(data, codec)
        except UnicodeDecodeError:
            continue
        except (LookupError, ValueError):  # unknown or non-text codec, or a NUL in the name
            known = False
    try:
        text, used = data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        text, used = data.decode("latin-1"), "Latin-1"
    if not known:
        walk.note(f"{where}: unknown charset {label!r}; decoded as {used}")
    elif label or used != "UTF-8":
        walk.note(f"{where}: text is not valid {label or 'UTF-8'}; decoded as {used}")
    return text


def _decode_header(value: str, walk: _Walk) -> str:
    """Unfold and decode RFC 2047 encoded words; raw 8-bit bytes are repaired as well."""
    value = _FOLD.sub("", value)
    out: list[str] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if not (pos and between.isspace()):  # RFC 2047 6.2: space between words is dropped
            out.append(_repair(between))
        out.append(_decode_word(match, walk))
        pos = match.end()
    out.append(_repair(value[pos:]))
    return "".join(out)


def _decode_word(match: re.Match[str], walk: _Walk) -> str:
    charset = match.group(1).split("*", 1)[0]  # RFC 2231 section 5 allows "charset*lang"
    payload = match.group(3).encode("utf-8", "surrogateescape")
    try:
        if match.group(2) in "qQ":
            data = binascii.a2b_qp(payload, header=True)
        else:
            payload = payload.rstrip(b"=")  # padding is often wrong; it is restored below
            data = base64.b64decode(payload + b"=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        walk.note(f"header: broken encoded word {_repair(match.group())!r} kept as is")
        return _repair(match.group())
    return _decode_bytes(data, charset, walk, "header")


def _headers(msg: Message, walk: _Walk, renamed: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Every header field, decoded; a boundary as the message declared it."""
    headers = []
    for name, value in msg.raw_items():
        text = str(value)
        for written, declared in renamed.items():
            text = text.replace(f'"{written}"', f'"{declared}"')
        headers.append((_repair(name), _decode_header(text, walk)))
    return tuple(headers)


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _addresses(
    msg: Message, headers: tuple[tuple[str, str], ...], name: str, walk: _Walk
) -> tuple[str, ...]:
    """Each address in display form ('Zoë <z@example.org>'), each once over all fields of
    that name. policy.default's reading is kept when it is sound; where it reports a defect,
    loses an address or meets encoded words or a comment (``addr (Name)``: policy.default
    drops the name), the lenient reader of `addresses` decides."""
    raw_values = [value for key, value in msg.raw_items() if key.lower() == name]
    if not raw_values:
        return ()
    try:
        fields = msg.get_all(name, [])
        strict = [a for h in fields for a in h.addresses]
        sound = not any(h.defects for h in fields)
    except Exception as exc:  # the address parser has raised on odd input before
        walk.note(f"{name} header could not be parsed ({type(exc).__name__})")
        strict, sound = [], False
    if not sound or any("=?" in value or "(" in value for value in raw_values):
        try:
            lenient = addresses.read_mailboxes(raw_values, lambda t: _decode_header(t, walk))
        except Exception as exc:  # the contract is "never raises": keep the strict reading
            walk.note(f"{name} header could not be read leniently ({type(exc).__name__})")
            lenient = []
        if any(mailbox.usable for mailbox in lenient):
            return tuple(dict.fromkeys(_repair(m.display()) for m in lenient if m.usable))
    return tuple(dict.fromkeys(_repair(str(a)) for a in strict))


def _addresses_fallback(values: list[str]) -> tuple[str, ...]:
    try:
        pairs = getaddresses(values)
    except Exception:
        return tuple(v.strip() for v in values if v.strip())
    return tuple(f"{n} <{a}>" if n else a for n, a in pairs if n or a)


def _date(value: str | None) -> datetime | None:
    """A timezone-aware datetime; "-0000" (zone unknown) is read as UTC, per RFC 5322 3.3."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_obsolete_date(value))
    except Exception:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_COMMENT = re.compile(r"\([^()]*\)")
_TIME_COLON = re.compile(r"\s*:\s*")


def _obsolete_date(value: str) -> str:
    """RFC 5322 4.3 (obs-date-time): comments and blanks may stand between the tokens of a
    date, "09(comment):   55  :  06"; `email.utils` reads only the modern form."""
    if "(" in value:
        value = _COMMENT.sub(" ", value)
    return _TIME_COLON.sub(":", value) if ": " in value or " :" in value else value


def _compact(value: str | None) -> str | None:
    compact = "".join((value or "").split())
    return compact or None


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    found = ["".join(m.split()) for m in _MESSAGE_ID.findall(value)]
    return tuple(found) if found else tuple(value.split())


# --- the MIME tree ----------------------------------------------------------------------


#: Multipart subtypes whose parts are not shown one after the other: alternatives of one
#: body (RFC 2046 5.1.4), or a root with the resources it uses (RFC 2387).
_ONE_BODY_SUBTYPES = frozenset({"alternative", "related"})


def _walk_part(part: Message, walk: _Walk, depth: int, blocked: frozenset[str]) -> set[str]:
    """Walk `part`; returns the body types ("text/plain", "text/html") it added to.

    Parts of a multipart/mixed are shown one after the other (RFC 2046 5.1.3), so each text
    or HTML part in one continues the body. The parts of an alternative, or of a related
    root and its resources, are one body: once a part has given, say, the HTML, a later part
    of the same container cannot add HTML again (`blocked`) and is kept as a file."""
    if depth > MAX_MIME_DEPTH:
        walk.note(f"MIME parts nested deeper than {MAX_MIME_DEPTH} levels were skipped")
        return set()
    added: set[str] = set()
    if part.get_content_maintype() == "message":
        walk.attachments.append(_enclosed_message(part, walk))
    elif part.is_multipart():
        one_body = part.get_content_subtype() in _ONE_BODY_SUBTYPES
        for sub in part.get_payload():
            added |= _walk_part(sub, walk, depth + 1, blocked | added if one_body else blocked)
    else:
        added = _leaf(part, walk, blocked)
    for defect in part.defects:
        walk.note(f"{_content_type(part)} part: {_describe(defect)}")
    return added


def _describe(defect: Exception) -> str:
    doc = (type(defect).__doc__ or "").strip().splitlines()
    return str(defect) or (doc[0] if doc else type(defect).__name__)


def _leaf(part: Message, walk: _Walk, blocked: frozenset[str]) -> set[str]:
    ctype = _content_type(part)
    filename = _filename(part, walk)
    disposition = _header_safe(part.get_content_disposition, walk)
    if ctype in TNEF_TYPES or (filename or "").lower() == "winmail.dat":
        _expand_tnef(part, filename, walk)
        return set()
    if part.get_content_maintype() == "multipart":  # no usable boundary: read it as text
        ctype = "text/plain"
    is_body = disposition != "attachment" and filename is None and ctype not in blocked
    if is_body and ctype == "text/plain":
        walk.text_parts.append(_take_uuencoded(_body_text(part, walk), walk))
        return {ctype}
    if is_body and ctype == "text/html":
        _place_images_between(walk)
        walk.html_parts.append(_body_text(part, walk))
        return {ctype}
    _keep_file(part, ctype, filename, disposition, walk)
    return set()


def _keep_file(
    part: Message, ctype: str, filename: str | None, disposition: str | None, walk: _Walk
) -> None:
    """A part that is not the body: an attachment, or an inline image the body may show."""
    filename = filename or _location_name(part, walk)
    value = _part_value(part, ctype, filename, _payload_bytes(part, walk), walk)
    if value.disposition == "inline" and ctype.startswith("image/") and walk.html_parts:
        walk.images_between.append(len(walk.attachments))
    named_text = disposition == "inline" and ctype == "text/plain" and not value.defects
    if named_text and walk.named_text is None:  # undecodable data is never shown as the body
        walk.named_text = _body_text(part, walk)
    walk.attachments.append(value)


def _content_type(part: Message) -> str:
    """Content-Type is read as it came (see MIME_PARAMETER_HEADERS): 8-bit bytes repaired."""
    return _repair(part.get_content_type())


def _part_value(
    part: Message, ctype: str, filename: str | None, decoded: Decoded, walk: _Walk
) -> ParsedPart:
    """Inline when the sender says so or gave it a Content-ID, unless it says attachment."""
    disposition = _header_safe(part.get_content_disposition, walk)
    content_id = _content_id(part, walk)
    inline = disposition == "inline" or (content_id is not None and disposition != "attachment")
    return ParsedPart(
        filename,
        ctype,
        content_id,
        "inline" if inline else "attachment",
        decoded.data,
        tuple(_repair(defect) for defect in decoded.defects),
    )


def _place_images_between(walk: _Walk) -> None:
    """Before a further HTML fragment: an ``<img>`` for each inline image since the last
    one, where a mail client shows it (Apple Mail's text, picture, text). An image without
    a Content-ID is given one (RFC 2392 syntax, in the ``.invalid`` domain), so the body can
    point at it."""
    shown = "".join(walk.html_parts)
    for index in walk.images_between:
        image = walk.attachments[index]
        if image.content_id and f"cid:{image.content_id}" in shown:
            continue  # the HTML before shows it already (a related part's picture)
        if image.content_id is None:
            image = replace(image, content_id=f"part{index + 1}@mxsmtp.invalid")
            walk.attachments[index] = image
        alt = html_escape(image.filename or "", quote=True)
        cid = html_escape(image.content_id or "", quote=True)
        walk.html_parts.append(f'<div><img src="cid:{cid}" alt="{alt}"></div>')
    walk.images_between.clear()


#: A uuencoded file inside a text body, as pre-MIME mailers and some gateways still send
#: it: "begin MODE NAME", lines of uuencode, "end".
MAX_UUENCODED_FILES = 100  # like the MIME parts limit: a body cannot become a million files
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\n]*)\n", re.M)
_UU_END = re.compile(r"^end[ \t]*(?:\n|$)", re.M)


def _take_uuencoded(text: str, walk: _Walk) -> str:
    """`text` without its uuencoded files, which become attachments. Linear in the text:
    each search starts where the previous block ended."""
    if "begin " not in text:
        return text
    kept, pos, found = [], 0, 0
    while begin := _UU_BEGIN.search(text, pos):
        end = _UU_END.search(text, begin.end())
        if end is None:
            break
        if found == MAX_UUENCODED_FILES:
            walk.note(f"more than {MAX_UUENCODED_FILES} uuencoded files; the rest kept as text")
            break
        found += 1
        data = _uudecode(text[begin.end() : end.start()])
        if data is not None:
            name = _CONTROL_CHARACTERS.sub("_", begin.group(1).strip()) or "file"
            ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
            walk.attachments.append(ParsedPart(name, ctype, None, "attachment", data))
            kept.append(text[pos : begin.start()])
        else:
            kept.append(text[pos : end.end()])
        pos = end.end()
    return "".join(kept) + text[pos:]


def _uudecode(lines: str) -> bytes | None:
    """The bytes of a uuencoded block; None when it is no uuencode (then it stays text).
    A line longer than its length character says is cut, as the `uu` module did."""
    out = bytearray()
    for line in lines.splitlines():
        if not line.strip() or line == "`":
            continue
        try:
            encoded = line.encode("ascii")
        except UnicodeEncodeError:
            return None
        try:
            out += binascii.a2b_uu(encoded)
        except binascii.Error:
            length = (((encoded[0] - 32) & 63) * 4 + 5) // 3
            try:
                out += binascii.a2b_uu(encoded[:length])
            except binascii.Error:
                return None
    return bytes(out)


def _join_text(fragments: list[str]) -> str:
    """Text fragments one after the other, each starting on a line of its own."""
    out = fragments[0]
    for fragment in fragments[1:]:
        out += fragment if out.endswith("\n") or not out else "\n" + fragment
    return out


def _header_safe(getter: Callable[[], object], walk: _Walk) -> str | None:
    """Call a header accessor that the policy's header parser could make raise."""
    try:
        value = getter()
    except Exception as exc:
        walk.note(f"a MIME header could not be parsed ({type(exc).__name__})")
        return None
    return _repair(str(value)) if value is not None else None


def _filename(part: Message, walk: _Walk) -> str | None:
    """``filename``/``name`` (RFC 2231 joined by `get_param`; RFC 2047 inside a quoted name,
    which RFC 2047 forbids and every client writes, decoded here), else a ``file``
    parameter. Control characters (a decoded line break) become "_"."""
    name = _header_safe(part.get_filename, walk) or _header_safe(
        lambda: part.get_param("file"), walk
    )
    if name and "=?" in name:
        name = _decode_header(name, walk)
    return _CONTROL_CHARACTERS.sub("_", name) if name else None


_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")


def _location_name(part: Message, walk: _Walk) -> str | None:
    """The last segment of a Content-Location (RFC 2557), which MHTML and MMS mail give in
    place of a file name. Only a part that is kept as a file is named so: MMS gateways give
    their text parts one too, and those are the body."""
    location = _header_safe(lambda: part.get("content-location"), walk) or ""
    name = location.split("?")[0].rstrip("/").rpartition("/")[2].strip()
    return _CONTROL_CHARACTERS.sub("_", name) if name else None


def _content_id(part: Message, walk: _Walk) -> str | None:
    value = _header_safe(lambda: part.get("content-id"), walk)
    content_id = "".join((value or "").split()).strip("<>")
    return content_id or None


def _payload_bytes(part: Message, walk: _Walk) -> Decoded:
    """The transfer-decoded bytes of a leaf part (see `transfer`); what went wrong in the
    decoding is noted on the message too."""
    encoded = _raw_payload(part)
    decoded = transfer.decode(part.get("content-transfer-encoding"), encoded)
    if decoded is None:
        decoded = _email_decoded(part, encoded)
    for defect in decoded.defects:
        walk.note(f"{_content_type(part)} part: {defect}")
    return decoded


def _raw_payload(part: Message) -> bytes:
    """The bytes of a leaf part's body as received. `Message.get_payload()` without decoding
    re-decodes 8-bit bytes with the part's charset and replaces what does not fit, so the
    payload the parser stored is read directly (tests/test_parsing.py pins this)."""
    payload = part._payload  # private, see the docstring
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _email_decoded(part: Message, encoded: bytes) -> Decoded:
    """uuencode, as `email` reads it (it knows the variants); undecoded bytes if it fails."""
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        return Decoded(encoded, (f"could not be decoded ({type(exc).__name__}); kept as is",))
    return Decoded(data) if isinstance(data, bytes) else Decoded(encoded)


def _body_text(part: Message, walk: _Walk) -> str:
    ctype = _content_type(part)
    charset = _header_safe(part.get_content_charset, walk)
    data = _payload_bytes(part, walk).data
    if _mislabelled_base64(part, charset):
        walk.note(f"{ctype} body: labelled base64 but written as text; shown undecoded")
        data = _raw_payload(part)
    text = _decode_bytes(data, charset, walk, f"{ctype} body")
    return text.replace("\r\n", "\n")


def _mislabelled_base64(part: Message, charset: str | None) -> bool:
    """A text part labelled base64 but written as text (enmime's "Malformed Base64"): its
    body is full of what base64 never holds (blanks inside lines, punctuation), and it
    reads as text in its charset. Damaged base64 with a stray character stays decoded."""
    if transfer.transfer_encoding(part.get("content-transfer-encoding")) != "base64":
        return False
    raw = _raw_payload(part)
    sample = b"\n".join(line.strip() for line in raw[:4096].splitlines())  # RFC 2045 6.8
    foreign = len(_NOT_BASE64_TEXT.sub(b"", sample))
    return foreign * 50 > min(len(raw), 4096) and _is_text(raw, charset)


_NOT_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\r\n]+")


def _is_text(data: bytes, charset: str | None) -> bool:
    for codec in charsets.codecs_for(charset) or ["utf-8"]:
        try:
            charsets.decode(data, codec)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
        return True
    return False


def _enclosed_message(part: Message, walk: _Walk) -> ParsedPart:
    """A message/* part kept whole; its data is the enclosed message as it was received."""
    payload = part.get_payload()
    received = walk.next_enclosed() if part is not walk.root else None
    if received is not None and received.content_type != _content_type(part):
        received = None  # the scan and `email` read the skeleton differently here
    if isinstance(payload, list):
        data = _received_message(received, payload, walk)
    else:
        data = _payload_bytes(part, walk).data
    ctype = _content_type(part)
    default_name = "message.eml" if ctype in ("message/rfc822", "message/global") else None
    filename = _filename(part, walk) or default_name
    return _part_value(part, ctype, filename, Decoded(data), walk)


def _received_message(
    received: mime_scan.EnclosedMessage | None, payload: list[Message], walk: _Walk
) -> bytes:
    """The bytes `mime_scan` found for this part, once they are checked to be the message
    `email` parsed there (same first field); else the message `email` parsed, regenerated."""
    if received is not None:
        decoded = transfer.decode(received.transfer_encoding, received.data)
        data = decoded.data if decoded is not None else received.data
        names = [name.lower() for sub in payload for name in sub.keys()[:1]]
        first = re.match(rb"(?:From .*\n)?([\x21-\x39\x3b-\x7e]+)", data)
        if first and [first.group(1).decode("ascii").lower()] == names[:1]:
            return data
    return b"".join(_message_bytes(sub, walk) for sub in payload)


def _message_bytes(msg: Message, walk: _Walk) -> bytes:
    """Regenerate an enclosed message with CRLF and without refolding its headers."""
    try:
        return msg.as_bytes(policy=msg.policy.clone(max_line_length=0, linesep="\r\n"))
    except Exception as exc:
        walk.note(f"an enclosed message could not be regenerated ({type(exc).__name__})")
        return str(msg).encode("utf-8", "surrogateescape")


# --- TNEF (winmail.dat) -----------------------------------------------------------------


def _expand_tnef(part: Message, filename: str | None, walk: _Walk) -> None:
    """Replace winmail.dat with what it carries; keep it as is if it cannot be decoded."""
    data = _payload_bytes(part, walk).data
    winmail = tnef.read_winmail(data)
    for defect in winmail.defects:
        walk.note(f"{defect}; kept as is" if winmail.empty else defect)
    if winmail.empty:
        name = filename or "winmail.dat"
        walk.attachments.append(ParsedPart(name, "application/ms-tnef", None, "attachment", data))
        return
    walk.attachments.extend(
        ParsedPart(f.name, f.content_type, None, "attachment", f.data) for f in winmail.files
    )
    walk.tnef_bodies.append(winmail)


def _apply_tnef_bodies(walk: _Walk) -> None:
    """A TNEF body fills in what the MIME tree lacks: Outlook sends a plain-text stub beside
    winmail.dat, and the HTML inside it is the real body."""
    for winmail in walk.tnef_bodies:
        html = _tnef_text(winmail.html, winmail.codepage, walk)
        text = _tnef_text(winmail.text, winmail.codepage, walk)
        if html is not None and not walk.html_parts:
            walk.html_parts.append(html)
        if text is not None and not walk.text_parts:
            walk.text_parts.append(text)
        if winmail.rtf is not None and not walk.text_parts and not walk.html_parts:
            walk.text_parts.extend([winmail.rtf_text] if winmail.rtf_text else [])
            walk.attachments.append(
                ParsedPart("body.rtf", "application/rtf", None, "attachment", winmail.rtf)
            )


def _tnef_text(value: str | bytes | None, codepage: str | None, walk: _Walk) -> str | None:
    if isinstance(value, bytes):
        value = _decode_bytes(value, codepage, walk, "winmail.dat body")
    return _repair(value).replace("\r\n", "\n") if value is not None else None


def parse_headers(raw: bytes) -> ParsedMail:
    """A first look at the header block only (subject, addresses, date, ids), at a tenth of
    the cost of `parse_message` (compat32 headers, no MIME walk): enough to store and list a
    message before its body is parsed; `parse_message` later gives the definitive values.
    Bodies and attachments are empty. Never raises."""
    try:
        head = bytes(raw[: header_block_size(raw)])  # not the body: it may be megabytes
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
        walk = _Walk()
        headers = tuple((_repair(k), _decode_header(str(v), walk)) for k, v in msg.items())
        return ParsedMail(
            headers=headers,
            subject=_first(headers, "subject") or "",
            from_=", ".join(_plain_addresses(headers, "from")),
            to=_plain_addresses(headers, "to"),
            cc=_plain_addresses(headers, "cc"),
            date=_date(_first(headers, "date")),
            message_id=_compact(_first(headers, "message-id")),
            in_reply_to=next(iter(_message_ids(_first(headers, "in-reply-to"))), None),
            references=_message_ids(_first(headers, "references")),
            text=None,
            html=None,
            attachments=(),
            defects=tuple(walk.defects),
        )
    except Exception as exc:
        return _unparseable(b"", exc)


def _plain_addresses(headers: tuple[tuple[str, str], ...], name: str) -> tuple[str, ...]:
    return _addresses_fallback([value for key, value in headers if key.lower() == name])


DASH_PROBES = 16
_BOUNDARY_VALUE = re.compile(rb'\s*=\s*(?:"([^"\r\n]+)"|([^\s;"]+))')  # any length


def header_block_size(raw: bytes) -> int:
    """Bytes up to and including the blank line that ends the header block (all of `raw` if
    there is none). Lines may end in a bare LF, as `email` reads them."""
    end = raw.find(b"\r\n\r\n")
    bare = raw.find(b"\n\n", 0, end + 1 if end >= 0 else len(raw))
    if bare >= 0:
        return bare + 2
    return len(raw) if end < 0 else end + 4


def mime_shape(raw: bytes) -> tuple[int, int]:
    """(parts, depth) of the MIME tree, from the boundary lines alone: linear in the size of
    the message with plain substring searches (no regex over the body), so bounds can be
    checked before any real parsing. Depth counts multipart levels; parts counts body parts
    of all of them. Boundaries are read where `email` reads them, in the header block of the
    message and of each part, so a body is searched only for lines that start with "--"."""
    boundaries = _boundaries(raw[: header_block_size(raw)])
    if not boundaries:
        return (1, 0)
    stack: list[bytes] = []
    parts = depth = 0
    for line, begin, limit in _delimiter_lines(raw):
        found = mime_scan.delimiter_of(line, boundaries)
        if found is None:
            continue
        boundary, closing = found
        if boundary in stack:
            del stack[stack.index(boundary) + 1 :]
        else:
            stack.append(boundary)
        if closing:
            stack.pop()
            continue
        parts += 1
        depth = max(depth, len(stack))
        boundaries |= _boundaries(_part_header(raw, begin, limit))
    return (max(parts, 1), depth)


def _boundaries(header: bytes) -> set[bytes]:
    lowered = header.lower()
    found: set[bytes] = set()
    start = lowered.find(b"boundary")
    while start >= 0:
        match = _BOUNDARY_VALUE.match(header, start + 8)
        if match:  # blanks at the end are stripped, as `email` strips them (get_boundary)
            found.add((match.group(1) or match.group(2)).rstrip(b" \t"))
        start = lowered.find(b"boundary", start + 8)
    return found


def _part_header(raw: bytes, begin: int, limit: int) -> bytes:
    """The header block of the part whose lines start at `begin`: up to its first empty line,
    and never past `limit` (the next line that starts with "--"), so that every byte of the
    message is looked at for headers once at most."""
    end = raw.find(b"\n\r\n", begin - 1, limit)
    end = end if end >= 0 else limit
    bare = raw.find(b"\n\n", begin - 1, end)  # bare LF lines: only where CRLF did not end it
    return raw[begin : bare if bare >= 0 else end]


def _next_dash_line(raw: bytes, start: int) -> int:
    """`raw.find(b"\\n--", start)`, faster: a search for one byte runs at memory speed, one for
    "\\n--" stops at every line end. Most bodies (base64 above all) have few dashes: the
    next few dashes are tried one by one, and only then the general search takes over, so
    a message full of dashes costs no more than before."""
    dash = start
    for _ in range(DASH_PROBES):
        dash = raw.find(b"-", dash + 1)
        if dash < 0:
            return -1
        if raw[dash - 1 : dash + 2] == b"\n--":
            return dash - 1
    return raw.find(b"\n--", dash)


def _delimiter_lines(raw: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each line that starts with "--", without the dashes and trailing blanks; with where
    the next line begins and where the next such line begins (or the end)."""
    start = 0 if raw.startswith(b"--") else _next_dash_line(raw, 0)
    while start >= 0:
        begin = start + 2 if start == 0 and raw.startswith(b"--") else start + 3
        end = raw.find(b"\n", begin)
        line = raw[begin : end if end >= 0 else len(raw)]
        following = _next_dash_line(raw, begin)
        next_line = end + 1 if end >= 0 else len(raw)
        yield line.rstrip(b"\r \t"), next_line, following if following >= 0 else len(raw)
        start = following
