"""The Flask extension objects, created unbound so that every module can import them."""

from __future__ import annotations

import sqlite3

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

db = SQLAlchemy()

# Seconds a writer waits for another writer before SQLite gives up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Pages of a new database. Mail is mostly large blobs: with 16 KiB pages a 1 MiB message is 64
# WAL frames instead of 256 (measured: 1 MiB messages ~17 % faster, 4 KiB ones ~10 % slower
# than with SQLite's 4 KiB default). An existing database keeps the size it has.
SQLITE_PAGE_SIZE = 16_384


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: object, _record: object) -> None:
    """WAL lets readers (the web pages) run beside the writer (the listener) without waiting;
    synchronous=FULL makes a commit durable before we answer 250."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")  # before WAL; new databases only
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
