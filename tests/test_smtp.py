"""The SMTP dialogue against the real listener on a loopback port, with smtplib as client."""

from __future__ import annotations

import hashlib
import os
import smtplib
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from conftest import Mailbox, free_port, simple_message, wait_for
from mxsmtp_web import DATABASE_NAME
from mxsmtp_web.store.extensions import db
from test_parsing import CHARSET_SAMPLES, REPORT, SAMPLE_TNEF, charset_mail, winmail_mail


def test_accepts_and_stores_a_message_with_its_envelope(mailbox: Mailbox) -> None:
    refused = mailbox.send(simple_message(), "Alice@Sender.Example", ("Bob@Example.com",))
    assert refused == {}
    [summary] = mailbox.messages()
    assert summary.status == "received"
    assert summary.mail_from == "Alice@Sender.Example"  # never lower-cased
    assert summary.rcpt_tos == ("Bob@Example.com",)
    stored = mailbox.message(summary.id)
    assert stored.peer_address == "127.0.0.1"
    assert stored.helo == "client.test.example"
    assert summary.subject == "Hello"
    assert stored.text == "Hi Bob.\n"  # bodies are kept with the line ends normalised


def test_greeting_ehlo_and_received_header_carry_the_host_name(mailbox: Mailbox) -> None:
    mailbox.configure(max_message_size=123456)
    client = smtplib.SMTP()
    code, banner = client.connect("127.0.0.1", mailbox.port)
    assert code == 220 and banner.startswith(b"mx.test.example")
    code, _ = client.ehlo("client.test.example")
    assert code == 250
    assert client.esmtp_features["size"] == "123456"
    client.sendmail("a@sender.example", ["b@example.com"], simple_message())
    client.quit()
    raw = mailbox.raw(mailbox.messages()[0].id)
    assert raw.startswith(
        b"Received: from client.test.example ([127.0.0.1])\r\n\tby mx.test.example"
    )
    assert raw.endswith(simple_message())


def test_raw_bytes_are_kept_exactly_including_dot_stuffed_lines(mailbox: Mailbox) -> None:
    body = ".leading dot\r\n..two dots\r\n.\r\n ...\r\nend.\r\n"
    message = simple_message(body=body.replace("\r\n.\r\n", "\r\n. \r\n"))
    mailbox.send(message)
    raw = mailbox.raw(mailbox.messages()[0].id)
    assert raw.endswith(message)


def test_empty_body_message_is_accepted(mailbox: Mailbox) -> None:
    with mailbox.connect() as client:
        client.mail("a@sender.example")
        client.rcpt("b@example.com")
        code, _ = client.data(b"")
    assert code == 250


def test_sender_hook_refusal_is_550_and_recorded(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "gate.py",
        "def check_sender(sender, session):\n    return sender.endswith('@good.example')\n",
    )
    mailbox.configure(sender_hook="gate.py:check_sender")
    with mailbox.connect() as client:
        code, reply = client.mail("mallory@bad.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        assert client.mail("alice@good.example")[0] == 250
    [refusal] = mailbox.refusals()
    assert (refusal.check, refusal.mail_from) == ("sender_hook", "mallory@bad.example")
    assert refusal.reply.startswith("550 5.7.1") and refusal.peer_address == "127.0.0.1"


def test_session_tells_peer_helo_and_tls(mailbox: Mailbox) -> None:
    seen = mailbox.app.config["HOOKS_DIR"] + "/seen.txt"
    mailbox.write_hook(
        "session.py",
        "def check_sender(sender, session):\n"
        f"    import pathlib; pathlib.Path({seen!r}).write_text(repr((session.peer_address, "
        "session.helo_name, session.tls)))\n    return True\n",
    )
    mailbox.configure(sender_hook="session.py:check_sender")
    mailbox.send(simple_message())
    assert Path(seen).read_text() == "('127.0.0.1', 'client.test.example', False)"


def test_null_sender_reaches_the_hook_as_empty_string(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "bounces.py",
        "def check_sender(sender, session):\n    return '550 5.7.1 got ' + repr(sender)\n",
    )
    mailbox.configure(sender_hook="bounces.py:check_sender")
    with mailbox.connect() as client:
        code, reply = client.mail("<>")
    assert (code, reply) == (550, b"5.7.1 got ''")


def test_recipient_hook_refuses_only_that_recipient(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "rcpt.py",
        "def check_recipient(recipient, sender, session):\n"
        "    return not recipient.startswith('nobody@')\n",
    )
    mailbox.configure(recipient_hook="rcpt.py:check_recipient")
    refused = mailbox.send(simple_message(), recipients=("bob@example.com", "nobody@example.com"))
    assert refused == {"nobody@example.com": (550, b"5.1.1 Recipient refused")}
    [summary] = mailbox.messages()
    assert summary.rcpt_tos == ("bob@example.com",)
    assert [r.recipient for r in mailbox.refusals()] == ["nobody@example.com"]


def test_hook_may_choose_its_reply_line(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "tickets.py",
        "def check_recipient(recipient, sender, session):\n    return '550 5.1.1 No such ticket'\n",
    )
    mailbox.configure(recipient_hook="tickets.py:check_recipient")
    with mailbox.connect() as client:
        client.mail("a@sender.example")
        assert client.rcpt("ticket-9@example.com") == (550, b"5.1.1 No such ticket")


def test_message_hook_sees_the_parsed_message_and_can_refuse(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "content.py",
        "def process_message(message):\n"
        "    if 'spam' in message.subject:\n"
        "        return False\n"
        "    assert message.sender == 'a@sender.example'\n"
        "    assert message.recipients == ('b@example.com',)\n"
        "    assert message.id is not None and message.raw.endswith(b'Hi Bob.\\r\\n')\n"
        "    assert message.session.peer_address == '127.0.0.1'\n"
        "    return True\n",
    )
    mailbox.configure(message_hook="content.py:process_message")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        mailbox.send(simple_message(subject="buy spam"), "a@sender.example", ("b@example.com",))
    assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 Message refused")
    assert mailbox.messages() == []  # refused messages are not kept
    mailbox.send(simple_message(), "a@sender.example", ("b@example.com",))
    [summary] = mailbox.messages()
    assert summary.status == "processed"
    [entry] = mailbox.message(summary.id).hook_log
    assert (entry["hook"], entry["outcome"]) == ("message_hook", "accepted")


def test_message_hook_sees_what_could_not_be_decoded(mailbox: Mailbox) -> None:
    """A damaged part reaches the hook decoded as far as it goes, and flagged."""
    mailbox.write_hook(
        "damaged.py",
        "def process_message(message):\n"
        "    cut = message.attachments[0]\n"
        "    if cut.filename != 'cut.bin' or cut.size != 300:\n"
        "        return '550 5.7.1 wrong part'\n"
        "    if cut.defects != ('base64 had an impossible length; its last character was "
        "dropped',):\n"
        "        return '550 5.7.1 no part defects'\n"
        "    if not any('x-rot13' in d for d in message.defects):\n"
        "        return '550 5.7.1 no message defects'\n"
        "    return True\n",
    )
    mailbox.configure(message_hook="damaged.py:process_message")
    damaged = (Path(__file__).parent / "data" / "tolerant" / "base64_bad_length.eml").read_bytes()
    mailbox.send(damaged)
    [summary] = mailbox.messages()
    assert summary.status == "processed"


def test_hook_that_raises_answers_451_and_keeps_the_message_for_the_admin(
    mailbox: Mailbox,
) -> None:
    mailbox.write_hook(
        "broken.py",
        "def process_message(message):\n    raise RuntimeError('database of tickets is down')\n",
    )
    mailbox.configure(message_hook="broken.py:process_message")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        mailbox.send(simple_message())
    assert deferred.value.smtp_code == 451
    assert deferred.value.smtp_error.startswith(b"4.3.0")
    assert b"Traceback" not in deferred.value.smtp_error
    [summary] = mailbox.messages()
    assert summary.status == "hook error"
    [entry] = mailbox.message(summary.id).hook_log
    assert "database of tickets is down" in entry["error"]
    [refusal] = mailbox.refusals()
    assert "RuntimeError" in refusal.detail


def test_retry_after_a_hook_error_replaces_the_failed_copy(mailbox: Mailbox) -> None:
    flag = mailbox.app.config["HOOKS_DIR"] + "/fixed"
    mailbox.write_hook(
        "flaky.py",
        "import os\ndef process_message(message):\n"
        f"    if not os.path.exists({flag!r}):\n"
        "        raise RuntimeError('not yet')\n"
        "    return True\n",
    )
    mailbox.configure(message_hook="flaky.py:process_message")
    with pytest.raises(smtplib.SMTPDataError):
        mailbox.send(simple_message())
    assert [m.status for m in mailbox.messages()] == ["hook error"]
    Path(flag).touch()
    mailbox.send(simple_message())
    assert [m.status for m in mailbox.messages()] == ["processed"]


def test_hook_that_hangs_answers_451_after_hook_timeout(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "slow.py",
        "import time\ndef check_recipient(recipient, sender, session):\n"
        "    time.sleep(30)\n    return True\n",
    )
    mailbox.configure(recipient_hook="slow.py:check_recipient", hook_timeout=0.5)
    with mailbox.connect() as client:
        client.mail("a@sender.example")
        started = time.monotonic()
        code, reply = client.rcpt("b@example.com")
        assert time.monotonic() - started < 10
        assert (code, reply[:5]) == (451, b"4.3.0")
        assert client.noop()[0] == 250  # the event loop was never blocked


def test_a_changed_hook_file_is_reloaded(mailbox: Mailbox) -> None:
    mailbox.write_hook("switch.py", "def check_sender(sender, session):\n    return False\n")
    mailbox.configure(sender_hook="switch.py:check_sender")
    with mailbox.connect() as client:
        assert client.mail("a@sender.example")[0] == 550
        mailbox.write_hook("switch.py", "def check_sender(sender, session):\n    return True\n")
        client.rset()
        assert client.mail("a@sender.example")[0] == 250


def test_double_bounce_probe_skips_sender_check_and_is_not_stored(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "gate.py",
        "def check_sender(sender, session):\n    return False\n"
        "def check_recipient(recipient, sender, session):\n"
        "    return recipient == 'known@example.com'\n",
    )
    mailbox.configure(
        sender_hook="gate.py:check_sender",
        recipient_hook="gate.py:check_recipient",
        double_bounce_address="double-bounce@relay.example",
    )
    with mailbox.connect() as client:
        assert client.mail("Double-Bounce@RELAY.example")[0] == 250
        assert client.rcpt("unknown@example.com")[0] == 550  # a true answer
        assert client.rcpt("known@example.com")[0] == 250
        client.rset()
        assert client.mail("double-bounce+1AbC9@relay.example")[0] == 250  # time-stamped form
        client.rcpt("known@example.com")
        code, _ = client.data(simple_message())
        assert code == 250
    assert mailbox.messages() == []
    with mailbox.app.app_context():
        from mxsmtp_web.store.storage import probe_count

        assert probe_count() == 1


def test_size_is_refused_at_mail_from_and_during_data(mailbox: Mailbox) -> None:
    mailbox.configure(max_message_size=2048)
    with mailbox.connect() as client:
        code, reply = client.mail("a@sender.example", ["SIZE=4096"])
        assert (code, reply[:5]) == (552, b"5.3.4")
        assert client.mail("a@sender.example", ["SIZE=1000"])[0] == 250
        client.rcpt("b@example.com")
        code, reply = client.data(simple_message(body="x" * 70 + "\r\n") * 40)
        assert (code, reply[:5]) == (552, b"5.3.4")
        assert client.noop()[0] == 250  # the session goes on
    assert mailbox.messages() == []
    assert {r.check for r in mailbox.refusals()} == {"size"}


def test_too_many_recipients_get_452(mailbox: Mailbox) -> None:
    mailbox.configure(max_recipients=2)
    with mailbox.connect() as client:
        client.mail("a@sender.example")
        assert client.rcpt("one@example.com")[0] == 250
        assert client.rcpt("two@example.com")[0] == 250
        code, reply = client.rcpt("three@example.com")
    assert (code, reply[:5]) == (452, b"4.5.3")


def test_malformed_address_gets_553(mailbox: Mailbox) -> None:
    with mailbox.connect() as client:
        code, reply = client.docmd("MAIL FROM:<a@b@@c>")
    assert (code, reply[:5]) == (553, b"5.1.3")


def test_delete_after_process_answers_250_and_keeps_nothing(mailbox: Mailbox) -> None:
    mailbox.write_hook("keep.py", "def process_message(message):\n    return True\n")
    mailbox.configure(message_hook="keep.py:process_message", delete_after_process=True)
    assert mailbox.send(simple_message()) == {}
    assert mailbox.messages() == []


def refuse_inserts(app: Flask, error: str) -> None:
    """From now on every insert of a message fails with the database's own `error` text (a
    trigger raising it, on either engine), until `allow_inserts`."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN RAISE EXCEPTION '{error}'; END $$"
                )
            )
            db.session.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON message EXECUTE FUNCTION refuse()")
            )
        else:
            db.session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON message "
                    f"BEGIN SELECT RAISE(ABORT, '{error}'); END"
                )
            )
        db.session.commit()


def allow_inserts(app: Flask) -> None:
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP TRIGGER refuse ON message"))
        else:
            db.session.execute(text("DROP TRIGGER refuse"))
        db.session.commit()


@pytest.mark.parametrize(
    "error, code",
    [
        ("disk I/O error", (451, b"4.3.0")),
        ("database or disk is full", (452, b"4.3.1")),  # SQLite's words
        ("could not extend file: No space left on device", (452, b"4.3.1")),  # PostgreSQL's
    ],
)
def test_storage_failure_answers_451_and_recovers(
    mailbox: Mailbox, error: str, code: tuple[int, bytes]
) -> None:
    refuse_inserts(mailbox.app, error)
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        mailbox.send(simple_message())
    assert (deferred.value.smtp_code, deferred.value.smtp_error[:5]) == code
    allow_inserts(mailbox.app)
    assert mailbox.send(simple_message()) == {}
    assert len(mailbox.messages()) == 1


def test_settings_change_rebinds_the_port_and_closes_the_old_one(mailbox: Mailbox) -> None:
    old_port, new_port = mailbox.port, free_port()
    mailbox.configure(port=new_port)
    wait_for(lambda: mailbox.listener.state.port == new_port, what="the rebind")
    with smtplib.SMTP("127.0.0.1", new_port, timeout=5) as client:
        assert client.noop()[0] == 250
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()


def test_bind_error_is_reported_in_words_and_the_old_socket_keeps_serving(
    mailbox: Mailbox,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        mailbox.configure(port=taken)
        state = wait_for(
            lambda: mailbox.listener.state.error and mailbox.listener.state, what="the bind error"
        )
        assert "in use by another program" in state.error
    assert mailbox.listener.state.running


def test_multipart_message_with_attachment_is_stored_byte_exact(mailbox: Mailbox) -> None:
    blob = bytes(range(256)) * 40
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@sender.example", "b@example.com", "Doc"
    message.set_content("plain text")
    message.add_alternative("<p>html <b>text</b></p>", subtype="html")
    message.add_attachment(
        blob, maintype="application", subtype="octet-stream", filename="naïve report.bin"
    )
    mailbox.send(message.as_bytes())
    stored = mailbox.message(mailbox.messages()[0].id)
    [attachment] = stored.summary.attachments
    assert attachment.filename == "naïve report.bin"
    with mailbox.app.app_context():
        from mxsmtp_web.store.storage import get_attachment_data

        assert get_attachment_data(attachment.id) == blob
    assert "plain text" in stored.text and "<b>text</b>" in stored.html


def test_large_messages_sent_at_once_are_stored_byte_exact(mailbox: Mailbox) -> None:
    """Megabytes per message, several sessions at a time: the DATA reader's chunks and the
    writer's link carry them whole."""
    blobs = [bytes([n]) * 100 + os.urandom(3 * 1024 * 1024) for n in range(3)]

    def send(blob: bytes) -> None:
        message = EmailMessage()
        message["Subject"] = f"big {blob[0]}"
        message.set_content(".leading dot\n" * 1000)
        message.add_attachment(blob, maintype="application", subtype="octet-stream")
        mailbox.send(message.as_bytes())

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(send, blobs))
    mailbox.bodies_parsed()
    stored = {m.subject: m for m in mailbox.messages()}
    assert sorted(stored) == ["big 0", "big 1", "big 2"]
    with mailbox.app.app_context():
        from mxsmtp_web.store.storage import get_attachment_data

        for blob in blobs:
            [attachment] = stored[f"big {blob[0]}"].attachments
            assert get_attachment_data(attachment.id) == blob
    assert mailbox.message(stored["big 0"].id).text == ".leading dot\n" * 1000


@pytest.mark.sqlite_only("SQLite's page size")
def test_a_new_database_has_pages_made_for_large_blobs(mailbox: Mailbox, instance: Path) -> None:
    assert mailbox.send(simple_message()) == {}
    with sqlite3.connect(instance / DATABASE_NAME) as connection:
        assert connection.execute("PRAGMA page_size").fetchone()[0] == 16_384
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_xss_filter_applies_when_stored(mailbox: Mailbox) -> None:
    html = '<p onclick="x()">hi<script>alert(1)</script><a href="javascript:alert(1)">a</a></p>'
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content(html, subtype="html")
    mailbox.send(message.as_bytes())
    stored = mailbox.message(mailbox.messages()[0].id)
    assert "script" not in stored.html and "onclick" not in stored.html
    assert "javascript" not in stored.html and "hi" in stored.html
    assert b"<script>" in mailbox.raw(stored.summary.id)  # the raw message keeps the original
    mailbox.configure(xss_filter=False)
    mailbox.send(message.as_bytes())
    assert "<script>" in mailbox.message(mailbox.messages()[0].id).html


def test_the_same_message_sent_twice_is_stored_twice(mailbox: Mailbox) -> None:
    mailbox.send(simple_message())
    mailbox.send(simple_message())
    assert len(mailbox.messages()) == 2


def test_outlook_winmail_dat_arrives_as_its_attachments(mailbox: Mailbox) -> None:
    mailbox.send(winmail_mail(SAMPLE_TNEF))
    stored = mailbox.message(mailbox.messages()[0].id)
    report, notes = stored.summary.attachments
    assert (report.filename, notes.filename) == ("Quarterly report 2024.pdf", "café.txt")
    assert report.sha256 == hashlib.sha256(REPORT).hexdigest()
    assert stored.text.startswith("Please see the attached report.")


@pytest.mark.parametrize(("charset", "codec", "sample", "encoding"), CHARSET_SAMPLES)
def test_charsets_arrive_decoded(
    mailbox: Mailbox, charset: str, codec: str, sample: str, encoding: str
) -> None:
    mailbox.send(charset_mail(charset, codec, sample, encoding))
    stored = mailbox.message(mailbox.messages()[0].id)
    assert stored.summary.subject == sample
    assert sample in stored.text


def _answers(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def test_listener_can_be_stopped_and_started_by_setting_and_reports_its_state(
    mailbox: Mailbox,
) -> None:
    from mxsmtp_web.store import status

    port = mailbox.port

    def reported() -> str:
        with mailbox.app.app_context():
            return " ".join(r.state for r in status.reports())

    wait_for(lambda: f"listening on 127.0.0.1:{port}" in reported(), what="the state report")
    mailbox.configure(listener_enabled=False)
    wait_for(lambda: not _answers(port), what="the listener to stop")
    wait_for(lambda: "listener_enabled is off" in reported(), what="the stopped report")
    mailbox.configure(listener_enabled=True)
    wait_for(lambda: _answers(port), what="the listener to start again")


def test_retry_without_the_hook_replaces_the_failed_copy_too(mailbox: Mailbox) -> None:
    """The fast path (no message hook: the body is parsed after the answer) removes a copy
    that failed in a hook in the same write as the new message."""
    mailbox.write_hook("broken.py", "def process_message(message):\n    raise RuntimeError\n")
    mailbox.configure(message_hook="broken.py:process_message")
    with pytest.raises(smtplib.SMTPDataError):
        mailbox.send(simple_message("Again", message_id="<again@example.com>"))
    with pytest.raises(smtplib.SMTPDataError):  # kept: another message
        mailbox.send(simple_message("Other", message_id="<other@example.com>"))
    assert [m.status for m in mailbox.messages()] == ["hook error", "hook error"]
    mailbox.configure(message_hook="")
    mailbox.send(simple_message("Again", message_id="<again@example.com>"))
    statuses = sorted((m.subject, m.status) for m in mailbox.messages())
    assert statuses == [("Again", "received"), ("Other", "hook error")]
