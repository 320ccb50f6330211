"""Signed download links for webhook receivers: the raw message and each attachment, readable
without a login until the link expires.

A link is a token signed with the app's SECRET_KEY (itsdangerous) under a salt of its own, so
no other value the app signs (sessions, reply addresses) passes for one. The token names what
it opens (kind and id) and when it stops working; changing any of it breaks the signature.
Links are built on the `public_url` setting, else on the address `mxsmtp serve` last said it
listens on (a cluster fact, so a worker on another machine builds the same links)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import ClusterFact
from mxsmtp_web.store.settings import Settings, machine_fqdn

SALT = "mxsmtp.webhook-download"
RAW = "raw"
ATTACHMENT = "attachment"
KINDS = (RAW, ATTACHMENT)
#: Where the web app serves the links (the route in web/signed_downloads.py).
FILES_PATH = "/files/"
WEB_ADDRESS_FACT = "web_address"
#: `mxsmtp serve`'s default, when no web node has said where it listens.
DEFAULT_WEB_ADDRESS = "http://127.0.0.1:8025"
_WILDCARDS = ("", "0.0.0.0", "::")


class BadLink(Exception):
    """The token was not made by us (altered, truncated, or signed with another key)."""


class LinkExpired(Exception):
    """The token is ours but its time is up."""


@dataclass(frozen=True)
class LinkTarget:
    """What a valid link opens: the raw message (`id` is the message's) or an attachment."""

    kind: str
    id: int


def make_token(secret_key: str, target: LinkTarget, expires_at: int) -> str:
    """A token that opens `target` until `expires_at` (seconds since the epoch)."""
    return _serializer(secret_key).dumps([target.kind, target.id, int(expires_at)])


def read_token(secret_key: str, token: str, now: float | None = None) -> LinkTarget:
    """What `token` opens; raises BadLink for a token we did not make, LinkExpired for one
    whose time is up."""
    try:
        kind, target_id, expires_at = _serializer(secret_key).loads(token)
    except (BadSignature, TypeError, ValueError):
        raise BadLink("not a valid download link") from None
    if kind not in KINDS or not isinstance(target_id, int) or not isinstance(expires_at, int):
        raise BadLink("not a valid download link")
    if (time.time() if now is None else now) >= expires_at:
        raise LinkExpired("this download link has expired")
    return LinkTarget(kind, target_id)


def link_url(base: str, token: str) -> str:
    return base.rstrip("/") + FILES_PATH + token


def base_url(settings: Settings) -> str:
    """Where receivers reach the web app: `public_url`, else what `mxsmtp serve` recorded
    (needs an app context)."""
    if settings.public_url:
        return settings.public_url
    fact = db.session.get(ClusterFact, WEB_ADDRESS_FACT)
    return fact.value if fact is not None else DEFAULT_WEB_ADDRESS


def web_address(host: str, port: int) -> str:
    """The http:// address of a web server bound to `host`:`port`, as another machine names
    it (a wildcard address is this machine's name)."""
    if host in _WILDCARDS:
        host = machine_fqdn()
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"http://{host}:{port}"


def record_web_address(address: str) -> None:
    """Remember where this node's web server listens, for links built anywhere (needs an app
    context); the last web node to start wins."""
    db.session.merge(ClusterFact(key=WEB_ADDRESS_FACT, value=address))
    db.session.commit()


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=SALT)
