"""The refusals page: who may see it, what it shows, and its filters and pages."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from conftest import Mailbox, simple_message
from mxsmtp_web.store import storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Refusal


def refuse(
    app: Flask,
    sender: str,
    recipient: str,
    check: str = "recipient_hook",
    at: datetime | None = None,
    detail: str = "",
) -> None:
    envelope = storage.Envelope(sender, (recipient,), "198.51.100.9", "mta.example")
    with app.app_context():
        storage.record_refusal(envelope, recipient, check, "550 5.1.1 No such user", detail)
        if at is not None:
            newest = db.session.query(db.func.max(Refusal.id)).scalar()
            db.session.execute(update(Refusal).where(Refusal.id == newest).values(at=at))
            db.session.commit()


def senders(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get("/refusals/" + query)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    cells = page.split('<td class="text-break refusal-sender">')[1:]
    return [cell.split("<", 1)[0] for cell in cells]


def test_logged_out_users_are_sent_to_login(client: FlaskClient) -> None:
    response = client.get("/refusals/")
    assert response.status_code == 302 and "/login" in response.location


def test_a_refused_recipient_is_listed_with_the_reply(
    mailbox: Mailbox, viewer_client: FlaskClient
) -> None:
    mailbox.write_hook(
        "rcpt.py", "def check_recipient(recipient, sender, session):\n    return False\n"
    )
    mailbox.configure(recipient_hook="rcpt.py:check_recipient")
    with pytest.raises(Exception):  # noqa: B017 - smtplib raises when every recipient fails
        mailbox.send(simple_message(), recipients=("nobody@example.com",))
    page = viewer_client.get("/refusals/").get_data(as_text=True)
    assert "nobody@example.com" in page and "alice@sender.example" in page
    assert "recipient_hook" in page and "127.0.0.1" in page and "550" in page


def test_newest_first_with_the_traceback_folded(app: Flask, viewer_client: FlaskClient) -> None:
    refuse(app, "old@a.example", "x@example.com", at=datetime(2026, 1, 1))
    refuse(
        app, "new@a.example", "x@example.com", detail="Traceback: KeyError", at=datetime(2026, 2, 1)
    )
    assert senders(viewer_client) == ["new@a.example", "old@a.example"]
    page = viewer_client.get("/refusals/").get_data(as_text=True)
    assert "<details><summary>Traceback</summary>" in page and "KeyError" in page


def test_filters(app: Flask, viewer_client: FlaskClient) -> None:
    refuse(app, "carol@c.example", "sales@example.com", "sender_hook", datetime(2026, 1, 10))
    refuse(app, "dave@d.example", "bob@example.com", "recipient_hook", datetime(2026, 1, 20))
    refuse(app, "erin@e.example", "bob@example.com", "message_hook", datetime(2026, 2, 5))
    assert senders(viewer_client, "?q=bob@") == ["erin@e.example", "dave@d.example"]
    assert senders(viewer_client, "?q=CAROL") == ["carol@c.example"]
    assert senders(viewer_client, "?q=198.51.100") == [
        "erin@e.example",
        "dave@d.example",
        "carol@c.example",
    ]
    assert senders(viewer_client, "?q=100%25") == []  # a literal %, not a wildcard
    assert senders(viewer_client, "?check=sender_hook") == ["carol@c.example"]
    assert senders(viewer_client, "?since=2026-01-11&until=2026-01-20") == ["dave@d.example"]
    page = viewer_client.get("/refusals/").get_data(as_text=True)
    assert '<option value="message_hook">' in page  # the checks seen so far


def test_pages(app: Flask, viewer_client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from mxsmtp_web.web import refusals

    monkeypatch.setattr(refusals, "PAGE_SIZE", 2)
    for day in range(1, 4):
        refuse(app, f"s{day}@x.example", "r@example.com", at=datetime(2026, 1, day))
    assert senders(viewer_client, "?page=1") == ["s3@x.example", "s2@x.example"]
    assert senders(viewer_client, "?page=2&q=x.example") == ["s1@x.example"]
    assert "page=2" in viewer_client.get("/refusals/").get_data(as_text=True)
