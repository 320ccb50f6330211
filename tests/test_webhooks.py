"""Signed webhooks with retries: real SMTP into the real listener, a real HTTP receiver served
by the test on a free loopback port, signatures checked with the Standard Webhooks reference
algorithm written out below, restarts of real `mxsmtp` processes; on both engines."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask import Flask

from conftest import Mailbox, answers, free_port, simple_message, wait_for
from mxsmtp_web.cli import main
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.smtp.listener import Listener
from mxsmtp_web.store import links, settings, storage, webhooks
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Status, WebhookDelivery, utcnow
from mxsmtp_web.store.shapes import message_json
from mxsmtp_web.worker.webhooks import (
    MAX_SPACING_SECONDS,
    RETRY_BASE_SECONDS,
    HttpResult,
    outcome_of,
    retry_delay,
)

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")
#: The tests' retry schedule: a fraction of a second instead of half a minute.
FAST = {"WEBHOOK_RETRY_BASE_SECONDS": 0.05, "WEBHOOK_TIMEOUT_SECONDS": 1.0}


# --- the receiver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An application's webhook endpoint: answers each POST with the next of `answers`
    (then `default`), or holds it while `hold` is set; keeps every request."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[int] = []
        self.default = 200
        self.hold = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append(Received(self.path, headers, body))
                if receiver.hold.is_set():
                    receiver.release.wait(10)
                status = receiver.answers.pop(0) if receiver.answers else receiver.default
                reply = f"answer {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/mail?source=mxsmtp"

    def wait_for_requests(self, count: int, timeout: float = 30) -> list[Received]:
        wait_for(lambda: len(self.requests) >= count, timeout, f"{count} webhook request(s)")
        return self.requests

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def hooked(app: Flask, receiver: Receiver) -> Iterator[Mailbox]:
    """The real listener (with its workers and webhook sender), webhook_url at the receiver,
    retries a fraction of a second apart."""
    app.config.update(FAST)
    with app.app_context():
        settings.save({"webhook_url": receiver.url})
    listener = Listener(app)
    state = listener.start()
    assert state.running and state.error is None, state
    yield Mailbox(app, listener)
    listener.stop(grace=5)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def deliveries(app: Flask) -> list[webhooks.Delivery]:
    with app.app_context():
        return webhooks.list_deliveries()


def wait_for_status(
    app: Flask, status: str, count: int = 1, timeout: float = 30
) -> list[webhooks.Delivery]:
    def reached() -> list[webhooks.Delivery]:
        found = [d for d in deliveries(app) if d.status == status]
        return found if len(found) >= count else []

    return wait_for(reached, timeout=timeout, what=f"{count} {status} deliveries")


def secret() -> str:
    code, output = run("webhooks", "secret")
    assert code == 0 and output.startswith("whsec_")
    return output.strip()


# --- Standard Webhooks, the reference algorithm, written out --------------------------------

TOLERANCE_SECONDS = 5 * 60


def verify(whsec: str, headers: dict[str, str], body: bytes) -> None:
    """What a receiver does (standardwebhooks.com, "Verifying webhook authenticity"): the
    timestamp within five minutes, and one `v1,` signature equal to base64 of
    HMAC-SHA256(base64-decoded secret, "{webhook-id}.{webhook-timestamp}.{body}")."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) <= TOLERANCE_SECONDS, "timestamp too old or new"
    key = base64.b64decode(whsec.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for versioned in headers["webhook-signature"].split(" "):
        version, _, signature = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return
    raise AssertionError("no signature matches")


def with_attachment(subject: str = "Invoice") -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@sender.example>"
    message["To"] = "bob@example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.lower()}@sender.example>"
    message.set_content("Please find it attached.")
    message.add_attachment(
        b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    return message.as_bytes()


# --- a delivery from end to end --------------------------------------------------------------


def test_a_stored_message_is_posted_once_signed_with_its_json_and_links(
    hooked: Mailbox, receiver: Receiver
) -> None:
    hooked.send(with_attachment())
    [request] = receiver.wait_for_requests(1)
    [delivered] = wait_for_status(hooked.app, "delivered")

    assert request.path == "/hooks/mail?source=mxsmtp"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("mxsmtp/")
    assert request.headers["webhook-id"] == delivered.webhook_id
    assert request.headers["webhook-id"].startswith("msg_")
    verify(secret(), request.headers, request.body)

    payload = request.json()
    assert payload["type"] == "message.received"
    assert payload["timestamp"].endswith("Z")
    data = payload["data"]
    stored = hooked.message(delivered.message_id)
    raw_url = data.pop("raw_url")
    download_urls = [attachment.pop("download_url") for attachment in data["attachments"]]
    assert data == json.loads(json.dumps(message_json(stored)))  # exactly `messages show --json`
    assert raw_url.startswith(links.DEFAULT_WEB_ADDRESS + links.FILES_PATH)
    assert len(download_urls) == 1 and download_urls[0] != raw_url
    assert delivered.attempts == 1 and delivered.last_status == 200
    assert delivered.last_response == "answer 200"


def test_mail_without_a_webhook_url_queues_nothing(mailbox: Mailbox) -> None:
    mailbox.send(simple_message())
    assert len(mailbox.messages()) == 1
    assert deliveries(mailbox.app) == []


def test_a_receiver_that_fails_twice_gets_the_same_delivery_the_third_time(
    hooked: Mailbox, receiver: Receiver
) -> None:
    receiver.answers = [500, 503]
    hooked.send(simple_message())
    [delivered] = wait_for_status(hooked.app, "delivered")
    first, second, third = receiver.requests
    assert first.body == second.body == third.body  # retries send the same bytes
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert ids == {delivered.webhook_id}  # the receiver's idempotency key
    whsec = secret()
    for request in receiver.requests:
        verify(whsec, request.headers, request.body)
    assert delivered.attempts == 3 and delivered.last_status == 200


def test_410_gone_stops_the_retries(hooked: Mailbox, receiver: Receiver) -> None:
    receiver.answers = [410]
    hooked.send(simple_message())
    [failed] = wait_for_status(hooked.app, "failed")
    assert failed.attempts == 1 and failed.last_status == 410
    assert failed.last_response == "answer 410"
    assert len(receiver.requests) == 1


def test_a_refused_connection_is_retried_and_kept_in_words(hooked: Mailbox) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    hooked.configure(webhook_url=nobody)
    hooked.send(simple_message())

    def retried() -> list[webhooks.Delivery]:
        return [d for d in deliveries(hooked.app) if d.attempts >= 2 and d.last_response]

    [pending] = wait_for(retried, timeout=30, what="two refused attempts")
    assert pending.status == "pending" and pending.last_status is None
    assert "connection refused" in pending.last_response
    assert pending.next_attempt_at <= pending.created_at + timedelta(hours=72)


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    hooked: Mailbox, receiver: Receiver
) -> None:
    receiver.hold.set()  # holds every request past the tests' 1 s timeout
    hooked.send(simple_message())
    receiver.wait_for_requests(2)
    receiver.hold.clear()
    receiver.release.set()
    [delivered] = wait_for_status(hooked.app, "delivered")
    timed_out = receiver.requests[0]
    assert timed_out.headers["webhook-id"] == delivered.webhook_id
    assert delivered.attempts >= 2


def test_a_delivery_still_failing_after_the_retry_time_is_failed(
    hooked: Mailbox, receiver: Receiver
) -> None:
    hooked.configure(webhook_retry_hours=0)  # one attempt only
    receiver.default = 500
    hooked.send(simple_message())
    [failed] = wait_for_status(hooked.app, "failed")
    assert failed.attempts == 1 and failed.last_status == 500


def test_old_and_new_secret_both_sign_after_a_rotation(hooked: Mailbox, receiver: Receiver) -> None:
    hooked.send(simple_message(message_id="<before@sender.example>"))
    [before] = receiver.wait_for_requests(1)
    old = secret()
    assert len(before.headers["webhook-signature"].split(" ")) == 1

    code, output = run("webhooks", "secret", "--rotate")
    new = output.splitlines()[0]
    assert code == 0 and new.startswith("whsec_") and new != old
    assert "keeps signing" in output
    assert secret() == new
    hooked.send(simple_message(message_id="<after@sender.example>"))
    after = receiver.wait_for_requests(2)[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 2
    verify(old, after.headers, after.body)  # a receiver not yet switched
    verify(new, after.headers, after.body)  # and one that has
    with pytest.raises(AssertionError):
        verify(new, before.headers, before.body)


def test_signatures_do_not_verify_an_altered_body(hooked: Mailbox, receiver: Receiver) -> None:
    hooked.send(simple_message())
    [request] = receiver.wait_for_requests(1)
    with pytest.raises(AssertionError, match="no signature"):
        verify(secret(), request.headers, request.body.replace(b"Hello", b"Jello"))


# --- surviving a restart, on separate processes ---------------------------------------------


def _start(instance: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MXSMTP_INSTANCE": str(instance),
        "MXSMTP_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    }
    return subprocess.Popen(
        [MXSMTP, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    print(process.communicate()[0])  # shown when a test fails


def test_retries_survive_a_restart_and_any_worker_sends_them(
    app: Flask, instance: Path, receiver: Receiver
) -> None:
    receiver.default = 503
    with app.app_context():
        settings.save({"webhook_url": receiver.url})
        port = settings.load().port
    smtp = _start(instance, "smtp")
    try:
        wait_for(lambda: answers(port), timeout=30, what="the listener")
        send(port, simple_message())
        receiver.wait_for_requests(1)
        smtp.send_signal(signal.SIGTERM)
        assert smtp.wait(timeout=30) == 0
    finally:
        _stop(smtp)
    [pending] = deliveries(app)
    assert pending.status == "pending" and pending.last_status == 503
    receiver.default = 200
    worker = _start(instance, "worker")  # another process, as on another machine
    try:
        [delivered] = wait_for_status(app, "delivered", timeout=60)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        _stop(worker)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivered.webhook_id}
    assert len({r.body for r in receiver.requests}) == 1
    assert delivered.attempts == len(receiver.requests) >= 2


def send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("alice@sender.example", ["bob@example.com"], raw) == {}


def test_links_point_at_the_address_serve_listens_on(
    app: Flask, instance: Path, receiver: Receiver
) -> None:
    """No public_url: the links are built on the address `mxsmtp serve` listens on, and a
    receiver downloads the raw message and the attachment there without a login."""
    web_port = free_port()
    with app.app_context():
        settings.save({"webhook_url": receiver.url})
        port = settings.load().port
    serve = _start(instance, "serve", "--port", str(web_port))
    try:
        wait_for(lambda: answers(port), timeout=30, what="the listener")
        raw = with_attachment()
        send(port, raw)
        [request] = receiver.wait_for_requests(1)
        data = request.json()["data"]
        base = f"http://127.0.0.1:{web_port}{links.FILES_PATH}"
        assert data["raw_url"].startswith(base)
        with urllib.request.urlopen(data["raw_url"], timeout=10) as response:
            with app.app_context():
                assert response.read() == storage.get_raw(data["id"])
            assert response.headers["Content-Disposition"].startswith("attachment;")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        [attachment] = data["attachments"]
        assert attachment["download_url"].startswith(base)
        with urllib.request.urlopen(attachment["download_url"], timeout=10) as response:
            assert response.read() == b"%PDF-1.4 invoice"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    finally:
        _stop(serve)


def test_public_url_is_where_the_links_point(hooked: Mailbox, receiver: Receiver) -> None:
    hooked.configure(public_url="https://mail.example.com/mx/")
    hooked.send(simple_message())
    [request] = receiver.wait_for_requests(1)
    assert request.json()["data"]["raw_url"].startswith("https://mail.example.com/mx/files/")


# --- the CLI ---------------------------------------------------------------------------------


def test_webhooks_list_and_retry(hooked: Mailbox, receiver: Receiver) -> None:
    receiver.answers = [410]
    hooked.send(simple_message())
    [failed] = wait_for_status(hooked.app, "failed")

    code, output = run("webhooks", "list", "--status", "failed", "--json")
    [listed] = json.loads(output)
    assert code == 0 and listed["id"] == failed.id and listed["status"] == "failed"
    assert listed["webhook_id"] == failed.webhook_id and listed["url"] == receiver.url
    assert listed["attempts"] == 1 and listed["last_status"] == 410
    assert listed["last_response"] == "answer 410" and listed["next_attempt_at"] is None
    assert json.loads(run("webhooks", "list", "--status", "delivered", "--json")[1]) == []
    code, output = run("webhooks", "list")
    assert code == 0 and f"{failed.id}" in output and "failed" in output and "HTTP 410" in output

    assert run("webhooks", "retry", str(failed.id)) == (
        0,
        f"delivery {failed.id} will be sent again now\n",
    )
    [delivered] = wait_for_status(hooked.app, "delivered")
    assert delivered.id == failed.id and delivered.attempts == 2
    assert len(receiver.requests) == 2


def test_webhooks_retry_failed_and_what_it_refuses(hooked: Mailbox, receiver: Receiver) -> None:
    receiver.answers = [410, 410]
    hooked.send(simple_message(message_id="<one@sender.example>"))
    hooked.send(simple_message(message_id="<two@sender.example>"))
    wait_for_status(hooked.app, "failed", 2)
    code, output = run("webhooks", "retry", "--failed")
    assert code == 0 and output.startswith("2 failed delivery(ies)")
    wait_for_status(hooked.app, "delivered", 2)
    assert run("webhooks", "retry", "--failed")[1].startswith("0 failed")

    code, output = run("webhooks", "retry")
    assert code == 1 and "give a delivery ID or --failed" in output
    code, output = run("webhooks", "retry", "999999")
    assert code == 1 and "no webhook delivery 999999" in output
    code, output = run("webhooks", "list", "--status", "lost")
    assert code == 2 and "pending" in output


# --- the queue, on both engines --------------------------------------------------------------


def queued(app: Flask, count: int = 1) -> list[int]:
    """`count` deliveries queued for a stored message, as the worker queues them."""
    raw = simple_message()
    envelope = storage.Envelope("alice@sender.example", ("bob@example.com",))
    targets = [webhooks.WebhookTarget("default", f"http://127.0.0.1:9/{n}") for n in range(count)]
    with app.app_context():
        message_id = storage.save_message(envelope, parse_message(raw), raw, None, Status.RECEIVED)
        with db.engine.begin() as connection:
            assert webhooks.queue_deliveries(connection, message_id, targets) == count
        return [d.id for d in webhooks.deliveries_of(message_id)]


def claim(app: Flask, now_delta: timedelta = timedelta(), limit: int = 10) -> list[webhooks.Claim]:
    with app.app_context(), db.engine.begin() as connection:
        return webhooks.claim_due(connection, utcnow() + now_delta, limit)


def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_ends(app: Flask) -> None:
    [delivery_id] = queued(app)
    [first] = claim(app)
    assert (first.id, first.attempt, first.payload) == (delivery_id, 1, None)
    assert claim(app) == []  # another sender finds nothing
    [again] = claim(app, webhooks.LEASE + timedelta(seconds=1))  # the first sender died
    assert again.attempt == 2
    late = webhooks.AttemptOutcome(webhooks.DeliveryStatus.DELIVERED, 200, "late")
    with app.app_context(), db.engine.begin() as connection:
        assert not webhooks.record_attempt(connection, first, late)  # the later attempt counts
        assert webhooks.record_attempt(connection, again, late)
    with app.app_context():
        assert webhooks.get_delivery(delivery_id).status == "delivered"


def test_a_claim_takes_no_more_than_its_limit_oldest_first(app: Flask) -> None:
    ids = queued(app, 3)
    assert [c.id for c in claim(app, limit=1)] == ids[:1]
    assert [c.id for c in claim(app, limit=2)] == ids[1:]


def test_busy_urls_are_left_for_later(app: Flask) -> None:
    ids = queued(app, 2)
    with app.app_context(), db.engine.begin() as connection:
        claims = webhooks.claim_due(connection, utcnow(), 10, ["http://127.0.0.1:9/0"])
    assert [c.id for c in claims] == [ids[1]]


def test_postgresql_claims_skip_rows_another_sender_is_claiming(app: Flask, engine: str) -> None:
    if engine != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is nothing to skip")
    ids = queued(app, 2)
    with app.app_context():
        with db.engine.connect() as first, db.engine.connect() as second:
            with first.begin():
                [mine] = webhooks.claim_due(first, utcnow(), 1)
                with second.begin():  # answered at once, without the row the first holds
                    [theirs] = webhooks.claim_due(second, utcnow(), 5)
    assert {mine.id, theirs.id} == set(ids)


def test_retry_makes_a_delivery_due_and_retry_failed_every_failed_one(app: Flask) -> None:
    ids = queued(app, 3)
    with app.app_context():
        db.session.execute(
            WebhookDelivery.__table__.update()
            .where(WebhookDelivery.id.in_(ids[:2]))
            .values(status="failed", next_attempt_at=utcnow() + timedelta(days=1))
        )
        db.session.commit()
        assert webhooks.count_by_status() == {"pending": 1, "delivered": 0, "failed": 2}
        assert webhooks.retry_failed() == 2
        assert webhooks.count_by_status()["failed"] == 0
        assert webhooks.retry(ids[0]) and not webhooks.retry(999999)
    assert {c.id for c in claim(app)} == set(ids)


# --- the schedule ----------------------------------------------------------------------------


def test_the_first_retry_comes_within_a_minute_and_spacing_stays_below_an_hour() -> None:
    rng = random.Random(7)
    first = [retry_delay(1, RETRY_BASE_SECONDS, rng) for _ in range(200)]
    assert all(RETRY_BASE_SECONDS / 2 <= d <= RETRY_BASE_SECONDS < 60 for d in first)
    assert len({round(d, 3) for d in first}) > 100  # jitter: retries do not come together
    assert all(
        retry_delay(failures, RETRY_BASE_SECONDS, rng) <= MAX_SPACING_SECONDS
        for failures in range(1, 2000)
    )
    assert retry_delay(20, RETRY_BASE_SECONDS, rng) >= MAX_SPACING_SECONDS / 2
    means = [sum(retry_delay(n, 30, rng) for _ in range(200)) / 200 for n in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # exponential until the cap


def claim_at(
    created_ago: timedelta, attempt: int = 1, now: datetime | None = None
) -> webhooks.Claim:
    now = now or utcnow()
    return webhooks.Claim(1, "msg_x", 1, "http://h/", attempt, now - created_ago, None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "delivered"), (204, "delivered"), (410, "failed"), (500, "pending"), (302, "pending")],
)
def test_what_an_answer_leads_to(status: int, expected: str) -> None:
    outcome = outcome_of(
        HttpResult(status, "x"), claim_at(timedelta()), utcnow(), 72, 30, random.Random()
    )
    assert outcome.status == expected and outcome.http_status == status


def test_no_answer_is_retried_until_the_retry_time_is_over() -> None:
    rng = random.Random()
    now = utcnow()
    refused = HttpResult(None, "connection refused")
    early = outcome_of(refused, claim_at(timedelta(hours=1), 1, now), now, 72, 30, rng)
    assert early.status == "pending" and early.next_attempt_at <= now + timedelta(seconds=30)
    last = outcome_of(refused, claim_at(timedelta(hours=71, minutes=59), 90, now), now, 72, 30, rng)
    assert last.status == "pending"
    assert last.next_attempt_at <= now + timedelta(minutes=1)  # never after the retry time
    over = outcome_of(refused, claim_at(timedelta(hours=72), 1, now), now, 72, 30, rng)
    assert over.status == "failed" and over.response == "connection refused"


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("webhook_url", "https://app.example.com/hooks/mail?k=1", None),
        ("webhook_url", " http://[::1]:8080/h ", "http://[::1]:8080/h"),
        ("webhook_url", "", None),
        ("public_url", "https://mail.example.com/", "https://mail.example.com"),
        ("public_url", "http://10.0.0.5:8025/mx", None),
        ("webhook_link_ttl", "3600", 3600),
        ("webhook_retry_hours", "0", 0),
    ],
)
def test_webhook_settings_accept(key: str, text: str, value: object) -> None:
    assert settings.parse_value(key, text) == (text if value is None else value)


@pytest.mark.parametrize(
    ("key", "text", "says"),
    [
        ("webhook_url", "ftp://app.example.com/", "an http:// or https:// URL"),
        ("webhook_url", "https://user:pw@app.example.com/", "no user:password@"),
        ("webhook_url", "https://app.example.com:99999/", "an http:// or https:// URL"),
        ("webhook_url", "app.example.com/hook", "an http:// or https:// URL"),
        ("public_url", "https://mail.example.com/?a=1", "(no query)"),
        ("public_url", "https://mail.example.com/#top", "http(s)://HOST[:PORT][/PATH]"),
        ("webhook_link_ttl", "5", "a whole number from 60"),
        ("webhook_retry_hours", "-1", "a whole number from 0"),
    ],
)
def test_webhook_settings_refuse_saying_what_they_accept(key: str, text: str, says: str) -> None:
    with pytest.raises(settings.SettingError, match=key) as refused:
        settings.parse_value(key, text)
    assert says in str(refused.value)


def test_webhook_settings_defaults() -> None:
    defaults = settings.Settings()
    assert (defaults.webhook_url, defaults.public_url) == ("", "")
    assert defaults.webhook_link_ttl == 604800 and defaults.webhook_retry_hours == 72


def test_links_name_the_web_address_as_other_machines_reach_it() -> None:
    assert links.web_address("127.0.0.1", 8025) == "http://127.0.0.1:8025"
    assert links.web_address("::1", 8025) == "http://[::1]:8025"
    assert links.web_address("0.0.0.0", 80) == f"http://{settings.machine_fqdn()}:80"


def test_a_download_link_token_opens_only_what_it_names_until_it_expires() -> None:
    target = links.LinkTarget(links.ATTACHMENT, 42)
    token = links.make_token("key", target, int(time.time()) + 60)
    assert links.read_token("key", token) == target
    with pytest.raises(links.BadLink):
        links.read_token("another key", token)
    with pytest.raises(links.BadLink):
        links.read_token("key", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(links.LinkExpired):
        links.read_token("key", token, now=time.time() + 61)
    assert urlsplit(links.link_url("https://m.example/x/", token)).path == f"/x/files/{token}"
