"""A lenient reader for address fields (From, To, Cc) that `email`'s strict one misreads.

policy.default follows RFC 5322's grammar, and where a field leaves it, it keeps what it
could: ``Mikel@Lindsaar <raasdnil@gmail.com>`` becomes the address ``Mikel@Lindsaar``, a
UUCP path ``develop!nextmime@ebony@sblab.att.com`` becomes ``<>``, and encoded words next to
each other get a blank between them (against RFC 2047 6.2). This reader splits on commas
outside quotes, comments and angle brackets, takes what is inside ``<…>`` as the address
whenever there is one, and decodes display names with the caller's RFC 2047 decoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: RFC 5322 3.2.3 specials: a display name holding one of them is written quoted.
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_ROUTE = re.compile(r"^(?:@[^,:]*,?)+:")  # RFC 5322 4.4 obs-route: "<@a,@b:user@c>"
_ADDRESS_LIKE = re.compile(r"^(?=.*\w)[^\s;<>()\[\],]+$")
_GROUP = re.compile(r'^\s*((?:[^:"<@]|"(?:[^"\\]|\\.)*")*):(.*?);?\s*$', re.S)


@dataclass(frozen=True)
class Mailbox:
    """One address as written: `name` may be empty; `address` is as the sender spelt it."""

    name: str
    address: str
    bracketed: bool = False  # written in <…>: "<>" is the null address of a bounce

    @property
    def usable(self) -> bool:
        """An address an application can use (a local one too), or the null ``<>``."""
        if not self.address:
            return self.bracketed
        return bool(_ADDRESS_LIKE.match(self.address)) or self.address.startswith('"')

    def display(self) -> str:
        """``Name <address>``, the name quoted when it holds specials; the address alone."""
        if not self.name:
            return f"<{self.address}>" if self.bracketed and not self.address else self.address
        name = self.name
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>" if self.address or self.bracketed else name


def read_mailboxes(values: Iterable[str], decode: Callable[[str], str]) -> list[Mailbox]:
    """Every mailbox in the raw (undecoded) field `values`, in order, each once; group
    names are dropped and their members kept. `decode` turns an encoded name into text."""
    found: list[Mailbox] = []
    seen: set[tuple[str, str]] = set()
    for value in values:
        for item in _split(_members(" ".join(value.split()))):
            for mailbox in _mailboxes(item, decode):
                key = (mailbox.name, mailbox.address.lower())
                if (mailbox.name or mailbox.address or mailbox.bracketed) and key not in seen:
                    seen.add(key)
                    found.append(mailbox)
    return found


def _members(value: str) -> str:
    """The member list of a group ("Team: a@x, b@y;"), or `value` when it is no group."""
    match = _GROUP.match(_without_comments(value) if "(" in value else value)
    if match and "<" not in match.group(1) and "@" not in match.group(1):
        return match.group(2)
    return value


def _split(value: str) -> list[str]:
    """Split on commas that are outside quotes, comments and angle brackets."""
    items, current = [], []
    quoted = escaped = False
    depth = angle = 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"' and not depth:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")" and depth:
            depth -= 1
        elif not quoted and not depth and char in "<>":
            angle = 1 if char == "<" else 0
        elif char == "," and not (quoted or depth or angle):
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _mailboxes(item: str, decode: Callable[[str], str]) -> list[Mailbox]:
    """The mailboxes of one comma-separated item: usually one, but senders forget the comma
    (``A <a@x> B <b@y>``, ``a@x b@y``)."""
    if _outside_quotes(item, "<") >= 0:
        found = []
        while True:  # a loop, not recursion: a field may hold thousands of <addr> in a row
            end = item.find(">", _outside_quotes(item, "<"))
            if end < 0 or _outside_quotes(item[end + 1 :], "<") < 0:
                return [*found, _mailbox(item, decode)]
            found.append(_mailbox(item[: end + 1], decode))
            item = item[end + 1 :]
    words = _without_comments(item).split()
    if len(words) > 1 and '"' not in item:
        if all("@" in word for word in words):
            return [Mailbox("", word) for word in words]
        if "@" in words[-1] and not any("@" in word for word in words[:-1]):
            return [Mailbox(_name(" ".join(words[:-1]), decode), words[-1])]
    return [_mailbox(item, decode)]


def _mailbox(item: str, decode: Callable[[str], str]) -> Mailbox:
    """``name <address>``, ``address (comment)`` or a bare address, read leniently."""
    start = _outside_quotes(item, "<")
    if start >= 0:
        end = item.find(">", start)
        address = _address(item[start + 1 : end if end >= 0 else len(item)])
        name = item[:start] + (item[end + 1 :] if end >= 0 else "")
        return Mailbox(_name(name, decode), address, bracketed=True)
    comments = _comments(item)[1]
    if len(_without_comments(item).split()) > 1 and "@" not in item:
        return Mailbox(_name(item, decode), "")  # a phrase without an address
    return Mailbox(_name(" ".join(comments), decode), _address(item))


def _address(text: str) -> str:
    """An addr-spec without comments, route and folding blanks; a quoted local part as is."""
    text = _without_comments(text).strip()
    return text if '"' in text else _ROUTE.sub("", "".join(text.split()))


def _without_comments(text: str) -> str:
    return _comments(text)[0]


def _comments(text: str) -> tuple[str, list[str]]:
    """`text` with its comments (RFC 5322 3.2.2: nested, with quoted-pairs, not inside a
    quoted string) replaced by a blank, and the outermost comments' contents."""
    rest, found, current = [], [], []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            (current if depth else rest).append(char)
            escaped = False
        elif char == "\\" and (depth or quoted):
            escaped = True
            if not depth:
                rest.append(char)
        elif char == '"' and not depth:
            quoted = not quoted
            rest.append(char)
        elif char == "(" and not quoted:
            depth += 1
            if depth > 1:
                current.append(char)
        elif char == ")" and depth:
            depth -= 1
            if depth:
                current.append(char)
            else:
                found.append("".join(current).strip())
                current = []
                rest.append(" ")
        else:
            (current if depth else rest).append(char)
    return "".join(rest), found


def _outside_quotes(text: str, wanted: str) -> int:
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == wanted and not quoted:
            return index
    return -1


def _name(text: str, decode: Callable[[str], str]) -> str:
    """A display name: quotes removed (RFC 5322 3.2.4), encoded words decoded."""
    text = _without_comments(text).strip() or " ".join(_comments(text)[1])
    parts = re.split(r'("(?:[^"\\]|\\.)*")', text)
    unquoted = "".join(
        re.sub(r"\\(.)", r"\1", part[1:-1]) if part.startswith('"') else part for part in parts
    )
    return " ".join(decode(unquoted).split())
