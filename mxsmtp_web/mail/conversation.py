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

from mxsmtp_web.mail.bounces import BounceInfo as BounceInfo  # re-exported: callers import it here
from mxsmtp_web.mail.bounces import find_bounce
from mxsmtp_web.mail.parsing import ParsedMail

KindName = Literal["reply", "auto_reply", "bounce", "message"]

#: Only the start of a body is searched for the new text: replies are written on top, and
#: the regular expressions must stay fast on a 10 MB body.
MAX_ANALYSED_CHARS = 50_000
#: Header languages handed to mail-parser-reply (it always adds English). It knows Italian,
#: Swedish, Japanese and Chinese as well, but this module's own attribution and Outlook
#: header patterns find every one of those on the corpus, and each language costs the library
#: a pass (+25 % per message for the four): they are matched here. Its Polish Outlook header
#: needs one line only, so a "Data:" or "Do:" line in any text would cut it there.
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


def _header_values(parsed: ParsedMail, name: str) -> list[str]:
    """Every value of a header, lower case: list software adds its own ``Precedence`` next
    to the sender's (a Mailman digest has ``list`` and ``bulk``), so reading only the first
    one misses what the second says."""
    return [value.strip().lower() for key, value in parsed.headers if key.lower() == name]


def _auto_reply_reason(parsed: ParsedMail) -> str | None:
    for value in _header_values(parsed, "auto-submitted"):
        submitted = value.split(";")[0].strip()
        if submitted and submitted != "no":
            return f"Auto-Submitted: {submitted}"
    for name in _AUTO_HEADERS:
        if parsed.header(name) is not None:
            return f"{name} header"
    for precedence in _header_values(parsed, "precedence"):
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
    """What the sender wrote, without quoted history and signature: on top of the quote, or
    below and between quotes. Uses the text body, else the HTML body turned into text (quote
    containers cut off). None when the message has neither; "" when everything in it was
    quoted."""
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
    body = "\n".join(_answers_between_quotes(body.split("\n")))
    shielded, originals = _shield_long_lines(body)
    content = _first_reply(shielded)
    lines = [originals.get(line, line).strip() for line in content.split("\n")]
    lines = _cut_quote_headers(lines)
    lines = _cut_trailing_quote(lines)
    lines = _cut_signature(lines)
    return "\n".join(lines).strip()


def _first_reply(text: str) -> str:
    """What mail-parser-reply's first reply holds: the text above the first quote header it
    knows, or, when the text starts with one, what follows it up to the next. Its header
    pattern is searched directly: ``read()`` also runs its signature and disclaimer patterns
    over every piece, which take longer than the search and are not used here."""
    message = EmailMessage(text=text, languages=list(REPLY_LANGUAGES))
    pattern, text = message.HEADER_REGEX, message.text
    first = pattern.search(text)
    if first is None:
        return text
    if text[: first.start()].strip():
        return text[: first.start()]
    second = pattern.search(text, first.end())
    return text[first.end() : second.start() if second else len(text)]


#: mail-parser-reply's "On ... wrote:" patterns take time quadratic (or worse) in the length
#: of a line that starts like one. Such lines are hidden from it unless they could be one
#: (short, and ending in ":" there or on the next line), and so is any very long line. The
#: starts are those of its patterns for REPLY_LANGUAGES: en "On", nl "Op", it "Il", de "Am",
#: fr "Le", es "El", sv "Den", a weekday ("mån", no space after it) or "6 jan", ja and zh a
#: date ("2025年"); and cs "Dne", pl "Dnia" should those be added.
_MAX_LINE = 1000
_MAX_TRIGGER_LINE = 120
_TRIGGER = re.compile(
    r"^[>\s]*(?:(?:on|op|il|am|le|el|dne|den|dnia)\s|mån|tis|ons|tor|fre|lör|sön|"
    r"\d+\s+(?:jan|feb|mar|apr|maj|jun|jul|aug|sep|okt|nov|dec)|\d{4}年)",
    re.IGNORECASE,
)


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


# --- answers below and between quotes ---------------------------------------------------

#: Fewer ``>`` lines than this are no quote unless an attribution line stands above them: a
#: prompt or a redirection in a code sample, an mbox ``>From``.
_MIN_QUOTE_LINES = 3
#: A quoted line this long that a client wrapped goes on in a line without ``>``.
_WRAPPED_LINE = 60
_RULE = re.compile(r"([-=_*~#])\1{2,}")
_BRACKETED_LINK = re.compile(r"^[<(](?:https?://|mailto:)\S*[>)]?$", re.IGNORECASE)


def _answers_between_quotes(lines: list[str]) -> list[str]:
    """The text written below and between the ``>`` quotes of a bottom-posted or interleaved
    reply: what stands above the first quote (a greeting), then each answer, joined by a
    blank line, without the quotes and their attribution lines. A body whose history starts
    above the first quote (a top-posted reply, a forward: the cuts that follow handle it)
    or whose ``>`` lines are no quote comes back as it is."""
    marks = _quote_marks(lines)
    blocks = [(found.start(), found.end()) for found in re.finditer(r"q(?:e*q)*", marks)]
    if not blocks:
        return lines
    above = _attribution_above(lines, blocks[0][0])
    if above is None and not _real_quotes(lines, marks):
        return lines
    lead = _trimmed(lines[: blocks[0][0] if above is None else above])
    if _history_starts(lead):
        return lines
    answers = _answers(lines, blocks)
    if not answers:  # a top-posted reply, its quote followed by nothing but a signature
        return lead or lines
    joined: list[str] = []
    for piece in [lead, *answers] if lead else answers:
        joined += ["", *piece] if joined else piece
    return joined


def _quote_marks(lines: list[str]) -> str:
    """One letter a line: ``q`` quoted, ``e`` empty, ``t`` text. A text line that only
    continues the quoted line above it (wrapped, or a link broken out) counts as quoted."""
    marks = [_mark(line) for line in lines]
    for index in range(1, len(lines)):
        following = marks[index + 1] if index + 1 < len(lines) else "e"
        if marks[index] == "t" and marks[index - 1] == "q" and following != "t":
            if _continues_quote(lines[index - 1].strip(), lines[index].strip()):
                marks[index] = "q"
    return "".join(marks)


def _mark(line: str) -> str:
    stripped = line.lstrip()
    return "e" if not stripped else "q" if stripped.startswith(">") else "t"


def _continues_quote(quoted: str, line: str) -> bool:
    if _BRACKETED_LINK.match(line):
        return True
    unfinished = len(quoted) >= _WRAPPED_LINE and quoted[-1] not in ".!?:"
    return unfinished and line[:1].islower() and len(line) < _WRAPPED_LINE


def _real_quotes(lines: list[str], marks: str) -> bool:
    """Enough ``>`` lines, and not all of them Python prompts (``>>> x = 1``)."""
    quoted = [line.lstrip() for line, mark in zip(lines, marks, strict=True) if mark == "q"]
    return len(quoted) >= _MIN_QUOTE_LINES and not all(line.startswith(">>>") for line in quoted)


def _answers(lines: list[str], blocks: list[tuple[int, int]]) -> list[list[str]]:
    """The text after each quote block, without the attribution of the next one. A last
    piece that is only a signature or a list footer is no answer."""
    answers: list[list[str]] = []
    ends = [start for start, _ in blocks[1:]] + [len(lines)]
    for (_, begin), end in zip(blocks, ends, strict=True):
        above = _attribution_above(lines, end, begin) if end < len(lines) else None
        piece = _trimmed(lines[begin : end if above is None else above])
        if piece and not (end == len(lines) and _only_signature(piece)):
            answers.append(piece)
    return answers


def _only_signature(lines: list[str]) -> bool:
    """Whether the text after the last quote starts with a signature or a list footer (sig
    dashes, a rule of "=" or "-", "Sent from my ...")."""
    stripped = [line.strip() for line in lines]
    return bool(_RULE.fullmatch(stripped[0])) or _signature_start(stripped) == 0


def _trimmed(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _attribution_above(lines: list[str], start: int, floor: int = 0) -> int | None:
    """Where the attribution line (perhaps wrapped) above the quote at `start` begins: the
    last text line, or up to three of them, above at most two blank lines, from `floor` on."""
    end = start
    while end > floor and start - end < 2 and not lines[end - 1].strip():
        end -= 1
    for count in range(_ATTRIBUTION_MAX_LINES, 0, -1):
        group = lines[end - count : end]
        if end - count >= floor and all(line.strip() for line in group) and _attribution(group):
            return end - count
    return None


def _history_starts(lines: list[str]) -> bool:
    """Whether the quoted history (or a forward, or a signature) already starts in these
    lines: then the text above the quotes is a top-posted reply, complete on its own."""
    if len(_cut_quote_headers(lines)) < len(lines):
        return True
    stripped = [line.strip() for line in lines]
    return _signature_start(stripped, closings=False) is not None


# --- where the history starts -----------------------------------------------------------

#: Attribution lines above a quote, matched in full on the line in lower case with
#: whitespace collapsed, " :" (French typography) and "：" (CJK) as ":" and leading "-"
#: (Yahoo's "--- On ...") dropped. These start with a word of their own:
_ANCHORED_ATTRIBUTION = re.compile(
    r"(?:on .+ wrote"  # en: On Mon, 6 Jan 2025, Jane <j@x> wrote:
    r"|am .+ schrieb(?: .+)?"  # de: Am 06.01.25 um 10:15 schrieb Jane:
    r"|le .+ a [ée]crit"  # fr: Le 6 janv. 2025 à 10:15, Jane a écrit :
    r"|el .+ escribi[óo]"  # es: El lun, 6 ene 2025, Ana escribió:
    r"|op .+ (?:schreef(?: .+)?|het volgende geschreven)"  # nl: Op 6 jan. 2025 schreef Jan:
    r"|il .+ ha scritto"  # it: Il giorno lun 6 gen 2025 alle ore 10:15 Ada ha scritto:
    r"|em .+ escreveu"  # pt: Em seg., 6 de jan. de 2025 às 10:15, Ana escreveu:
    r"|w dniu .+ (?:pisze|napisał(?:\(a\)|a)?)"  # pl: W dniu 06.01.2025 o 10:15, Jan pisze:
    r"|dnia .+ (?:napisał(?:\(a\)|a)?|nadesłał)"  # pl: Dnia 6 stycznia 2025 Jan napisał(a):
    r"|wiadomość napisana przez .+ w dniu .+"  # pl, Apple Mail
    r"|quoting .+@.+"  # Horde: Quoting Jane <j@x>:
    r"):"
)
#: These may follow a name or a date, so ordinary prose ("He wrote:") could end like them:
#: they count only with a date, a time or an address in them, or, short, above a quote.
_LOOSE_ATTRIBUTION = re.compile(
    r"(?:.+ (?:wrote|writes)"  # en: Jane Doe <j@x> wrote: / Jane Doe wrote:
    r"|.+ (?:schrieb|schreef|a [ée]crit|escribi[óo]|ha scritto|escreveu(?: no dia .+)?)"
    r"|.+ (?:пишет|написал|написала|написал\(а\))"  # ru: 06.01.2025 10:15, Иван пишет:
    r"|.+ napisał(?:\(a\)|a)?"  # pl: pon., 6 sty 2025 o 10:15 Jan <j@x> napisał(a):
    r"|.+ skrev(?: .+)?"  # sv: Den 2025-01-06 kl. 10:15, skrev Jan: / Jan skrev:
    r"|.+(?:書きました|のメッセージ|のメール)"  # ja: 2025/01/06 10:15 に 山田 さんは書きました:
    r"|.+(?:写道|寫道)"  # zh: 王伟 <w@x> 于2025年1月6日周一 10:15写道：
    r"|.*\d:\d\d.*<[^<>\s]+@[^<>\s]+>"  # Gmail ru/ja, Yandex: only a date and the sender
    r"):"
)
_EVIDENCE = re.compile(r"@|\d:\d\d|\d[./-]\d{1,2}[./-]\d|\d{4}\s*(?:年|г)")
_BARE_ATTRIBUTION_WORDS = 8
#: Mail clients wrap a long attribution line ("On ... <\nname@example.com> wrote:").
_ATTRIBUTION_MAX_LINES = 3
_ATTRIBUTION_MAX_CHARS = 400
_ADDRESS_START = re.compile(r"<|[^\s<>@]+@[^\s<>]+>")
#: The line above a copied or forwarded message, e.g. "-----Original Message-----".
_HISTORY_LINE = re.compile(
    r"[>\s]*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|oorspronkelijk bericht|messaggio originale|mensagem original|"
    r"ursprungligt meddelande|oryginalna wiadomość|wiadomość oryginalna|исходное сообщение|"
    r"元のメッセージ|原始邮件|原始郵件|forwarded message|weitergeleitete nachricht|"
    r"message transféré|mensaje reenviado|doorgestuurd bericht|messaggio inoltrato|"
    r"mensagem encaminhada|vidarebefordrat meddelande|przekazana wiadomość|"
    r"пересылаемое сообщение|转发邮件|轉寄郵件)\s*-{2,}\s*"
    r"|[>\s]*(?:begin forwarded message|anfang der weitergeleiteten nachricht|"
    r"début du message réexpédié|inizio messaggio inoltrato)\s*:\s*",
    re.IGNORECASE,
)
#: An Outlook-style header block above the history: three lines or more with these labels,
#: one of them a "From" (two are not enough: "Od: 6.01\nDo: 10.01" is a Polish date range).
_FROM_LABELS = frozenset("from von van de da från fra od от 差出人 发件人 寄件者 送信者".split())
_HEADER_LABELS = _FROM_LABELS | {
    *"sent date to subject cc gesendet datum an betreff envoyé à objet enviado enviada para "
    "asunto fecha assunto data verzonden aan onderwerp inviato a oggetto skickat till ämne "
    "wysłano do temat dw отправлено кому тема дата копия 送信日時 宛先 件名 日付 发送时间 "
    "收件人 主题 日期 抄送 寄件日期 收件者 主旨 副本".split(),
    *("enviado el", "enviado em", "enviada em"),
}
_LABEL = re.compile(r"[>\s*]*([^\W\d_][^:：*]{0,15}?)[\s*]*[:：]")
_HEADER_BLOCK_LINES = 3


def _cut_quote_headers(lines: list[str]) -> list[str]:
    """Cut where the history starts and the library did not see it: an attribution line
    (wrapped ones, Dutch "schreef NAME:", the languages it lacks), an "Original Message"
    or forward line, an Outlook header block in a language it lacks."""
    for index in range(len(lines)):
        if _starts_history(lines, index):
            return lines[:index]
    return lines


def _starts_history(lines: list[str], index: int) -> bool:
    if _HISTORY_LINE.fullmatch(lines[index]) or _header_block_at(lines, index):
        return True
    for count in range(1, _ATTRIBUTION_MAX_LINES + 1):
        group = lines[index : index + count]
        if len(group) == count and group[-1].rstrip().endswith((":", "：")):
            strength = _attribution(group)
            if strength == 2 or (strength == 1 and _quote_follows(lines, index + count)):
                return True
    return False


def _attribution(group: list[str]) -> int:
    """2 when these lines are an attribution line, 1 when they are one if a quote follows
    them, else 0."""
    text = " ".join(line.strip().lstrip(">").strip() for line in group)
    if len(text) > _ATTRIBUTION_MAX_CHARS or not text.endswith((":", "：")):
        return 0
    text = " ".join(text.lower().split()).replace(" :", ":").replace("：", ":").lstrip("- ")
    if _ANCHORED_ATTRIBUTION.fullmatch(text):
        return 2
    if not _LOOSE_ATTRIBUTION.fullmatch(text) or not _wrapped_at_addresses(group):
        return 0
    if _EVIDENCE.search(text):
        return 2
    return 1 if len(group) == 1 and len(text.split()) <= _BARE_ATTRIBUTION_WORDS else 0


def _wrapped_at_addresses(group: list[str]) -> bool:
    """A loose attribution spans lines only where a client wrapped it, before or inside an
    address, so that prose above it is not taken in."""
    for above, below in zip(group, group[1:], strict=False):
        below = below.strip().lstrip(">").strip()
        if not above.rstrip().endswith("<") and not _ADDRESS_START.match(below):
            return False
    return True


def _quote_follows(lines: list[str], index: int) -> bool:
    """Whether the next text line is quoted, or there is none (an HTML quote cut off)."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index == len(lines) or lines[index].lstrip().startswith(">")


def _header_block_at(lines: list[str], index: int) -> bool:
    labels = []
    for line in lines[index : index + _HEADER_BLOCK_LINES]:
        label = _header_label(line)
        if label is None:
            return False
        labels.append(label)
    return len(labels) == _HEADER_BLOCK_LINES and not _FROM_LABELS.isdisjoint(labels)


def _header_label(line: str) -> str | None:
    if ":" not in line[:40] and "：" not in line[:40]:
        return None
    found = _LABEL.match(line)
    label = found.group(1).strip().lower() if found else None
    return label if label in _HEADER_LABELS else None


def _cut_trailing_quote(lines: list[str]) -> list[str]:
    """Drop the ``>`` block at the end (answers between quotes went earlier)."""
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
    r"verzonden (?:vanaf|met|vanuit) |verstuurd (?:vanaf|vanuit|met) |"
    r"отправлено (?:с|из)|inviato da|enviado d[oe] (?:meu|minha)|wysłane z|"
    r"skickat från|iphoneから送信|发自我的|从我的.{1,20}发送)",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^\s*(?:best(?: regards| wishes)?|kind regards|warm regards|regards|cheers|"
    r"many thanks|thanks(?: again| a lot| and regards)?|thank you|all the best|"
    r"mit freundlichen gr(?:ü|ue)(?:ß|ss)en|"
    r"(?:viele|beste|liebe|herzliche|freundliche|sch(?:ö|oe)ne) gr(?:ü|ue)(?:ß|ss)e|"
    r"gr(?:ü|ue)(?:ß|ss)e|gru(?:ß|ss)|mfg|lg|vg|"
    r"cordialement|bien cordialement|bien (?:à|a) vous|salutations|bonne journ[ée]e|"
    r"un saludo|saludos(?: cordiales)?|atentamente|un abrazo|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|hartelijke groet(?:en)?|"
    r"groet(?:en|jes)?|mvg|"
    r"с уважением|с наилучшими пожеланиями|всего доброго|"  # ru
    r"cordiali saluti|distinti saluti|un saluto|saluti|"  # it
    r"atenciosamente|abraços?|cumprimentos|"  # pt
    r"pozdrawiam|z poważaniem|serdecznie pozdrawiam|"  # pl
    r"(?:med )?vänliga hälsningar|hälsningar|mvh|"  # sv
    r"よろしくお願い(?:します|いたします|致します)|"  # ja
    r"此致|祝好|顺祝商祺)\s*[,.!。，！]?\s*$",  # zh
    re.IGNORECASE,
)


def _cut_signature(lines: list[str]) -> list[str]:
    """Cut at sig dashes, an Outlook separator, a "Sent from my ..." line, or a closing
    line that only a few lines follow (a closing mid-text is kept: "Thanks!\\n\\nAlso ...")."""
    start = _signature_start(lines)
    return lines if start is None else lines[:start]


def _signature_start(lines: list[str], closings: bool = True) -> int | None:
    # Lines with text after each index, counted once from the end: counting them again for
    # every closing line took time quadratic in the lines ("lg\n" x 16,000: 6 s).
    after = [0] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        after[index] = after[index + 1] + bool(lines[index].strip())
    for index, line in enumerate(lines):
        if _SIG_DASHES.match(line) or _SEPARATOR.match(line):
            return index
        if _SENT_FROM.match(line) and len(line.split()) <= 10:
            return index
        short_tail = after[index + 1] <= MAX_SIGNATURE_LINES
        if closings and index and short_tail and _CLOSING.match(line):
            return index
    return None


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
     "moz-signature", "yahoo_quoted", "protonmail_quote"}
)  # fmt: skip
_QUOTE_IDS = frozenset({"ms-outlook-mobile-signature", "signature"})
#: Outlook's marks of the history: it follows them, next to them rather than inside.
_HISTORY_CLASSES = frozenset({"outlookmessageheader"})
_HISTORY_IDS = frozenset(
    {"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"}
)  # fmt: skip


def html_to_text(html: str) -> str:
    """Visible text of an HTML body, one line per block, stopping where the quoted history
    starts (a blockquote, Gmail's and Thunderbird's quote divs, Outlook's reply header).
    When a quote comes before any text, the reply is written below it: the quotes are left
    out and the text around them kept, each piece a paragraph of its own."""
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
        self._wrote = False  # visible text so far
        self._below = False  # a quote came first: the answers are below and between quotes
        self._quote_tag: str | None = None  # the quote being left out, and its nesting
        self._quote_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if self._quote_tag is not None:
            if tag == self._quote_tag:
                self._quote_depth += 1
            return
        if tag in _SKIPPED:
            self._skip_depth += 1
            return
        mark = _quote_mark(tag, dict(attrs))
        if mark == "history" or (mark == "quote" and self._wrote and not self._below):
            self._done = True
        elif mark == "quote":  # nothing written above it: the reply is below the quote
            self._below, self._quote_tag, self._quote_depth = True, tag, 1
            self._out.append("\n\n")
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
        if self._quote_tag is not None:
            if tag == self._quote_tag:
                self._quote_depth -= 1
            if not self._quote_depth:
                self._quote_tag = None
                self._out.append("\n\n")
        elif tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCKS:
            self._newline()
            self._pre_depth = max(0, self._pre_depth - (1 if tag == "pre" else 0))

    def handle_data(self, data: str) -> None:
        if self._done or self._skip_depth or self._quote_tag is not None:
            return
        self._wrote = self._wrote or bool(data.strip())
        self._out.append(data if self._pre_depth else re.sub(r"\s+", " ", data))

    def _newline(self) -> None:
        if self._out and not self._out[-1].endswith("\n"):
            self._out.append("\n")

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self._out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _quote_mark(tag: str, attrs: dict[str, str | None]) -> Literal["quote", "history"] | None:
    """Whether the element holds quoted text or a signature ("quote"), or marks where the
    history starts ("history")."""
    classes = set((attrs.get("class") or "").lower().split())
    element_id = (attrs.get("id") or "").lower()
    if classes & _HISTORY_CLASSES or element_id in _HISTORY_IDS:
        return "history"
    if tag == "blockquote" or classes & _QUOTE_CLASSES or element_id in _QUOTE_IDS:
        return "quote"
    return None
