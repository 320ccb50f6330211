"""The two reply settings (CLI and settings page) and a database made before conversations
existed, which gets the new columns at the next start."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Column, MetaData, Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable
from test_web_settings import form_data

from conftest import simple_message
from mxsmtp_web import DATABASE_NAME, create_app
from mxsmtp_web.cli import main
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.replies import reply_address
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store import storage
from mxsmtp_web.store.models import Message, Status

CONVERSATION_COLUMNS = {
    "reply_ref",
    "reply_text",
    "kind",
    "parent_id",
    "thread_id",
    "bounce_recipient",
    "bounce_status",
    "bounce_diagnostic",
}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_reply_settings_are_checked_and_used(app: Flask) -> None:
    code, output = run("settings", "set", "reply_separator", "#")
    assert code == 1
    assert "reply_separator: expects one of + - _ . = (the character between 'reply'" in output
    code, output = run("settings", "set", "reply_domain", "not a domain")
    assert code == 1 and "reply_domain: expects a domain such as app.example.com" in output
    assert run("settings", "set", "reply_domain", "app.example.com")[0] == 0
    assert run("settings", "set", "reply_separator", "=")[0] == 0
    code, output = run("settings", "show", "--json")
    shown = json.loads(output)
    assert (shown["reply_domain"], shown["reply_separator"]) == ("app.example.com", "=")
    address = reply_address("ticket:42")
    assert address.startswith("reply=") and address.endswith("@app.example.com")


def test_the_settings_page_has_a_replies_group(admin_client: FlaskClient, app: Flask) -> None:
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert "Replies" in page and 'name="reply_domain"' in page
    assert 'name="reply_separator"' in page
    page = admin_client.post(
        "/settings/", data=form_data(admin_client, app, reply_separator="#")
    ).get_data(as_text=True)
    assert "Expects one of + - _ . =" in page
    with app.app_context():
        assert settings_module.load().reply_separator == "+"
    data = form_data(admin_client, app, reply_separator="-", reply_domain="app.example.com")
    assert admin_client.post("/settings/", data=data).status_code == 302
    with app.app_context():
        saved = settings_module.load()
    assert (saved.reply_separator, saved.reply_domain) == ("-", "app.example.com")


@pytest.mark.sqlite_only("databases made before migrations were SQLite files")
def test_a_database_from_before_conversations_gets_the_new_columns(
    instance: Path,
) -> None:
    instance.mkdir(parents=True)
    old = Table(
        "message",
        MetaData(),
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in Message.__table__.columns
            if c.name not in CONVERSATION_COLUMNS
        ),
    )
    with sqlite3.connect(instance / DATABASE_NAME) as connection:
        connection.execute(str(CreateTable(old).compile(dialect=sqlite.dialect())))
    app = create_app({"TESTING": True})
    with sqlite3.connect(instance / DATABASE_NAME) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(message)")}
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(message)")}
    assert CONVERSATION_COLUMNS <= columns
    assert {"ix_message_kind_received", "ix_message_thread"} <= indexes
    raw = simple_message()
    envelope = storage.Envelope("a@sender.example", ("b@example.com",))
    with app.app_context():
        message_id = storage.save_message(envelope, parse_message(raw), raw, None, Status.RECEIVED)
        stored = storage.get_message(message_id)
    assert stored is not None
    assert (stored.summary.kind, stored.summary.thread_id) == ("message", message_id)
    create_app({"TESTING": True})  # and again: nothing left to add
