"""The fast reading of MAIL FROM / RCPT TO paths gives exactly what aiosmtpd's full parse (the
email header parser) gives, and leaves every other shape to it."""

from __future__ import annotations

from email._header_value_parser import get_angle_addr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxsmtp_web.smtp.handler import plain_path

PATH_CHARACTERS = "ab.Z09-+=_!#~'@<>[]()\":, \t\\\x0c"


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<a@b.example>", ("a@b.example", "")),
        (
            "<first.last+tag@mail.example.org> SIZE=4096",
            ("first.last+tag@mail.example.org", "SIZE=4096"),
        ),
        ("<A=B@x-y.example>  BODY=8BITMIME SIZE=3", ("A=B@x-y.example", "BODY=8BITMIME SIZE=3")),
        ("<a@b.example>\t", ("a@b.example", "")),
    ],
)
def test_plain_paths_are_read_directly(argument: str, expected: tuple[str, str]) -> None:
    assert plain_path(argument) == expected


@pytest.mark.parametrize(
    "argument",
    [
        '<"x y"@b.example>',
        "<@relay.example:a@b.example>",
        "<a(c)@b.example>",
        "<a@[192.0.2.1]>",
        "<a@b.example> (comment) SIZE=1",
        "<>",
        "a@b.example",
        "<a..b@c>",
        "<.a@b>",
        "<é@b.example>",
    ],
)
def test_other_shapes_go_to_the_full_parser(argument: str) -> None:
    assert plain_path(argument) is None


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(PATH_CHARACTERS, max_size=30),
        st.builds(
            lambda local, domain, rest: f"<{local}@{domain}>{rest}",
            st.text(PATH_CHARACTERS, min_size=1, max_size=12),
            st.text("ab.-09[]", min_size=1, max_size=12),
            st.text(PATH_CHARACTERS, max_size=12),
        ),
    )
)
def test_the_fast_reading_agrees_with_the_full_parser(argument: str) -> None:
    fast = plain_path(argument)
    if fast is None:
        return
    address, rest = get_angle_addr(argument)
    assert fast == (address.addr_spec, rest)
