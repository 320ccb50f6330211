"""Bounces: which delivery failed, for whom and why, from whatever report the MTA sent back.

Why a module of its own: RFC 3464 delivery status notifications are the standard, but a good
part of the bounces in the wild are plain text in each MTA's own words (qmail, Exim, old
Sendmail, Exchange, Yahoo, Japanese carriers …), and the DSNs that exist are often sloppy
(``Field :``, folding without indent, no report-type, fields in a text part). So a message is
read in four steps, cheapest first, because :func:`find_bounce` runs on every message:

1. **A look at the headers** (:func:`bounce_signal`): a null or daemon sender, a bounce
   subject, ``multipart/report``, ``X-Failed-Recipients``. Ordinary mail stops here.
2. **RFC 3464 fields, read tolerantly** by our own reader (any case, space before the colon,
   continuation lines with or without indent, blocks not separated by blank lines, a
   delivery-status part that is base64 or that ``email`` did not split into blocks).
3. **flufl.bounce**, Mailman's bounce library, for the failed recipient of the plain-text
   formats it knows (qmail, Exim, Postfix, Sendmail, Microsoft, Exchange, Yahoo, AOL,
   SimpleMatch, SimpleWarning …). It only names recipients, so
4. **our own reading of the notification text** gives the status and the diagnostic (and the
   recipient when nothing else did).

The status is what the message states, in this order:

- an RFC 3463 enhanced code (``5.1.1``): the Status field of a DSN, except that a field which
  only gives the class (``5.0.0``) yields to the remote server's own code in the diagnostic
  (``550 5.1.1 User unknown``); in a text bounce the server answer quoted for the recipient;
- only a basic SMTP reply code (``550 User unknown``): its class with detail 0 (``5.0.0``,
  RFC 3463 "other undefined status"), the status Postfix and Sendmail write into their own
  DSNs for such an answer;
- no code at all: a status read from the report's words, per RFC 3463, when it states no
  code. A table of a few dozen phrases (:data:`_REASON_PHRASES`, the reasons after those of
  sisimai, which maps them to these codes) gives the code of the reason the report names:
  "User unknown", "(000C05A6) Unknown Recipient", "not listed in Domino Directory" ->
  ``5.1.1``; "Domain does not exist" -> ``5.1.2``; "mailbox is full" -> ``5.2.2``; "message
  too large" -> ``5.3.4``; "account is disabled" -> ``5.2.1``; spam, relaying, filters ->
  ``5.7.1``; "connection timed out" -> ``4.4.1``; "delivery time expired" -> ``4.4.7`` …; the
  first entry that matches wins, the more specific come first. Only the report's own words
  are read: the diagnostic, else the lines of the recipient, else the rest of the
  notification, never the message it returns (also where the report does not announce it:
  its header fields end the report) nor the lines that quote it (``Subject:``, ``>``). A
  class the report states in words ("This is a permanent error", "will retry") sets the
  class of that code (``4.2.2`` for a full mailbox that will be retried);
- no code and no reason, but the class in words ("This is a permanent error", "I'm not going
  to try again" -> ``5.0.0``; "will retry", "delayed" -> ``4.0.0``);
- else None. A stated code always wins over the words: ``552 5.3.4 Message size exceeds
  fixed limit, mailbox is full`` is ``5.3.4``, and ``552 Mailbox is full`` only ``5.0.0``.

The diagnostic keeps the server's words, so nothing of what the report said is lost; where a
report has none, it is the line that gave the status.

Delays count as bounces (``kind`` ``bounce``, status ``4.x.x``, reason says ``delayed``): a
DSN with ``Action: delayed`` or a "will retry" warning is a delivery report about mail we
sent, which is what the ``bounce`` kind means here (it was so before flufl.bounce came in),
and the status class tells a temporary failure from a permanent one. A DSN that only reports
success (``delivered``, ``relayed``, ``expanded``) is no bounce, nor are feedback reports
(ARF) and read receipts (MDN), nor out-of-office replies.

Pure functions of a ``ParsedMail`` and the raw bytes: no Flask, no database, never raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses
from html import unescape

from mxsmtp_web.mail import charsets
from mxsmtp_web.mail.parsing import ParsedMail

log = logging.getLogger(__name__)

# flufl.bounce logs each detector it runs at INFO and each exception at ERROR before it
# re-raises it; we catch those exceptions (see _flufl_failures), so its log is only noise.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

try:  # the library is a dependency, but a broken install must not stop mail
    from flufl.bounce import all_failures as _all_failures
except Exception:  # pragma: no cover - only without the dependency
    _all_failures = None

#: Only this much of a suspected bounce is read: the report comes first, the returned
#: message (which may be large) after it.
MAX_SCANNED_BYTES = 256 * 1024
#: flufl.bounce reads only this much of a message, each line cut to FLUFL_LINE_BYTES.
FLUFL_SCANNED_BYTES = 64 * 1024
FLUFL_LINE_BYTES = 256
#: Of the notification text, only this much is searched for a status.
MAX_TEXT_CHARS = 30_000
MAX_DIAGNOSTIC_CHARS = 500
#: Lines of the text are cut to this length: the line-by-line patterns stay linear.
MAX_LINE_CHARS = 1000
#: A label ("For the following reason:") is short; longer lines are not tested for one.
MAX_LABEL_CHARS = 200
#: Of a From or Subject, only this much is looked at (a bounce's are short).
MAX_HEADER_CHARS = 300
#: A status found more than this many lines after the recipient's line is not its status.
STATUS_WINDOW_LINES = 25


@dataclass(frozen=True)
class BounceInfo:
    """The first failed recipient of a bounce, as the MTA reported it: `recipient` without
    its ``rfc822;`` type, `status` like ``5.1.1`` (see the module docstring for how it is
    derived), `diagnostic` the remote server's answer without its ``smtp;`` type. Any of them
    may be None."""

    recipient: str | None
    status: str | None
    diagnostic: str | None


@dataclass(frozen=True)
class Bounce:
    """A recognised bounce: `reason` says which signal decided, for logs and people."""

    reason: str
    info: BounceInfo


def find_bounce(parsed: ParsedMail, raw: bytes) -> Bounce | None:
    """The bounce this message is, or None. Never raises."""
    try:
        signal = bounce_signal(parsed)
        return _read_bounce(parsed, raw, signal) if signal else None
    except Exception:  # the contract is "never raises": then it is no bounce we can read
        log.debug("reading a suspected bounce failed", exc_info=True)
        return None


# --- 1. the cheap look -------------------------------------------------------------------

_DAEMON = re.compile(
    r"mailer[-_. ]?daemon|mail[-_. ]?daemon|\bpostmaster\b|\bpost_master\b|"
    r"mail[-_. ]?delivery[-_. ]?(?:system|subsystem|service)|\bmdaemon\b|\bmmdf\b|"
    r"mail[-_. ]?deliver[-_. ]system|\bmail administrator\b|\bndr administrator\b",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not (?:be )?delivered|could ?n[o']t be delivered|"
    r"delivery (?:status|fail|has failed|problem|notification|report|error|delayed)|"
    r"(?:mail|message) delivery (?:failed|has failed|failure)|failure notice|"
    r"failed delivery|delivery failure|returned mail|returning message|mail failed|"
    r"mail system error|mail failure|delayed mail|still being retried|"
    r"warning: could not send|error sending your mail|non remis|unzustellbar|"
    r"nicht zustellbar|unable to deliver|rejected|\bbounced?\b|"
    r"メールエラー|配信できません|配信不能|未配達|届きません",
    re.IGNORECASE,
)
#: multipart/report types that are not about delivery.
_NOT_DELIVERY_REPORTS = frozenset({"feedback-report", "disposition-notification"})


def bounce_signal(parsed: ParsedMail) -> str | None:
    """Which header makes this message worth reading as a bounce, or None (most mail)."""
    content_type = (parsed.header("content-type") or "").lower().lstrip()
    if content_type.startswith("multipart/report"):
        if _report_type(content_type) not in _NOT_DELIVERY_REPORTS:
            return "multipart/report"
    if content_type.startswith(tuple(_DSN_TYPES)) or any(
        part.content_type in _DSN_TYPES for part in parsed.attachments
    ):
        return "delivery-status part"
    if parsed.header("x-failed-recipients"):
        return "X-Failed-Recipients"
    if _null_sender(parsed):
        return "null sender"
    if _DAEMON.search(parsed.from_[:MAX_HEADER_CHARS]):
        return "daemon sender"
    if _BOUNCE_SUBJECT.search(parsed.subject[:MAX_HEADER_CHARS]):
        return "subject"
    return None


def _report_type(content_type: str) -> str:
    match = re.search(r"report-type\s*=\s*\"?([\w-]+)", content_type, re.IGNORECASE)
    return match.group(1).lower() if match else ""


def _null_sender(parsed: ParsedMail) -> bool:
    """Return-Path ``<>`` (RFC 5321 4.5.5) or a From of ``<>``; a missing From is no sign."""
    return (parsed.header("return-path") or "").strip() == "<>" or (
        parsed.from_.strip().endswith("<>")
    )


# --- the verdict ---------------------------------------------------------------------------


def _read_bounce(parsed: ParsedMail, raw: bytes, signal: str) -> Bounce | None:
    """The bounce, from the reader that finds it first. A subject alone is a weak signal
    ("Bounce back into spring", "Re: Undelivered parcel"): such a message is read only when
    it is no answer by a person and returns a message, as a bounce does."""
    weak = signal == "subject"
    if weak and _answer_by_a_person(parsed):
        return None
    message = _message(raw)
    if message is None or _is_other_report(message) or (weak and not _returns_a_message(message)):
        return None
    report = _delivery_report(message)
    if report is not None and report.only_success:
        return None
    text = _notification_text(message)
    info = report.info if report is not None else BounceInfo(None, None, None)
    reason = report.reason if report is not None else ""
    if info.recipient is None:
        recipient, found_by = _failed_recipient(parsed, raw, text)
        reason = reason or found_by or _mail_system_bounce(parsed, message, text, weak)
        if recipient is None and reason:
            recipient = _recipient_in_text(parsed, message, text)
        info = BounceInfo(recipient, info.status, info.diagnostic)
    if not reason:
        return None
    info = _with_status(info, text)
    if (info.status or "").startswith("4") and "delayed" not in reason:
        reason = f"{reason} (transient failure)"
    return Bounce(reason, info)


_ANSWER_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|fw|fwd|wg|tr|rv|doorst)\s*:", re.IGNORECASE)


def _answer_by_a_person(parsed: ParsedMail) -> bool:
    """A reply or forward, or an auto-reply (RFC 3834), whose subject quotes a bounce's."""
    submitted = (parsed.header("auto-submitted") or "").lower()
    return bool(_ANSWER_SUBJECT.match(parsed.subject)) or "auto-replied" in submitted


def _message(raw: bytes, size: int = MAX_SCANNED_BYTES, line: int = 0) -> Message | None:
    """The message as ``email`` reads it loosely (compat32 keeps odd headers as they are),
    with every line end a bare LF, at most `size` bytes of it and, if `line`, each line cut
    to that length."""
    data = re.sub(rb"\r\n?", b"\n", bytes(raw[:size]))
    if line:
        data = re.sub(rb"([^\n]{%d})[^\n]+" % line, rb"\1", data)
    try:
        return message_from_bytes(data, policy=policy.compat32)
    except Exception:
        return None


def _mail_system_bounce(parsed: ParsedMail, message: Message, text: str, weak: bool) -> str:
    """Why a message in which no reader found a failed recipient is still a bounce: a report
    of type delivery-status; a message from the mail system (null or daemon sender) whose
    subject or text says that delivery failed; with only a bounce subject, a text that says
    so and the returned message. "" when it is not."""
    if _content_type(message) == "multipart/report":
        if _report_type(str(message.get("content-type", ""))) == "delivery-status":
            return "delivery status notification"
    failure_words = _FAILURE_WORDS.search(text) is not None
    if _null_sender(parsed) or _DAEMON.search(parsed.from_[:MAX_HEADER_CHARS]):
        if _BOUNCE_SUBJECT.search(parsed.subject[:MAX_HEADER_CHARS]):
            return "bounce subject from the mail system"
        return "failure notice from the mail system" if failure_words else ""
    return "bounce subject, failure notice and returned message" if weak and failure_words else ""


def _is_other_report(message: Message) -> bool:
    """A spam complaint (ARF) or a read receipt (MDN), also when a postmaster sends it."""
    return _report_type(str(message.get("content-type", ""))) in _NOT_DELIVERY_REPORTS


def _returns_a_message(message: Message) -> bool:
    return any(_content_type(part) in _ORIGINAL_TYPES for part in message.walk())


_FAILURE_WORDS = re.compile(
    r"could ?n[o']t be delivered|undeliverable|was not delivered|not be delivered|"
    r"delivery (?:has )?failed|failed permanently|permanent (?:error|failure)|"
    r"unable to deliver|delivery errors|did not reach|user unknown|unknown user|"
    r"no such user|invalid (?:user|recipient|address)|mailbox (?:is )?full",
    re.IGNORECASE,
)


def _content_type(part: Message) -> str:
    """The part's type as written, also when a parameter follows it without a ";"."""
    return part.get_content_type().split()[0].rstrip(";")


# --- 2. RFC 3464 fields ----------------------------------------------------------------------

_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers",
     "message/global-headers", "message/partial", "message/external-body"}
)  # fmt: skip
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELDS = ("original-recipient", "final-recipient", "x-actual-recipient")
_SUCCESS_ACTIONS = ("delivered", "relayed", "expanded")


@dataclass(frozen=True)
class _Report:
    reason: str
    info: BounceInfo
    only_success: bool


def _delivery_report(message: Message) -> _Report | None:
    """The RFC 3464 report in the message: from its delivery-status parts, else from DSN
    fields that an MTA wrote into a text part. None when there are neither."""
    texts = [_dsn_part_text(part) for part in _parts(message) if _is_dsn_part(part)]
    reason = "delivery status notification"
    blocks = [block for text in texts for block in _field_blocks(text)]
    if not any(_recipient_of(block) for block in blocks):
        text_blocks = [
            block
            for part in _parts(message)
            if _is_text(part)
            for block in _field_blocks(_part_text(part))
        ]
        if any(_recipient_of(b) and ("action" in b or "status" in b) for b in text_blocks):
            blocks, reason = text_blocks, "delivery status fields in the text"
    if not texts and reason == "delivery status notification":
        return None
    return _report_of(blocks, reason)


def _report_of(blocks: list[dict[str, str]], reason: str) -> _Report:
    recipients = [block for block in blocks if _recipient_of(block)]
    actions = [_action(block) for block in recipients]
    ranked = sorted(recipients, key=lambda block: _ACTION_RANK.get(_action(block), 3))
    only_success = bool(actions) and all(a.startswith(_SUCCESS_ACTIONS) for a in actions)
    if ranked and _action(ranked[0]).startswith("delayed"):
        reason = f"{reason} (delayed)"
    if not ranked:
        return _Report(reason, BounceInfo(None, None, None), False)
    block = ranked[0]
    diagnostic = _typed_value(block.get("diagnostic-code"))
    status = _refined(_status_code(block.get("status", "")), diagnostic)
    if status is None and _action(block).startswith("delayed"):
        status = "4.0.0"  # RFC 3464 2.3.3: delayed is a transient failure
    return _Report(reason, BounceInfo(_recipient_of(block), status, diagnostic), only_success)


_ACTION_RANK = {"failed": 0, "failure": 0, "error": 0, "delayed": 1}


def _action(block: dict[str, str]) -> str:
    return block.get("action", "").strip().lower()


def _parts(message: Message, depth: int = 0) -> Iterator[Message]:
    """Every part of the report itself: not the returned message, not its headers."""
    content_type = _content_type(message)
    if depth > 0 and content_type in _ORIGINAL_TYPES:
        return
    yield message
    if depth > 8 or content_type in _DSN_TYPES or not message.is_multipart():
        return
    for part in message.get_payload():
        if isinstance(part, Message):
            yield from _parts(part, depth + 1)


def _is_dsn_part(part: Message) -> bool:
    return _content_type(part) in _DSN_TYPES


def _dsn_part_text(part: Message) -> str:
    """The body of a delivery-status part as it was written. ``email`` splits it into one
    header block per recipient; lines it did not take as fields stay in a block's body."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return _part_text(part)
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    text = "\n\n".join(_block_text(block) for block in blocks)
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        carrier = Message()
        carrier["Content-Transfer-Encoding"] = encoding
        carrier.set_payload(text)
        return _decode(carrier.get_payload(decode=True), part.get_content_charset())
    return text


def _block_text(block: Message) -> str:
    fields = "\n".join(f"{name}: {value}" for name, value in block.items())
    body = block.get_payload()
    return f"{fields}\n{body}" if isinstance(body, str) and body.strip() else fields


def _field_blocks(text: str) -> list[dict[str, str]]:
    """``Name: value`` fields grouped into blocks, read as loosely as MTAs write them: space
    before the colon, continuation lines with or without indent, and a new block also where
    a recipient's first field comes again without a blank line before it."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    last = ""
    for line in text[:MAX_TEXT_CHARS].splitlines():
        line = line[:MAX_LINE_CHARS]
        field = _FIELD.match(line) if line[:1] not in (" ", "\t") else None
        if not line.strip():
            block, last = _close(blocks, block), ""
        elif field is not None:
            name = field.group(1).lower()
            if _starts_block(block, name):
                block = _close(blocks, block)
            block[name] = field.group(2).strip()
            last = name
        elif last:  # folded, properly or not
            block[last] = f"{block[last]} {line.strip()}"
    _close(blocks, block)
    return blocks


def _starts_block(block: dict[str, str], name: str) -> bool:
    """A field that begins the next block although no blank line came before it: one this
    block already has, or an Original-Recipient after this recipient's other fields."""
    if name in block:
        return True
    if name != "original-recipient" or "final-recipient" not in block:
        return False
    names = list(block)
    after = names[names.index("final-recipient") + 1 :]
    return any(n in ("action", "status", "diagnostic-code") for n in after)


def _close(blocks: list[dict[str, str]], block: dict[str, str]) -> dict[str, str]:
    if block:
        blocks.append(block)
    return {}


def _recipient_of(block: dict[str, str]) -> str | None:
    """Original-Recipient (as the application wrote it), else Final-Recipient, without the
    address type; only a value that is an address."""
    for name in _RECIPIENT_FIELDS:
        value = _typed_value(block.get(name))
        address = _address_in(value) if value else None
        if address:
            return address
    return None


def _typed_value(value: str | None) -> str | None:
    """``rfc822; a@b`` -> ``a@b`` and ``smtp; 550 ...`` -> ``550 ...``, unfolded."""
    text = " ".join((value or "").split())
    if ";" in text and re.match(r"^[\w.-]+\s*;", text):
        text = text.split(";", 1)[1].strip()
    return text[:MAX_DIAGNOSTIC_CHARS] or None


_ADDRESS = re.compile(
    r"[^\s<>()\[\]\"',;:]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
)


def _address_in(value: str) -> str | None:
    match = _ADDRESS.search(value)
    return match.group(0).rstrip(".") if match else None


# --- 3. flufl.bounce and our own search for the recipient -----------------------------------


def _failed_recipient(parsed: ParsedMail, raw: bytes, text: str) -> tuple[str | None, str]:
    """The failed recipient of a bounce in no RFC 3464 form, and which reader found it:
    Exim's X-Failed-Recipients, else flufl.bounce's detectors."""
    failed = _addresses(parsed.header("x-failed-recipients") or "")
    if failed:
        return _as_written(failed[0], text), "X-Failed-Recipients"
    temporary, permanent = _flufl_failures(raw)
    if permanent:
        return _first_mentioned(permanent, text), "bounce found by flufl.bounce"
    if temporary:
        return _first_mentioned(temporary, text), "delivery delayed (flufl.bounce warning)"
    return None, ""


def _flufl_failures(raw: bytes) -> tuple[list[str], list[str]]:
    """(temporary, permanent) failed recipients by flufl.bounce. Some of its patterns take
    time quadratic in the length of a line, and it reads every line of every part, the
    returned message too: it gets the start of the message with short lines."""
    message = _message(raw, FLUFL_SCANNED_BYTES, FLUFL_LINE_BYTES)
    if _all_failures is None or message is None:
        return [], []
    try:
        temporary, permanent = _all_failures(message)
    except Exception:  # flufl.bounce's detectors raise on some odd mail
        log.debug("flufl.bounce failed on a message", exc_info=True)
        return [], []
    return _decoded(temporary), _decoded(permanent)


def _decoded(addresses: frozenset[bytes]) -> list[str]:
    """The addresses that are addresses: flufl's looser detectors also return a line of
    uuencoded data that happens to hold an ``@``."""
    found = [a.decode("ascii", "replace").strip().strip("<>") for a in addresses]
    return sorted(a for a in found if _PLAIN_ADDRESS.fullmatch(a))


_PLAIN_ADDRESS = re.compile(r"[^\s@<>()\[\]\\\",;:`]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _first_mentioned(addresses: list[str], text: str) -> str:
    """Of several failed recipients, the one the notification names first."""
    lowered = text.lower()
    positions = {a: lowered.find(a.lower()) for a in addresses}
    return _as_written(min(addresses, key=lambda a: (positions[a] < 0, positions[a], a)), text)


def _as_written(address: str, text: str) -> str:
    """Where the failed address is one a recipient forwarded to (Exim: "x@y (generated
    from a@b)"), the address the application wrote, as with a DSN's Original-Recipient."""
    pattern = re.escape(address) + r">?\s*\(generated from\s+<?([^\s<>()]+@[^\s<>()]+?)>?\)"
    generated = re.search(pattern, text[:MAX_TEXT_CHARS], re.IGNORECASE)
    return generated.group(1) if generated else address


def _recipient_in_text(parsed: ParsedMail, message: Message, text: str) -> str | None:
    """The address the notification names that is neither the bounce's sender nor the one
    it returns to (the original sender); one the returned message was sent to wins."""
    own = {
        a.lower() for a in _addresses(parsed.from_) + [a for t in parsed.to for a in _addresses(t)]
    }
    candidates = [
        address
        for address in dict.fromkeys(m.group(0).rstrip(".") for m in _ADDRESS.finditer(text))
        if address.lower() not in own and not _DAEMON.search(address.split("@")[0])
    ]
    sent_to = _original_recipients(message)
    preferred = [a for a in candidates if a.lower() in sent_to]
    if preferred or candidates:
        return (preferred or candidates)[0]
    return next(iter(sent_to)) if len(sent_to) == 1 else None


def _addresses(value: str) -> list[str]:
    return [address for _, address in getaddresses([value]) if "@" in address]


def _original_recipients(message: Message) -> dict[str, None]:
    """The To/Cc addresses of the returned message (attached, or its headers inline)."""
    values: list[str] = []
    for part in message.walk():
        if _content_type(part) not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        headers = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(headers, Message):
            values += [str(v) for v in headers.get_all("to", []) + headers.get_all("cc", [])]
        else:
            values += _to_fields(_part_text(part))
    values += _to_fields(_report_text(message)[1])
    return {a.lower(): None for _, a in getaddresses(values) if "@" in a}


def _to_fields(text: str) -> list[str]:
    return re.findall(r"(?im)^[ \t]*(?:to|cc)[ \t]*:(.*(?:\n[ \t]+.*)*)", text)


# --- 4. status and diagnostic from the text --------------------------------------------------

#: An RFC 3463 code, not a version number (``mta-5.5.0-3``, ``8.14.9``) nor part of an IP.
_ENHANCED = re.compile(r"(?<![\w.])(?<![A-Za-z]-)([245])\.(\d{1,3})\.(\d{1,3})(?![\w.]*\d)(?!-\d)")
#: A basic SMTP reply code where a server's answer is quoted.
_BASIC = re.compile(
    r"(?:^|said:?|error:|reply:|response:|answer:|code\s*:|:\s|\(|[\"'])\s*([45][0-5]\d)(?=[\s,-]|$)",
    re.IGNORECASE | re.MULTILINE,
)


def _status_code(value: str) -> str | None:
    """The RFC 3463 code at the start of a Status field (``5.1.1 (user unknown)`` ->
    ``5.1.1``)."""
    match = _ENHANCED.match(value.strip())
    return match.group(0) if match else None


def _refined(status: str | None, diagnostic: str | None) -> str | None:
    """The Status field, or the remote server's own enhanced code where the field only
    gives the class (``Status: 5.0.0`` with ``550 5.1.1 User unknown`` -> ``5.1.1``)."""
    stated = _status_of_diagnostic(diagnostic)
    if status is None or (
        status.endswith(".0.0") and stated and stated[0] == status[0] and stated != status
    ):
        return stated or status
    return status


def _status_of_diagnostic(diagnostic: str | None) -> str | None:
    """The enhanced code in a diagnostic, else the class of its basic reply code."""
    if not diagnostic:
        return None
    enhanced = _ENHANCED.search(diagnostic)
    if enhanced and enhanced.group(1) != "2":
        return enhanced.group(0)
    basic = _BASIC.search(diagnostic)
    return f"{basic.group(1)[0]}.0.0" if basic else None


def _with_status(info: BounceInfo, text: str) -> BounceInfo:
    """`info` completed from the notification text where the report lacks status or
    diagnostic: the first code at or after the recipient's line."""
    if info.status and info.diagnostic:
        return info
    found = _code_near(text, info.recipient)
    status = info.status or _status_of_diagnostic(info.diagnostic) or (found[0] if found else None)
    diagnostic = info.diagnostic or (found[1] if found else _reason_near(text, info.recipient))
    if status is None:  # the report states no code: its words, else its class in words
        worded = _status_in_words(text, info.recipient, diagnostic)
        status = worded[0] if worded else _class_in_words(text)
        diagnostic = diagnostic or (worded[1] if worded else None)
    return BounceInfo(info.recipient, status, diagnostic)


def _reason_near(text: str, recipient: str | None) -> str | None:
    """Where a report gives no code: the words on the recipient's line ("Unknown user:
    x@y", "x@y [User unknown]"), else on the next lines ("x@y on <date>" / "The recipient
    name is not recognized"), passing over labels ("For the following reason:")."""
    if not recipient:
        return None
    lines = text[:MAX_TEXT_CHARS].splitlines()
    needle = recipient.lower()
    index = next((i for i, line in enumerate(lines) if needle in line.lower()), None)
    if index is None:
        return None
    for offset, line in enumerate(lines[index : index + 6]):
        words = _DATE_TAIL.sub(" ", line.lower().replace(needle, " "))[:MAX_LABEL_CHARS]
        if _LABEL.match(words) or _ADDRESS.search(words) or (offset and words.strip()[-1:] == ":"):
            continue
        if len(re.findall(r"[^\W\d_]{2,}", words)) >= 2:
            return " ".join(line.split())[:MAX_DIAGNOSTIC_CHARS]
    return None


#: "on Fri, 10 Jan 2003 11:05:33 -0500" after an address (Exchange).
_DATE_TAIL = re.compile(r"\bon\s+\w{3},?\s+\d.*$")
#: Lines that name what follows, not why delivery failed.
_LABEL = re.compile(
    r"^\W*(?:(?:to|cc|from|subject|date|sent)\s*:|[-=*_]{3,}|.*(?:recipient|address|reason|"
    r"details|information|follows?|following)[^:]*:\W*$)",
    re.IGNORECASE,
)


_PERMANENT_WORDS = re.compile(
    r"permanent(?:ly)? (?:error|failure|fatal)|failed permanently|permanent delivery error|"
    r"not going to try again|i'?ve given up|will not be retried|permanently rejected",
    re.IGNORECASE,
)
_TEMPORARY_WORDS = re.compile(
    r"will (?:be )?retr(?:y|ied)|attempts will continue|will (?:continue to|keep) try|"
    r"not yet been delivered|has been delayed|is delayed|still being retried|"
    r"temporar(?:y|ily) (?:error|failure|problem|unavailable)",
    re.IGNORECASE,
)


def _class_in_words(text: str) -> str | None:
    """When no code is given: the class the report states in words ("This is a permanent
    error" -> ``5.0.0``, "will retry" -> ``4.0.0``), else None."""
    permanent = _PERMANENT_WORDS.search(text)
    temporary = _TEMPORARY_WORDS.search(text)
    if permanent and not (temporary and temporary.start() < permanent.start()):
        return "5.0.0"
    return "4.0.0" if temporary else None


# --- a status read from the report's words ----------------------------------------------

#: What a report says in words when it states no code, and the RFC 3463 code of that reason.
#: The reasons and the kinds of phrases follow sisimai's reading of bounces (its reasons map to
#: these codes: userunknown 5.1.1, hostunknown 5.1.2, mailboxfull 5.2.2, mesgtoobig 5.3.4,
#: filtered, blocked and policy 5.7.1, suspend 5.2.1, expired 4.4.7 …); the table is ours.
#: Lower case; a space stands for one space or one line break. The first entry that matches
#: wins, so the more specific come first. The class is the one usual for the reason; a class
#: that the report states in words ("will retry", "permanent error") replaces it.
_REASON_PHRASES: tuple[tuple[str, str], ...] = (
    # the sender was refused, not the recipient: X.1.8 bad sender's system address
    ("5.1.8", r"sender (?:address |domain )?(?:rejected|denied|refused|unknown|verify failed|"
              r"verification failed)|sender domain (?:does not exist|doesn't exist|not found|"
              r"must exist|is empty)|(?:bad|invalid|unroutable|unverified) sender"),
    # X.7.1 delivery not authorised: relaying
    ("5.7.1", r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)|"
              r"(?:unable|not allowed|not permitted) to relay"),
    # X.4.6 routing loop
    ("5.4.6", r"(?:mail|routing|forwarding|aliasing) loop|loop(?:s|ing)? (?:detected|back to "
              r"myself)|message looping|too many hops|hop count exceeded"),
    # X.2.2 mailbox full, before the message size ("mailbox size limit exceeded")
    ("5.2.2", r"(?:mail ?box|mail ?folder|inbox)(?: is| was)? (?:full|over (?:the |its )?quota)|"
              r"full mailbox|メールボックスが(?:一杯|いっぱい)"),
    ("5.2.2", r"(?:over|exceed(?:s|ed|ing)?) (?:the |its |their |his |her |your )?(?:allowed |"
              r"mailbox |storage |disk |mail )*quota|quota (?:exceeded|violation|usage exceeded)"),
    ("5.2.2", r"(?:mail ?box|maildir)(?: size)? (?:has )?exceed(?:s|ed)?|(?:mailbox|storage) "
              r"size limit|not enough (?:storage )?space|space has been used up|exceeded "
              r"storage allocation|too many messages (?:in|on) (?:the |this |your )?(?:mailbox|"
              r"server|account)"),
    # X.3.4 message too big for system
    ("5.3.4", r"message(?: size| length)? (?:is )?(?:too (?:big|large)|exceeds)|(?:max(?:imum)? )?"
              r"message size (?:limit )?exceeded|exceeded (?:the )?maximum (?:inbound )?message "
              r"size|message file too big|size of (?:the |your |this )?message exceeds"),
    # X.3.1 mail system full
    ("4.3.1", r"mail system full|insufficient system storage|(?:disk|spool|file system) (?:is )?"
              r"full|no space left on device"),
    # X.2.1 mailbox disabled, not accepting messages
    ("5.2.1", r"(?:account|mailbox|user|address)(?:\(s\))?(?: account| mailbox)? (?:is |has been |"
              r"was )?(?:currently |temporarily )?(?:disabled|suspended|deactivated|inactive|"
              r"frozen|locked|closed|discontinued)|(?:disabled|suspended|deactivated|inactive|"
              r"closed|frozen) (?:account|mailbox|user)"),
    # X.1.6 destination mailbox has moved
    ("5.1.6", r"(?:mailbox|address|user|recipient|account) has moved|no longer (?:valid|in use|"
              r"active|available|exists?|accepts? mail)|has been replaced by"),
    # X.1.2 bad destination system address, before the mailbox (the more specific)
    ("5.1.2", r"(?:domain|host)(?: name)? (?:is )?(?:unknown|not found(?!, try again)|does not "
              r"exist|doesn't exist|must exist)|no such (?:domain|host)|unknown (?:host|domain)|"
              r"name or service not known"),
    # X.4.3 directory server failure: a name server that did not answer
    ("4.4.3", r"dns (?:lookup |query |resolution )?(?:failure|timeout|timed out)|name server "
              r"(?:failure|timeout|error)|malformed (?:or unexpected )?name server reply|host not "
              r"found, try again"),
    # X.1.1 bad destination mailbox address
    ("5.1.1", r"(?:user|recipient|addressee|mailbox|account|e-?mail address|address|local part)"
              r"(?:\(s\))?(?: name)? (?:is )?(?:unknown|not (?:found|known|recogni[sz]ed|listed))"),
    ("5.1.1", r"unknown (?:user|recipient|mailbox|addressee|local ?part|e-?mail address|account)|"
              r"no such (?:user|recipient|mailbox|person|account|address|local user)"),
    ("5.1.1", r"(?:user|recipient|mailbox|account|address|addressee)(?: name)? (?:does not|"
              r"doesn't|did not|not) exists?|tried to reach does not exist"),
    ("5.1.1", r"invalid (?:recipient|mailbox|addressee|user(?: ?id)?|final delivery user ?id|"
              r"(?:e-?mail |recipient |destination )?address)|not (?:a )?(?:valid|known|local) "
              r"(?:user|recipient|mailbox|address)"),
    ("5.1.1", r"not listed in (?:the )?(?:[\w&.'-]+ ){0,4}(?:directory|address book)|"
              r"does(?:n't| not) have an? [\w.-]+ account|no (?:mailbox|account) (?:here )?by "
              r"that name|there is no one at this address|ディレクトリのリストにありません"),
    ("5.1.1", r"no valid recipients?"),
    # X.7.1 delivery not authorised, message refused: spam, virus, filters, policy
    ("5.7.1", r"(?:detected|identified|classified|considered|marked|flagged|rejected|blocked|"
              r"scored) as (?:spam|junk|bulk)|spam (?:detected|blocked|rejected|refused|filter|"
              r"content|score|message)|(?:looks|appears|seems) (?:like|to be) (?:spam|"
              r"unsolicited)|probable spam|unsolicited (?:bulk |commercial )?(?:e-?mail|mail|"
              r"messages?)|black-?listed|block-?listed|listed (?:in|on|at) (?:an? |the )?(?:dnsbl|"
              r"rbl|blacklist|blocklist|spamhaus|spamcop)"),
    ("5.7.1", r"virus(?:es)? (?:detected|found)|(?:contains?|infected (?:with|by)) (?:an? )?virus"),
    ("5.7.1", r"(?:content|domain|address|spam|recipient'?s?) filter|message filtered|rejected "
              r"(?:by|due to|for) (?:the )?(?:recipient'?s? )?(?:filter|policy|policy reasons)|"
              r"policy (?:violation|rejection)|not authori[sz]ed|access denied|refused due to "
              r"recipient preferences|(?:only|not) accept(?:s|ing)? (?:any )?mail from|(?:you|"
              r"sender) (?:have|has) been blocked|blocked by (?:the )?(?:recipient|administrator|"
              r"policy)"),
    # X.7.0 authentication required (RFC 4954)
    ("5.7.0", r"authentication (?:is )?required|must (?:first )?authenticate"),
    # X.4.4 unable to route
    ("5.4.4", r"could not find a gateway|unable to route|unrout(?:e)?able (?:address|mail domain|"
              r"domain)|no (?:mx|mail exchanger) (?:record|host)s?"),
    # X.4.1 no answer from host, X.4.2 bad connection
    ("4.4.1", r"connection (?:timed out|timeout|refused)|timed out (?:while )?connecting|no answer "
              r"from host|server did not respond|(?:could not|couldn't|unable to) connect|no route "
              r"to host|host (?:is )?unreachable"),
    ("4.4.2", r"(?:lost|dropped|broken) connection|connection (?:lost|dropped|reset|closed|broken|"
              r"was dropped)"),
    # X.4.7 delivery time expired: after the actual problem, which RFC 3463 prefers
    ("4.4.7", r"delivery time expired|expired after|(?:been|sitting|waiting) in (?:the )?queue "
              r"(?:too long|for)|too long in (?:the )?queue|queue (?:lifetime|time|period) "
              r"(?:expired|exceeded)|allowed queue period|retry time not reached for any host "
              r"after a long failure period|giving up on|message timed out|(?:aborted|failed) "
              r"after [\d.]+ (?:hour|day)|could not be delivered (?:for|within|in) (?:the last )?"
              r"\d+ (?:hours|days)"),
    # X.5.3 too many recipients, X.3.5 system incorrectly configured, X.3.2 not accepting mail
    ("5.5.3", r"too many recipients"),
    ("5.3.5", r"(?:local|server|mail system|system) config(?:uration)? error"),
    ("5.3.2", r"(?:host|domain|system|server)(?:/domain)? does not accept (?:any )?mail|not "
              r"accepting (?:network )?messages"),
    # a refusal that names no reason: only its class, X.0.0
    ("5.0.0", r"(?:rejected|refused) by (?:the |a |an )?(?:remote |recipient'?s? |destination |"
              r"receiving )?(?:mail |smtp |e-?mail )?(?:server|host|system|site|mta)"),
)  # fmt: skip


def _phrase(words: str) -> re.Pattern[str]:
    """A phrase of the table as a pattern: whole words; a space for a space or a line break."""
    spaced = words.replace(" ", r"[ \n]")
    return re.compile(r"(?<![a-z0-9])(?:" + spaced + r")(?![a-z0-9])", re.IGNORECASE)


_REASONS = tuple((code, _phrase(words)) for code, words in _REASON_PHRASES)
#: Where a returned message starts in a report that does not say so: its header fields.
_RETURNED_STARTS = re.compile(
    r"^(?:received|return-path|dkim-signature|message-id|mime-version|content-type|x-[\w-]+)"
    r"[ \t]*:|^[-=*_ \t]*(?:below is a copy|a copy of the original)",
    re.IGNORECASE,
)
#: Lines of a report that quote the returned message ("Subject: …", "> …"), not its words.
_QUOTED_LINE = re.compile(r"^\s*(?:>|(?:subject|to|cc|from|date|sent|reply-to)\s*:)", re.I)


def _status_in_words(
    text: str, recipient: str | None, diagnostic: str | None
) -> tuple[str, str] | None:
    """Where a report states no code: (status, the line that says why) from its words, by
    the table above: in the diagnostic, else in the lines of the recipient, else anywhere in
    the report's own words (not in the message it returns, nor in lines that quote it)."""
    shown = _report_lines(text)
    searched = [" ".join(_ADDRESS.sub(" ", line).split()) for line in shown]
    scopes: list[tuple[int, list[str]]] = []
    if diagnostic:
        scopes.append((-1, [" ".join(_ADDRESS.sub(" ", diagnostic).split())]))
    if recipient:
        needle = recipient.lower()
        start = next((i for i, line in enumerate(shown) if needle in line.lower()), None)
        if start is not None:
            scopes.append((start, searched[start : start + STATUS_WINDOW_LINES]))
    scopes.append((0, searched))
    stated = _class_in_words(text)
    for start, lines in scopes:
        joined = "\n".join(lines)
        for code, pattern in _REASONS:
            match = pattern.search(joined)
            if match is None:
                continue
            if stated and stated[0] != code[0]:
                code = stated[0] + code[1:]
            first = start + joined.count("\n", 0, match.start())
            last = start + joined.count("\n", 0, match.end())
            said = " ".join(shown[first : last + 1]) if start >= 0 else diagnostic or ""
            return code, said[:MAX_DIAGNOSTIC_CHARS]
    return None


def _report_lines(text: str) -> list[str]:
    """The lines of the notification text up to a returned message that it did not announce,
    each with its spaces collapsed; a line that quotes the returned message is left empty."""
    lines: list[str] = []
    for line in text[:MAX_TEXT_CHARS].splitlines():
        if lines and _RETURNED_STARTS.match(line):
            break
        lines.append("" if _QUOTED_LINE.match(line) else " ".join(line.split()))
    return lines


def _code_near(text: str, recipient: str | None) -> tuple[str, str] | None:
    """The code line of the recipient (at most STATUS_WINDOW_LINES after its first
    mention), else the first code line of the text."""
    lines = text[:MAX_TEXT_CHARS].splitlines()
    if recipient:
        needle = recipient.lower()
        start = next((i for i, line in enumerate(lines) if needle in line.lower()), None)
        found = (
            _code_line(lines[start : start + STATUS_WINDOW_LINES]) if start is not None else None
        )
        if found is not None:
            return found
    return _code_line(lines)


def _code_line(lines: list[str]) -> tuple[str, str] | None:
    """(status, diagnostic) of the first server answer with an enhanced code (``550 5.1.1
    …``), else of the first line with an enhanced code, else of the first with a basic reply
    code; the diagnostic is that line with the lines of the same reply."""
    for wanted in ("reply", "enhanced", "basic"):
        for index, line in enumerate(lines):
            status = _line_status(line, wanted)
            if status is not None:
                return status, _diagnostic(lines, index)
    return None


#: Lines of DSN fields that an MTA wrote into its text: a status, not a server's answer.
_FIELD_LINE = re.compile(
    r"^\s*(?:status|action|final-recipient|original-recipient|reporting-mta|remote-mta|"
    r"received-from-mta|arrival-date|last-attempt-date|will-retry-until)\s*:",
    re.IGNORECASE,
)


def _line_status(line: str, wanted: str) -> str | None:
    if _FIELD_LINE.match(line):
        return None
    if wanted == "basic":
        basic = _BASIC.search(line)
        return f"{basic.group(1)[0]}.0.0" if basic else None
    enhanced = next((m for m in _ENHANCED.finditer(line) if m.group(1) != "2"), None)
    if enhanced is None or (wanted == "reply" and not _BASIC.search(line)):
        return None
    return enhanced.group(0)


def _diagnostic(lines: list[str], index: int) -> str:
    """The line, and those that continue it: the lines of a multi-line reply (``550-5.1.1
    …``), or lines indented deeper (as Postfix folds a long answer)."""
    first = lines[index]
    taken = [first.strip()]
    code = re.match(r"([245]\d\d)[- ]", taken[0])
    for line in lines[index + 1 : index + 10]:
        stripped = line.strip()
        same_reply = code is not None and re.match(rf"{code.group(1)}[- ]", stripped)
        if not stripped or not (same_reply or _indent(line) > _indent(first)):
            break
        taken.append(stripped)
    return " ".join(" ".join(taken).split())[:MAX_DIAGNOSTIC_CHARS]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


# --- text of the parts ---------------------------------------------------------------------

_ORIGINAL_FOLLOWS = re.compile(
    r"^[-=*_>|\s]*(?:below this line is a copy|this is a copy of (?:the|your)|"
    r"original message follows|copy of the original message|returned message follows|"
    r"message headers follow|header of the original message|headers of the original|"
    r"original message header|unsent message below|returned mail follows|"
    r"start of returned message|original message (?:is )?(?:attached|below)|"
    r"message text follows|(?:original|returned) message\s*[-=*:]*\s*$)",
    re.IGNORECASE,
)


def _notification_text(message: Message) -> str:
    """The human-readable text of the report, without the message it returns."""
    return _report_text(message)[0]


def _report_text(message: Message) -> tuple[str, str]:
    """The text of the report (its text parts, or its HTML parts as text when it has no
    text part) cut in two where a returned message starts: (notification, returned)."""
    parts = [p for p in _parts(message) if not p.is_multipart()]
    texts = [_part_text(p) for p in parts if _is_text(p)]
    if not any(t.strip() for t in texts):
        texts = [_html_text(_part_text(p)) for p in parts if _content_type(p) == "text/html"]
    lines = [line[:MAX_LINE_CHARS] for line in "\n".join(texts)[:MAX_TEXT_CHARS].splitlines()]
    cut = next((i for i, line in enumerate(lines) if i and _ORIGINAL_FOLLOWS.match(line)), None)
    if cut is None:
        return "\n".join(lines), ""
    return "\n".join(lines[:cut]), "\n".join(lines[cut:])


def _is_text(part: Message) -> bool:
    """A text/plain part, or a multipart whose boundary never came (its body is text)."""
    if _content_type(part) == "text/plain":
        return True
    return part.get_content_maintype() == "multipart" and isinstance(part.get_payload(), str)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return _decode(payload, part.get_content_charset())
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _decode(data: bytes | object, charset: str | None) -> str:
    """Text of a report part, read as the parser reads bodies (charsets.py's labels)."""
    if not isinstance(data, bytes):
        return ""
    for codec in [*charsets.codecs_for(charset), "utf-8"]:
        try:
            return charsets.decode(data, codec)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    return data.decode("utf-8", "replace")


def _html_text(html: str) -> str:
    text = _without_scripts(html[: MAX_TEXT_CHARS * 4])
    text = re.sub(r"(?i)<br\s*/?>|</(?:p|div|tr|li|h\d)\s*>", "\n", text)
    return unescape(re.sub(r"<[^>]*>", " ", text))


_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b")


def _without_scripts(html: str) -> str:
    """`html` without its script and style elements; an unclosed one runs to the end. Linear:
    each search starts where the last element ended (a lazy regex over the rest of the text
    per unclosed tag was quadratic)."""
    lowered = html.lower()
    kept, pos = [], 0
    while opening := _SCRIPT_OR_STYLE.search(lowered, pos):
        kept.append(html[pos : opening.start()])
        closing = lowered.find(f"</{opening.group(1)}", opening.end())
        if closing < 0:
            return " ".join(kept)
        pos = lowered.find(">", closing) + 1 or len(html)
    kept.append(html[pos:])
    return " ".join(kept)
