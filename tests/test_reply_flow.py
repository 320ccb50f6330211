"""Replies into the application, end to end: signed reply addresses over real SMTP, the reply
text, kinds, bounces and threads as hooks and `mxsmtp messages --json` see them, and the
README's worked example run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import DATA, Mailbox, simple_message, wait_for
from mxsmtp_web.cli import main
from mxsmtp_web.replies import make_token, reply_address
from mxsmtp_web.store import storage

PROJECT = Path(__file__).parent.parent
README = PROJECT / "README.md"
EXAMPLE_HOOKS = PROJECT / "instance" / "hooks" / "example.py"
REPLIES = DATA / "replies"

RECORDING_HOOK = """\
import json
from pathlib import Path

def process_message(message):
    seen = {
        "id": message.id,
        "reply_ref": message.reply_ref,
        "reply_text": message.reply_text,
        "kind": message.kind,
        "parent_id": message.parent_id,
        "thread_id": message.thread_id,
        "bounce": None if message.bounce is None else [
            message.bounce.recipient, message.bounce.status, message.bounce.diagnostic
        ],
    }
    with Path(__file__).with_name("seen.jsonl").open("a") as out:
        out.write(json.dumps(seen) + "\\n")
    return True
"""


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def shown(message_id: int) -> dict:
    return json.loads(cli("messages", "show", str(message_id), "--json"))


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sample(name: str) -> bytes:
    return crlf((REPLIES / name).read_bytes())


def seen_by_hook(mailbox: Mailbox) -> list[dict]:
    path = Path(mailbox.app.config["HOOKS_DIR"]) / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def record_with_hook(mailbox: Mailbox) -> None:
    mailbox.write_hook("record.py", RECORDING_HOOK)
    mailbox.configure(message_hook="record.py:process_message")


def newest_id(mailbox: Mailbox) -> int:
    return mailbox.messages()[0].id


GMAIL_REPLY = (
    "From: Jane <jane@example.org>\r\n"
    "To: {to}\r\n"
    "Subject: Re: [ticket 42] Printer on floor 3\r\n"
    "Message-ID: <CAJ-answer-1@mail.gmail.com>\r\n"
    "In-Reply-To: <ticket-42-1@helpdesk.example>\r\n"
    "References: <ticket-42-1@helpdesk.example>\r\n"
    "Date: Mon, 6 Jan 2025 10:20:00 +0100\r\n"
    "\r\n"
    "It works again, thanks!\r\n"
    "\r\n"
    "Jane\r\n"
    "\r\n"
    "On Mon, 6 Jan 2025 at 10:15, Helpdesk <helpdesk@app.example.com> wrote:\r\n"
    "> We are on it. Answer this mail to add a comment to the ticket.\r\n"
    "> \r\n"
    "> Helpdesk\r\n"
)


# --- the README ----------------------------------------------------------------------------


def readme_block(first_line: str) -> str:
    """The fenced block of README.md whose first line is `first_line`."""
    for block in re.findall(r"```(?:python|sh)\n(.*?)```", README.read_text(), re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README.md has no code block starting with {first_line!r}")


def test_readme_worked_example_runs_as_written(mailbox: Mailbox, tmp_path: Path) -> None:
    hook = readme_block("# instance/hooks/comments.py")
    send = readme_block("# send_ticket_mail.py")
    answer = readme_block("# jane_answers.py")
    shell = readme_block(".venv/bin/mxsmtp settings set reply_domain")
    assert "comments.py:process_message" in shell and "$address" in shell

    mailbox.write_hook("comments.py", hook)
    cli("settings", "set", "reply_domain", "app.example.com")
    cli("settings", "set", "message_hook", "comments.py:process_message")
    (tmp_path / "send_ticket_mail.py").write_text(send)
    (tmp_path / "jane_answers.py").write_text(answer.replace("25000", str(mailbox.port)))
    env = {**os.environ, "MXSMTP_INSTANCE": os.environ["MXSMTP_INSTANCE"]}
    address = subprocess.run(
        [sys.executable, "send_ticket_mail.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"reply\+[0-9a-z]+@app\.example\.com", address), address
    subprocess.run([sys.executable, "jane_answers.py", address], cwd=tmp_path, env=env, check=True)

    comments = Path(mailbox.app.config["HOOKS_DIR"]) / "comments.txt"
    assert comments.read_text() == "ticket 42: 'It works again, thanks!'\n"
    [listed] = json.loads(cli("messages", "list", "--json", "--limit", "1"))
    assert (listed["kind"], listed["reply_ref"]) == ("reply", "ticket:42")
    assert listed["reply_text"] == "It works again, thanks!"


# --- reply addresses at reception ------------------------------------------------------------


def test_the_hook_gets_ref_stripped_text_and_kind(mailbox: Mailbox) -> None:
    record_with_hook(mailbox)
    with mailbox.app.app_context():
        address = reply_address("ticket:42")
    assert address.endswith("@mx.test.example")  # reply_domain empty: the host name
    mailbox.send(GMAIL_REPLY.format(to=address).encode(), recipients=(address,))
    [seen] = seen_by_hook(mailbox)
    assert seen["reply_ref"] == "ticket:42"
    assert seen["reply_text"] == "It works again, thanks!\n\nJane"
    assert seen["kind"] == "reply"
    assert (seen["parent_id"], seen["thread_id"], seen["bounce"]) == (None, seen["id"], None)
    data = shown(seen["id"])
    assert (data["reply_ref"], data["kind"], data["reply_text"]) == (
        "ticket:42",
        "reply",
        "It works again, thanks!\n\nJane",
    )
    assert (data["parent_id"], data["thread_id"], data["bounce"]) == (None, seen["id"], None)


def test_without_a_message_hook_the_body_parse_fills_in_the_same_facts(mailbox: Mailbox) -> None:
    address = reply_address("ticket:42")
    upper = address.upper()  # a relay that shouts local parts changes nothing
    mailbox.send(GMAIL_REPLY.format(to=upper).encode(), recipients=(upper,))
    data = shown(newest_id(mailbox))
    assert (data["reply_ref"], data["kind"]) == ("ticket:42", "reply")
    assert data["reply_text"] == "It works again, thanks!\n\nJane"


def test_a_changed_separator_is_honoured_at_once(mailbox: Mailbox) -> None:
    mailbox.configure(reply_separator="-")
    address = reply_address("order:7")
    assert address.startswith("reply-")
    mailbox.send(simple_message(body="Yes please.\r\n"), recipients=(address,))
    assert shown(newest_id(mailbox))["reply_ref"] == "order:7"


def forged_address() -> str:
    return "reply+" + make_token("ticket:42", b"not the instance key") + "@example.com"


def test_a_forged_token_is_accepted_without_a_ref_when_no_recipient_hook(
    mailbox: Mailbox,
) -> None:
    assert mailbox.send(simple_message(), recipients=(forged_address(),)) == {}
    data = shown(newest_id(mailbox))
    assert data["reply_ref"] is None
    assert data["kind"] == "message"


def test_the_example_recipient_hook_refuses_forged_and_expired_tokens(
    mailbox: Mailbox,
) -> None:
    mailbox.write_hook("example.py", EXAMPLE_HOOKS.read_text())
    mailbox.configure(recipient_hook="example.py:check_recipient")
    genuine = reply_address("ticket:42")
    with mailbox.connect() as client:
        assert client.mail("jane@example.org")[0] == 250
        code, reply = client.rcpt(forged_address())
        assert (code, reply) == (550, b"5.1.1 Unknown or expired reply address")
        assert client.rcpt(genuine)[0] == 250
        assert client.rcpt("someone@example.com")[0] == 250
        assert client.rcpt("someone@elsewhere.example")[0] == 550
    [refusal, _] = mailbox.refusals()
    assert refusal.check == "recipient_hook"


def test_the_example_message_hook_accepts_replies(mailbox: Mailbox) -> None:
    mailbox.write_hook("example.py", EXAMPLE_HOOKS.read_text())
    mailbox.configure(message_hook="example.py:process_message")
    address = reply_address("ticket:42")
    mailbox.send(GMAIL_REPLY.format(to=address).encode(), recipients=(address,))
    mailbox.send(sample("postfix_dsn.eml"), sender="")
    assert [m.status for m in mailbox.messages()] == ["processed", "processed"]


# --- threads ---------------------------------------------------------------------------------


def mail(message_id: str, in_reply_to: str = "", references: str = "", subject: str = "") -> bytes:
    head = f"From: a@sender.example\r\nTo: b@example.com\r\nMessage-ID: {message_id}\r\n"
    head += f"Subject: {subject or message_id}\r\n"
    head += f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    head += f"References: {references}\r\n" if references else ""
    return (head + "\r\nText.\r\n").encode()


@pytest.mark.parametrize("hooked", [False, True], ids=["body-parse", "message-hook"])
def test_threads_by_in_reply_to_and_references(mailbox: Mailbox, hooked: bool) -> None:
    if hooked:
        record_with_hook(mailbox)
    mailbox.send(mail("<t1@x>"))
    mailbox.send(mail("<t2@x>", in_reply_to="<t1@x>", references="<t1@x>"))
    # No In-Reply-To; the nearest known ancestor is the last one in References.
    mailbox.send(mail("<t3@x>", references="<t1@x> <t2@x> <unknown@x>"))
    mailbox.send(mail("<other@x>"))
    first, second, third, other = sorted(m.id for m in mailbox.messages())
    assert (shown(first)["parent_id"], shown(first)["thread_id"]) == (None, first)
    assert (shown(second)["parent_id"], shown(second)["thread_id"]) == (first, first)
    assert (shown(third)["parent_id"], shown(third)["thread_id"]) == (second, first)
    assert (shown(other)["parent_id"], shown(other)["thread_id"]) == (None, other)
    listed = {item["id"]: item for item in json.loads(cli("messages", "list", "--json"))}
    assert listed[third]["thread_id"] == first and listed[third]["parent_id"] == second
    if hooked:
        by_id = {seen["id"]: seen for seen in seen_by_hook(mailbox)}
        assert (by_id[third]["parent_id"], by_id[third]["thread_id"]) == (second, first)


def test_replies_to_the_same_ref_form_a_thread_without_references(mailbox: Mailbox) -> None:
    """Answers to the application's own mail reference a Message-ID mxsmtp never stored: the
    reply ref links them."""
    address = reply_address("ticket:42")
    mailbox.send(GMAIL_REPLY.format(to=address).encode(), recipients=(address,))
    mailbox.send(mail("<second@x>", in_reply_to="<not-stored@x>"), recipients=(address,))
    first, second = sorted(m.id for m in mailbox.messages())
    assert (shown(second)["parent_id"], shown(second)["thread_id"]) == (first, first)


def test_a_thread_survives_its_first_message_being_deleted(mailbox: Mailbox) -> None:
    mailbox.send(mail("<d1@x>"))
    mailbox.send(mail("<d2@x>", in_reply_to="<d1@x>"))
    first, second = sorted(m.id for m in mailbox.messages())
    with mailbox.app.app_context():
        storage.delete_messages([first])
    data = shown(second)
    assert (data["parent_id"], data["thread_id"]) == (None, first)


# --- kinds -----------------------------------------------------------------------------------


def test_a_postfix_bounce_gets_its_kind_and_the_failed_delivery(mailbox: Mailbox) -> None:
    record_with_hook(mailbox)
    mailbox.send(sample("postfix_dsn.eml"), sender="")
    [seen] = seen_by_hook(mailbox)
    assert seen["kind"] == "bounce"
    data = shown(seen["id"])
    assert data["kind"] == "bounce"
    assert data["bounce"]["status"] == seen["bounce"][1]
    assert data["bounce"]["recipient"] and "@" in data["bounce"]["recipient"]
    assert data["bounce"]["status"].startswith("5.")
    assert data["bounce"]["diagnostic"]


def test_an_exchange_bounce_without_a_hook(mailbox: Mailbox) -> None:
    mailbox.send(sample("exchange_dsn.eml"), sender="")
    data = shown(newest_id(mailbox))
    assert data["kind"] == "bounce" and data["bounce"]["status"].startswith("5.")


@pytest.mark.parametrize("name", ["gmail_vacation.eml", "exchange_out_of_office.eml"])
def test_auto_replies_are_told_apart(mailbox: Mailbox, name: str) -> None:
    address = reply_address("ticket:42")
    mailbox.send(sample(name), recipients=(address,))
    data = shown(newest_id(mailbox))
    assert (data["kind"], data["reply_ref"], data["bounce"]) == ("auto_reply", "ticket:42", None)


def test_a_plain_message_is_a_message(mailbox: Mailbox) -> None:
    mailbox.send(sample("new_message.eml"))
    data = shown(newest_id(mailbox))
    assert (data["kind"], data["reply_ref"], data["parent_id"]) == ("message", None, None)


def test_messages_show_prints_the_conversation_in_words(mailbox: Mailbox) -> None:
    address = reply_address("ticket:42")
    mailbox.send(GMAIL_REPLY.format(to=address).encode(), recipients=(address,))
    mailbox.send(sample("postfix_dsn.eml"), sender="")
    reply_id, bounce_id = sorted(m.id for m in mailbox.messages())
    text = cli("messages", "show", str(reply_id))
    assert "Kind:      reply" in text and "Reply ref: ticket:42" in text
    assert "Bounce:" in cli("messages", "show", str(bounce_id))


def test_reply_addresses_are_read_with_a_cached_reader_that_follows_rotation(
    mailbox: Mailbox,
) -> None:
    old = reply_address("ticket:1")
    instance = Path(os.environ["MXSMTP_INSTANCE"])
    (instance / "secret_key").rename(instance / "secret_key.previous")
    new = reply_address("ticket:2")  # makes a new key
    mailbox.send(simple_message(message_id="<r1@x>"), recipients=(old,))
    mailbox.send(simple_message(message_id="<r2@x>"), recipients=(new,))
    first, second = sorted(m.id for m in mailbox.messages())
    assert (shown(first)["reply_ref"], shown(second)["reply_ref"]) == ("ticket:1", "ticket:2")
    (instance / "secret_key.previous").unlink()
    mailbox.send(simple_message(message_id="<r3@x>"), recipients=(old,))
    third = newest_id(mailbox)
    assert shown(third)["reply_ref"] is None


def test_the_listener_keeps_answering_while_reply_facts_are_computed(mailbox: Mailbox) -> None:
    """Ten replies in one session: each 250 comes from the fast path, and all get their
    facts once the bodies are parsed."""
    address = reply_address("ticket:9")
    with mailbox.connect() as client:
        for number in range(10):
            body = GMAIL_REPLY.format(to=address).replace("answer-1", f"answer-{number}")
            client.sendmail("jane@example.org", [address], body.encode())
    wait_for(lambda: len(mailbox.messages()) == 10, what="ten messages")
    facts = {(shown(m.id)["kind"], shown(m.id)["reply_ref"]) for m in mailbox.messages()}
    assert facts == {("reply", "ticket:9")}
