"""Reading the few settings that reply addresses need straight from the instance's database,
without an app or SQLAlchemy: a hook script calls `read_reply_address` for every recipient and
must stay fast. Read-only; the PostgreSQL server MXSMTP_DATABASE_URL names, else the SQLite
file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from mxsmtp_web.config import DATABASE_NAME, boot_value

WANTED = ("reply_domain", "host_name", "reply_separator")


def stored_settings(instance: Path) -> dict[str, str]:
    """The settings this module needs, read straight from the instance's database (no app,
    no SQLAlchemy), read-only: the PostgreSQL server MXSMTP_DATABASE_URL names, else the
    SQLite file. A missing database or table means defaults."""
    url = boot_value("DATABASE_URL", instance) or ""
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        return _postgresql_settings(url)
    path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None
    path = path or instance / DATABASE_NAME
    if not path.exists():
        return {}
    try:
        uri = f"{path.as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=5)) as connection:
            rows = connection.execute(
                "SELECT key, value FROM setting WHERE key IN (?, ?, ?)", WANTED
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {key: (value or "").strip() for key, value in rows}


def _postgresql_settings(url: str) -> dict[str, str]:
    import psycopg

    conninfo = url.replace("postgresql+psycopg:", "postgresql:", 1)
    try:
        with psycopg.connect(conninfo, connect_timeout=5, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT key, value FROM setting WHERE key = ANY(%s)", (list(WANTED),)
            ).fetchall()
    except psycopg.Error:
        return {}
    return {key: (value or "").strip() for key, value in rows}
