"""The purge page through the test client: preview first, delete after confirmation, the same
rules as `mxsmtp purge`."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import Mailbox, age_messages, csrf_token, simple_message
from mxsmtp_web.store.models import Message
from mxsmtp_web.web.purge import human_bytes


def age_message(app: Flask, message_id: int, days: int = 10) -> None:
    age_messages(app, days, Message.id == message_id)


def with_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = "alice@sender.example"
    message["To"] = "bob@example.com"
    message["Subject"] = "Old report"
    message["Message-ID"] = "<old@sender.example>"
    message.set_content("See the attachment.")
    message.add_attachment(b"0123456789", maintype="application", subtype="pdf", filename="r.pdf")
    return message.as_bytes()


@pytest.fixture
def old_and_new(app: Flask, mailbox: Mailbox) -> tuple[int, int]:
    """An old message with an attachment (ten days ago) and a new one (now)."""
    mailbox.send(with_attachment())
    [old] = mailbox.messages()
    age_message(app, old.id)
    mailbox.send(simple_message(subject="New", message_id="<new@sender.example>"))
    new = next(m for m in mailbox.messages() if m.id != old.id)
    return old.id, new.id


def post(client: FlaskClient, **fields: str) -> tuple[int, str]:
    data = {"csrf_token": csrf_token(client, "/purge/"), "status": "", **fields}
    response = client.post("/purge/", data=data)
    return response.status_code, response.get_data(as_text=True)


def test_logged_out_users_are_sent_to_login(client: FlaskClient) -> None:
    response = client.get("/purge/")
    assert response.status_code == 302 and "/login" in response.location


def test_viewers_get_403(viewer_client: FlaskClient) -> None:
    token = csrf_token(viewer_client, "/account/password")
    assert viewer_client.get("/purge/").status_code == 403
    data = {"csrf_token": token, "days": "0", "action": "delete"}
    assert viewer_client.post("/purge/", data=data).status_code == 403


def test_the_page_explains_ages_and_the_automatic_purge(admin_client: FlaskClient) -> None:
    page = admin_client.get("/purge/").get_data(as_text=True)
    assert "older than 0 days selects everything" in page
    assert "Automatic purge:" in page and 'href="/settings/#settings-form"' in page


def test_preview_counts_then_delete_removes_old_and_keeps_new(
    admin_client: FlaskClient, mailbox: Mailbox, old_and_new: tuple[int, int]
) -> None:
    old_id, new_id = old_and_new
    old_size = mailbox.message(old_id).summary.size
    status, page = post(admin_client, days="5", action="preview")
    assert status == 200
    assert '<strong class="purge-count">1</strong> message(s),' in page
    assert f"1 attachment(s), {human_bytes(old_size)}" in page
    assert 'value="delete"' in page
    assert [m.id for m in mailbox.messages()] == [new_id, old_id]  # a preview deletes nothing

    status, page = post(admin_client, days="5.0", action="delete")
    assert status == 200
    assert "Deleted" in page and '<strong class="purge-count">1</strong>' in page
    assert [m.id for m in mailbox.messages()] == [new_id]


def test_zero_days_selects_everything_received_until_now(
    admin_client: FlaskClient, mailbox: Mailbox, old_and_new: tuple[int, int]
) -> None:
    status, page = post(admin_client, days="0", action="preview")
    assert '<strong class="purge-count">2</strong> message(s)' in page
    post(admin_client, days="0", action="delete")
    assert mailbox.messages() == []


def test_a_status_narrows_the_selection(
    admin_client: FlaskClient, mailbox: Mailbox, old_and_new: tuple[int, int]
) -> None:
    status, page = post(admin_client, days="0", status="hook error", action="preview")
    assert '<strong class="purge-count">0</strong> message(s)' in page
    assert "Nothing to delete." in page and 'value="delete"' not in page
    post(admin_client, days="0", status="received", action="delete")
    assert mailbox.messages() == []


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("", "Give an age in days"),
        ("-1", "An age from 0 to 36500 days."),
        ("soon", "Not a valid float value."),
        ("nan", "An age from 0 to 36500 days."),
        ("inf", "An age from 0 to 36500 days."),
    ],
)
def test_a_bad_age_is_shown_next_to_the_field(
    admin_client: FlaskClient, days: str, message: str
) -> None:
    status, page = post(admin_client, days=days, action="delete")
    assert status == 200
    field = page[page.index('id="days"') :]
    assert field[: field.index("</div>")].count("invalid-feedback") == 1
    assert message in field[: field.index('id="status"')]
    assert 'id="purge-report"' not in page


def test_an_unknown_status_is_refused(admin_client: FlaskClient) -> None:
    status, page = post(admin_client, days="0", status="everything", action="delete")
    assert "Not a valid choice" in page and 'id="purge-report"' not in page


def test_delete_without_csrf_token_is_refused(
    admin_client: FlaskClient, mailbox: Mailbox, old_and_new: tuple[int, int]
) -> None:
    response = admin_client.post("/purge/", data={"days": "0", "action": "delete"})
    assert response.status_code == 400
    assert len(mailbox.messages()) == 2


@pytest.mark.parametrize(
    ("size", "words"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_sizes_are_shown_in_readable_units(size: int, words: str) -> None:
    assert human_bytes(size) == words
