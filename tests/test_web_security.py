"""The web admin under review, one test per point: CSRF everywhere, a new session at login,
framing rules, header injection through file names, hook paths, search input, login
throttling, owner-only files and no secrets in the logs."""

from __future__ import annotations

import logging
import os
import re
import stat
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from conftest import PASSWORD, Mailbox, csrf_token, log_in, make_user, simple_message
from mxsmtp_web import DATABASE_NAME, SECRET_KEY_NAME, create_app
from mxsmtp_web.cli import main
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.store import accounts, mailbox_edits, storage
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Status

#: Tables whose rows a state-changing request could touch (not the heartbeat or throttling).
WATCHED_TABLES = (
    *("user", "setting", "revision", "message", "message_raw", "attachment"),
    *("mailbox", "message_mailbox", "webhook_delivery", "webhook_secret"),
)


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    with app.app_context():
        return {
            table: [tuple(row) for row in db.session.execute(text(f'SELECT * FROM "{table}"'))]
            for table in WATCHED_TABLES
        }


def post_routes(app: Flask) -> list[tuple[str, str]]:
    """Every URL rule that takes a POST, as (endpoint, rule)."""
    return sorted(
        (rule.endpoint, rule.rule) for rule in app.url_map.iter_rules() if "POST" in rule.methods
    )


def test_every_post_route_refuses_a_request_without_csrf_token_and_changes_nothing(
    app: Flask, mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    mailbox.send(simple_message())
    [message] = mailbox.messages()
    make_user(app, "victim", "admin")
    with app.app_context():
        victim = accounts.find_user("victim").id
    with app.app_context():
        mailbox_edits.add("victims", ["victims@app.example.com"])
    ids = {"message_id": message.id, "user_id": victim, "mailbox_name": "victims"}
    # Everything a forged form could carry, so only the missing token stops it.
    forged = {
        "action": "delete",
        "ids": [str(message.id)],
        "days": "0",
        "status": "",
        "role": "viewer",
        "username": "root",
        "password": PASSWORD,
        "current": PASSWORD,
        "new": "forged password 1",
        "confirm": "forged password 1",
        "generate": "y",
        "listener_enabled": "",
        "port": "1",
        "sender_hook": "",
        "test-mail_from": "a@sender.example",
        "test-rcpt_to": "b@example.com",
    }
    routes = post_routes(app)
    assert {endpoint for endpoint, _ in routes} >= {
        *("auth.login", "auth.logout", "auth.password", "inbox.bulk", "inbox.reprocess"),
        *("settings.index", "settings.listener", "settings.test_message", "purge.index"),
        *("users.index", "users.delete", "users.disable", "users.role", "users.password"),
        *("mailboxes.new", "mailboxes.edit", "mailboxes.remove"),
    }
    before = snapshot(app)
    for endpoint, rule in routes:
        # a route's other ids (a webhook delivery) need not exist: the token is checked first
        path = re.sub(r"<(?:int:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), rule)
        response = admin_client.post(path, data=forged)
        assert response.status_code == 400, (endpoint, response.status_code)
        assert snapshot(app) == before, f"{endpoint} changed something without a CSRF token"
    assert admin_client.get("/").status_code == 200  # not even logged out
    assert len(mailbox.messages()) == 1


def test_login_starts_a_new_session_and_drops_what_was_in_the_old_one(
    app: Flask, client: FlaskClient
) -> None:
    make_user(app, "ada", "admin")
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker who fixed this cookie"
    before = client.get_cookie("session").value
    assert log_in(client, "ada").status_code == 302
    after = client.get_cookie("session").value
    assert after != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")
    fixed = app.test_client()
    fixed.set_cookie("session", before)  # the cookie from before the login is worth nothing
    assert fixed.get("/").status_code == 302


def test_pages_cannot_be_framed_by_others(
    app: Flask, admin_client: FlaskClient, client: FlaskClient
) -> None:
    message_id = _store_html(app)
    pages = [
        *("/", "/inbox/", "/refusals/", "/settings/", "/purge/", "/users/"),
        *("/account/password", f"/inbox/message/{message_id}", "/no/such/page"),
    ]
    for path in pages:
        response = admin_client.get(path)
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path
    login = client.get("/login")
    assert login.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"]
    # The preview is framed by our own message page only.
    preview = admin_client.get(f"/inbox/message/{message_id}/preview")
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in preview.headers["Content-Security-Policy"]


def _store_html(app: Flask) -> int:
    message = EmailMessage()
    message["Subject"] = "html"
    message.set_content("<p>hi</p>", subtype="html")
    raw = message.as_bytes()
    parsed = parse_message(raw)
    envelope = storage.Envelope("a@sender.example", ("b@example.com",))
    with app.app_context():
        return storage.save_message(envelope, parsed, raw, parsed.html, Status.RECEIVED)


HOSTILE_NAMES = (
    # RFC 2231: CR LF, a header and quotes, percent-encoded
    b"filename*=UTF-8''evil%0D%0ASet-Cookie%3A%20stolen%3D1%0D%0A%22quoted%22.txt",
    # a quoted name with escaped quotes and a backslash
    b'filename="a\\"b\\\\c\\";x=y.txt"',
    # RFC 2047 in a parameter, as Outlook sends it, hiding a CR LF
    b'filename="=?utf-8?q?x=0D=0AX-Injected:_1=22.txt?="',
    # a bare LF folded into the header value
    b'filename="line\r\n one\r\n\tX-Injected: 2.txt"',
)
HEADER_LINE = re.compile(r"[\r\n]")
DISPOSITION = re.compile(
    r"^attachment; filename=\"[\x20\x21\x23-\x5b\x5d-\x7e]+\"; "
    r"filename\*=UTF-8''[A-Za-z0-9!#$&+\-.^_`|~%]+$"
)


def test_crlf_and_quotes_in_attachment_names_cannot_inject_headers(
    mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    parts = b"".join(
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
        + name
        + b"\r\n\r\npart "
        + str(number).encode()
        + b"\r\n"
        for number, name in enumerate(HOSTILE_NAMES)
    )
    raw = (
        b"From: a@sender.example\r\nTo: b@example.com\r\n"
        b"Subject: =?utf-8?q?report=0D=0AX-Injected:_3_=22q=22?=\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n" + parts + b"--b--\r\n"
    )
    assert mailbox.send(raw) == {}
    [summary] = mailbox.messages()
    assert len(summary.attachments) == len(HOSTILE_NAMES)
    downloads = [f"/inbox/attachment/{part.id}" for part in summary.attachments]
    for path in [*downloads, f"/inbox/message/{summary.id}.eml"]:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        names = {name.lower() for name in response.headers.keys()}
        assert not names & {"set-cookie", "x-injected"}, path
        for name, value in response.headers.items():
            assert not HEADER_LINE.search(value), (name, value)
        disposition = response.headers["Content-Disposition"]
        assert DISPOSITION.match(disposition), disposition
        assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- hook paths ----------------------------------------------------------------------------

ESCAPES = (
    "../outside.py:check_sender",
    "./../outside.py:check_sender",
    "sub/../../outside.py:check_sender",
    "sub/../../../instance/outside.py:check_sender",
    "..//outside.py:check_sender",
)
OUTSIDE_HOOK = (
    "from pathlib import Path\n"
    "def check_sender(sender, session):\n"
    "    Path(__file__).with_suffix('.ran').write_text('ran')\n"
    "    return True\n"
)


def test_hook_settings_cannot_leave_the_hooks_folder_by_dot_dot_tricks(
    app: Flask, instance: Path, admin_client: FlaskClient
) -> None:
    outside = instance / "outside.py"
    outside.write_text(OUTSIDE_HOOK)
    (Path(app.config["HOOKS_DIR"]) / "sub").mkdir()
    for spec in ESCAPES:
        code, output = _cli("settings", "set", "sender_hook", spec)
        assert code == 1 and "points outside" in output, (spec, output)
        page = _save_setting(admin_client, "sender_hook", spec)
        assert "points outside" in page, spec
    with app.app_context():
        assert settings_module.load().sender_hook == ""
    # An absolute path is an admin's deliberate choice, and is accepted.
    absolute = f"{outside}:check_sender"
    assert _cli("settings", "set", "sender_hook", absolute)[0] == 0
    _cli("settings", "set", "sender_hook", "")
    assert "Saved: sender_hook." in _save_setting(admin_client, "sender_hook", absolute)


def test_a_dot_dot_hook_written_straight_into_the_database_never_runs(
    mailbox: Mailbox, instance: Path
) -> None:
    """Settings rows can be written by anything with the file; the runner checks again."""
    (instance / "outside.py").write_text(OUTSIDE_HOOK)
    mailbox.configure(sender_hook="../outside.py:check_sender")
    client = mailbox.connect()
    try:
        code, reply = client.mail("a@sender.example")
    finally:
        client.close()
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert not (instance / "outside.ran").exists()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


class _FormReader(HTMLParser):
    """The fields of the settings form as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name") or ""
        if tag != "input" or not name or name.startswith("test-"):
            return
        if found.get("type") == "checkbox" and "checked" not in found:
            return
        self.data[name] = found.get("value") or ""


def _save_setting(client: FlaskClient, key: str, value: str) -> str:
    """Submit the settings form as a browser would, with one field changed."""
    reader = _FormReader()
    reader.feed(client.get("/settings/").get_data(as_text=True))
    reader.close()
    data = {**reader.data, "xss_filter_level": "standard", key: value}
    response = client.post("/settings/", data=data, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


# --- search ---------------------------------------------------------------------------------

HOSTILE_SEARCHES = (
    "' OR 1=1 --",
    "' OR '1'='1",
    '"',
    "%",
    "_",
    "%%",
    "*",
    "NEAR(",
    'NEAR("a" "b", 2)',
    '"unterminated',
    "alpha OR beta",
    "subject:alpha",
    "-alpha",
    "^",
    "\\",
    "); DROP TABLE message; --",
)


def _shown_total(page: str) -> int:
    match = re.search(r"(\d+) messages?\b", page)
    assert match, "no total on the inbox page"
    return int(match.group(1))


def test_search_input_is_bound_and_never_matches_everything(
    app: Flask, mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    for subject in ("alpha report", "beta memo", "gamma note"):
        mailbox.send(simple_message(subject=subject, message_id=f"<{subject[:4]}@x>"))
    mailbox.bodies_parsed()  # messages are indexed for search with their bodies
    assert _shown_total(admin_client.get("/inbox/").get_data(as_text=True)) == 3
    assert _shown_total(admin_client.get("/inbox/?q=alpha").get_data(as_text=True)) == 1
    for query in HOSTILE_SEARCHES:
        response = admin_client.get("/inbox/", query_string={"q": query})
        assert response.status_code == 200, query
        assert _shown_total(response.get_data(as_text=True)) < 3, query
        refusals = admin_client.get("/refusals/", query_string={"q": query})
        assert refusals.status_code == 200, query
    assert len(mailbox.messages()) == 3  # and the table is still there


def test_refusal_search_treats_wildcards_as_text(app: Flask, admin_client: FlaskClient) -> None:
    with app.app_context():
        for sender in ("plain@sender.example", "per%cent@sender.example"):
            envelope = storage.Envelope(sender, ("b@example.com",), "192.0.2.9", "h")
            storage.record_refusal(envelope, "b@example.com", "sender_hook", "550 5.7.1 no")
    for query, expected in (("%", True), ("_", False), ("per%cent", True), ("' OR 1=1 --", False)):
        page = admin_client.get("/refusals/", query_string={"q": query}).get_data(as_text=True)
        assert ("per%cent@sender.example" in page) == bool(expected), query
        assert "plain@sender.example" not in page, query


# --- login throttling -----------------------------------------------------------------------


def test_login_throttling_is_per_address_and_covers_unknown_names(app: Flask) -> None:
    make_user(app, "ada", "admin")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    for number in range(accounts.MAX_FAILURES):
        log_in(attacker, f"nobody{number}", "guess")  # spraying names counts too
    assert log_in(attacker, "ada").status_code == 429  # locked, even with the right password
    assert attacker.get("/").status_code == 302
    colleague = app.test_client()
    colleague.environ_base["REMOTE_ADDR"] = "198.51.100.8"
    assert log_in(colleague, "ada").status_code == 302  # other addresses are not punished


# --- files and logs -------------------------------------------------------------------------


def test_secret_key_and_database_are_created_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = tmp_path / "fresh"
    monkeypatch.setenv("MXSMTP_INSTANCE", str(instance))
    previous = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        app = create_app({"TESTING": True})
        with app.app_context():
            settings_module.save({"port": "2525"})  # a write: WAL and SHM files appear
            db.session.remove()
    finally:
        os.umask(previous)
    capsys.readouterr()
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(instance / SECRET_KEY_NAME) == 0o600
    assert mode(instance / DATABASE_NAME) == 0o600
    for extra in ("-wal", "-shm"):
        path = instance / (DATABASE_NAME + extra)
        if path.exists():
            assert mode(path) == 0o600, path
    assert mode(instance) == 0o700 and mode(instance / "hooks") == 0o700


def test_no_secret_reaches_the_logs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MXSMTP_INSTANCE", str(tmp_path / "logs"))
    app = create_app({"TESTING": True})
    printed = capsys.readouterr()
    first_password = re.search(r"with password '([^']+)'", printed.out).group(1)
    assert first_password not in printed.err  # shown once, on stdout, for the operator
    secret_key = app.config["SECRET_KEY"]
    wrong = "hunter2 wrong secret"
    chosen = "my chosen passphrase"

    client = app.test_client()
    log_in(client, "admin", wrong)
    assert log_in(client, "admin", first_password).status_code == 302
    token = csrf_token(client, "/account/password")
    client.post(
        "/account/password",
        data={"current": first_password, "new": chosen, "confirm": chosen, "csrf_token": token},
    )
    _save_setting(client, "hook_timeout", "7")
    cookie = client.get_cookie("session").value
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in (first_password, secret_key, wrong, chosen, cookie):
        assert secret not in logged
    assert secret_key not in capsys.readouterr().out
