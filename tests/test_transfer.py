"""Transfer encodings as tolerant readers decode them: what is data is decoded, what is not
is named in the defects."""

from __future__ import annotations

import base64

import pytest

from mxsmtp_web.mail.transfer import decode, decode_base64, transfer_encoding

DATA = bytes(range(256)) * 2


def lines(encoded: bytes) -> bytes:
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\r\n"


@pytest.mark.parametrize(
    ("label", "meaning"),
    [("Base64 ", "base64"), ("base64 (as sent)", "base64"), (' "BASE64"', "base64"),
     ("Quoted-Printable", "quoted-printable"),
     ("8bit", "identity"), ("", "identity"), ("x-uue", "uuencode"), ("x-gzip64", "x-gzip64")],
)  # fmt: skip
def test_labels_are_read_case_and_blank_insensitively(label: str, meaning: str) -> None:
    assert transfer_encoding(label) == meaning


def test_well_formed_base64_has_no_defects() -> None:
    assert decode_base64(lines(base64.b64encode(DATA))) == decode_base64(base64.b64encode(DATA))
    assert decode_base64(lines(base64.b64encode(DATA))).data == DATA
    assert decode_base64(lines(base64.b64encode(DATA))).defects == ()


def test_a_footer_after_base64_is_not_decoded_into_the_file() -> None:
    encoded = lines(base64.b64encode(DATA)) + (
        b"_______________________________________________\r\n"
        b"Users mailing list\r\nhttps://lists.example.org/listinfo/users\r\n"
    )
    decoded = decode_base64(encoded)
    assert decoded.data == DATA
    assert decoded.defects == ("base64 held lines that are not base64; they were skipped",)


def test_an_unknown_encoding_keeps_the_bytes_and_says_so() -> None:
    decoded = decode("x-gzip64", b"H4sIAAAA")
    assert decoded is not None
    assert decoded.data == b"H4sIAAAA"
    assert decoded.defects == ("unknown transfer encoding 'x-gzip64'; kept undecoded",)


def test_uuencode_is_left_to_email() -> None:
    assert decode("x-uuencode", b"begin 644 a\n`\nend\n") is None


def test_a_stray_character_in_a_line_is_skipped_alone() -> None:
    decoded = decode_base64(b"PGh0*bWw+Cg==\r\n")
    assert decoded.data == b"<html>\n"
    assert decoded.defects == ("base64 held characters outside its alphabet; they were skipped",)


def test_text_under_a_base64_label_is_kept_undecoded() -> None:
    text = b"... first half of encoded audio data goes here ...\r\n"
    assert decode_base64(text).data == text
    assert decode_base64(text).defects == ("not base64 at all; kept undecoded",)
