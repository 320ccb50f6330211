"""`mxsmtp ingest` as an MTA's pipe runs it: a process of its own, the message on standard
input, the answer in the exit status (sysexits.h) and the SMTP-style reply on standard error.
Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from conftest import free_port
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store import storage

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")
PIPED = (
    b"From: Alice <alice@sender.example>\nSubject: Piped\nMessage-ID: <p1@sender.example>\n\nHi.\n"
)
WITH_ATTACHMENT = (
    b"From: alice@sender.example\nSubject: Files\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nSee file.\n'
    b"--b\nContent-Type: application/octet-stream\n"
    b'Content-Disposition: attachment; filename="a.bin"\n'
    b"Content-Transfer-Encoding: base64\n\nAAECAw==\n--b--\n"
)


def ingest(*args: str, message: bytes = PIPED, env: dict[str, str] | None = None):
    """The command as Postfix's pipe(8) would run it."""
    return subprocess.run(
        [MXSMTP, "ingest", *args],
        input=message,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def configure(app: Flask, **values: object) -> None:
    with app.app_context():
        settings_module.save({key: settings_module.to_text(v) for key, v in values.items()})


def write_hook(app: Flask, name: str, source: str) -> str:
    Path(app.config["HOOKS_DIR"], name).write_text(source)
    return name


def stored(app: Flask) -> list[storage.MessageSummary]:
    with app.app_context():
        return storage.list_messages()


def test_a_piped_message_is_stored_whole_with_crlf_and_its_body_parsed(app: Flask) -> None:
    done = ingest("--sender", "alice@sender.example", "--recipient", "inbox@app.example",
                  message=WITH_ATTACHMENT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().strip() == "250 2.0.0 Message accepted"
    [summary] = stored(app)
    assert summary.parsed and summary.rcpt_tos == ("inbox@app.example",)
    assert [(a.filename, a.size) for a in summary.attachments] == [("a.bin", 4)]
    with app.app_context():
        raw = storage.get_raw(summary.id)
    received, _, rest = raw.partition(b"From: alice")
    assert b"with local id" in received and b"for <inbox@app.example>" in received
    assert b"From: alice" + rest == WITH_ATTACHMENT.replace(b"\n", b"\r\n")


def test_an_mbox_from_line_is_not_taken_for_a_header(app: Flask) -> None:
    message = b"From alice@sender.example  Wed Dec  2 10:00:00 2026\n" + PIPED
    assert ingest("--sender", "a@sender.example", "--recipient", "b@app.example",
                  message=message).returncode == 0  # fmt: skip
    [summary] = stored(app)
    assert summary.subject == "Piped" and summary.from_header.startswith("Alice")


def test_recipients_after_the_options_count_as_postfix_expands_them(app: Flask) -> None:
    done = ingest("--sender", "", "--recipient", "a@app.example", "b@app.example")
    assert done.returncode == 0, done.stderr
    [summary] = stored(app)
    assert summary.rcpt_tos == ("a@app.example", "b@app.example") and summary.mail_from == ""


def test_every_recipient_refused_is_67_and_recorded(app: Flask) -> None:
    hook = write_hook(app, "rcpt.py", "def check(recipient, sender, session):\n    return False\n")
    configure(app, recipient_hook=f"{hook}:check")
    done = ingest("--sender", "a@sender.example", "--recipient", "nobody@app.example")
    assert done.returncode == 67
    assert done.stderr.decode().startswith("550 5.1.1 Recipient refused <nobody@app.example>")
    assert stored(app) == []
    with app.app_context():
        [refusal] = storage.list_refusals()
    assert refusal.recipient == "nobody@app.example" and refusal.check == "recipient_hook"


def test_one_recipient_refused_the_others_get_the_message(app: Flask) -> None:
    hook = write_hook(
        app, "rcpt.py", "def check(recipient, sender, session):\n    return 'ok' in recipient\n"
    )
    configure(app, recipient_hook=f"{hook}:check")
    done = ingest("--sender", "a@x.example", "--recipient", "no@app.example", "ok@app.example")
    assert done.returncode == 0
    assert "550 5.1.1 Recipient refused <no@app.example>" in done.stderr.decode()
    [summary] = stored(app)
    assert summary.rcpt_tos == ("ok@app.example",)


def test_a_refused_sender_or_message_is_77(app: Flask) -> None:
    write_hook(app, "no.py", "def sender(s, session):\n    return False\n"
               "def message(m):\n    return False\n")  # fmt: skip
    configure(app, sender_hook="no.py:sender")
    done = ingest("--sender", "spam@x.example", "--recipient", "b@app.example")
    assert (done.returncode, done.stderr.decode().strip()) == (77, "550 5.7.1 Sender refused")
    configure(app, sender_hook="", message_hook="no.py:message")
    done = ingest("--sender", "a@x.example", "--recipient", "b@app.example")
    assert (done.returncode, done.stderr.decode().strip()) == (77, "550 5.7.1 Message refused")
    assert stored(app) == []


def test_too_large_or_malformed_beyond_the_limits_is_65(app: Flask) -> None:
    configure(app, max_message_size=1024)
    done = ingest("--sender", "a@x.example", "--recipient", "b@app.example",
                  message=PIPED + b"x" * 2048)  # fmt: skip
    assert done.returncode == 65 and done.stderr.decode().startswith("552 5.3.4")
    configure(app, max_message_size=1_000_000, max_mime_depth=1)
    nested = (
        b'Content-Type: multipart/mixed; boundary="a"\n\n--a\n'
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b'Content-Type: multipart/mixed; boundary="c"\n\n--c\n\nx\n--c--\n--b--\n--a--\n'
    )
    done = ingest("--sender", "a@x.example", "--recipient", "b@app.example", message=nested)
    assert done.returncode == 65 and done.stderr.decode().startswith("554 5.6.0")
    assert stored(app) == []


def test_a_failing_hook_is_75_and_the_mta_retries(app: Flask) -> None:
    write_hook(app, "boom.py", "def message(m):\n    raise RuntimeError('tickets are down')\n")
    configure(app, message_hook="boom.py:message")
    done = ingest("--sender", "a@x.example", "--recipient", "b@app.example")
    assert done.returncode == 75 and done.stderr.decode().startswith("451 4.3.0")
    assert "Traceback" not in done.stderr.decode()


def test_an_unreachable_database_is_75_in_one_line(instance: Path) -> None:
    url = f"postgresql://mail@127.0.0.1:{free_port()}/mail"
    done = ingest("--sender", "a@x.example", "--recipient", "b@app.example",
                  env={"MXSMTP_DATABASE_URL": url})  # fmt: skip
    assert done.returncode == 75
    lines = done.stderr.decode().strip().splitlines()
    assert lines[0].startswith("451 4.3.0") and "MXSMTP_DATABASE_URL" in lines[1]
    assert len(lines) == 2


def test_a_double_bounce_probe_is_answered_and_not_stored(app: Flask) -> None:
    configure(app, double_bounce_address="double-bounce@app.example")
    done = ingest("--sender", "double-bounce@app.example", "--recipient", "b@app.example")
    assert done.returncode == 0 and "probe" in done.stderr.decode()
    assert stored(app) == []


def test_no_recipient_is_a_usage_error(app: Flask) -> None:
    done = ingest("--sender", "a@x.example")
    assert done.returncode == 64 and b"--recipient" in done.stderr


@pytest.mark.parametrize("sender", ["<>", ""])
def test_the_null_sender_is_stored_as_empty(app: Flask, sender: str) -> None:
    assert ingest("--sender", sender, "--recipient", "b@app.example").returncode == 0
    assert [m.mail_from for m in stored(app)] == [""]
