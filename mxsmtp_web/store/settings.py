"""The runtime settings of the mail path: keys, defaults, validation, load and save.

Settings are rows in the database, so every process (the listener, the web pages, the CLI,
another node on the same file) sees one truth. Writers bump the "settings" revision; the
listener polls that single integer to notice a change made anywhere.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from mxsmtp_web.store import mailboxes
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.mailboxes import MailboxConfig
from mxsmtp_web.store.models import Revision, Setting

HOOK_KEYS = ("sender_hook", "recipient_hook", "message_hook")
XSS_LEVELS = ("strict", "basic", "standard", "relaxed")
# SCRIPT.py:FUNCTION, or an http(s) URL: a host (a name, IPv4 or [IPv6]) without a user name,
# a port, then printable ASCII without spaces. hooks.checked_url checks the rest.
_HOOK_SPEC = re.compile(
    r"^(?:[^:\x00-\x1f]+\.py:[A-Za-z_][A-Za-z0-9_]*"
    r"|(?i:https?)://(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:[/?#][!-~]*)?)$"
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class SettingError(ValueError):
    """A value that a setting does not accept. The message names the key and what it accepts."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@cache
def machine_fqdn() -> str:
    """The default `host_name`, looked up once per process (getfqdn may ask DNS)."""
    return socket.getfqdn() or "localhost"


@dataclass(frozen=True)
class Settings:
    """A consistent snapshot of every runtime setting, typed."""

    port: int = 25000
    listen_address: str = "127.0.0.1"
    host_name: str = ""  # empty means the machine's FQDN; see `effective_host_name`
    max_message_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    double_bounce_address: str = ""
    delete_after_process: bool = False
    xss_filter: bool = True
    xss_filter_level: str = "standard"
    sender_hook: str = ""
    recipient_hook: str = ""
    message_hook: str = ""
    hook_timeout: float = 10.0
    listener_enabled: bool = True
    retention_days: int = 0
    max_sessions: int = 100
    max_sessions_per_peer: int = 20  # a relay in front opens up to 20 (Postfix default)
    idle_timeout: int = 300
    session_timeout: int = 1800
    max_errors: int = 10
    max_header_size: int = 256 * 1024
    max_mime_parts: int = 500
    max_mime_depth: int = 30
    tls_cert_file: str = ""
    tls_key_file: str = ""
    require_tls: bool = False
    reply_domain: str = ""  # empty means host_name; see `replies.reply_address`
    reply_separator: str = "+"
    webhook_url: str = ""
    public_url: str = ""  # empty: the address `mxsmtp serve` listens on; see store.links
    webhook_link_ttl: int = 7 * 24 * 3600
    webhook_retry_hours: int = 72
    revision: int = field(default=0, compare=False)
    # Read with the settings and bumped with their revision: every node sees a change at once.
    mailboxes: tuple[MailboxConfig, ...] = field(
        default=(mailboxes.default_mailbox(),), compare=False
    )

    @property
    def effective_host_name(self) -> str:
        return self.host_name or machine_fqdn()


def _parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"a whole number from {low} to {high}")
        return value

    return parse


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes", "on"}:
        return True
    if lowered in {"false", "0", "no", "off"}:
        return False
    raise ValueError("true or false (also yes/no, on/off, 1/0)")


def _parse_timeout(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError("a number of seconds above 0 and at most 3600, e.g. 10 or 2.5")
    return value


def _parse_listen_address(text: str) -> str:
    value = text.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if _HOSTNAME.match(value):
        return value
    raise ValueError("an IP address of this machine (127.0.0.1, 0.0.0.0, ::1, ::) or a host name")


def _parse_host_name(text: str) -> str:
    value = text.strip()
    if value == "" or _HOSTNAME.match(value):
        return value
    raise ValueError("a host name such as mail.example.com, or empty for the machine's FQDN")


def _parse_address(text: str) -> str:
    value = text.strip()
    if value == "":
        return value
    local, at, domain = value.rpartition("@")
    if not at or not local or not _HOSTNAME.match(domain) or any(c in value for c in " <>\t"):
        raise ValueError("an email address such as double-bounce@example.com, or empty")
    return value


def _parse_xss_level(text: str) -> str:
    value = text.strip().lower()
    if value not in XSS_LEVELS:
        raise ValueError("one of " + ", ".join(XSS_LEVELS))
    return value


def _parse_path(text: str) -> str:
    value = text.strip()
    if value == "" or (value.startswith("/") and "\x00" not in value):
        return value
    raise ValueError("an absolute path to a PEM file, or empty")


def _parse_hook(text: str) -> str:
    value = text.strip()
    if value == "" or _HOOK_SPEC.match(value):
        return value
    raise ValueError(
        "SCRIPT.py:FUNCTION (a file in instance/hooks/ or an absolute path, then the function "
        "name), an http:// or https:// URL (an HTTP hook), or empty for none"
    )


def _parse_reply_domain(text: str) -> str:
    value = text.strip()
    if value == "" or _HOSTNAME.match(value):
        return value
    raise ValueError("a domain such as app.example.com, or empty for the host name")


#: The characters allowed between "reply" and the token (plain atext that no token contains).
REPLY_SEPARATORS = ("+", "-", "_", ".", "=")


def _parse_reply_separator(text: str) -> str:
    value = text.strip()
    if value not in REPLY_SEPARATORS:
        raise ValueError(
            "one of "
            + " ".join(REPLY_SEPARATORS)
            + " (the character between 'reply' and the token)"
        )
    return value


def _parse_webhook_url(text: str) -> str:
    value = text.strip()
    if value == "" or _http_url(value, query=True):
        return value
    raise ValueError(
        "an http:// or https:// URL such as https://app.example.com/hooks/mail (a query is "
        "kept; no user:password@, the signature authenticates), or empty for none"
    )


def _parse_public_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if value == "" or _http_url(value, query=False):
        return value
    raise ValueError(
        "http(s)://HOST[:PORT][/PATH] as webhook receivers reach the web app, e.g. "
        "https://mail.example.com (no query), or empty for the address `mxsmtp serve` listens on"
    )


def _http_url(value: str, *, query: bool) -> bool:
    """Whether `value` is an absolute http(s) URL with a valid host, without credentials or
    fragment (and without a query unless `query`)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port out of range raises ValueError
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.fragment:
        return False
    if (parts.query or value.endswith("?")) and not query:
        return False
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not parts.netloc.startswith("[")
    return True


@dataclass(frozen=True)
class SettingSpec:
    key: str
    parse: Callable[[str], Any]
    help: str


SPECS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec("port", _parse_int(1, 65535), "TCP port the SMTP listener binds."),
        SettingSpec(
            "listen_address",
            _parse_listen_address,
            "Interface to bind: 127.0.0.1 for this machine only, 0.0.0.0 or :: for all.",
        ),
        SettingSpec(
            "host_name",
            _parse_host_name,
            "Name announced in the greeting and EHLO and written into Received headers; "
            "empty means the machine's FQDN.",
        ),
        SettingSpec(
            "max_message_size",
            _parse_int(1024, 2**31 - 1),
            "Largest message accepted, in bytes; advertised with SIZE.",
        ),
        SettingSpec(
            "max_recipients",
            _parse_int(1, 100_000),
            "Most recipients accepted for one message; more get 452 4.5.3.",
        ),
        SettingSpec(
            "double_bounce_address",
            _parse_address,
            "Sender that relays use for address-verification probes: its probes skip "
            "the sender check and are answered truthfully but never stored.",
        ),
        SettingSpec(
            "delete_after_process",
            _parse_bool,
            "Remove a message once the message hook has accepted it.",
        ),
        SettingSpec("xss_filter", _parse_bool, "Sanitise HTML bodies when they are stored."),
        SettingSpec(
            "xss_filter_level",
            _parse_xss_level,
            "How much HTML the filter keeps: " + ", ".join(XSS_LEVELS) + ".",
        ),
        SettingSpec("sender_hook", _parse_hook, "check_sender(sender, session) -> bool"),
        SettingSpec(
            "recipient_hook", _parse_hook, "check_recipient(recipient, sender, session) -> bool"
        ),
        SettingSpec("message_hook", _parse_hook, "process_message(message) -> bool"),
        SettingSpec("hook_timeout", _parse_timeout, "Seconds a hook may run before 451 4.3.0."),
        SettingSpec(
            "listener_enabled", _parse_bool, "Whether the SMTP listener accepts connections."
        ),
        SettingSpec(
            "max_sessions",
            _parse_int(1, 100_000),
            "Most SMTP sessions open at once; more get 421 4.7.0.",
        ),
        SettingSpec(
            "max_sessions_per_peer",
            _parse_int(1, 100_000),
            "Most SMTP sessions open at once from one address; more get 421 4.7.0.",
        ),
        SettingSpec(
            "idle_timeout",
            _parse_int(5, 86_400),
            "Seconds a session may wait between commands (RFC 5321 asks for 5 minutes).",
        ),
        SettingSpec(
            "session_timeout",
            _parse_int(10, 86_400),
            "Seconds a whole session may last, however busy; then 421 4.4.2.",
        ),
        SettingSpec(
            "max_errors",
            _parse_int(1, 10_000),
            "Refused recipients and bad commands a session may have before it is closed (421).",
        ),
        SettingSpec(
            "max_header_size",
            _parse_int(1024, 64 * 1024 * 1024),
            "Largest header block accepted, in bytes; larger messages get 552 5.3.4.",
        ),
        SettingSpec(
            "max_mime_parts",
            _parse_int(1, 1_000_000),
            "Most MIME parts in one message; more get 554 5.6.0.",
        ),
        SettingSpec(
            "max_mime_depth",
            _parse_int(1, 1000),
            "Deepest MIME nesting accepted; deeper gets 554 5.6.0.",
        ),
        SettingSpec(
            "tls_cert_file",
            _parse_path,
            "PEM certificate (chain) for STARTTLS, offered when this and the key are set.",
        ),
        SettingSpec("tls_key_file", _parse_path, "PEM private key for STARTTLS."),
        SettingSpec(
            "require_tls",
            _parse_bool,
            "Refuse MAIL FROM before STARTTLS (530 5.7.0); needs the certificate and key.",
        ),
        SettingSpec(
            "retention_days",
            _parse_int(0, 36500),
            "Purge messages older than this many days automatically; 0 keeps them forever.",
        ),
        SettingSpec(
            "reply_domain",
            _parse_reply_domain,
            "Domain of the reply addresses reply_address() makes; empty means host_name.",
        ),
        SettingSpec(
            "reply_separator",
            _parse_reply_separator,
            "Character between 'reply' and the token of reply addresses: "
            + " ".join(REPLY_SEPARATORS)
            + ".",
        ),
        SettingSpec(
            "webhook_url",
            _parse_webhook_url,
            "URL that receives a signed POST for every stored message; empty for none.",
        ),
        SettingSpec(
            "public_url",
            _parse_public_url,
            "The web app's address as webhook receivers reach it, for the download links in "
            "webhooks; empty means the address `mxsmtp serve` listens on.",
        ),
        SettingSpec(
            "webhook_link_ttl",
            _parse_int(60, 366 * 24 * 3600),
            "Seconds the download links in a webhook work without a login.",
        ),
        SettingSpec(
            "webhook_retry_hours",
            _parse_int(0, 24 * 90),
            "Hours a failing webhook is retried (with growing pauses, at most an hour apart) "
            "before it is marked failed; 0 tries once.",
        ),
    )
}

SETTINGS_REVISION = "settings"


def parse_value(key: str, text: str) -> Any:
    """Turn user text into the typed value for `key`; raises SettingError naming what it accepts."""
    spec = SPECS.get(key)
    if spec is None:
        raise SettingError(key, "no such setting; known keys: " + ", ".join(SPECS))
    try:
        return spec.parse(str(text))
    except ValueError as error:
        raise SettingError(key, f"expects {error}; got {text!r}") from None


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_json_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def load() -> Settings:
    """Read every setting (needs an app context). Stored values that no longer validate fall
    back to their defaults rather than stopping the listener."""
    rows = dict(db.session.execute(select(Setting.key, Setting.value)).all())
    values: dict[str, Any] = {}
    for key in SPECS:
        if key in rows:
            try:
                values[key] = parse_value(key, rows[key])
            except SettingError:
                continue
    return Settings(**values, revision=current_revision(), mailboxes=mailboxes.read_all())


def current_revision() -> int:
    value = db.session.execute(
        select(Revision.value).where(Revision.name == SETTINGS_REVISION)
    ).scalar()
    return value or 0


def parse_listen(value: str) -> tuple[str, int]:
    """A node's ADDRESS:PORT (`--listen`, MXSMTP_LISTEN): an IPv4 address, a host name, or an
    IPv6 address in brackets, and a port from 1 to 65535."""
    address, _, port = value.strip().rpartition(":")
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(
            "--listen / MXSMTP_LISTEN",
            f"{value!r} is not ADDRESS:PORT (for example 0.0.0.0:25, 127.0.0.1:2525 or "
            "[::1]:2525; port 1 to 65535)",
        )
    return address, int(port)


def read_revision(dbapi_connection: Any) -> int:
    """The settings revision through a plain DB-API connection: a read of one indexed row."""
    mark = "?" if isinstance(dbapi_connection, sqlite3.Connection) else "%s"
    row = dbapi_connection.execute(
        f"SELECT value FROM {Revision.__tablename__} WHERE name = {mark}", (SETTINGS_REVISION,)
    ).fetchone()
    return row[0] if row else 0


class RevisionReader:
    """The settings revision, read before every SMTP session through a connection of its own,
    so that a change made anywhere applies from the next session. On SQLite the read is cheap
    enough for the event loop's thread (a WAL reader never waits for the writer; a short busy
    timeout bounds the rare exception); on PostgreSQL it is a round trip to a server that may
    hang, so `blocking` tells the caller to read it in a thread, with a timeout."""

    BUSY_MS = 50

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._connection: Any = None
        self.blocking = engine.dialect.name == "postgresql"

    def read(self) -> int:
        try:
            if self._connection is None:
                self._connection = self._connect()
            return read_revision(self._connection.dbapi_connection)
        except Exception:
            self.close()  # a fresh connection next time
            raise

    def _connect(self) -> Any:
        connection = self._engine.raw_connection()
        if self.blocking:  # its own, out of the pool: no transaction is left open
            connection.detach()
            connection.dbapi_connection.autocommit = True
        else:
            connection.execute(f"PRAGMA busy_timeout = {self.BUSY_MS}")
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass


def save(updates: Mapping[str, str]) -> Settings:
    """Validate every value first, then write them all in one transaction: a bad value changes
    nothing. Returns the new snapshot."""
    parsed = {key: parse_value(key, text) for key, text in updates.items()}
    for key, value in parsed.items():
        db.session.merge(Setting(key=key, value=to_text(value)))
    bump_revision()
    db.session.commit()
    return load()


def bump_revision() -> None:
    """Tell every node that settings or mailboxes changed (in the caller's transaction)."""
    revision = db.session.get(Revision, SETTINGS_REVISION)
    if revision is None:
        db.session.add(Revision(name=SETTINGS_REVISION, value=1))
    else:
        revision.value += 1


def as_dict(settings: Settings) -> dict[str, Any]:
    """The settings as the CLI and the JSON output show them, without bookkeeping fields."""
    values = {key: getattr(settings, key) for key in SPECS}
    values["host_name"] = settings.effective_host_name
    return {key: to_json_value(values[key]) for key in SPECS}
