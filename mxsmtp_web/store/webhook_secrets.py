"""The `whsec_…` secret that signs webhooks and HTTP hook calls, and the signature itself, per
the Standard Webhooks specification (standardwebhooks.com): the receiver checks
`webhook-signature` = `v1,` + base64(HMAC-SHA256(secret, "id.timestamp.body")). The secret is
a row, so every node of a database signs with the same one; after a rotation the old secret
signs beside the new one for ROTATION_OVERLAP, so receivers can switch without a gap."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import ClusterFact, WebhookSecret, utcnow

PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)
_CREATED_FACT = "webhook_secret_created"


@dataclass(frozen=True)
class SigningSecret:
    secret: str  # whsec_ + base64 of the key bytes
    created_at: datetime
    retired_at: datetime | None  # None: the current secret

    @property
    def key(self) -> bytes:
        return base64.b64decode(self.secret.removeprefix(PREFIX))


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,…` signature of a message (Standard Webhooks, symmetric)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    signing: Sequence[SigningSecret], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret that signs now, space
    separated, newest first."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret.key, webhook_id, timestamp, body) for secret in signing
        ),
    }


def signing_secrets() -> list[SigningSecret]:
    """The secrets that sign now, newest first; makes the first one if there is none (needs an
    app context)."""
    now = utcnow()
    rows = db.session.scalars(
        select(WebhookSecret)
        .where(or_(WebhookSecret.retired_at.is_(None), WebhookSecret.retired_at > now))
        .order_by(WebhookSecret.id.desc())
    ).all()
    if not any(row.retired_at is None for row in rows):
        return [_create_first()] + [_value(row) for row in rows]
    return [_value(row) for row in rows]


def current_secret() -> SigningSecret:
    return signing_secrets()[0]


def rotate() -> SigningSecret:
    """A new current secret; the old one keeps signing for ROTATION_OVERLAP."""
    now = utcnow()
    for row in db.session.scalars(select(WebhookSecret).where(WebhookSecret.retired_at.is_(None))):
        row.retired_at = now + ROTATION_OVERLAP
    row = WebhookSecret(secret=new_secret(), created_at=now)
    db.session.add(row)
    db.session.commit()
    return _value(row)


def _create_first() -> SigningSecret:
    """Two nodes may start signing at the same moment: a fact row with a fixed key lets only
    one of them create the secret."""
    try:
        db.session.add(ClusterFact(key=_CREATED_FACT, value=utcnow().isoformat()))
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
    else:
        row = WebhookSecret(secret=new_secret(), created_at=utcnow())
        db.session.add(row)
        db.session.commit()
        return _value(row)
    row = db.session.scalars(
        select(WebhookSecret).where(WebhookSecret.retired_at.is_(None))
    ).first()
    if row is None:  # the other node has not committed yet
        raise RuntimeError("the webhook secret is being created by another node; try again")
    return _value(row)


def _value(row: WebhookSecret) -> SigningSecret:
    return SigningSecret(row.secret, row.created_at, row.retired_at)
