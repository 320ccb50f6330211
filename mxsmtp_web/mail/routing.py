"""Recipient patterns of mailboxes, and matching an address against them: pure functions.

Three forms, as users know them from Mailgun routes and Action Mailbox routing:
- an exact address: `support@app.example.com`;
- a glob whose `*` stands for any run of characters: `*@tickets.example.com`,
  `reply+*@app.example.com` (what the first `*` stood for is the capture `match`, the next
  ones `match_2`, `match_3`…);
- a regular expression: `re:^(?P<ticket>[0-9]+)@tickets\\.example\\.com$` (its named groups
  are the captures).

Domains compare case-insensitively (DNS does), local parts exactly (RFC 5321 2.4 leaves them
to the receiving system, and reply tokens are case-sensitive). A regular expression sees the
address with its domain in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

REGEX_PREFIX = "re:"
MAX_PATTERN_LENGTH = 500
PATTERN_HELP = (
    "an address (support@app.example.com), a glob with * (*@tickets.example.com, "
    "reply+*@app.example.com) or re: and a regular expression "
    "(re:^(?P<ticket>[0-9]+)@tickets\\.example\\.com$)"
)


class PatternError(ValueError):
    """A pattern that is none of the three forms; the message says what is accepted."""


@dataclass(frozen=True)
class Match:
    """How an address matched a pattern: the address and what the pattern captured."""

    address: str
    captures: dict[str, str]


def normalise(address: str) -> str:
    """The address with its domain in lower case: the form every pattern is compared with."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def check(pattern: str) -> str:
    """The pattern, stripped, if it is usable; raises PatternError otherwise."""
    value = pattern.strip()
    if not value or len(value) > MAX_PATTERN_LENGTH or any(c in value for c in "\r\n\x00"):
        raise PatternError(f"expects {PATTERN_HELP}; got {pattern!r}")
    if value.startswith(REGEX_PREFIX):
        try:
            _compiled(value)
        except re.error as error:
            raise PatternError(f"{value!r} is not a valid regular expression: {error}") from None
        return value
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c in value for c in " <>\t"):
        raise PatternError(f"expects {PATTERN_HELP}; got {pattern!r}")
    return value


def match(pattern: str, address: str) -> Match | None:
    """The match of `address` (as sent) against one checked pattern, or None."""
    found = _compiled(pattern).fullmatch(normalise(address))
    if found is None:
        return None
    if pattern.startswith(REGEX_PREFIX):
        captures = {key: value for key, value in found.groupdict().items() if value is not None}
    else:
        captures = {_star_name(index): value for index, value in enumerate(found.groups())}
    return Match(address, captures)


def _star_name(index: int) -> str:
    return "match" if index == 0 else f"match_{index + 1}"


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    """Every form as one regular expression over the normalised address; compiled once."""
    if pattern.startswith(REGEX_PREFIX):
        return re.compile(pattern.removeprefix(REGEX_PREFIX))
    local, _, domain = pattern.rpartition("@")
    return re.compile(_glob(local) + "@" + _glob(domain.lower()), re.DOTALL)


def _glob(text: str) -> str:
    return "(.*?)".join(re.escape(piece) for piece in text.split("*"))
