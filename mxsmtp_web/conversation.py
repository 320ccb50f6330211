"""What a received message is in a conversation: its kind, its new text, its parents.

Pure functions over a ``ParsedMail`` (and the raw bytes where the parsed value does not
carry enough): no Flask, no database. None of them raises on odd mail: they run on every
message that arrives.

- :func:`classify` tells a person's reply from an auto-reply (RFC 3834), a bounce (RFC 3464
  delivery status notification) and a plain message.
- :func:`reply_text` keeps what the sender wrote, without quoted history and signature. The
  quoted history is found by ``mail-parser-reply`` (headers of the common clients in many
  languages); the header lines it misses, HTML bodies and signatures are handled here.
- :func:`references` lists the message ids a message answers, nearest parent first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from mailparser_reply.parser import EmailMessage

from .bounces import BounceInfo as BounceInfo  # re-exported: callers import it here
from .bounces import find_bounce
from .parsing import ParsedMail

KindName = Literal["reply", "auto_reply", "bounce", "message"]

#: Only the start of a body is searched for the new text: replies are written on top, and
#: the regular expressions must stay fast on a 10 MB body.
MAX_ANALYSED_CHARS = 50_000
#: Header languages handed to mail-parser-reply (it always adds English).
REPLY_LANGUAGES = ("en", "de", "fr", "es", "nl")
#: A closing ("Best regards,") ends the text only if at most this many lines follow it.
MAX_SIGNATURE_LINES = 8

# RFC 3834 5: "Precedence" is not standard but widely set by responders and list software.
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder")
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|"
    r"abwesenheitsnotiz|automatische antwort|abwesend|"
    r"absence|r[ée]ponse automatique|"
    r"respuesta autom[áa]tica|fuera de la oficina|"
    r"afwezigheidsmelding|automatisch antwoord|niet aanwezig)\b",
    re.IGNORECASE,
)
# Re (most), AW (de), SV (sv/da/no), Antw (nl), Réf (fr), RIF (it), VS (fi), Odp (pl).
_REPLY_SUBJECT = re.compile(
    r"^\s*(?:re|aw|sv|antw|antwort|r[ée]f|rif|vs|odp)\s*(?:\[\d+\]|\(\d+\))?\s*:",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Kind:
    """What a message is. `bounce` is set only for ``kind == "bounce"``; `reason` says which
    signal decided, for logs and for people wondering why."""

    kind: KindName
    reason: str
    bounce: BounceInfo | None = None


def classify(parsed: ParsedMail, raw: bytes, reply_ref: str | None = None) -> Kind:
    """Bounce, then auto-reply, then reply, else message. An auto-reply also carries
    In-Reply-To, and a bounce is often marked Auto-Submitted, so the order matters.
    `reply_ref` is the ref of a valid reply address the message was sent to, if any."""
    bounce = _bounce(parsed, raw)
    if bounce is not None:
        return bounce
    auto = _auto_reply_reason(parsed)
    if auto:
        return Kind("auto_reply", auto)
    if reply_ref is not None:
        return Kind("reply", "sent to a reply address")
    if parsed.in_reply_to or parsed.references:
        return Kind("reply", "In-Reply-To/References")
    if _REPLY_SUBJECT.match(parsed.subject):
        return Kind("reply", "subject")
    return Kind("message", "no sign of a reply")


def references(parsed: ParsedMail) -> list[str]:
    """The message ids this message answers, nearest parent first, each once: In-Reply-To,
    then References from its end (RFC 5322 3.6.4 lists ancestors oldest first)."""
    found: list[str] = []
    for message_id in (parsed.in_reply_to, *reversed(parsed.references)):
        if message_id and message_id not in found:
            found.append(message_id)
    return found


# --- kinds ------------------------------------------------------------------------------


def _header(parsed: ParsedMail, name: str) -> str | None:
    return next((value for key, value in parsed.headers if key.lower() == name), None)


def _auto_reply_reason(parsed: ParsedMail) -> str | None:
    submitted = (_header(parsed, "auto-submitted") or "").split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return f"Auto-Submitted: {submitted}"
    for name in _AUTO_HEADERS:
        if _header(parsed, name) is not None:
            return f"{name} header"
    precedence = (_header(parsed, "precedence") or "").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    if _AUTO_SUBJECT.match(parsed.subject):
        return "out-of-office subject"
    return None


def _bounce(parsed: ParsedMail, raw: bytes) -> Kind | None:
    """Any bounce: RFC 3464 DSNs and the plain-text formats flufl.bounce knows (bounces.py)."""
    bounce = find_bounce(parsed, raw)
    return Kind("bounce", bounce.reason, bounce.info) if bounce is not None else None


# --- the new text of a reply --------------------------------------------------------------


def reply_text(text: str | None, html: str | None) -> str | None:
    """What the sender wrote on top, without quoted history and signature. Uses the text
    body, else the HTML body turned into text (quote containers cut off). None when the
    message has neither; "" when everything in it was quoted."""
    if text is not None and text.strip():
        body = text
    elif html is not None:
        body = html_to_text(html)
    else:
        return None if text is None else ""
    try:
        return _strip_reply(body[:MAX_ANALYSED_CHARS])
    except Exception:  # a library bug must not lose the message: keep the whole text
        return body.strip()


def _strip_reply(body: str) -> str:
    body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    body = body.replace("\ufeff", "").replace("\u202f", " ")
    shielded, originals = _shield_long_lines(body)
    message = EmailMessage(text=shielded, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    first = message.read().replies[0]
    content = first.content.replace(first.headers or "", "", 1)
    lines = [originals.get(line, line).strip() for line in content.split("\n")]
    lines = _cut_quote_headers(lines)
    lines = _cut_trailing_quote(lines)
    lines = _cut_signature(lines)
    return "\n".join(lines).strip()


#: mail-parser-reply's "On ... wrote:" patterns take time quadratic (or worse) in the length
#: of a line that starts like one. Such lines are hidden from it unless they could be one
#: (short, and ending in ":" there or on the next line), and so is any very long line.
_MAX_LINE = 1000
_MAX_TRIGGER_LINE = 120
_TRIGGER = re.compile(r"^[>\s]*(?:on|op|il|am|le|el|dne|den|dnia)\s", re.IGNORECASE)


def _shield_long_lines(body: str) -> tuple[str, dict[str, str]]:
    """The body with such lines replaced by placeholders, and the lines to put back."""
    originals: dict[str, str] = {}
    lines = body.split("\n")
    for index, line in enumerate(lines):
        if len(line) > _MAX_LINE or (_TRIGGER.match(line) and not _may_attribute(lines, index)):
            placeholder = f"mxsmtp-long-line-{index}"
            originals[placeholder] = line
            lines[index] = placeholder
    return "\n".join(lines), originals


def _may_attribute(lines: list[str], index: int) -> bool:
    following = lines[index + 1].rstrip() if index + 1 < len(lines) else ""
    return len(lines[index]) <= _MAX_TRIGGER_LINE and (
        lines[index].rstrip().endswith(":") or following.endswith(":")
    )


#: Attribution lines above a quote: (how it starts, how it ends or what it holds), compared
#: in lower case with whitespace collapsed and " :" (French typography) as ":".
_ATTRIBUTIONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("on ", (" wrote:",), ()),  # en: On Mon, 6 Jan 2025, Jane <j@x> wrote:
    ("am ", (" schrieb:",), (" schrieb ",)),  # de: Am 06.01.25 um 10:15 schrieb Jane:
    ("le ", (" a écrit:", " a ecrit:"), ()),  # fr: Le 6 janv. 2025 à 10:15, Jane a écrit :
    ("el ", (" escribió:", " escribio:"), ()),  # es: El lun, 6 ene 2025, Ana escribió:
    ("op ", (" schreef:", " het volgende geschreven:"), (" schreef ",)),  # nl
    ("il ", (" ha scritto:",), ()),  # it
)
#: Mail clients wrap a long attribution line ("On ... <\nname@example.com> wrote:").
_ATTRIBUTION_MAX_LINES = 3
_ATTRIBUTION_MAX_CHARS = 400


def _cut_quote_headers(lines: list[str]) -> list[str]:
    """Cut at an attribution line the library missed (Dutch "schreef NAME:", wrapped ones)."""
    for start in range(len(lines)):
        joined = ""
        for line in lines[start : start + _ATTRIBUTION_MAX_LINES]:
            joined = f"{joined} {line.strip().lstrip('>').strip()}".strip()
            if _is_attribution(joined):
                return lines[:start]
    return lines


def _is_attribution(line: str) -> bool:
    if len(line) > _ATTRIBUTION_MAX_CHARS or not line.endswith(":"):
        return False
    line = " ".join(line.lower().split()).replace(" :", ":")
    return any(
        line.startswith(start) and (line.endswith(ends) or any(word in line for word in holds))
        for start, ends, holds in _ATTRIBUTIONS
    )


def _cut_trailing_quote(lines: list[str]) -> list[str]:
    """Drop the ``>`` block at the end; quotes with answers in between stay (inline replies)."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end]


_SIG_DASHES = re.compile(r"^--\s*$")  # RFC 3676 4.3: "-- " alone; clients drop the space
_SEPARATOR = re.compile(r"^\s*_{16,}\s*$")  # Outlook's line above the quoted header
_SENT_FROM = re.compile(
    r"^\s*(?:sent from (?:my|mail for|outlook)|sent with|get outlook for|"
    r"von meinem .{1,40} gesendet|gesendet von|gesendet mit|"
    r"envoy[ée] (?:de|depuis) (?:mon|ma|l)|"
    r"enviado (?:desde|con) (?:mi|el)|"
    r"verzonden (?:vanaf|met|vanuit) |verstuurd (?:vanaf|vanuit|met) )",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^\s*(?:best(?: regards| wishes)?|kind regards|warm regards|regards|cheers|"
    r"many thanks|thanks(?: again| a lot| and regards)?|thank you|all the best|"
    r"mit freundlichen gr(?:ü|ue)(?:ß|ss)en|(?:viele|beste|liebe|herzliche|sch(?:ö|oe)ne) "
    r"gr(?:ü|ue)(?:ß|ss)e|gr(?:ü|ue)(?:ß|ss)e|gru(?:ß|ss)|mfg|lg|vg|"
    r"cordialement|bien cordialement|bien (?:à|a) vous|salutations|bonne journ[ée]e|"
    r"un saludo|saludos(?: cordiales)?|atentamente|un abrazo|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|hartelijke groet(?:en)?|"
    r"groet(?:en|jes)?|mvg)\s*[,.!]?\s*$",
    re.IGNORECASE,
)


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut at sig dashes, an Outlook separator, a "Sent from my ..." line, or a closing
    line that only a few lines follow (a closing mid-text is kept: "Thanks!\\n\\nAlso ...")."""
    for index, line in enumerate(lines):
        if _SIG_DASHES.match(line) or _SEPARATOR.match(line):
            return lines[:index]
        if _SENT_FROM.match(line) and len(line.split()) <= 10:
            return lines[:index]
        if index and _CLOSING.match(line) and _short_tail(lines[index + 1 :]):
            return lines[:index]
    return lines


def _short_tail(lines: list[str]) -> bool:
    return sum(1 for line in lines if line.strip()) <= MAX_SIGNATURE_LINES


# --- HTML to text -------------------------------------------------------------------------

_BLOCKS = frozenset(
    "address article aside div dl dt dd figure footer form h1 h2 h3 h4 h5 h6 header li "
    "main nav ol p pre section table tr ul".split()
)
_SKIPPED = frozenset({"head", "script", "style", "title", "template"})
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
#: Containers that hold the quoted history (or the signature) in the common clients.
_QUOTE_CLASSES = frozenset(
    {"gmail_quote", "gmail_quote_container", "gmail_signature", "moz-cite-prefix",
     "moz-signature", "yahoo_quoted", "outlookmessageheader", "protonmail_quote"}
)  # fmt: skip
_QUOTE_IDS = frozenset(
    {"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container",
     "ms-outlook-mobile-signature", "signature"}
)  # fmt: skip


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, stopping where the quoted history
    starts (a blockquote, Gmail's and Thunderbird's quote divs, Outlook's reply header)."""
    converter = _HtmlText()
    try:
        converter.feed(html[: MAX_ANALYSED_CHARS * 4])
        converter.close()
    except Exception:  # html.parser is lenient, but the contract is "never raises"
        pass
    return converter.text()


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag in _SKIPPED:
            self._skip_depth += 1
        elif _starts_quote(tag, dict(attrs)):
            self._done = True
        elif tag == "br":
            self._out.append("\n")
        elif tag == "hr":
            self._newline()
            self._out.append("_" * 32 + "\n")
        elif tag in _BLOCKS:
            self._newline()
            self._pre_depth += 1 if tag == "pre" else 0

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCKS:
            self._newline()
            self._pre_depth = max(0, self._pre_depth - (1 if tag == "pre" else 0))

    def handle_data(self, data: str) -> None:
        if self._done or self._skip_depth:
            return
        self._out.append(data if self._pre_depth else re.sub(r"\s+", " ", data))

    def _newline(self) -> None:
        if self._out and not self._out[-1].endswith("\n"):
            self._out.append("\n")

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self._out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _starts_quote(tag: str, attrs: dict[str, str | None]) -> bool:
    if tag == "blockquote":
        return True
    classes = set((attrs.get("class") or "").lower().split())
    return bool(classes & _QUOTE_CLASSES) or (attrs.get("id") or "").lower() in _QUOTE_IDS
