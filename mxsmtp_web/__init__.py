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

from . import schema
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


def create_app(test_config: Mapping[str, Any] | None = None, *, web: bool = True) -> Flask:
    """Build the app. Boot config comes from defaults, then `instance/config.py`, then
    `MXSMTP_*` environment variables, then `test_config`. `web=False` leaves out the admin
    pages, for CLI commands that must start fast."""
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
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance / DATABASE_NAME}",
        HOOKS_DIR=str(instance / HOOKS_DIR_NAME),
    )
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("MXSMTP")
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _load_or_create_secret(instance / SECRET_KEY_NAME)
    _create_private_database_file(app.config["SQLALCHEMY_DATABASE_URI"])
    db.init_app(app)
    with app.app_context():
        db.create_all()
        schema.init_schema()
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


def _create_private_database_file(uri: str) -> None:
    """SQLite would create the file with the umask's mode; create it owner-only first."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix or ":memory:" in uri:
        return
    path = Path(uri[len(prefix) :])
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
