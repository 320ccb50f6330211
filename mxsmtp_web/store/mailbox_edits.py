"""Adding, changing and removing mailboxes, validated like settings: every value is checked
before anything is written, and an error names the mailbox, the key and what it accepts. A
change bumps the settings revision, so every node routes by it from its next session."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from sqlalchemy import func, select

from mxsmtp_web.mail import routing
from mxsmtp_web.store import mailboxes
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.mailboxes import DEFAULT, EVERYONE, NONE, MailboxConfig
from mxsmtp_web.store.models import Mailbox, User
from mxsmtp_web.store.settings import SettingError, bump_revision, parse_value

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KEYS = (
    "match",
    "recipient_hook",
    "message_hook",
    "webhook_url",
    "retention_days",
    "delete_after_process",
    "viewers",
    "position",
)
#: What the built-in mailbox takes from the global settings instead.
DEFAULT_KEYS = ("viewers",)
KEY_HELP = {
    "match": "recipient patterns, one per line: " + routing.PATTERN_HELP,
    "recipient_hook": "check_recipient for its recipients; empty: the global recipient_hook; "
    "none: no hook",
    "message_hook": "process_message for its messages; empty: the global message_hook; none: "
    "no hook",
    "webhook_url": "where its messages are POSTed; empty: the global webhook_url; none: no webhook",
    "retention_days": "days its messages are kept; empty: the global retention_days; 0: forever",
    "delete_after_process": "true or false; empty: the global delete_after_process",
    "viewers": "user names (comma-separated) who may read it besides admins; * for everyone",
    "position": "a whole number; lower is matched first",
}


class MailboxError(ValueError):
    """A value a mailbox does not accept; the message says which and what it accepts, and
    `key` names the field (empty: the mailbox as a whole)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def problems(name: str, values: dict[str, str]) -> dict[str, str]:
    """Every value that would be refused, by key (for a form that shows each next to its
    field); empty when all of them are fine."""
    found = {}
    for key, text in values.items():
        try:
            _parse(name or "new", key, text)
        except MailboxError as error:
            found[key] = str(error)
    return found


def check_name(name: str) -> str:
    value = name.strip()
    if not _NAME.match(value):
        raise MailboxError(
            f"mailbox name {name!r}: expects 1 to 64 lower-case letters, digits, '.', '-' or "
            "'_', starting with a letter or digit",
            "name",
        )
    return value


def add(name: str, patterns: Sequence[str], values: dict[str, str] | None = None) -> None:
    """A new mailbox, matched after the existing ones unless `position` is given."""
    name = check_name(name)
    if name == DEFAULT:
        raise MailboxError(
            "default is built in: it holds every recipient no mailbox matches", "name"
        )
    if db.session.get(Mailbox, name) is not None:
        raise MailboxError(f"mailbox {name} exists already; change it with set", "name")
    if not patterns:
        raise MailboxError(f"mailbox {name}: give at least one --match PATTERN", "match")
    row = Mailbox(name=name, position=_next_position(), patterns="[]")
    _apply(row, {"match": "\n".join(patterns), **(values or {})})
    db.session.add(row)
    _commit()


def update(name: str, values: dict[str, str]) -> None:
    """Change keys of a mailbox (of `default`: only its viewers)."""
    name = check_name(name)
    row = db.session.get(Mailbox, name)
    if name == DEFAULT:
        wrong = sorted(set(values) - set(DEFAULT_KEYS))
        if wrong:
            raise MailboxError(
                f"default: {wrong[0]} comes from the global settings (mxsmtp settings set "
                f"{wrong[0]} VALUE); only viewers can be set here"
            )
        if row is None:
            row = Mailbox(name=DEFAULT, position=2**31 - 1, patterns="[]")
            db.session.add(row)
    elif row is None:
        raise MailboxError(f"no mailbox {name}; add it first")
    _apply(row, values)
    _commit()


def remove(name: str) -> None:
    """Remove a mailbox. Its messages stay (admins see them under its name); its recipients
    fall to the mailboxes after it, or to `default`."""
    name = check_name(name)
    if name == DEFAULT:
        raise MailboxError("default is built in and cannot be removed")
    row = db.session.get(Mailbox, name)
    if row is None:
        raise MailboxError(f"no mailbox {name}")
    db.session.delete(row)
    _commit()


def _apply(row: Mailbox, values: dict[str, str]) -> None:
    """Check every value, then set them all: a bad value changes nothing."""
    parsed = {key: _parse(row.name, key, text) for key, text in values.items()}
    for key, value in parsed.items():
        setattr(row, "patterns" if key == "match" else key, value)


def _parse(name: str, key: str, text: str) -> object:
    if key not in KEYS:
        raise MailboxError(f"mailbox {name}: no key {key!r}; known keys: " + ", ".join(KEYS), key)
    try:
        return _PARSERS[key](text.strip())
    except (ValueError, routing.PatternError) as error:
        raise MailboxError(f"mailbox {name}: {key} expects {KEY_HELP[key]}; {error}", key) from None


def _patterns(text: str) -> str:
    patterns = [routing.check(line) for line in text.splitlines() if line.strip()]
    if not patterns:
        raise ValueError("no pattern given")
    return json.dumps(patterns)


def _setting_or_none(key: str) -> Callable[[str], object]:
    def parse(text: str) -> str:
        if text.lower() == NONE:
            return NONE
        try:
            return parse_value(key, text)
        except SettingError as error:
            raise ValueError(error.problem) from None

    return parse


def _optional(key: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        if text == "":
            return None
        try:
            return parse_value(key, text)
        except SettingError as error:
            raise ValueError(error.problem) from None

    return parse


def _viewers(text: str) -> str:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = set(db.session.scalars(select(User.username)))
    unknown = [name for name in names if name != EVERYONE and name not in known]
    if unknown:
        raise ValueError(f"no user {unknown[0]!r} (create users first)")
    return ",".join(dict.fromkeys(names))


def _position(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"got {text!r}") from None


_PARSERS: dict[str, Callable[[str], object]] = {
    "match": _patterns,
    "recipient_hook": _setting_or_none("recipient_hook"),
    "message_hook": _setting_or_none("message_hook"),
    "webhook_url": _setting_or_none("webhook_url"),
    "retention_days": _optional("retention_days"),
    "delete_after_process": _optional("delete_after_process"),
    "viewers": _viewers,
    "position": _position,
}


def _next_position() -> int:
    highest = db.session.scalar(select(func.max(Mailbox.position)).where(Mailbox.name != DEFAULT))
    return (highest or 0) + 10


def _commit() -> None:
    bump_revision()
    db.session.commit()


def find(name: str) -> MailboxConfig | None:
    row = db.session.get(Mailbox, name)
    return mailboxes.config_of(row) if row is not None else None
