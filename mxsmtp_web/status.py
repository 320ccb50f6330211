"""What the listener reports about itself, kept in the database so that every process (any web
worker, the CLI) can show it, whichever process runs the listener."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from .extensions import db
from .models import ListenerStatus, utcnow

# A report older than this means the process that wrote it is gone.
STALE_AFTER = timedelta(seconds=30)
HEARTBEAT_SECONDS = 10.0


def this_node() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ListenerReport:
    node: str
    state: str
    listening: bool
    address: str | None
    port: int | None
    error: str | None
    updated_at: datetime

    @property
    def stale(self) -> bool:
        return utcnow() - self.updated_at > STALE_AFTER


def report(
    state: str, listening: bool, address: str | None, port: int | None, error: str | None
) -> None:
    """Record this process's listener state (an upsert), and forget reports long gone."""
    db.session.merge(
        ListenerStatus(
            node=this_node(),
            state=state,
            listening=listening,
            address=address,
            port=port,
            error=error,
            updated_at=utcnow(),
        )
    )
    db.session.execute(
        delete(ListenerStatus).where(ListenerStatus.updated_at < utcnow() - 10 * STALE_AFTER)
    )
    db.session.commit()


def withdraw() -> None:
    """The listener of this process stopped for good."""
    db.session.execute(delete(ListenerStatus).where(ListenerStatus.node == this_node()))
    db.session.commit()


def reports() -> list[ListenerReport]:
    """Every listener that reported recently, newest first."""
    rows = db.session.execute(select(ListenerStatus).order_by(ListenerStatus.updated_at.desc()))
    found = [
        ListenerReport(r.node, r.state, r.listening, r.address, r.port, r.error, r.updated_at)
        for r in rows.scalars()
    ]
    return [r for r in found if not r.stale]
