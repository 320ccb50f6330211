"""Bounces in every format mxsmtp understands, and mail that must not pass for one.

The samples under tests/data/bounces/ are written by hand after what each MTA sends: one per
format family flufl.bounce knows (qmail, Exim with and without X-Failed-Recipients, Postfix
before DSNs, Sendmail, old Exchange, Yahoo, AOL, a SimpleMatch pattern, an Exim delay
warning), RFC 3464 reports written loosely (``Field :``, folding without indent, no blank
line between recipients, no report-type, base64, fields in a text part, bare CR line ends),
reports that state no code but their reason in words (``no_code``, ``words_*``: old Exchange,
OpenSMTPD, a full mailbox, one whose words sit only in the returned message, one whose code
must win over its words), and negatives named ``not_*``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxsmtp_web.mail import bounces
from mxsmtp_web.mail.bounces import BounceInfo, find_bounce
from mxsmtp_web.mail.conversation import classify
from mxsmtp_web.mail.parsing import ParsedMail, parse_message

DATA = Path(__file__).parent / "data"
SAMPLES = DATA / "bounces"


def load(name: str) -> tuple[ParsedMail, bytes]:
    raw = (SAMPLES / name).read_bytes()
    return parse_message(raw), raw


#: sample -> (recipient, status, start of the diagnostic). None where the message says none.
BOUNCES = {
    "qmail.eml": ("ana.lima@example.org", "5.1.1", "Remote host said: 550 5.1.1"),
    "exim.eml": ("jonas.berg@example.org", "5.2.2", "552 5.2.2 <jonas.berg@example.org>"),
    "exim_without_header.eml": ("lea.roux@example.fr", "5.0.0", "host mx.example.fr"),
    "postfix_plain.eml": ("piet@example.nl", "5.7.1", "<piet@example.nl>: host mx.example.nl"),
    "sendmail.eml": ("kim@example.edu", "5.0.0", "550 <kim@example.edu>... User unknown"),
    "exchange_old.eml": ("chris.doe@example.org", "5.1.1", "The recipient name is not recognized"),
    "yahoo.eml": ("mia.keller@example.de", "5.7.9", "Remote host said: 554 5.7.9"),
    "aol.eml": ("sunnyday4242@aol.com", "5.7.1", "Your mail to the following recipients could"),
    "simplematch.eml": ("omar@example.net", "5.1.2", "Reason: Remote host said: 550 5.1.2"),
    "delay_warning.eml": ("tom@slow.example.org", "4.3.0", "451 4.3.0 Temporary local"),
    "dsn_sloppy.eml": ("first@example.org", "5.2.2", "552 5.2.2 <first@example.org>: mailbox"),
    "dsn_bare_cr.eml": ("yuki@example.jp", "5.1.1", "550 5.1.1 <yuki@example.jp>"),
    "dsn_base64.eml": ("sam@example.com", "5.4.1", "550 5.4.1 Recipient address rejected"),
    "dsn_fields_in_text.eml": ("noor@example.org", "5.1.1", "550 5.1.1 <noor@example.org>"),
    "no_code.eml": ("hana@example.co.jp", "5.1.1", "Unknown user: hana@example.co.jp"),
    "words_exchange_unknown_recipient.eml": ("ines.moreau@exch.example.org", "5.1.1", "MSEXCH"),
    "words_domain_not_exist.eml": ("lina@nowhere.example", "5.1.2", "lina@nowhere.example: Dom"),
    "words_mailbox_full.eml": ("aoi@example.ne.jp", "5.2.2", "Could not be delivered to: <aoi"),
    "words_code_wins.eml": ("tomas@example.net", "5.3.4", "Remote host said: 552 5.3.4 Message"),
    "words_not_in_returned_message.eml": ("omar@gw.example.net", None, None),
}


@pytest.mark.parametrize("name", sorted(BOUNCES))
def test_each_format_gives_recipient_and_status(name: str) -> None:
    parsed, raw = load(name)
    kind = classify(parsed, raw)
    recipient, status, diagnostic = BOUNCES[name]
    assert kind.kind == "bounce", kind.reason
    assert kind.bounce is not None
    assert (kind.bounce.recipient, kind.bounce.status) == (recipient, status)
    if diagnostic is None:
        assert kind.bounce.diagnostic is None
    else:
        assert (kind.bounce.diagnostic or "").startswith(diagnostic)


def test_plain_text_formats_are_read_by_flufl_bounce() -> None:
    """These carry no DSN fields: without flufl.bounce they would not be bounces."""
    for name in ("qmail.eml", "postfix_plain.eml", "sendmail.eml", "exchange_old.eml",
                 "yahoo.eml", "aol.eml", "simplematch.eml", "exim_without_header.eml"):  # fmt: skip
        parsed, raw = load(name)
        assert classify(parsed, raw).reason == "bounce found by flufl.bounce", name


def test_sloppy_dsn_keeps_the_whole_folded_diagnostic() -> None:
    parsed, raw = load("dsn_sloppy.eml")
    bounce = classify(parsed, raw).bounce
    assert bounce == BounceInfo(
        "first@example.org",
        "5.2.2",
        "552 5.2.2 <first@example.org>: mailbox is full, try again later",
    )


def test_a_failed_recipient_wins_over_a_delayed_one() -> None:
    raw = (SAMPLES / "dsn_sloppy.eml").read_bytes()
    delayed_first = raw.replace(b"action : failed", b"action : delayed", 1)
    delayed_first = delayed_first.replace(b"Action : delayed", b"Action : failed", 1)
    bounce = classify(parse_message(delayed_first), delayed_first).bounce
    assert bounce is not None
    assert (bounce.recipient, bounce.status) == ("second@example.org", "4.4.1")


def test_bare_cr_sample_has_no_line_feed() -> None:
    raw = (SAMPLES / "dsn_bare_cr.eml").read_bytes()
    assert b"\n" not in raw and raw.count(b"\r") > 20


def test_delays_are_bounces_with_a_transient_status() -> None:
    parsed, raw = load("delay_warning.eml")
    kind = classify(parsed, raw)
    assert kind.kind == "bounce" and "transient failure" in kind.reason
    dsn = _dsn("Action: delayed\nStatus: 4.4.7\n")
    kind = classify(parse_message(dsn), dsn)
    assert (kind.kind, kind.bounce) == ("bounce", BounceInfo("pat@example.org", "4.4.7", None))
    assert kind.reason == "delivery status notification (delayed)"


def test_a_class_only_status_yields_to_the_servers_code() -> None:
    dsn = _dsn("Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.1.1 No such user\n")
    assert classify(parse_message(dsn), dsn).bounce == BounceInfo(
        "pat@example.org", "5.1.1", "550 5.1.1 No such user"
    )


def test_a_basic_reply_code_gives_its_class() -> None:
    dsn = _dsn("Action: failed\nDiagnostic-Code: smtp; 554 Service unavailable\n")
    bounce = classify(parse_message(dsn), dsn).bounce
    assert bounce is not None and bounce.status == "5.0.0"


def test_a_report_without_report_type_is_read() -> None:
    dsn = _dsn("Action: failed\nStatus: 5.1.1\n").replace(b"report-type=delivery-status; ", b"")
    kind = classify(parse_message(dsn), dsn)
    assert (kind.kind, kind.bounce) == ("bounce", BounceInfo("pat@example.org", "5.1.1", None))


def test_version_numbers_and_ip_addresses_are_no_status() -> None:
    raw = (
        b"Return-Path: <>\nFrom: MAILER-DAEMON@relay.example.net\nTo: b@mx.example.com\n"
        b"Subject: Undelivered Mail\n\nRelay 192.5.1.1 running mta-5.5.0-3 (sendmail 8.14.9)\n"
        b"could not deliver your message to <pat@example.org>.\n"
    )
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce is not None and (bounce.recipient, bounce.status) == ("pat@example.org", None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("not_auto_reply.eml", "auto_reply"),
        ("not_reply_quoting_bounce.eml", "reply"),
        ("not_feedback_report.eml", "message"),
        ("not_success_dsn.eml", "message"),
        ("not_newsletter_bounce_word.eml", "message"),
    ],
)
def test_negatives_are_no_bounce(name: str, kind: str) -> None:
    parsed, raw = load(name)
    assert (classify(parsed, raw).kind, find_bounce(parsed, raw)) == (kind, None)


def test_no_other_sample_is_a_bounce() -> None:
    """Replies, auto-replies and ordinary mail of the other tests; only the two DSNs among
    the reply samples are bounces."""
    for path in sorted(DATA.glob("*.eml")) + sorted((DATA / "replies").glob("*.eml")):
        raw = path.read_bytes()
        kind = classify(parse_message(raw), raw).kind
        assert (kind == "bounce") == path.name.endswith("_dsn.eml"), path.name


def test_ordinary_mail_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap look at the headers keeps ordinary mail away from the readers."""

    def fail(raw: bytes) -> None:
        raise AssertionError("read as a bounce")

    monkeypatch.setattr(bounces, "_message", fail)
    for name in ("gmail_en.eml", "outlook_desktop_en.eml", "new_message.eml"):
        raw = (DATA / "replies" / name).read_bytes()
        assert bounces.bounce_signal(parse_message(raw)) is None
        assert classify(parse_message(raw), raw).kind in ("reply", "message")


def test_a_failing_library_is_no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(message: object) -> None:
        raise UnicodeDecodeError("ascii", b"\xff", 0, 1, "odd input")

    monkeypatch.setattr(bounces, "_all_failures", broken)
    parsed, raw = load("qmail.eml")
    kind = classify(parsed, raw)  # the mail system's failure notice is still a bounce
    assert kind.kind == "bounce"
    assert kind.bounce is not None and kind.bounce.recipient == "ana.lima@example.org"
    parsed, raw = load("dsn_sloppy.eml")
    assert classify(parsed, raw).bounce == BounceInfo(
        "first@example.org",
        "5.2.2",
        "552 5.2.2 <first@example.org>: mailbox is full, try again later",
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"From: MAILER-DAEMON@x\nSubject: failure notice\n\n\xff\xfe\x00<a@b>:",
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: ;;;\nStatus: 9.9.9.9",
        b"Return-Path: <>\nContent-Type: multipart/report; boundary=x\n\n--x\n--x--\n--x",
        b"From: postmaster@x\nSubject: Undeliverable\n\n" + b"<a@b>: " * 5000,
    ],
)
def test_odd_input_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert classify(parsed, raw).kind in ("bounce", "message")


def test_a_large_returned_message_is_read_quickly() -> None:
    parsed, raw = load("qmail.eml")
    big = raw + (b"x" * 998 + b"\n") * 5000  # a 5 MB copy of the message below the report
    started = time.perf_counter()
    kind = classify(parse_message(big), big)
    assert kind.bounce is not None and kind.bounce.recipient == "ana.lima@example.org"
    assert time.perf_counter() - started < 2.0


def _dsn(recipient_fields: str) -> bytes:
    """A minimal RFC 3464 report for pat@example.org with the given fields."""
    return (
        "Return-Path: <>\nFrom: MAILER-DAEMON@mail.example.net\nTo: b@mx.example.com\n"
        "Subject: Delivery Status Notification\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nSee below.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mail.example.net\n\n"
        f"Final-Recipient: rfc822; pat@example.org\n{recipient_fields}\n--b--\n"
    ).encode()


@pytest.mark.parametrize("header", ["", "X-Failed-Recipients: lea@forward.example.net\n"])
def test_a_forwarded_recipient_is_reported_as_the_application_wrote_it(header: str) -> None:
    raw = (
        f"Return-path: <>\n{header}From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
        "To: bounces+7f3a@mx.example.com\nSubject: Mail delivery failed\n\n"
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        "  lea@forward.example.net\n    (generated from lea.roux@example.fr)\n"
        "    SMTP error from remote mail server after end of data:\n"
        "    host mx.forward.example.net [192.0.2.93]: 550 5.7.1 Rejected as spam\n\n"
        "------ This is a copy of the message, including all the headers. ------\n"
    ).encode()
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce is not None
    assert (bounce.recipient, bounce.status) == ("lea.roux@example.fr", "5.7.1")


# --- a status read from the report's words, when it states no code ------------------------


def _text_bounce(reason: str, *, before: str = "") -> bytes:
    """A plain-text bounce for pat@example.org that gives `reason` and no code."""
    return (
        "Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mail.example.net>\n"
        "To: b@mx.example.com\nSubject: Undelivered Mail\n\n"
        f"{before}Your message could not be delivered to the following recipient.\n\n"
        f"pat@example.org:\n    {reason}\n"
    ).encode()


def _info(raw: bytes) -> BounceInfo:
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce is not None
    return bounce


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("User unknown", "5.1.1"),
        ("The recipient name is not recognized", "5.1.1"),
        ("No such mailbox here", "5.1.1"),
        ("User some.name not listed in Domino Directory", "5.1.1"),
        ("Host or domain name not found", "5.1.2"),
        ("Host not found, try again", "4.4.3"),
        ("Mailbox is full", "5.2.2"),
        ("The user is over quota", "5.2.2"),
        ("Message too large for this system", "5.3.4"),
        ("This account has been disabled or discontinued", "5.2.1"),
        ("Relay access denied", "5.7.1"),
        ("Message rejected as spam by the content filter", "5.7.1"),
        ("Sender address rejected: domain not found", "5.1.8"),
        ("Mail forwarding loop detected", "5.4.6"),
        ("Connection timed out", "4.4.1"),
        ("Message expired after sitting in queue for 5 days", "4.4.7"),
        ("Rejected by the remote mail server", "5.0.0"),
    ],
)
def test_a_reason_in_words_gives_its_code(reason: str, status: str) -> None:
    raw = _text_bounce(reason)
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce is not None
    assert (bounce.recipient, bounce.status) == ("pat@example.org", status)


@pytest.mark.parametrize(
    "reason",
    [
        "Please check the address and try again.",
        "The address may not exist, or the mailbox may be over its limit.",  # a guess, no reason
        "See user.unknown@example.org or mailbox-full@example.net for help.",  # addresses
    ],
)
def test_words_that_state_no_reason_give_no_status(reason: str) -> None:
    raw = _text_bounce(reason)
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce is not None and (bounce.recipient, bounce.status) == ("pat@example.org", None)


def test_a_stated_code_wins_over_the_words() -> None:
    """The words say "mailbox is full" (5.2.2), the server's answer 5.3.4; with only a basic
    code (552) the status is that code's class, not the words' detail."""
    raw = (SAMPLES / "words_code_wins.eml").read_bytes()
    assert _info(raw).status == "5.3.4"
    assert _info(raw.replace(b"552 5.3.4 ", b"552 ")).status == "5.0.0"
    dsn = _dsn("Action: failed\nStatus: 5.7.1\nDiagnostic-Code: smtp; user unknown\n")
    assert classify(parse_message(dsn), dsn).bounce == BounceInfo(
        "pat@example.org", "5.7.1", "user unknown"
    )


def test_the_words_of_a_dsn_diagnostic_count() -> None:
    dsn = _dsn("Action: failed\nDiagnostic-Code: smtp; Connection timed out in connect\n")
    bounce = classify(parse_message(dsn), dsn).bounce
    assert bounce == BounceInfo("pat@example.org", "4.4.1", "Connection timed out in connect")


def test_words_in_the_returned_message_are_not_read() -> None:
    """Its Subject and body say "no such user" and "mailbox is full": they are the message
    that was sent, not the report, which names no reason."""
    raw = (SAMPLES / "words_not_in_returned_message.eml").read_bytes()
    assert _info(raw) == BounceInfo("omar@gw.example.net", None, None)
    quoted = _text_bounce("Did not reach the recipient.\n> user unknown\nSubject: mailbox full")
    assert _info(quoted).status is None


def test_a_class_stated_in_words_sets_the_class_of_the_reason() -> None:
    raw = _text_bounce("Mailbox is full. The server will retry for 5 days.")
    kind = classify(parse_message(raw), raw)
    assert kind.bounce is not None and kind.bounce.status == "4.2.2"
    assert "transient failure" in kind.reason
    permanent = "This is a permanent error.\n"
    assert _info(_text_bounce("Connection timed out", before=permanent)).status == "5.4.1"
    assert _info(_text_bounce("Delivery failed.", before=permanent)).status == "5.0.0"


def test_the_reason_is_the_diagnostic_when_the_report_has_none() -> None:
    raw = _text_bounce("x", before="Delivery failed: the mailbox is full.\n").replace(
        b"pat@example.org:\n    x\n", b"pat@example.org\n"
    )
    bounce = classify(parse_message(raw), raw).bounce
    assert bounce == BounceInfo("pat@example.org", "5.2.2", "Delivery failed: the mailbox is full.")


def test_a_report_full_of_reason_words_is_read_quickly() -> None:
    words = "user mailbox account address domain host message sender spam relay connection "
    raw = _text_bounce("Delivery failed.\n" + (words * 12 + "\n") * 300)
    started = time.perf_counter()
    assert classify(parse_message(raw), raw).kind == "bounce"
    assert time.perf_counter() - started < 2.0


def test_unclosed_script_tags_in_a_bounce_cost_little() -> None:
    from mxsmtp_web.mail.bounces import _without_scripts

    assert _without_scripts("a<script>x</script >b<STYLE>y</style>c<script>z") == "a b c"
    raw = (
        b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\n"
        b"Content-Type: text/html\r\n\r\n<p>x</p>" + b"<script>" * 25_000
    )
    started = time.perf_counter()
    classify(parse_message(raw), raw)
    assert time.perf_counter() - started < 2  # the lazy regex took 8 s
