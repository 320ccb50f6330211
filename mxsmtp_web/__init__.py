"""mxsmtp: an inbound SMTP server that lives inside a Flask application.

`create_app()` binds configuration, the database and the CLI-facing parts; importing this
package starts nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import database
from .extensions import db

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_ENV = "MXSMTP_INSTANCE"
DATABASE_NAME = "mxsmtp.sqlite3"
SECRET_KEY_NAME = "secret_key"
HOOKS_DIR_NAME = "hooks"


def instance_path_from_env() -> str | None:
    """`MXSMTP_INSTANCE` points the whole program (CLI, web, SMTP) at another instance folder."""
    value = os.environ.get(INSTANCE_ENV)
    return str(Path(value).expanduser().resolve()) if value else None


def boot_value(key: str, instance: Path) -> str | None:
    """A boot setting as `create_app` reads it, for code that runs without an app (reply
    addresses in a hook): MXSMTP_<KEY>, else <KEY> in instance/config.py."""
    value = os.environ.get(f"MXSMTP_{key}")
    if value:
        return value
    path = instance / "config.py"
    try:
        source = path.read_bytes()
    except OSError:
        return None
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # as Flask's from_pyfile does
    found = namespace.get(key)
    return str(found) if found else None


def create_app(
    test_config: Mapping[str, Any] | None = None, *, web: bool = True, upgrade: bool = True
) -> Flask:
    """Build the app. Boot config comes from defaults, then `instance/config.py`, then
    `MXSMTP_*` environment variables, then `test_config`. `web=False` leaves out the admin
    pages, for CLI commands that must start fast. The database is brought to this code's
    schema revision unless `upgrade` is False; a database that cannot be used raises
    `database.DatabaseError`."""
    app = Flask(
        __name__,
        instance_path=instance_path_from_env(),
        instance_relative_config=True,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    instance = Path(app.instance_path)
    _make_private_dir(instance)
    _make_private_dir(instance / HOOKS_DIR_NAME)
    app.config.from_mapping(HOOKS_DIR=str(instance / HOOKS_DIR_NAME))
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("MXSMTP")
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _load_or_create_secret(instance / SECRET_KEY_NAME)
    url = database.configured_url(app.config, instance / DATABASE_NAME)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", database.engine_options(url))
    _create_private_database_file(url)
    db.init_app(app)
    with app.app_context():
        database.prepare(db.engine, url, upgrade=upgrade)
    if web:
        from .web import init_app as init_web

        init_web(app)
    if app.config.get("START_LISTENER"):
        _start_listener_unless_reloader_parent(app)
    return app


def _start_listener_unless_reloader_parent(app: Flask) -> None:
    """For `flask run` with MXSMTP_START_LISTENER=1. Under the reloader only the serving child
    (WERKZEUG_RUN_MAIN=true) may bind, or parent and child would fight for the port."""
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return
    from .smtp.listener import start_listener

    start_listener(app)


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _load_or_create_secret(path: Path) -> str:
    """The secret key lives in the instance folder, created once with owner-only permissions."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _create_private_database_file(url: database.URL) -> None:
    """SQLite would create the file with the umask's mode; create it owner-only first."""
    if url.get_backend_name() != "sqlite" or not url.database or ":memory:" in url.database:
        return
    path = Path(url.database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
