"""The lenient address reader on the shapes real mail has, each a line of a real header."""

from __future__ import annotations

import pytest

from mxsmtp_web.mail.addresses import read_mailboxes
from mxsmtp_web.mail.parsing import parse_message


def display(*values: str) -> list[str]:
    return [m.display() for m in read_mailboxes(values, lambda text: text) if m.usable]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mikel@Lindsaar <raasdnil@gmail.com>", ['"Mikel@Lindsaar" <raasdnil@gmail.com>']),
        ("develop!nextmime@ebony@sblab.att.com", ["develop!nextmime@ebony@sblab.att.com"]),
        (
            "Bob <bob@x.example> Bobby <bobby@x.example>",
            ["Bob <bob@x.example>", "Bobby <bobby@x.example>"],
        ),
        ("tim@x.example concierge@x.example", ["tim@x.example", "concierge@x.example"]),
        ("Big Bug bb@bug.com", ["Big Bug <bb@bug.com>"]),
        ("MAILER-DAEMON <>", ["MAILER-DAEMON <>"]),
        ("<>", ["<>"]),
        ("<@relay.example, @other.example:user@x.example>", ["user@x.example"]),
        ("John Doe <jdoe@machine(comment). example>", ["John Doe <jdoe@machine.example>"]),
        ("ann@x.example (Ann Example)", ["Ann Example <ann@x.example>"]),
        (
            '"Doe, Jane" <jane@x.example>, b@x.example',
            ['"Doe, Jane" <jane@x.example>', "b@x.example"],
        ),
        ("Team: a@x.example, B <b@x.example>;", ["a@x.example", "B <b@x.example>"]),
        ("abel, bianchi, stornett@flash", ["abel", "bianchi", "stornett@flash"]),
        ("no To-header on input <;>", []),
        ("Mary Smith", []),
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            ["Pete <pete@silly.test>"],
        ),
        (
            "A Group(Some people):Chris Jones <c@(Chris's host.)public.example>, "
            "John <jdoe@one.test> (my dear friend); (the end of the group)",
            ["Chris Jones <c@public.example>", "John <jdoe@one.test>"],
        ),
        (
            "MAILER-DAEMON@x.example (Mail Delivery System)",
            ["Mail Delivery System <MAILER-DAEMON@x.example>"],
        ),
    ],
)
def test_lenient_reading(value: str, expected: list[str]) -> None:
    assert display(value) == expected


def test_the_same_mailbox_in_two_fields_is_listed_once() -> None:
    assert display("a@x.example", "A@X.example, b@x.example") == ["a@x.example", "b@x.example"]


def test_strict_reading_is_kept_where_it_is_sound() -> None:
    """policy.default keeps the local-only and the commented form exactly as it reads them."""
    mail = parse_message(
        b"From: Zo\xc3\xab <z@x.example>\r\nCc: localrecipient, c@x.example\r\n\r\n"
    )
    assert mail.from_ == "Zoë <z@x.example>"
    assert mail.cc == ("localrecipient", "c@x.example")
