"""The inbox list: who may see it, search, filters, sorting, pages, read marks and bulk
delete, through the Flask test client against a real database."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from conftest import Mailbox, csrf_token, simple_message
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.store import storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Message, Status


def store(
    app: Flask,
    subject: str = "Hello",
    body: str = "Hi Bob.\r\n",
    sender: str = "alice@sender.example",
    recipients: tuple[str, ...] = ("bob@example.com",),
    status: Status = Status.RECEIVED,
    received_at: datetime | None = None,
    raw: bytes | None = None,
) -> int:
    """Store one message the way the listener does, without the SMTP round trip."""
    raw = raw or simple_message(subject=subject, body=body)
    parsed = parse_message(raw)
    envelope = storage.Envelope(sender, recipients, "192.0.2.7", "client.example")
    with app.app_context():
        message_id = storage.save_message(envelope, parsed, raw, parsed.html, status)
        if received_at is not None:
            db.session.execute(
                update(Message).where(Message.id == message_id).values(received_at=received_at)
            )
            db.session.commit()
    return message_id


def listed_ids(client: FlaskClient, query: str = "") -> list[int]:
    page = client.get("/inbox/" + query)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return [int(part.split('"', 1)[0]) for part in html.split('data-id="')[1:]]


def test_logged_out_users_are_sent_to_login(client: FlaskClient) -> None:
    for path in ("/inbox/", "/inbox/?q=x"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location
    response = client.post("/inbox/bulk", data={"ids": "1", "action": "read"})
    assert response.status_code in (302, 400)  # no session: no CSRF token, and no access


def test_a_message_sent_over_smtp_is_listed(mailbox: Mailbox, viewer_client: FlaskClient) -> None:
    mailbox.send(simple_message(subject="Over the wire"))
    page = viewer_client.get("/inbox/").get_data(as_text=True)
    assert "Over the wire" in page and "alice@sender.example" in page
    assert "bob@example.com" in page and "received" in page
    assert "Delete selected" not in page  # viewers cannot delete


def test_newest_first_with_size_and_attachment_count(app: Flask, admin_client: FlaskClient) -> None:
    older = store(app, "older", received_at=datetime(2026, 1, 1, 8))
    newer = store(app, "newer", received_at=datetime(2026, 1, 2, 8))
    assert listed_ids(admin_client) == [newer, older]
    page = admin_client.get("/inbox/").get_data(as_text=True)
    assert "Delete selected" in page and "2 messages" in page


def test_search_finds_subject_sender_recipient_and_body(
    app: Flask, viewer_client: FlaskClient
) -> None:
    invoice = store(app, "Invoice 42", body="Please pay the amount.\r\n")
    lunch = store(app, "Lunch", body="Pizza at noon.\r\n", sender="carol@food.example")
    other = store(app, "Other", recipients=("dave@elsewhere.example",))
    assert listed_ids(viewer_client, "?q=invoice") == [invoice]
    assert listed_ids(viewer_client, "?q=pizza") == [lunch]  # body text
    assert listed_ids(viewer_client, "?q=carol@food.example") == [lunch]  # envelope sender
    assert listed_ids(viewer_client, "?q=dave") == [other]  # envelope recipient
    assert listed_ids(viewer_client, "?q=inv") == [invoice]  # a word's beginning is enough
    assert listed_ids(viewer_client, '?q="') == []  # no word to find: nothing, not everything
    assert listed_ids(viewer_client, "?q=nothing+like+this") == []


def test_search_follows_deletes(app: Flask, viewer_client: FlaskClient) -> None:
    gone = store(app, "Ephemeral words")
    with app.app_context():
        storage.delete_messages([gone])
    assert listed_ids(viewer_client, "?q=ephemeral") == []


def test_filters_by_date_status_and_attachments(app: Flask, viewer_client: FlaskClient) -> None:
    january = store(app, "january", received_at=datetime(2026, 1, 15, 23, 59))
    february = store(app, "february", status=Status.HOOK_ERROR, received_at=datetime(2026, 2, 1))
    with_file = store(
        app,
        raw=(
            b"Subject: file\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
            b"--b\r\nContent-Type: application/pdf\r\n"
            b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\n%PDF-1\r\n--b--\r\n'
        ),
        received_at=datetime(2026, 3, 1),
    )
    assert listed_ids(viewer_client, "?until=2026-01-15") == [january]  # the whole day
    assert listed_ids(viewer_client, "?since=2026-01-16&until=2026-02-01") == [february]
    assert listed_ids(viewer_client, "?status=hook+error") == [february]
    assert listed_ids(viewer_client, "?attachments=yes") == [with_file]
    assert listed_ids(viewer_client, "?attachments=no") == [february, january]
    page = viewer_client.get("/inbox/?since=not-a-date").get_data(as_text=True)
    assert "Not a valid date value." in page  # the error next to the field


def test_sorting(app: Flask, viewer_client: FlaskClient) -> None:
    small = store(app, "b middle", body="x\r\n", received_at=datetime(2026, 1, 3))
    large = store(app, "C last", body="x" * 5000 + "\r\n", received_at=datetime(2026, 1, 1))
    first = store(app, "a first", body="xx\r\n", received_at=datetime(2026, 1, 2))
    assert listed_ids(viewer_client, "?sort=received&order=asc") == [large, first, small]
    assert listed_ids(viewer_client, "?sort=size&order=desc") == [large, first, small]
    assert listed_ids(viewer_client, "?sort=subject&order=asc") == [first, small, large]
    page = viewer_client.get("/inbox/?sort=size&order=desc").get_data(as_text=True)
    assert "order=asc" in page and "sort=size" in page  # the header link flips the order


def test_pages_do_not_overlap(
    app: Flask, viewer_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mxsmtp_web.web import inbox

    monkeypatch.setattr(inbox, "PAGE_SIZE", 2)
    ids = [store(app, f"n{number}", received_at=datetime(2026, 1, 1)) for number in range(5)]
    pages = [listed_ids(viewer_client, f"?page={number}") for number in (1, 2, 3, 4)]
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1], []]
    page_two = viewer_client.get("/inbox/?page=2&sort=received").get_data(as_text=True)
    assert "page=3" in page_two and "page=1" in page_two and "sort=received" in page_two


def test_read_marks(app: Flask, viewer_client: FlaskClient) -> None:
    message_id = store(app, "Mark me")
    assert 'badge-primary">new' in viewer_client.get("/inbox/").get_data(as_text=True)
    token = csrf_token(viewer_client, "/inbox/")
    response = viewer_client.post(
        "/inbox/bulk",
        data={"ids": [str(message_id)], "action": "read", "csrf_token": token, "next": "/inbox/"},
    )
    assert response.status_code == 302 and response.location.endswith("/inbox/")
    assert 'badge-primary">new' not in viewer_client.get("/inbox/").get_data(as_text=True)
    viewer_client.post(
        "/inbox/bulk", data={"ids": [str(message_id)], "action": "unread", "csrf_token": token}
    )
    assert 'badge-primary">new' in viewer_client.get("/inbox/").get_data(as_text=True)


def test_bulk_without_a_selection_or_a_known_action(app: Flask, viewer_client: FlaskClient) -> None:
    store(app)
    token = csrf_token(viewer_client, "/inbox/")
    response = viewer_client.post(
        "/inbox/bulk", data={"action": "read", "csrf_token": token}, follow_redirects=True
    )
    assert "No messages were selected." in response.get_data(as_text=True)
    response = viewer_client.post("/inbox/bulk", data={"action": "burn", "csrf_token": token})
    assert response.status_code == 400


def test_bulk_delete_is_for_admins(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    keep, drop_one, drop_two = (store(app, name) for name in ("keep", "drop 1", "drop 2"))
    token = csrf_token(viewer_client, "/inbox/")
    data = {"ids": [str(drop_one), str(drop_two)], "action": "delete"}
    assert viewer_client.post("/inbox/bulk", data={**data, "csrf_token": token}).status_code == 403
    assert admin_client.post("/inbox/bulk", data=data).status_code == 400  # no CSRF token
    assert admin_client.get(f"/inbox/bulk?ids={drop_one}&action=delete").status_code == 405
    token = csrf_token(admin_client, "/inbox/")
    response = admin_client.post(
        "/inbox/bulk", data={**data, "csrf_token": token}, follow_redirects=True
    )
    assert "Deleted 2 message(s)." in response.get_data(as_text=True)
    assert listed_ids(admin_client) == [keep]
    with app.app_context():
        assert storage.get_raw(drop_one) is None


def test_bulk_redirect_stays_on_site(app: Flask, viewer_client: FlaskClient) -> None:
    message_id = store(app)
    token = csrf_token(viewer_client, "/inbox/")
    response = viewer_client.post(
        "/inbox/bulk",
        data={
            "ids": [str(message_id)],
            "action": "read",
            "csrf_token": token,
            "next": "https://evil.example/",
        },
    )
    assert response.status_code == 302 and "evil" not in response.location
