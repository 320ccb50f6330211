"""HTTP hooks end to end: a real endpoint on a free loopback port, served here, answers the
real listener's signed POSTs; smtplib is the sender. Every way the endpoint can fail answers
451 4.3.0 and is recorded like a raising script."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from flask import Flask

from conftest import Mailbox, free_port, simple_message
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store import webhook_secrets
from test_cli import run

ACCEPT = {"accept": True}
SIGNATURE_TOLERANCE = 5 * 60  # seconds, as the Standard Webhooks libraries default to


@dataclass(frozen=True)
class Call:
    """One POST the endpoint received."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Answer = Callable[[Call], tuple[int, Any]]  # (status, JSON value or raw bytes)


class Endpoint:
    """An HTTP hook endpoint: records every call, answers as the test sets `answer`, and can
    stall (until the test ends) to play an endpoint that never answers. With a certificate it
    speaks HTTPS."""

    def __init__(self, certificate: trustme.LeafCert | None = None) -> None:
        self.calls: list[Call] = []
        self.answer: Answer = lambda call: (200, ACCEPT)
        self.errors: list[BaseException] = []
        self.scheme = "https" if certificate else "http"
        self._released = threading.Event()
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.errors = self.errors
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            certificate.configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/hook"

    def answers(self, status: int, value: Any) -> None:
        self.answer = lambda call: (status, value)

    def stalls(self) -> None:
        def stall(call: Call) -> tuple[int, Any]:
            self._released.wait(60)
            return 200, ACCEPT

        self.answer = stall

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        assert self.errors == [], self.errors


class _Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        call = Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.endpoint.calls.append(call)
        status, value = self.endpoint.answer(call)
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests look at the calls, not at a log on standard error."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    errors: list[BaseException]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timed-out hook) is expected; anything else fails the test
        when the endpoint closes."""
        error = sys.exc_info()[1]
        if not isinstance(error, BrokenPipeError | ConnectionResetError):
            self.errors.append(error)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    endpoint = Endpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_endpoint(authority: trustme.CA) -> Iterator[Endpoint]:
    """An HTTPS endpoint whose certificate (for 127.0.0.1) no system authority signed."""
    endpoint = Endpoint(authority.issue_cert("127.0.0.1"))
    yield endpoint
    endpoint.close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks reference verification (standardwebhooks.com, spec "Verifying
    webhooks"), written out: HMAC-SHA256 of "id.timestamp.body" with the base64 key after
    "whsec_", compared in constant time with each "v1,…" of the header, the timestamp within
    the tolerance."""
    webhook_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for versioned in headers["webhook-signature"].split(" "):
        version, _, signature = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


def session_json(client: smtplib.SMTP) -> dict[str, Any]:
    return {
        "peer_address": "127.0.0.1",
        "peer_port": client.sock.getsockname()[1],
        "helo_name": "client.test.example",
        "tls": False,
        "tls_cipher": None,
    }


# --- the three hooks ------------------------------------------------------------------------


def test_sender_hook_gets_sender_and_session_and_decides(
    mailbox: Mailbox, endpoint: Endpoint
) -> None:
    endpoint.answer = lambda call: (200, {"accept": call.json["sender"].endswith("@good.example")})
    mailbox.configure(sender_hook=endpoint.url)
    with mailbox.connect() as client:
        assert client.mail("alice@good.example")[0] == 250
        client.rset()
        assert client.mail("mallory@bad.example") == (550, b"5.7.1 Sender refused")
        session = session_json(client)
    accepted, refused = endpoint.calls
    assert accepted.path == "/hook" and accepted.headers["content-type"] == "application/json"
    assert accepted.json == {"sender": "alice@good.example", "session": session}
    assert refused.json["sender"] == "mallory@bad.example"
    [refusal] = mailbox.refusals()
    assert (refusal.check, refusal.mail_from) == ("sender_hook", "mallory@bad.example")
    assert refusal.reply == "550 5.7.1 Sender refused" and refusal.detail == ""


def test_recipient_hook_refuses_one_recipient_with_the_usual_or_a_chosen_reply(
    mailbox: Mailbox, endpoint: Endpoint
) -> None:
    answers = {
        "bob@example.com": ACCEPT,
        "nobody@example.com": {"accept": False},
        "ticket-9@example.com": {"accept": False, "reply": "550 5.1.1 No such ticket"},
    }
    endpoint.answer = lambda call: (200, answers[call.json["recipient"]])
    mailbox.configure(recipient_hook=endpoint.url)
    with mailbox.connect() as client:
        refused = client.sendmail("alice@sender.example", list(answers), simple_message())
        session = session_json(client)
    assert refused == {
        "nobody@example.com": (550, b"5.1.1 Recipient refused"),
        "ticket-9@example.com": (550, b"5.1.1 No such ticket"),
    }
    assert endpoint.calls[0].json == {
        "recipient": "bob@example.com",
        "sender": "alice@sender.example",
        "session": session,
    }
    [summary] = mailbox.messages()
    assert summary.rcpt_tos == ("bob@example.com",)


def test_message_hook_gets_the_message_as_messages_show_json_shows_it(
    mailbox: Mailbox, endpoint: Endpoint
) -> None:
    mailbox.configure(message_hook=endpoint.url)
    mailbox.send(simple_message(subject="Ticket 42"), "alice@sender.example", ("t@example.com",))
    [call] = endpoint.calls
    sent = call.json["message"]
    [summary] = mailbox.messages()
    code, output, _ = run("messages", "show", str(summary.id), "--json")
    shown = json.loads(output)
    assert code == 0 and summary.status == "processed"
    assert sent.pop("mailbox") == "default" and isinstance(sent.pop("route"), dict)
    shown.pop("mailbox", None)
    shown.pop("route", None)
    assert set(sent) == set(shown)
    # It was stored before its hook ran, and the hook's own answer is not in it yet.
    assert (sent.pop("status"), shown.pop("status")) == ("received", "processed")
    assert sent.pop("hook_log") == []
    assert [entry["spec"] for entry in shown.pop("hook_log")] == [endpoint.url]
    assert sent == shown
    assert (sent["id"], sent["subject"], sent["text"]) == (summary.id, "Ticket 42", "Hi Bob.\n")


def test_message_hook_refuses_or_chooses_the_reply(mailbox: Mailbox, endpoint: Endpoint) -> None:
    mailbox.configure(message_hook=endpoint.url)
    endpoint.answers(200, {"accept": False})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        mailbox.send(simple_message())
    assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 Message refused")
    endpoint.answers(200, {"accept": False, "reply": "554 5.7.1 Not for this application"})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        mailbox.send(simple_message())
    assert refused.value.smtp_code == 554
    assert mailbox.messages() == []  # refused messages are not kept
    endpoint.answers(200, {"accept": True, "reply": "250 2.0.0 Queued as T-42"})
    with mailbox.connect() as client:
        client.mail("alice@sender.example")
        client.rcpt("bob@example.com")
        assert client.data(simple_message()) == (250, b"2.0.0 Queued as T-42")
    assert [m.status for m in mailbox.messages()] == ["processed"]


def test_a_mailboxs_hooks_may_be_urls_and_see_its_name_and_route(
    mailbox: Mailbox, endpoint: Endpoint
) -> None:
    pattern = r"re:^(?P<ticket>[0-9]+)@tickets\.example\.com$"
    assert run("mailboxes", "add", "tickets", "--match", pattern)[0] == 0
    for key in ("recipient_hook", "message_hook"):
        code, output, _ = run("mailboxes", "set", "tickets", key, f"{endpoint.url}/{key}")
        assert code == 0, output
    assert mailbox.send(simple_message(), recipients=("7@tickets.example.com",)) == {}
    recipient_call, message_call = endpoint.calls
    assert (recipient_call.path, message_call.path) == (
        "/hook/recipient_hook",
        "/hook/message_hook",
    )
    assert recipient_call.json["recipient"] == "7@tickets.example.com"
    sent = message_call.json["message"]
    assert sent["mailbox"] == "tickets"
    assert sent["route"] == {"address": "7@tickets.example.com", "captures": {"ticket": "7"}}


# --- failures: 451 4.3.0, logged and recorded -----------------------------------------------


def _redirect(endpoint: Endpoint) -> str:
    endpoint.answer = lambda call: (302, b"")
    return endpoint.url


def _status_500(endpoint: Endpoint) -> str:
    endpoint.answers(500, b"Internal Server Error")
    return endpoint.url


def _not_json(endpoint: Endpoint) -> str:
    endpoint.answers(200, b"<html>OK</html>")
    return endpoint.url


def _not_an_answer(endpoint: Endpoint) -> str:
    endpoint.answers(200, {"accepted": True})
    return endpoint.url


def _disagreeing_reply(endpoint: Endpoint) -> str:
    endpoint.answers(200, {"accept": True, "reply": "550 5.1.1 No such ticket"})
    return endpoint.url


def _injected_reply(endpoint: Endpoint) -> str:
    endpoint.answers(200, {"accept": False, "reply": "550 5.1.1 x\r\nRSET"})
    return endpoint.url


def _refused_connection(endpoint: Endpoint) -> str:
    return f"http://127.0.0.1:{free_port()}/hook"


FAILURES = {
    "other status": (_status_500, "answered 500 Internal Server Error: 'Internal Server Error'"),
    "redirect": (_redirect, "answered 302 Found"),
    "bad JSON": (_not_json, "answered 200 but not JSON: '<html>OK</html>'"),
    "not an answer": (_not_an_answer, 'expected {"accept": true} or {"accept": false}'),
    "disagreeing reply": (_disagreeing_reply, "reply '550 5.1.1 No such ticket' with accept true"),
    "injected reply": (_injected_reply, "a reply is one line"),
    "refused connection": (_refused_connection, "Connection refused"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_endpoint_answers_451_and_is_recorded(
    mailbox: Mailbox, endpoint: Endpoint, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    arrange, says = FAILURES[failure]
    url = arrange(endpoint)
    mailbox.configure(sender_hook=url)
    with mailbox.connect() as client:
        code, reply = client.mail("alice@sender.example")
    assert (code, reply[:5]) == (451, b"4.3.0")
    [refusal] = mailbox.refusals()
    assert refusal.check == "sender_hook" and refusal.reply.startswith("451 4.3.0")
    assert refusal.detail.startswith(f"hook {url} failed: ") and says in refusal.detail
    [logged] = [r.getMessage() for r in caplog.records if r.name == "mxsmtp_web.hooks"]
    assert logged == refusal.detail


def test_an_https_endpoint_of_an_unknown_authority_is_a_tls_error(
    mailbox: Mailbox, tls_endpoint: Endpoint
) -> None:
    mailbox.configure(sender_hook=tls_endpoint.url)
    with mailbox.connect() as client:
        assert client.mail("alice@sender.example")[:1] == (451,)
    [refusal] = mailbox.refusals()
    assert "CERTIFICATE_VERIFY_FAILED" in refusal.detail and tls_endpoint.calls == []


def test_an_https_endpoint_decides_once_its_authority_is_trusted(
    mailbox: Mailbox,
    tls_endpoint: Endpoint,
    authority: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_FILE is read at a runner's first HTTPS call, as OpenSSL reads it."""
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    tls_endpoint.answers(200, {"accept": False, "reply": "550 5.7.1 Not over TLS either"})
    mailbox.configure(sender_hook=tls_endpoint.url)
    with mailbox.connect() as client:
        assert client.mail("alice@sender.example") == (550, b"5.7.1 Not over TLS either")
    [call] = tls_endpoint.calls
    assert call.json["sender"] == "alice@sender.example"


def test_an_endpoint_that_stalls_answers_451_within_hook_timeout(
    mailbox: Mailbox, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.stalls()
    mailbox.configure(sender_hook=endpoint.url, hook_timeout=0.5)
    with mailbox.connect() as client:
        started = time.monotonic()
        code, reply = client.mail("alice@sender.example")
        took = time.monotonic() - started
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert 0.5 <= took < 0.5 + 1.5, took
    assert len(endpoint.calls) == 1  # it was asked, and did not answer in time
    [refusal] = mailbox.refusals()
    expected = f"hook {endpoint.url} did not answer within 0.5 s (hook_timeout)"
    assert refusal.detail == expected
    assert [r.getMessage() for r in caplog.records if r.name == "mxsmtp_web.hooks"] == [expected]


def test_a_failing_message_hook_keeps_the_message_as_hook_error(
    mailbox: Mailbox, endpoint: Endpoint
) -> None:
    endpoint.answers(503, b"Service Unavailable")
    mailbox.configure(message_hook=endpoint.url)
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        mailbox.send(simple_message())
    assert (deferred.value.smtp_code, deferred.value.smtp_error[:5]) == (451, b"4.3.0")
    [summary] = mailbox.messages()
    assert summary.status == "hook error"
    [entry] = mailbox.message(summary.id).hook_log
    assert (entry["hook"], entry["outcome"]) == ("message_hook", "error")
    assert "answered 503 Service Unavailable" in entry["error"]


# --- the signature ------------------------------------------------------------------------


def test_calls_are_signed_per_standard_webhooks_also_across_a_rotation(
    mailbox: Mailbox, endpoint: Endpoint, app: Flask
) -> None:
    mailbox.configure(sender_hook=endpoint.url)
    with mailbox.connect() as client:
        client.mail("alice@sender.example")
        client.rset()
        client.mail("carol@sender.example")
    first, second = endpoint.calls
    with app.app_context():
        secret = webhook_secrets.current_secret().secret
    assert verify(secret, first.headers, first.body) and verify(secret, second.headers, second.body)
    assert first.headers["webhook-id"] != second.headers["webhook-id"]  # fresh for each call
    assert not verify(secret, first.headers, first.body.replace(b"alice", b"mallory"))
    assert secret not in first.body.decode() + json.dumps(first.headers)

    with app.app_context():
        rotated = webhook_secrets.rotate().secret
    with mailbox.connect() as client:
        client.mail("dave@sender.example")
    third = endpoint.calls[2]
    assert len(third.headers["webhook-signature"].split(" ")) == 2  # old and new both sign
    assert verify(rotated, third.headers, third.body) and verify(secret, third.headers, third.body)


# --- the setting -----------------------------------------------------------------------------


def test_settings_set_takes_a_url_without_calling_it(app: Flask) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/sender?app=tickets"  # nothing listens there
    code, output, _ = run("settings", "set", "sender_hook", url)
    assert code == 0 and f"sender_hook = {url}" in output
    assert run("settings", "set", "message_hook", "https://app.example.com/mail")[0] == 0
    with app.app_context():
        saved = settings_module.load()
    assert (saved.sender_hook, saved.message_hook) == (url, "https://app.example.com/mail")


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("http://", "an http:// or https:// URL"),
        ("ftp://app.example.com/hook", "an http:// or https:// URL"),
        ("http://app example.com/hook", "an http:// or https:// URL"),
        ("https://user:secret@app.example.com/hook", "an http:// or https:// URL"),
        ("https://app.example.com:99999/hook", "a port that is not a number from 0 to 65535"),
    ],
)
def test_settings_set_refuses_a_bad_url_naming_the_key(app: Flask, bad: str, says: str) -> None:
    code, output, _ = run("settings", "set", "recipient_hook", bad)
    assert code == 1 and "recipient_hook: " in output and says in output
    with app.app_context():
        assert settings_module.load().recipient_hook == ""


def test_hook_log_lines_never_carry_the_secret(
    mailbox: Mailbox, endpoint: Endpoint, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint.answers(500, b"no")
    mailbox.configure(sender_hook=endpoint.url)
    with mailbox.connect() as client:
        client.mail("alice@sender.example")
    with app.app_context():
        secret = webhook_secrets.current_secret()
    key = secret.secret.removeprefix("whsec_")
    assert caplog.records and not any(key in r.getMessage() for r in caplog.records)
