"""What the nodes of one database must share, and checking it at start: the secret key signs
reply addresses and sessions, so a node with another key would sign reply addresses that the
others cannot read (and refuse theirs)."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.exc import IntegrityError

from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import ClusterFact

SECRET_FACT = "secret_key_fingerprint"


def fingerprint(secret_key: str) -> str:
    """Names the key without revealing it: an HMAC of a fixed text, never the key itself."""
    return hmac.new(secret_key.encode(), b"mxsmtp node fingerprint", hashlib.sha256).hexdigest()


def check_secret_key(secret_key: str) -> str | None:
    """Record this key's fingerprint if no node did yet; a warning when the database's nodes
    use another key. Needs an app context."""
    mine = fingerprint(secret_key)
    fact = db.session.get(ClusterFact, SECRET_FACT)
    if fact is None:
        db.session.add(ClusterFact(key=SECRET_FACT, value=mine))
        try:
            db.session.commit()
        except IntegrityError:  # another node started at the same moment
            db.session.rollback()
            fact = db.session.get(ClusterFact, SECRET_FACT)
    if fact is None or hmac.compare_digest(fact.value, mine):
        return None
    return (
        "this node's secret key differs from the one the other nodes of this database use: "
        "reply addresses it signs will not be read elsewhere, and theirs not here; give every "
        "node the same MXSMTP_SECRET_KEY or instance/secret_key file"
    )
