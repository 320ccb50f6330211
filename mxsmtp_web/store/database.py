"""Which database an instance uses and bringing its schema to this code's revision.

`MXSMTP_DATABASE_URL` (or `DATABASE_URL` in instance/config.py) names it: `sqlite:///PATH`,
the default being the instance's own file, or `postgresql://USER:PASSWORD@HOST:PORT/DB`. The
schema is kept as Alembic migrations (`mxsmtp_web/migrations`); every process that opens the
database upgrades it under a lock first, so that nodes started together migrate once, and a
process whose code is older than the database refuses to start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

#: The newest migration this code knows (mxsmtp_web/store/migrations/versions;
#: tests/test_database.py checks that it is the newest there). A database at this
#: revision needs no Alembic at start, so CLI commands stay fast.
HEAD = "0004"
URL_SETTING = "MXSMTP_DATABASE_URL"
SCHEMES = ("sqlite", "postgresql")
#: pg_advisory_lock key for migrations: any constant, the same in every node.
MIGRATION_LOCK_KEY = 0x6D78736D7470
#: Seconds a PostgreSQL connect may take before the SMTP side answers 451.
CONNECT_TIMEOUT_SECONDS = 5
PG_POOL_SIZE = 20


class DatabaseError(Exception):
    """The database cannot be used: a bad or unreachable URL, or a schema this code does not
    know. The text is one line for the admin, naming the setting."""


def configured_url(config: dict[str, Any], default_path: Path) -> URL:
    """The SQLAlchemy URL for the configured database, with psycopg 3 as PostgreSQL's driver."""
    value = (
        config.get("DATABASE_URL")
        or config.get("SQLALCHEMY_DATABASE_URI")  # the name release 0.1 documented
        or f"sqlite:///{default_path}"
    )
    try:
        url = make_url(str(value))
    except ArgumentError:
        raise DatabaseError(
            f"{URL_SETTING} is not a database URL: {value!r}; expected sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    backend = url.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in SCHEMES:
        raise DatabaseError(
            f"{URL_SETTING} names {backend!r}, which mxsmtp does not support; expected "
            "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if not url.database:
        raise DatabaseError(f"{URL_SETTING} needs a file: sqlite:///PATH (got {value!r})")
    return url


def engine_options(url: URL) -> dict[str, Any]:
    """Per engine: PostgreSQL gets a pool as large as the concurrent sessions it serves, a
    bounded connect, and commits that are durable before we answer 250."""
    if url.get_backend_name() != "postgresql":
        return {}
    return {
        "pool_size": PG_POOL_SIZE,
        "max_overflow": PG_POOL_SIZE,
        "pool_timeout": CONNECT_TIMEOUT_SECONDS,
        # a server restarted (or failed over) leaves dead connections in the pool: test each
        # one as it is taken (a round trip), so the first message after the restart is stored
        "pool_pre_ping": True,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": "-c synchronous_commit=on",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    }


def shown(url: URL) -> str:
    """The URL as logs and errors may show it: never the password."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def is_postgresql(connection_or_engine: Any) -> bool:
    return connection_or_engine.dialect.name == "postgresql"


def unreachable(url: URL, error: Exception) -> DatabaseError:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    detail = reason[0] if reason else type(error).__name__
    return DatabaseError(f"{URL_SETTING}: cannot use the database {shown(url)}: {detail}")


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for a new database or one made before
    migrations (release 0.1), which the first migration adopts."""
    try:
        with connection.begin_nested():
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError:
        return None
    return row[0] if row else None


def prepare(engine: Any, url: URL, *, upgrade: bool = True) -> None:
    """Make sure the database can be used by this code: reachable, and at HEAD (upgraded here
    under the migration lock when `upgrade`). Raises DatabaseError with one line."""
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
            connection.rollback()
            if revision == HEAD or not upgrade:
                _refuse_unknown(connection, revision)
                return
            with migration_lock(connection, url):
                revision = current_revision(connection)
                connection.commit()
                _refuse_unknown(connection, revision)
                if revision != HEAD:
                    upgrade_to_head(connection)
    except (SQLAlchemyError, NoSuchModuleError, OSError) as error:
        raise unreachable(url, error) from error


def _refuse_unknown(connection: Connection, revision: str | None) -> None:
    if revision is None or revision == HEAD:
        return
    from alembic.script import ScriptDirectory

    known = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if revision not in known:
        raise DatabaseError(
            f"the database is at schema revision {revision}, newer than this mxsmtp knows "
            f"(up to {HEAD}): another node runs a newer release; upgrade this one to match"
        )


def upgrade_to_head(connection: Connection) -> None:
    """Apply every migration after the database's revision, in one transaction per step."""
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    connection.commit()


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


@contextmanager
def migration_lock(connection: Connection, url: URL) -> Iterator[None]:
    """One migrating process at a time: PostgreSQL's advisory lock (for nodes on several
    machines), a lock file beside an SQLite database (processes on one machine)."""
    if is_postgresql(connection):
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        return
    path = f"{url.database}.migrate-lock"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
