"""Limits and STARTTLS, against the real listener: each answered with its code and text."""

from __future__ import annotations

import itertools
import smtplib
import socket
import ssl
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Mailbox, simple_message, wait_for
from mxsmtp_web.mail.parsing import _next_dash_line, mime_shape


def test_sessions_over_the_limit_get_421(mailbox: Mailbox) -> None:
    mailbox.configure(max_sessions=2, max_sessions_per_peer=10)
    first, second = mailbox.connect(), mailbox.connect()
    try:
        third = smtplib.SMTP()
        code, reply = third.connect("127.0.0.1", mailbox.port)
        third.close()
        assert (code, reply) == (421, b"4.7.0 Too many connections; try again later")
    finally:
        first.quit()
        second.quit()
    wait_for(lambda: not mailbox.listener._tracker.open, what="the sessions to close")
    with mailbox.connect() as again:
        assert again.noop()[0] == 250


def test_sessions_per_address_over_the_limit_get_421(mailbox: Mailbox) -> None:
    mailbox.configure(max_sessions=100, max_sessions_per_peer=1)
    first = mailbox.connect()
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", mailbox.port)
        assert refused.value.smtp_code == 421 and b"your address" in refused.value.smtp_error
    finally:
        first.quit()


def test_too_many_errors_close_the_session(mailbox: Mailbox) -> None:
    mailbox.write_hook(
        "few.py",
        "def check_recipient(recipient, sender, session):\n"
        "    return recipient == 'known@example.com'\n",
    )
    mailbox.configure(recipient_hook="few.py:check_recipient", max_errors=3)
    client = mailbox.connect()
    client.mail("harvester@spam.example")
    assert client.rcpt("a@example.com")[0] == 550
    assert client.rcpt("b@example.com")[0] == 550
    assert client.rcpt("c@example.com")[0] == 550
    assert client.getreply() == (421, b"4.7.0 Too many errors in this session; closing")
    client.close()


def test_idle_sessions_are_closed_with_421(mailbox: Mailbox) -> None:
    mailbox.configure(idle_timeout=5)
    with socket.create_connection(("127.0.0.1", mailbox.port), timeout=20) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        assert reader.readline() == b"421 4.4.2 Idle for too long; closing\r\n"
        reader.close()


def test_header_block_and_mime_shape_are_bounded(mailbox: Mailbox) -> None:
    mailbox.configure(max_header_size=2048, max_mime_depth=5, max_mime_parts=20)
    huge_header = b"X-Filler: " + b"a" * 3000 + b"\r\n" + simple_message()
    nested = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for level in range(1, 8):
        nested += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (
            level - 1,
            level,
        )
    wide = b"Content-Type: multipart/mixed; boundary=w\r\n\r\n" + b"--w\r\n\r\nx\r\n" * 30
    assert mime_shape(wide) == (30, 1)
    with mailbox.connect() as client:
        for message, reply in (
            (huge_header, b"5.3.4 Header block too large"),
            (nested, b"5.6.0 MIME parts nested deeper"),
            (wide, b"5.6.0 Message has more than 20 MIME parts"),
        ):
            client.mail("a@sender.example")
            client.rcpt("b@example.com")
            code, text = client.data(message)
            assert code in (552, 554) and text.startswith(reply), (code, text)
        assert client.noop()[0] == 250
    assert mailbox.messages() == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    authority = trustme.CA()
    server = authority.issue_cert("mx.test.example", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return authority, cert, key


def test_starttls_is_offered_and_hooks_see_the_cipher(
    mailbox: Mailbox, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    authority, cert, key = certificate
    seen = Path(mailbox.app.config["HOOKS_DIR"]) / "tls.txt"
    mailbox.write_hook(
        "tls.py",
        "import pathlib\ndef check_sender(sender, session):\n"
        f"    pathlib.Path({str(seen)!r}).write_text("
        "f'{session.tls} {session.tls_cipher}')\n    return True\n",
    )
    mailbox.configure(
        tls_cert_file=str(cert), tls_key_file=str(key), sender_hook="tls.py:check_sender"
    )
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with mailbox.connect() as client:
        assert client.has_extn("starttls")
        assert client.starttls(context=context)[0] == 220
        client.ehlo("client.test.example")
        assert client.sendmail("a@sender.example", ["b@example.com"], simple_message()) == {}
    tls, cipher = seen.read_text().split(" ", 1)
    assert tls == "True" and cipher not in ("", "None")
    assert mailbox.message(mailbox.messages()[0].id).tls


def test_require_tls_refuses_mail_from_in_the_clear(
    mailbox: Mailbox, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    authority, cert, key = certificate
    mailbox.configure(tls_cert_file=str(cert), tls_key_file=str(key), require_tls=True)
    with mailbox.connect() as client:
        code, reply = client.mail("a@sender.example")
        assert (code, reply) == (530, b"5.7.0 Must issue a STARTTLS command first")
        context = ssl.create_default_context()
        authority.configure_trust(context)
        client.starttls(context=context)
        client.ehlo("client.test.example")
        assert client.mail("a@sender.example")[0] == 250


def test_overlong_command_lines_are_refused_and_the_session_goes_on(mailbox: Mailbox) -> None:
    with mailbox.connect() as client:
        code, reply = client.docmd("MAIL FROM:<" + "a" * 600 + "@sender.example>")
        assert code == 500 and b"too long" in reply
        code, _ = client.docmd("NOOP " + "x" * 300_000)  # beyond the reader's buffer too
        assert code == 500
        assert client.noop()[0] == 250


# --- mime_shape against real MIME trees -----------------------------------------------------

# A tree is a leaf (bytes of a body) or a list of subtrees (a multipart).
mime_trees = st.recursive(
    st.sampled_from(
        [b"plain text\r\n", b"-- \r\nsignature\r\n", b"boundary=decoy\r\n--decoy\r\n", b""]
    ),
    lambda children: st.lists(children, min_size=1, max_size=4),
    max_leaves=25,
)


def render(tree: bytes | list, number: itertools.count, headers: bytes = b"") -> bytes:
    if isinstance(tree, bytes):
        return headers + b"Content-Type: text/plain\r\n\r\n" + tree
    boundary = b"=_b%d" % next(number)
    rendered = headers + b'Content-Type: multipart/mixed;\r\n boundary="%s"\r\n\r\n' % boundary
    for child in tree:
        rendered += b"--" + boundary + b"\r\n" + render(child, number) + b"\r\n"
    return rendered + b"--" + boundary + b"--\r\n"


def real_shape(tree: bytes | list, level: int = 0) -> tuple[int, int]:
    if isinstance(tree, bytes):
        return (0, level)
    shapes = [real_shape(child, level + 1) for child in tree]
    return (len(tree) + sum(p for p, _ in shapes), max(d for _, d in shapes))


@settings(max_examples=300, deadline=None)
@given(mime_trees)
def test_mime_shape_counts_what_the_email_parser_sees(tree: bytes | list) -> None:
    raw = render(tree, itertools.count(), b"Subject: shape\r\n")
    parts, depth = real_shape(tree)
    expected = (max(parts, 1), depth)
    assert mime_shape(raw) == expected
    parsed = message_from_bytes(raw, policy=policy.default)
    assert sum(1 for _ in parsed.walk()) - 1 == parts  # the tree is what email reads


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=60).map(lambda b: bytes(b"\n-a\r"[x % 4] for x in b)), st.data())
def test_the_dash_line_search_finds_what_find_finds(raw: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(raw)))
    assert _next_dash_line(raw, start) == raw.find(b"\n--", start)


@pytest.mark.parametrize(
    "boundary",
    [
        b"b" * 300,
        b"x  ",
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFLMNOPRSTUVWXYZ'()+_,-./:=?  " * 50,
    ],
    ids=["longer than RFC 2046 allows", "ending in blanks", "thousands of characters"],
)
def test_mime_shape_sees_every_boundary_email_reads(boundary: bytes) -> None:
    """A boundary `email` reads must be counted too, or its parts would slip past the limit."""
    stripped = boundary.rstrip(b" ")
    raw = (
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        + (b"--" + stripped + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n") * 600
        + b"--" + stripped + b"--\r\n"
    )  # fmt: skip
    assert mime_shape(raw) == (600, 1)
    assert sum(1 for _ in message_from_bytes(raw, policy=policy.default).walk()) - 1 == 600


def test_mime_shape_counts_delimiters_with_text_after_the_boundary() -> None:
    """The parser's repaired copy reads "--b text" as a delimiter, so the bound must too."""
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b some text\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 600
        + b"--b-- the end\r\n"
    )
    assert mime_shape(raw) == (600, 1)
