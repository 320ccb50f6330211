"""The Webhooks page, a message's deliveries on its page, and the signed download links in
webhooks (no login, only the link), through the Flask test client on both engines."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import csrf_token
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.store import links, settings, storage, webhooks
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Status, utcnow
from mxsmtp_web.worker.webhooks import build_payload

RECEIVER = "https://app.example.com/hooks/mail"


def mail_with_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@sender.example>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Invoice 7"
    message.set_content("attached")
    message.add_attachment(
        b"<script>alert(1)</script>", maintype="text", subtype="html", filename="page.html"
    )
    return message.as_bytes()


def store(app: Flask, raw: bytes | None = None) -> int:
    raw = raw or mail_with_attachment()
    parsed = parse_message(raw)
    envelope = storage.Envelope("alice@sender.example", ("bob@example.com",), "192.0.2.7", "x")
    with app.app_context():
        return storage.save_message(envelope, parsed, raw, parsed.html, Status.RECEIVED)


def delivery(
    app: Flask, message_id: int, status: str = "pending", http: int | None = None, text: str = ""
) -> int:
    """A delivery of `message_id` after one attempt that ended in `status` (none if pending
    and no `http`)."""
    target = webhooks.WebhookTarget("default", RECEIVER)
    with app.app_context(), db.engine.begin() as connection:
        webhooks.queue_deliveries(connection, message_id, [target])
        if status == "pending" and http is None:
            return max(d.id for d in webhooks.list_deliveries())
        [claim] = webhooks.claim_due(connection, utcnow(), 1)
        later = utcnow() if status != "pending" else utcnow().replace(year=2100)
        outcome = webhooks.AttemptOutcome(webhooks.DeliveryStatus(status), http, text, later)
        assert webhooks.record_attempt(connection, claim, outcome)
        return claim.id


def get(app: Flask, delivery_id: int) -> webhooks.Delivery:
    with app.app_context():
        found = webhooks.get_delivery(delivery_id)
    assert found is not None
    return found


# --- access ----------------------------------------------------------------------------------


def test_logged_out_users_are_sent_to_login(client: FlaskClient) -> None:
    response = client.get("/webhooks/")
    assert response.status_code == 302 and "/login" in response.location


@pytest.mark.parametrize("path", ["/webhooks/1/retry", "/webhooks/retry-failed"])
def test_viewers_get_403_and_no_menu_entry(viewer_client: FlaskClient, path: str) -> None:
    assert viewer_client.get("/webhooks/").status_code == 403
    token = csrf_token(viewer_client, "/account/password")
    assert viewer_client.post(path, data={"csrf_token": token}).status_code == 403
    assert 'href="/webhooks/"' not in viewer_client.get("/").get_data(as_text=True)


def test_admins_find_the_page_in_the_menu(admin_client: FlaskClient) -> None:
    assert 'href="/webhooks/"' in admin_client.get("/").get_data(as_text=True)


# --- the page --------------------------------------------------------------------------------


def test_the_page_lists_state_attempts_last_status_and_answer(
    app: Flask, admin_client: FlaskClient
) -> None:
    message_id = store(app)
    failed = delivery(app, message_id, "failed", 410, "gone for good <b>bye</b>")
    retrying = delivery(app, message_id, "pending", 503, "try later")
    delivered = delivery(app, message_id, "delivered", 200, "thanks")
    page = admin_client.get("/webhooks/").get_data(as_text=True)
    for delivery_id in (failed, retrying, delivered):
        assert f'id="delivery-{delivery_id}"' in page
    assert "HTTP 410" in page and "HTTP 503" in page and "HTTP 200" in page
    assert "gone for good &lt;b&gt;bye&lt;/b&gt;" in page  # the receiver's text, escaped
    assert RECEIVER in page and f'href="/inbox/message/{message_id}"' in page
    assert "Retry all failed (1)" in page

    only_failed = admin_client.get("/webhooks/?status=failed").get_data(as_text=True)
    assert f'id="delivery-{failed}"' in only_failed
    assert f'id="delivery-{delivered}"' not in only_failed
    assert admin_client.get("/webhooks/?status=lost").status_code == 404


def test_an_empty_page_says_how_to_start(admin_client: FlaskClient) -> None:
    page = admin_client.get("/webhooks/").get_data(as_text=True)
    assert 'id="no-deliveries"' in page and "webhook_url" in page


def test_retry_now_makes_the_delivery_due(app: Flask, admin_client: FlaskClient) -> None:
    delivery_id = delivery(app, store(app), "failed", 500, "no")
    token = csrf_token(admin_client, "/webhooks/")
    response = admin_client.post(
        f"/webhooks/{delivery_id}/retry", data={"csrf_token": token, "next": "/webhooks/"}
    )
    assert response.status_code == 302 and response.location.endswith("/webhooks/")
    retried = get(app, delivery_id)
    assert retried.status == "pending" and retried.next_attempt_at <= utcnow()
    missing = admin_client.post("/webhooks/999999/retry", data={"csrf_token": token})
    assert missing.status_code == 404


def test_a_post_without_csrf_token_changes_nothing(app: Flask, admin_client: FlaskClient) -> None:
    delivery_id = delivery(app, store(app), "failed", 500, "no")
    assert admin_client.post(f"/webhooks/{delivery_id}/retry").status_code == 400
    assert admin_client.post("/webhooks/retry-failed").status_code == 400
    assert get(app, delivery_id).status == "failed"


def test_retry_all_failed(app: Flask, admin_client: FlaskClient) -> None:
    message_id = store(app)
    failed = [delivery(app, message_id, "failed", 500, "no") for _ in range(2)]
    delivered = delivery(app, message_id, "delivered", 200, "ok")
    token = csrf_token(admin_client, "/webhooks/")
    response = admin_client.post("/webhooks/retry-failed", data={"csrf_token": token})
    assert response.status_code == 302
    assert [get(app, d).status for d in failed] == ["pending", "pending"]
    assert get(app, delivered).status == "delivered"
    page = admin_client.get("/webhooks/").get_data(as_text=True)
    assert "are sent again within a second" in page and "Retry all failed (0)" in page


# --- the message page ------------------------------------------------------------------------


def test_the_message_page_shows_its_deliveries(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    message_id = store(app)
    other = store(app, mail_with_attachment().replace(b"Invoice 7", b"Other"))
    mine = delivery(app, message_id, "pending", 503, "busy")
    theirs = delivery(app, other, "delivered", 200, "ok")
    page = admin_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    assert f'id="delivery-{mine}"' in page and f'id="delivery-{theirs}"' not in page
    assert "HTTP 503" in page and "Retry now" in page
    as_viewer = viewer_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    assert f'id="delivery-{mine}"' in as_viewer and "Retry now" not in as_viewer
    without = admin_client.get(f"/inbox/message/{store(app)}").get_data(as_text=True)
    assert "webhook-deliveries" not in without  # nothing shown for mail without webhooks


# --- signed download links -------------------------------------------------------------------


def payload_of(app: Flask, message_id: int) -> dict:
    with app.app_context():
        body = build_payload(message_id, settings.load(), app.config["SECRET_KEY"], utcnow())
    assert body is not None
    return json.loads(body)["data"]


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_the_links_download_without_a_login_as_attachments(app: Flask, client: FlaskClient) -> None:
    message_id = store(app)
    data = payload_of(app, message_id)
    raw = client.get(path_of(data["raw_url"]))
    assert raw.status_code == 200
    with app.app_context():
        assert raw.data == storage.get_raw(message_id)
    assert raw.headers["Content-Disposition"].startswith('attachment; filename="Invoice 7.eml"')
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    [attachment] = data["attachments"]
    part = client.get(path_of(attachment["download_url"]))
    assert part.status_code == 200 and part.data == b"<script>alert(1)</script>"
    assert part.headers["Content-Type"] == "application/octet-stream"  # never a page of ours
    assert part.headers["Content-Disposition"].startswith('attachment; filename="page.html"')
    assert part.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in part.headers["Content-Security-Policy"]


def test_an_altered_link_is_not_found(app: Flask, client: FlaskClient) -> None:
    message_id = store(app)
    url = path_of(payload_of(app, message_id)["raw_url"])
    token = url.rsplit("/", 1)[1]
    flipped = token[:-3] + ("x" if token[-3] != "x" else "y") + token[-2:]
    assert client.get(links.FILES_PATH + flipped).status_code == 404
    assert client.get(links.FILES_PATH + "not-a-token").status_code == 404
    # a link to another message, made with another key, does not open anything either
    forged = links.make_token("guessed", links.LinkTarget(links.RAW, message_id), 2**40)
    assert client.get(links.FILES_PATH + forged).status_code == 404


def test_an_expired_link_is_forbidden_and_says_so(app: Flask, client: FlaskClient) -> None:
    message_id = store(app)
    target = links.LinkTarget(links.RAW, message_id)
    expired = links.make_token(app.config["SECRET_KEY"], target, int(time.time()) - 1)
    response = client.get(links.FILES_PATH + expired)
    assert response.status_code == 403 and b"has expired" in response.data


def test_links_last_webhook_link_ttl_seconds(app: Flask) -> None:
    with app.app_context():
        settings.save({"webhook_link_ttl": "60"})
    message_id = store(app)
    token = path_of(payload_of(app, message_id)["raw_url"]).rsplit("/", 1)[1]
    secret_key = app.config["SECRET_KEY"]
    assert links.read_token(secret_key, token, now=time.time() + 50).id == message_id
    with pytest.raises(links.LinkExpired):
        links.read_token(secret_key, token, now=time.time() + 61)


def test_a_link_to_a_deleted_message_is_not_found(app: Flask, client: FlaskClient) -> None:
    message_id = store(app)
    data = payload_of(app, message_id)
    with app.app_context():
        storage.delete_messages([message_id])
    assert client.get(path_of(data["raw_url"])).status_code == 404
    assert client.get(path_of(data["attachments"][0]["download_url"])).status_code == 404
