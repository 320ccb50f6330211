"""`create_app()`: configuration, the database and the CLI-facing parts bound together;
building the app starts nothing (the listener only with START_LISTENER, for `flask run`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from mxsmtp_web.config import (
    DATABASE_NAME,
    HOOKS_DIR_NAME,
    PROJECT_ROOT,
    SECRET_KEY_NAME,
    instance_path_from_env,
    load_or_create_secret,
    make_private_dir,
)
from mxsmtp_web.store import database
from mxsmtp_web.store.extensions import db


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
    make_private_dir(instance)
    make_private_dir(instance / HOOKS_DIR_NAME)
    app.config.from_mapping(HOOKS_DIR=str(instance / HOOKS_DIR_NAME))
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("MXSMTP")
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_or_create_secret(instance / SECRET_KEY_NAME)
    url = database.configured_url(app.config, instance / DATABASE_NAME)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", database.engine_options(url))
    _create_private_database_file(url)
    db.init_app(app)
    with app.app_context():
        database.prepare(db.engine, url, upgrade=upgrade)
    if web:
        from mxsmtp_web.web import init_app as init_web

        init_web(app)
    if app.config.get("START_LISTENER"):
        _start_listener_unless_reloader_parent(app)
    return app


def _start_listener_unless_reloader_parent(app: Flask) -> None:
    """For `flask run` with MXSMTP_START_LISTENER=1. Under the reloader only the serving child
    (WERKZEUG_RUN_MAIN=true) may bind, or parent and child would fight for the port."""
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return
    from mxsmtp_web.smtp.listener import start_listener

    start_listener(app)


def _create_private_database_file(url: database.URL) -> None:
    """SQLite would create the file with the umask's mode; create it owner-only first."""
    if url.get_backend_name() != "sqlite" or not url.database or ":memory:" in url.database:
        return
    path = Path(url.database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
