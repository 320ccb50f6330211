"""Mailboxes in the web admin: the Mailboxes page (admins), the inbox's mailbox filter with
counts, and viewers who see only the mailboxes that name them, in every page, download and
count."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import PASSWORD, Mailbox, csrf_token, log_in, make_user
from mxsmtp_web.store import mailbox_edits

ATTACHED = (
    "From: Alice <alice@sender.example>\r\nTo: x\r\nSubject: {subject}\r\n"
    "Message-ID: <{subject}@sender.example>\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    "--b\r\nContent-Type: text/plain\r\n\r\nBody of {subject}\r\n"
    "--b\r\nContent-Type: application/octet-stream\r\n"
    'Content-Disposition: attachment; filename="{subject}.bin"\r\n\r\nDATA\r\n--b--\r\n'
)


@pytest.fixture
def two_mailboxes(app: Flask, mailbox: Mailbox) -> dict[str, int]:
    """support (read by ann), sales (read by bob), default (everyone): one message in each,
    and one in both support and sales."""
    make_user(app, "ann", "viewer")
    make_user(app, "bob", "viewer")
    with app.app_context():
        mailbox_edits.add("support", ["support@app.example.com"], {"viewers": "ann"})
        mailbox_edits.add("sales", ["sales@app.example.com"], {"viewers": "bob"})
        mailbox_edits.update("default", {"viewers": "bob"})
    ids = {}
    for subject, recipients in (
        ("forsupport", ("support@app.example.com",)),
        ("forsales", ("sales@app.example.com",)),
        ("forboth", ("support@app.example.com", "sales@app.example.com")),
        ("fordefault", ("someone@example.com",)),
    ):
        mailbox.send(ATTACHED.format(subject=subject).encode(), recipients=recipients)
    for summary in mailbox.messages():
        ids[summary.subject] = summary.id
    return ids


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, username, PASSWORD).status_code == 302
    return client


def _attachment_id(client: FlaskClient, message_id: int) -> int:
    page = client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    return int(re.search(r"/inbox/attachment/(\d+)", page).group(1))


def test_a_viewer_sees_only_the_mailboxes_that_name_them(
    app: Flask, two_mailboxes: dict[str, int], admin_client: FlaskClient
) -> None:
    ann = _client(app, "ann")
    inbox = ann.get("/inbox/").get_data(as_text=True)
    assert "forsupport" in inbox and "forboth" in inbox
    assert "forsales" not in inbox and "fordefault" not in inbox
    assert "2 messages" in inbox
    hidden = two_mailboxes["forsales"]
    attachment = _attachment_id(admin_client, hidden)
    for path in (
        f"/inbox/message/{hidden}",
        f"/inbox/message/{hidden}/preview",
        f"/inbox/message/{hidden}.eml",
        f"/inbox/message/{hidden}/raw",
        f"/inbox/attachment/{attachment}",
    ):
        assert ann.get(path).status_code == 404, path
        assert admin_client.get(path).status_code == 200, path
    shared = two_mailboxes["forboth"]
    assert ann.get(f"/inbox/message/{shared}").status_code == 200
    assert ann.get(f"/inbox/attachment/{_attachment_id(ann, shared)}").status_code == 200
    assert "0 messages" in ann.get("/inbox/?q=forsales").get_data(as_text=True)
    assert "1 message" in ann.get("/inbox/?q=forsupport").get_data(as_text=True)


def test_counts_follow_what_the_viewer_may_read(app: Flask, two_mailboxes: dict[str, int]) -> None:
    bob = _client(app, "bob")
    inbox = bob.get("/inbox/").get_data(as_text=True)
    counts = dict(re.findall(r'data-mailbox="([^"]+)"[^>]*>[^<]*<span[^>]*>(\d+)<', inbox))
    assert counts == {"sales": "2", "default": "1"}
    assert "support" not in re.search(r'id="mailbox-filter".*?</ul>', inbox, re.S).group(0)
    status = bob.get("/").get_data(as_text=True)
    assert re.search(r"\b3\b", status)  # sales (2) and default (1), not ann's support mail
    ann_status = _client(app, "ann").get("/").get_data(as_text=True)
    assert ann_status != status


def test_the_inbox_filters_by_mailbox_with_counts(
    two_mailboxes: dict[str, int], admin_client: FlaskClient
) -> None:
    inbox = admin_client.get("/inbox/").get_data(as_text=True)
    counts = dict(re.findall(r'data-mailbox="([^"]+)"[^>]*>[^<]*<span[^>]*>(\d+)<', inbox))
    assert counts == {"support": "2", "sales": "2", "default": "1"}
    support = admin_client.get("/inbox/?mailbox=support").get_data(as_text=True)
    assert "forsupport" in support and "forboth" in support and "forsales" not in support
    default = admin_client.get("/inbox/?mailbox=default").get_data(as_text=True)
    assert "fordefault" in default and "forboth" not in default


def test_mailboxes_page_is_for_admins(app: Flask, viewer_client: FlaskClient) -> None:
    assert viewer_client.get("/mailboxes/").status_code == 403
    assert viewer_client.get("/mailboxes/new").status_code == 403


def test_adding_a_mailbox_in_the_page_shows_problems_next_to_fields(
    app: Flask, admin_client: FlaskClient
) -> None:
    token = csrf_token(admin_client, "/mailboxes/new")
    page = admin_client.post(
        "/mailboxes/new",
        data={
            "csrf_token": token,
            "name": "tickets",
            "match": "re:(",
            "retention_days": "soon",
            "message_hook": "missing.py:process_message",
            "viewers": "",
            "position": "5",
        },
    ).get_data(as_text=True)
    assert "regular expression" in page and "retention_days expects" in page
    assert "no such script" in page
    assert page.count("invalid-feedback") >= 3
    assert "tickets" not in admin_client.get("/mailboxes/").get_data(as_text=True)
    response = admin_client.post(
        "/mailboxes/new",
        data={
            "csrf_token": token,
            "name": "tickets",
            "match": "*@tickets.example.com\nhelp@app.example.com",
            "retention_days": "30",
            "position": "5",
        },
    )
    assert response.status_code == 302
    listing = admin_client.get("/mailboxes/").get_data(as_text=True)
    assert "*@tickets.example.com" in listing and "help@app.example.com" in listing
    edit = admin_client.post(
        "/mailboxes/tickets",
        data={
            "csrf_token": token,
            "match": "*@tickets.example.com",
            "position": "5",
            "delete_after_process": "true",
        },
    )
    assert edit.status_code == 302
    with app.app_context():
        found = mailbox_edits.find("tickets")
    assert found.patterns == ("*@tickets.example.com",) and found.delete_after_process is True
    assert found.retention_days is None  # emptied: the global setting again
    removed = admin_client.post("/mailboxes/tickets/remove", data={"csrf_token": token})
    assert removed.status_code == 302
    with app.app_context():
        assert mailbox_edits.find("tickets") is None


def test_page_forms_need_csrf(app: Flask, admin_client: FlaskClient) -> None:
    with app.app_context():
        mailbox_edits.add("x", ["x@app.example.com"])
    assert admin_client.post("/mailboxes/x/remove").status_code == 400
    with app.app_context():
        assert mailbox_edits.find("x") is not None
