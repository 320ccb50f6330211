"""The `mxsmtp` command as scripts use it: real processes where signals and start-up matter,
click's runner elsewhere, always against a real instance folder."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from conftest import Mailbox, age_messages, free_port, simple_message, wait_for
from mxsmtp_web.cli import main
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.models import Message

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")


def run(*args: str, input: str | None = None) -> tuple[int, str, bytes]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.output, result.stdout_bytes


def test_help_lists_every_command() -> None:
    code, output, _ = run("--help")
    assert code == 0
    for command in ("serve", "smtp", "worker", "db", "settings", "users", "messages", "purge",
                    "mailboxes", "webhooks", "ingest"):  # fmt: skip
        assert command in output


def test_settings_show_and_set(app: Flask) -> None:
    assert run("settings", "set", "port", "2626")[0] == 0
    code, output, _ = run("settings", "show", "--json")
    assert code == 0 and json.loads(output)["port"] == 2626
    code, output, _ = run("settings", "show")
    assert "port" in output and "2626" in output


def test_settings_set_refuses_bad_values_with_the_key_and_what_it_accepts(app: Flask) -> None:
    code, output, _ = run("settings", "set", "max_message_size", "huge")
    assert code == 1
    assert "max_message_size: expects a whole number" in output
    code, output, _ = run("settings", "set", "message_hook", "missing.py:process_message")
    assert code == 1 and "message_hook: no such script" in output
    code, output, _ = run("settings", "set", "sender_hook", "../../etc/evil.py:check_sender")
    assert code == 1 and "points outside" in output
    with app.app_context():
        assert settings_module.load().message_hook == ""


def test_settings_set_reads_a_value_that_starts_with_a_dash_as_a_value(app: Flask) -> None:
    code, output, _ = run("settings", "set", "max_message_size", "-5")
    assert code == 1
    assert "max_message_size: expects a whole number" in output and "'-5'" in output
    assert "No such option" not in output


def test_settings_set_checks_the_hook_function_exists(app: Flask) -> None:
    hooks = Path(app.config["HOOKS_DIR"])
    (hooks / "mine.py").write_text("def check_sender(sender, session):\n    return True\n")
    code, output, _ = run("settings", "set", "sender_hook", "mine.py:check_sendr")
    assert code == 1 and "does not define check_sendr (it defines: check_sender)" in output
    assert run("settings", "set", "sender_hook", "mine.py:check_sender")[0] == 0


def test_settings_set_stays_light(app: Flask) -> None:
    """Scripts call it in loops: it must not import the listener, parser or web server."""
    probe = (
        "import sys; from mxsmtp_web.cli import main\n"
        "try: main(['settings', 'set', 'port', '2727'])\n"
        "except SystemExit: pass\n"
        "heavy = {'aiosmtpd', 'bleach', 'waitress', 'tnefparse', 'flask_admin'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    assert output.strip().splitlines()[-1] == "[]"


def test_users_create_from_stdin(app: Flask) -> None:
    code, output, _ = run(
        "users", "create", "ada", "--admin", "--password-stdin", input="correct horse battery\n"
    )
    assert code == 0, output
    code, output, _ = run("users", "create", "ada", "--password-stdin", input="another pass\n")
    assert code == 1 and "exists already" in output


def test_messages_list_show_and_raw(mailbox: Mailbox) -> None:
    message = simple_message(subject="Report")
    mailbox.send(message, "Carol@Sender.Example", ("bob@example.com",))
    code, output, _ = run("messages", "list", "--json")
    [listed] = json.loads(output)
    assert (listed["status"], listed["subject"], listed["sender"]) == (
        "received",
        "Report",
        "Carol@Sender.Example",
    )
    assert listed["recipients"] == ["bob@example.com"] and listed["attachments"] == []
    code, _, raw = run("messages", "show", str(listed["id"]), "--raw")
    assert code == 0 and raw == mailbox.raw(listed["id"]) and raw.endswith(message)
    code, output, _ = run("messages", "show", str(listed["id"]), "--json")
    shown = json.loads(output)
    assert shown["message_id"] == "<m1@sender.example>" and shown["helo"] == "client.test.example"
    code, output, _ = run("messages", "show", "999")
    assert code == 1 and "no message 999" in output


def test_messages_list_is_newest_first_and_limited(mailbox: Mailbox) -> None:
    for number in range(3):
        mailbox.send(simple_message(subject=f"n{number}", message_id=f"<{number}@x>"))
    _, output, _ = run("messages", "list", "--json", "--limit", "2")
    assert [m["subject"] for m in json.loads(output)] == ["n2", "n1"]


def test_reprocess_runs_the_hooks_again(mailbox: Mailbox) -> None:
    mailbox.write_hook("broken.py", "def process_message(message):\n    raise ValueError('x')\n")
    mailbox.configure(message_hook="broken.py:process_message")
    with pytest.raises(smtplib.SMTPDataError):
        mailbox.send(simple_message())
    [failed] = mailbox.messages()
    assert failed.status == "hook error"
    mailbox.write_hook("broken.py", "def process_message(message):\n    return True\n")
    code, output, _ = run("messages", "reprocess", str(failed.id))
    assert code == 0 and "processed" in output
    assert [m.status for m in mailbox.messages()] == ["processed"]


def test_purge_removes_old_mail_and_keeps_new(mailbox: Mailbox) -> None:
    mailbox.send(simple_message(subject="old", message_id="<old@x>"))
    mailbox.send(simple_message(subject="new", message_id="<new@x>"))
    age_messages(mailbox.app, 10, Message.subject == "old")
    code, output, _ = run("purge", "--older-than", "5", "--yes")
    assert code == 0 and "Deleted 1 message(s)" in output
    assert [m.subject for m in mailbox.messages()] == ["new"]
    code, output, _ = run("purge", "--older-than", "0", input="n\n")
    assert code == 1 and [m.subject for m in mailbox.messages()] == ["new"]
    code, output, _ = run("purge", "--older-than", "0", "--yes")
    assert code == 0 and mailbox.messages() == []


def _start(instance: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
    return subprocess.Popen(
        [MXSMTP, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    print(process.communicate()[0])  # reads and closes the pipe; shown when a test fails


def _answers(port: int) -> bool:
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
    except OSError:
        return False
    return True


def test_smtp_command_finishes_data_in_progress_on_sigterm(app: Flask, instance: Path) -> None:
    port = free_port()
    run("settings", "set", "port", str(port))
    process = _start(instance, "smtp")
    try:
        wait_for(lambda: _answers(port), timeout=20, what="the listener")
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test.example")
        client.mail("a@sender.example")
        client.rcpt("b@example.com")
        client.putcmd("DATA")
        assert client.getreply()[0] == 354
        client.send(simple_message()[:40])
        process.send_signal(signal.SIGTERM)
        client.send(simple_message()[40:] + b".\r\n")
        assert client.getreply()[0] == 250
        client.close()
        assert process.wait(timeout=20) == 0
    finally:
        _stop(process)
    _, output, _ = run("messages", "list", "--json")
    assert len(json.loads(output)) == 1


def test_serve_runs_web_and_smtp_in_one_process(app: Flask, instance: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    run("settings", "set", "port", str(smtp_port))
    process = _start(instance, "serve", "--port", str(web_port))
    try:
        wait_for(lambda: _answers(smtp_port), timeout=20, what="the listener")
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            assert client.sendmail("a@sender.example", ["b@example.com"], simple_message()) == {}

        def web_answers() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=2).close()
            except urllib.error.HTTPError as error:
                error.close()
                return True
            except OSError:
                return False
            return True

        wait_for(web_answers, timeout=20, what="the web server")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        _stop(process)


def test_list_right_after_sending_shows_the_parsed_attachments(mailbox: Mailbox) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "with a file"
    message.set_content("see attached")
    message.add_attachment(
        b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="report 2026.pdf"
    )
    mailbox.send(message.as_bytes())  # no waiting here: the command waits for the body
    code, output, _ = run("messages", "list", "--json")
    [listed] = json.loads(output)
    assert code == 0 and listed["parsed"] is True
    assert [a["filename"] for a in listed["attachments"]] == ["report 2026.pdf"]
