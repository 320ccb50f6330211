"""Mailboxes: patterns, routing, per-mailbox hooks and handling, one message in two mailboxes,
the rule for mixed answers, the CLI, and retention per mailbox; through real SMTP."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from conftest import Mailbox, age_messages, simple_message
from mxsmtp_web.cli import main
from mxsmtp_web.mail import routing
from mxsmtp_web.store import mailbox_edits, storage
from mxsmtp_web.store.mailboxes import read_all, route
from mxsmtp_web.store.models import Message


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


# --- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "address", "captures"),
    [
        ("support@app.example.com", "support@app.example.com", {}),
        ("support@app.example.com", "support@APP.Example.com", {}),  # domains: any case
        ("support@app.example.com", "Support@app.example.com", None),  # local parts: exact
        ("*@tickets.example.com", "42@Tickets.Example.com", {"match": "42"}),
        ("reply+*@app.example.com", "reply+abc.DEF@app.example.com", {"match": "abc.DEF"}),
        ("reply+*@app.example.com", "reply@app.example.com", None),
        ("*@*.example.org", "a@mail-relay.example.org", {"match": "a", "match_2": "mail-relay"}),
        (
            r"re:^(?P<ticket>[0-9]+)@tickets\.example\.com$",
            "123@TICKETS.example.com",
            {"ticket": "123"},
        ),
        (r"re:^(?P<ticket>[0-9]+)@tickets\.example\.com$", "12a@tickets.example.com", None),
    ],
)
def test_patterns(pattern: str, address: str, captures: dict | None) -> None:
    found = routing.match(routing.check(pattern), address)
    assert (found.captures if found else None) == captures


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a b@example.com", "re:(", "x@"])
def test_bad_patterns_say_what_is_accepted(bad: str) -> None:
    with pytest.raises(routing.PatternError, match="expects|regular expression"):
        routing.check(bad)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_adds_sets_lists_and_removes(app: Flask) -> None:
    assert run("mailboxes", "add", "support", "--match", "support@app.example.com")[0] == 0
    code, output = run("mailboxes", "add", "tickets", "--match", r"re:^(?P<ticket>\d+)@t\.example$")
    assert code == 0, output
    assert run("mailboxes", "set", "tickets", "retention_days", "30")[0] == 0
    assert run("mailboxes", "set", "tickets", "position", "1")[0] == 0
    code, output = run("mailboxes", "list", "--json")
    listed = json.loads(output)
    assert [item["name"] for item in listed] == ["tickets", "support", "default"]
    assert listed[0]["retention_days"] == 30 and listed[0]["match"][0].startswith("re:")
    assert listed[-1]["viewers"] == ["*"]
    assert run("mailboxes", "remove", "support")[0] == 0
    assert [m["name"] for m in json.loads(run("mailboxes", "list", "--json")[1])] == [
        "tickets",
        "default",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("add", "Bad Name", "--match", "a@b.example"), "mailbox name"),
        (("add", "x", "--match", "re:("), "regular expression"),
        (("add", "default", "--match", "a@b.example"), "built in"),
        (("set", "nobody", "position", "3"), "no mailbox nobody"),
        (("set", "default", "message_hook", "h.py:f"), "global settings"),
        (("remove", "default"), "cannot be removed"),
    ],
)
def test_cli_refuses_bad_values_with_a_clear_line(
    app: Flask, args: tuple[str, ...], words: str
) -> None:
    code, output = run("mailboxes", *args)
    assert code != 0 and words in output


def test_cli_refuses_bad_keys_and_values_naming_them(app: Flask) -> None:
    run("mailboxes", "add", "support", "--match", "support@app.example.com")
    for key, value, words in (
        ("retention_days", "soon", "retention_days expects"),
        ("delete_after_process", "maybe", "true or false"),
        ("viewers", "ghost", "no user 'ghost'"),
        ("colour", "red", "no key 'colour'"),
        ("message_hook", "missing.py:f", "no such script"),
    ):
        code, output = run("mailboxes", "set", "support", key, value)
        assert code != 0 and words in output, (key, output)


def test_first_matching_mailbox_wins_and_others_go_to_default(app: Flask) -> None:
    with app.app_context():
        mailbox_edits.add("everything", ["*@app.example.com"])
        mailbox_edits.add("support", ["support@app.example.com"])
        mailboxes = read_all()
        assert route("support@app.example.com", mailboxes)[1].mailbox == "everything"
        mailbox_edits.update("support", {"position": "1"})
        mailboxes = read_all()
        assert route("support@app.example.com", mailboxes)[1].mailbox == "support"
        assert route("someone@else.example", mailboxes)[1].mailbox == "default"


# --- through SMTP ----------------------------------------------------------------------------


def _edit(mailbox: Mailbox, name: str, patterns: list[str] | None = None, **values: str) -> None:
    with mailbox.app.app_context():
        if patterns is not None:
            mailbox_edits.add(name, patterns, values)
        else:
            mailbox_edits.update(name, values)


def _recording_hook(mailbox: Mailbox, name: str, answer: str) -> str:
    """A message hook that notes which mailbox and route it saw, then answers `answer`."""
    seen = Path(mailbox.app.config["HOOKS_DIR"]) / f"{name}.seen"
    mailbox.write_hook(
        f"{name}.py",
        "import json\n"
        "def process_message(message):\n"
        f"    with open({str(seen)!r}, 'a') as out:\n"
        "        out.write(json.dumps([message.mailbox, message.route]) + '\\n')\n"
        f"    return {answer}\n",
    )
    return f"{name}.py:process_message"


def _seen(mailbox: Mailbox, name: str) -> list:
    path = Path(mailbox.app.config["HOOKS_DIR"]) / f"{name}.seen"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_message_for_two_mailboxes_is_stored_once_and_in_both(mailbox: Mailbox) -> None:
    _edit(mailbox, "support", ["support@app.example.com"])
    _edit(mailbox, "tickets", [r"re:^(?P<ticket>\d+)@tickets\.example\.com$"])
    mailbox.send(simple_message(), recipients=("support@app.example.com", "42@Tickets.Example.com"))
    [summary] = mailbox.messages()
    assert [(p.mailbox, p.captures) for p in summary.placements] == [
        ("support", {}),
        ("tickets", {"ticket": "42"}),
    ]
    code, output = run("messages", "show", str(summary.id), "--json")
    shown = json.loads(output)
    assert shown["mailbox"] == "support"
    assert shown["route"] == {"address": "support@app.example.com", "captures": {}}
    assert [m["name"] for m in shown["mailboxes"]] == ["support", "tickets"]
    mailbox.send(simple_message(message_id="<m2@x>"), recipients=("bob@example.com",))
    plain = next(s for s in mailbox.messages() if s.id != summary.id)
    assert plain.placements == () and plain.mailbox_names == ("default",)


def test_each_mailbox_runs_its_own_message_hook_with_its_route(mailbox: Mailbox) -> None:
    _edit(
        mailbox,
        "tickets",
        [r"re:^(?P<ticket>\d+)@tickets\.example\.com$"],
        message_hook=_recording_hook(mailbox, "tickets", "True"),
    )
    _edit(
        mailbox,
        "uploads",
        ["uploads+*@app.example.com"],
        message_hook=_recording_hook(mailbox, "uploads", "True"),
    )
    mailbox.send(
        simple_message(),
        recipients=("7@tickets.example.com", "uploads+x9@app.example.com", "bob@example.com"),
    )
    assert _seen(mailbox, "tickets") == [
        ["tickets", {"address": "7@tickets.example.com", "captures": {"ticket": "7"}}]
    ]
    assert _seen(mailbox, "uploads") == [
        ["uploads", {"address": "uploads+x9@app.example.com", "captures": {"match": "x9"}}]
    ]
    [summary] = mailbox.messages()
    assert summary.status == "processed"
    assert summary.mailbox_names == ("tickets", "uploads", "default")


def test_the_global_message_hook_applies_where_a_mailbox_sets_none(mailbox: Mailbox) -> None:
    mailbox.configure(message_hook=_recording_hook(mailbox, "global", "True"))
    _edit(mailbox, "quiet", ["quiet@app.example.com"], message_hook="none")
    _edit(mailbox, "loud", ["loud@app.example.com"])
    mailbox.send(simple_message(), recipients=("quiet@app.example.com",))
    assert _seen(mailbox, "global") == []
    mailbox.send(simple_message(message_id="<m2@x>"), recipients=("loud@app.example.com",))
    assert [entry[0] for entry in _seen(mailbox, "global")] == ["loud"]


def test_one_mailbox_refusing_does_not_take_it_from_the_other(mailbox: Mailbox) -> None:
    _edit(
        mailbox,
        "keep",
        ["keep@app.example.com"],
        message_hook=_recording_hook(mailbox, "k", "True"),
    )
    _edit(
        mailbox,
        "drop",
        ["drop@app.example.com"],
        message_hook=_recording_hook(mailbox, "d", "'550 5.7.1 Not for us'"),
    )
    refused = mailbox.send(
        simple_message(), recipients=("keep@app.example.com", "drop@app.example.com")
    )
    assert refused == {}  # 250: the keep mailbox has it
    [summary] = mailbox.messages()
    assert summary.mailbox_names == ("keep",)
    [refusal] = mailbox.refusals()
    assert refusal.recipient == "drop@app.example.com" and "mailbox drop" in refusal.detail
    assert refusal.reply == "550 5.7.1 Not for us"


def test_every_mailbox_refusing_refuses_the_message(mailbox: Mailbox) -> None:
    no = _recording_hook(mailbox, "no", "'550 5.7.1 Not for us'")
    _edit(mailbox, "a", ["a@app.example.com"], message_hook=no)
    _edit(mailbox, "b", ["b@app.example.com"], message_hook=no)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        mailbox.send(simple_message(), recipients=("a@app.example.com", "b@app.example.com"))
    assert refused.value.smtp_code == 550
    assert mailbox.messages() == []


def test_a_failing_mailbox_hook_defers_the_whole_message(mailbox: Mailbox) -> None:
    _edit(
        mailbox, "ok", ["ok@app.example.com"], message_hook=_recording_hook(mailbox, "ok", "True")
    )
    _edit(
        mailbox, "bad", ["bad@app.example.com"], message_hook=_recording_hook(mailbox, "b", "1/0")
    )
    recipients = ("ok@app.example.com", "bad@app.example.com")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        mailbox.send(simple_message(), recipients=recipients)
    assert deferred.value.smtp_code == 451
    [summary] = mailbox.messages()
    assert summary.status == "hook error"  # kept: nothing is lost
    _edit(mailbox, "bad", message_hook="none")
    assert mailbox.send(simple_message(), recipients=recipients) == {}
    [summary] = mailbox.messages()  # the retry replaced the failed copy
    assert summary.status == "processed" and summary.mailbox_names == ("ok", "bad")


def test_a_mailbox_recipient_hook_decides_for_its_recipients_only(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "tickets.py",
        "def check_recipient(recipient, sender, session):\n"
        "    return recipient.startswith('1') or '550 5.1.1 No such ticket'\n",
    )
    _edit(
        mailbox,
        "tickets",
        ["*@tickets.example.com"],
        recipient_hook="tickets.py:check_recipient",
    )
    refused = mailbox.send(
        simple_message(),
        recipients=("12@tickets.example.com", "99@tickets.example.com", "bob@example.com"),
    )
    assert refused == {"99@tickets.example.com": (550, b"5.1.1 No such ticket")}


def test_delete_after_process_per_mailbox(mailbox: Mailbox) -> None:
    yes = _recording_hook(mailbox, "yes", "True")
    _edit(mailbox, "gone", ["gone@app.example.com"], message_hook=yes, delete_after_process="true")
    _edit(mailbox, "kept", ["kept@app.example.com"], message_hook=yes)
    mailbox.send(simple_message(), recipients=("gone@app.example.com",))
    assert mailbox.messages() == []
    mailbox.send(
        simple_message(message_id="<m2@x>"),
        recipients=("gone@app.example.com", "kept@app.example.com"),
    )
    [summary] = mailbox.messages()
    assert summary.mailbox_names == ("kept",)


def test_a_mailbox_change_reaches_the_next_session(mailbox: Mailbox) -> None:
    mailbox.send(simple_message(), recipients=("late@app.example.com",))
    _edit(mailbox, "late", ["late@app.example.com"])
    mailbox.send(simple_message(message_id="<m2@x>"), recipients=("late@app.example.com",))
    names = sorted(s.mailbox_names for s in mailbox.messages())
    assert names == [("default",), ("late",)]


def test_retention_follows_each_mailboxs_own_days(app: Flask, mailbox: Mailbox) -> None:
    _edit(mailbox, "short", ["short@app.example.com"], retention_days="1")
    _edit(mailbox, "long", ["long@app.example.com"], retention_days="30")
    mailbox.configure(retention_days=3)
    for number, recipients in enumerate(
        [
            ("short@app.example.com",),
            ("long@app.example.com",),
            ("bob@example.com",),
            ("short@app.example.com", "long@app.example.com"),
        ]
    ):
        mailbox.send(simple_message(message_id=f"<r{number}@x>"), recipients=recipients)
    age_messages(app, 2)
    with app.app_context():
        storage.purge_by_retention(storage_settings(app))
        left = {tuple(json.loads(m.rcpt_tos)) for m in Message.query.all()}
    assert left == {
        ("long@app.example.com",),
        ("bob@example.com",),
        ("short@app.example.com", "long@app.example.com"),
    }
    age_messages(app, 10)
    with app.app_context():
        storage.purge_by_retention(storage_settings(app))
        left = {tuple(json.loads(m.rcpt_tos)) for m in Message.query.all()}
    assert left == {("long@app.example.com",), ("short@app.example.com", "long@app.example.com")}


def storage_settings(app: Flask):  # noqa: ANN201 - the settings snapshot
    from mxsmtp_web.store.settings import load

    return load()


# --- webhooks per mailbox --------------------------------------------------------------------


def test_each_mailbox_posts_to_its_own_webhook_once_per_url(mailbox: Mailbox) -> None:
    from test_webhooks import Receiver

    tickets, everything = Receiver(), Receiver()
    try:
        mailbox.configure(webhook_url=everything.url)
        _edit(mailbox, "tickets", ["*@tickets.example.com"], webhook_url=tickets.url)
        _edit(mailbox, "quiet", ["quiet@app.example.com"], webhook_url="none")
        _edit(mailbox, "other", ["other@app.example.com"])  # the global webhook_url
        mailbox.send(
            simple_message(),
            recipients=("7@tickets.example.com", "other@app.example.com", "bob@example.com"),
        )
        mailbox.send(simple_message(message_id="<m2@x>"), recipients=("quiet@app.example.com",))
        [ticket] = tickets.wait_for_requests(1)
        [general] = everything.wait_for_requests(1)  # other and default share one URL
        assert ticket.json()["data"]["route"]["captures"] == {"match": "7"}
        assert general.json()["data"]["id"] == ticket.json()["data"]["id"]
        assert [m["name"] for m in general.json()["data"]["mailboxes"]] == [
            "tickets",
            "other",
            "default",
        ]
    finally:
        tickets.close()
        everything.close()
    assert len(everything.requests) == 1  # quiet@ sent nothing


def test_a_message_hook_path_posts_only_for_the_mailboxes_that_keep_it(mailbox: Mailbox) -> None:
    from test_webhooks import Receiver

    keep, drop = Receiver(), Receiver()
    try:
        _edit(
            mailbox,
            "keep",
            ["keep@app.example.com"],
            message_hook=_recording_hook(mailbox, "k", "True"),
            webhook_url=keep.url,
        )
        _edit(
            mailbox,
            "drop",
            ["drop@app.example.com"],
            message_hook=_recording_hook(mailbox, "d", "False"),
            webhook_url=drop.url,
        )
        mailbox.send(simple_message(), recipients=("keep@app.example.com", "drop@app.example.com"))
        [posted] = keep.wait_for_requests(1)
        assert posted.json()["data"]["status"] == "processed"
        assert posted.json()["data"]["mailboxes"] == [
            {"name": "keep", "route": {"address": "keep@app.example.com", "captures": {}}}
        ]
    finally:
        keep.close()
        drop.close()
    assert drop.requests == []
