"""parse_message: real-shaped messages in, plain values out, and never an exception."""

from __future__ import annotations

import base64
import hashlib
import quopri
import random
import struct
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import compressed_rtf
import pytest
import tnefparse

from mxsmtp_web.mail.parsing import (
    MAX_DEFECTS,
    MAX_UUENCODED_FILES,
    ParsedMail,
    ParsedPart,
    parse_message,
)

DATA = Path(__file__).parent / "data"
PNG_SHA256 = "6b7fa434f92a8b80aab02d9bf1a12e49ffcae424e4013a1c4f68b67e3d2bbcd0"
BLOB_SHA256 = "a33766ea6a3651c1a416e4c468f5372def1b43ec0bc1125987491a66fee3c70f"


def load(name: str) -> ParsedMail:
    return parse_message((DATA / name).read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_clean(mail: ParsedMail) -> None:
    """Every string in the result can be stored and shown: valid Unicode, no surrogates."""
    strings = [mail.subject, mail.from_, *mail.to, *mail.cc, *mail.references, *mail.defects]
    strings += [s for pair in mail.headers for s in pair]
    strings += [mail.text or "", mail.html or "", mail.message_id or "", mail.in_reply_to or ""]
    strings += [p.filename or "" for p in mail.attachments]
    for value in strings:
        value.encode("utf-8")


# --- headers and bodies -----------------------------------------------------------------


def test_newsletter_headers_are_decoded():
    mail = load("newsletter.eml")
    assert mail.subject == "Weekly digest – März"
    assert mail.from_ == "Zoë from the Newsletter <news@news.example.com>"
    assert mail.to == ("Reader <reader@example.org>", '"Doe, Jane" <jane@example.org>')
    assert mail.cc == ("Jürgen <juergen@example.net>",)
    assert mail.date == datetime(2024, 3, 5, 8, 15, tzinfo=UTC)
    assert mail.date.utcoffset() == timedelta(hours=1)
    assert mail.message_id == "<digest-2024-10@news.example.com>"
    assert mail.in_reply_to == "<signup-77@news.example.com>"
    assert mail.references == ("<welcome-1@news.example.com>", "<signup-77@news.example.com>")
    assert ("List-Unsubscribe", "<https://news.example.com/u/abc>") in mail.headers
    assert [name for name, _ in mail.headers][:3] == ["Return-Path", "Received", "From"]
    assert mail.defects == ()


def test_multipart_alternative_gives_text_and_html():
    mail = load("newsletter.eml")
    assert mail.text.startswith("Weekly digest – März\nRead it online:")
    assert '<img src="cid:logo@news.example.com"' in mail.html
    assert "<style>" in mail.html  # parsing does not sanitise; sanitize.py does


def test_cid_image_is_an_inline_part():
    (logo,) = load("newsletter.eml").attachments
    assert logo == ParsedPart(
        filename=None,
        content_type="image/png",
        content_id="logo@news.example.com",
        disposition="inline",
        data=logo.data,
    )
    assert sha256(logo.data) == PNG_SHA256
    assert logo.size == 70


def test_missing_headers_give_empty_values():
    mail = parse_message(b"\r\nJust a body.\r\n")
    assert (mail.subject, mail.from_, mail.to, mail.cc) == ("", "", (), ())
    assert (mail.date, mail.message_id, mail.in_reply_to, mail.references) == (None, None, None, ())
    assert mail.text == "Just a body.\n"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Mon, 1 Jan 2024 10:00:00 -0000", datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("1 Jan 2024 10:00:00 +0530", datetime(2024, 1, 1, 4, 30, tzinfo=UTC)),
        ("yesterday, around noon", None),
        ("Mon, 99 Foo 99999 99:99:99 +9999", None),
    ],
)
def test_date_is_aware_or_none(header, expected):
    mail = parse_message(f"Date: {header}\r\n\r\nx".encode())
    assert mail.date == expected
    assert mail.date is None or mail.date.tzinfo is not None


# --- charsets ---------------------------------------------------------------------------

CHARSET_SAMPLES = [
    ("iso-8859-1", "latin-1", "Café déjà vu", "quoted-printable"),
    ("iso-8859-2", "iso-8859-2", "Zażółć gęślą jaźń", "8bit"),
    ("iso-8859-15", "iso-8859-15", "Prix : 10 € pour l'œuvre", "quoted-printable"),
    ("windows-1250", "cp1250", "Příliš žluťoučký kůň", "base64"),
    ("windows-1251", "cp1251", "Съешь же ещё этих мягких булок", "8bit"),
    ("windows-1252", "cp1252", "“Smart quotes” – naïve €", "quoted-printable"),
    ("iso-2022-jp", "iso2022_jp", "日本語のメールです", "7bit"),
    ("gb2312", "gb2312", "中文邮件测试", "base64"),
    ("koi8-r", "koi8-r", "Привет, мир", "8bit"),
    ("shift_jis", "shift_jis", "こんにちは世界", "base64"),
]


def charset_mail(charset: str, codec: str, text: str, encoding: str) -> bytes:
    """A single-part message whose Subject and body are both in ``charset``."""
    encoded = text.encode(codec)
    subject = f"=?{charset}?B?{base64.b64encode(encoded).decode()}?="
    if encoding == "base64":
        body = base64.encodebytes(encoded)
    elif encoding == "quoted-printable":
        body = quopri.encodestring(encoded)
    else:
        body = encoded
    head = (
        f"From: sender@example.org\r\nTo: reader@example.org\r\nSubject: {subject}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + body


@pytest.mark.parametrize(("charset", "codec", "text", "encoding"), CHARSET_SAMPLES)
def test_charset_in_body_and_subject(charset, codec, text, encoding):
    mail = parse_message(charset_mail(charset, codec, text, encoding))
    assert mail.subject == text
    assert mail.text.rstrip("\n") == text
    assert mail.defects == ()


def test_gb2312_label_decodes_gb18030_characters():
    """Senders label GBK/GB18030 text as gb2312; characters outside gb2312 must survive."""
    text = "镕基"  # 镕 is not in GB2312 but is in GBK and GB18030
    mail = parse_message(charset_mail("gb2312", "gb18030", text, "base64"))
    assert (mail.subject, mail.text.rstrip("\n")) == (text, text)


def test_bogus_charset_falls_back_and_is_noted():
    mail = load("bogus_charset.eml")
    assert mail.subject == "Café menu"
    assert mail.text == "Today: café au lait, crème brûlée.\n"
    assert any("x-unknown" in defect for defect in mail.defects)


def test_undeclared_raw_utf8_in_headers_is_read():
    raw = "Subject: Grüße aus Köln\r\nFrom: Zoë <z@example.org>\r\n\r\nhi".encode()
    mail = parse_message(raw)
    assert (mail.subject, mail.from_) == ("Grüße aus Köln", "Zoë <z@example.org>")


def test_folded_encoded_words_join_without_spaces():
    raw = b"Subject: =?utf-8?q?Hello?=\r\n =?utf-8?q?_World?= and =?utf-8?b?w6k=?=\r\n\r\n"
    assert parse_message(raw).subject == "Hello World and é"


def test_broken_encoded_word_is_kept_and_noted():
    mail = parse_message(b"Subject: =?utf-8?b?!?= tail\r\n\r\nx")
    assert mail.subject == "=?utf-8?b?!?= tail"
    assert any("encoded word" in defect for defect in mail.defects)


# --- attachments ------------------------------------------------------------------------


def test_attachment_filenames_rfc2231_and_rfc2047():
    names = [part.filename for part in load("attachments.eml").attachments]
    assert names == ["naïve file.txt", "über einen langen Namen.bin", "Résumé.png"]


def test_attachments_are_byte_exact():
    mail = load("attachments.eml")
    text_file, blob, image = mail.attachments
    assert mail.text == "Three files attached.\n"
    assert text_file.content_type == "text/plain"  # text/* with a filename is an attachment
    assert text_file.data == b"plain text that is an attachment\r\n"
    assert (blob.content_type, blob.size, sha256(blob.data)) == (
        "application/octet-stream",
        730,
        BLOB_SHA256,
    )
    assert sha256(image.data) == PNG_SHA256
    assert {p.disposition for p in mail.attachments} == {"attachment"}


def test_built_binary_attachment_round_trips():
    blob = random.Random(7).randbytes(50_000) + b"\r\n\x00\r"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.org", "binary"
    msg.set_content("see attached")
    msg.add_attachment(blob, maintype="application", subtype="pdf", filename="scan.pdf")
    (part,) = parse_message(msg.as_bytes()).attachments
    assert (part.filename, part.content_type, part.disposition) == (
        "scan.pdf",
        "application/pdf",
        "attachment",
    )
    assert sha256(part.data) == sha256(blob)


def test_nested_message_is_kept_whole():
    mail = load("forwarded.eml")
    assert mail.text == "See below.\n"
    (enclosed,) = mail.attachments
    assert (enclosed.filename, enclosed.content_type) == ("message.eml", "message/rfc822")
    inner = parse_message(enclosed.data)
    assert (inner.subject, inner.from_) == ("Lunch?", "Carol <carol@example.net>")
    assert inner.message_id == "<lunch-1@example.net>"
    assert inner.text.strip() == "Shall we meet at noon?"


def test_truncated_multipart_keeps_what_arrived():
    mail = load("truncated_multipart.eml")
    assert mail.text == "The start survived.\n"
    (half,) = mail.attachments
    assert half.filename == "half.pdf"
    assert half.data.startswith(b"%PDF-1.4")
    assert any("boundary" in defect for defect in mail.defects)


# --- TNEF (winmail.dat) -----------------------------------------------------------------
# Built from MS-OXTNEF 2.1.3: a signature and key, then attribute records of
# level (1 byte), attribute = type << 16 | id (4), length (4), data, checksum (2).

TNEF_SIGNATURE = 0x223E9F78
LEVEL_MESSAGE, LEVEL_ATTACHMENT = 1, 2
ATT_TNEF_VERSION = 0x0008_9006
ATT_OEM_CODEPAGE = 0x0006_9007
ATT_MESSAGE_CLASS = 0x0007_8008
ATT_BODY = 0x0002_800C
ATT_MSG_PROPS = 0x0006_9003
ATT_ATTACH_REND_DATA = 0x0006_9002
ATT_ATTACH_TITLE = 0x0001_8010
ATT_ATTACH_DATA = 0x0006_800F
ATT_ATTACHMENT = 0x0006_9005
PR_ATTACH_LONG_FILENAME = 0x3707
PR_RTF_COMPRESSED = 0x1009
PR_BODY_HTML = 0x1013
PT_UNICODE, PT_BINARY = 0x001F, 0x0102


def tnef_record(level: int, attribute: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, attribute, len(data)) + data + struct.pack("<H", checksum)


def mapi_props(prop_type: int, prop_id: int, value: bytes) -> bytes:
    """A MAPI property list holding one variable-length property (MS-OXTNEF 2.1.3.4)."""
    padded = value + b"\x00" * (-len(value) % 4)
    return struct.pack("<IHHII", 1, prop_type, prop_id, 1, len(value)) + padded


def build_tnef(
    body: bytes | None = None,
    attachments: tuple[tuple[bytes, bytes, str | None], ...] = (),
    extra: tuple[bytes, ...] = (),
) -> bytes:
    """A TNEF stream; each attachment is (8.3 title in cp1252, data, long filename or None)."""
    records = [
        tnef_record(LEVEL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x0001_0000)),
        tnef_record(LEVEL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", 1252, 0)),
        tnef_record(LEVEL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\x00"),
        *extra,
    ]
    if body is not None:
        records.append(tnef_record(LEVEL_MESSAGE, ATT_BODY, body))
    # attAttachRendData: attachment type 1 (file), position, width, height, flags
    rend_data = struct.pack("<HIhhI", 1, 0xFFFFFFFF, -1, -1, 0)
    for title, data, long_name in attachments:
        records.append(tnef_record(LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, rend_data))
        records.append(tnef_record(LEVEL_ATTACHMENT, ATT_ATTACH_TITLE, title + b"\x00"))
        records.append(tnef_record(LEVEL_ATTACHMENT, ATT_ATTACH_DATA, data))
        if long_name:
            name = (long_name + "\x00").encode("utf-16-le")
            props = mapi_props(PT_UNICODE, PR_ATTACH_LONG_FILENAME, name)
            records.append(tnef_record(LEVEL_ATTACHMENT, ATT_ATTACHMENT, props))
    return struct.pack("<IH", TNEF_SIGNATURE, 0x4242) + b"".join(records)


def winmail_mail(tnef: bytes, text: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Outlook <o@example.org>", "r@example.org", "Q3"
    if text is not None:
        msg.set_content(text)
    msg.add_attachment(tnef, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return msg.as_bytes()


REPORT = bytes(range(256)) * 3 + b"%%EOF\x00\x00"
NOTES = "Ünïcode notes\r\n".encode("cp1252")
SAMPLE_TNEF = build_tnef(
    body=b"Please see the attached report.\r\n",
    attachments=(
        (b"REPORT~1.PDF", REPORT, "Quarterly report 2024.pdf"),
        (b"caf\xe9.txt", NOTES, None),
    ),
)


def test_tnef_sample_is_valid_for_tnefparse():
    tnef = tnefparse.TNEF(SAMPLE_TNEF)
    assert [a.long_filename() for a in tnef.attachments[:1]] == ["Quarterly report 2024.pdf"]
    assert [a.data for a in tnef.attachments] == [REPORT, NOTES]
    assert tnef.body == b"Please see the attached report.\r\n"
    assert all(obj.good_checksum for obj in tnef.objects)


def test_winmail_dat_is_expanded():
    mail = parse_message(winmail_mail(SAMPLE_TNEF))
    report, notes = mail.attachments
    assert (report.filename, report.content_type, report.disposition) == (
        "Quarterly report 2024.pdf",
        "application/pdf",
        "attachment",
    )
    assert sha256(report.data) == sha256(REPORT)
    assert (notes.filename, notes.content_type, notes.data) == ("café.txt", "text/plain", NOTES)
    assert mail.text == "Please see the attached report.\n"
    assert mail.defects == ()


def test_winmail_body_does_not_replace_a_mime_body():
    mail = parse_message(winmail_mail(SAMPLE_TNEF, text="The real body."))
    assert mail.text == "The real body.\n"
    assert [p.filename for p in mail.attachments] == ["Quarterly report 2024.pdf", "café.txt"]


def test_winmail_rtf_only_body_becomes_body_rtf():
    rtf = rb"{\rtf1\ansi Hello {\b RTF}\par}"
    # An uncompressed RTF stream: sizes, the "MELA" magic, a zero CRC (MS-OXRTFCP 2.1.3.1)
    stream = struct.pack("<II", len(rtf) + 12, len(rtf)) + b"MELA" + b"\x00" * 4 + rtf
    props = tnef_record(
        LEVEL_MESSAGE, ATT_MSG_PROPS, mapi_props(PT_BINARY, PR_RTF_COMPRESSED, stream)
    )
    mail = parse_message(winmail_mail(build_tnef(extra=(props,))))
    assert (mail.text, mail.html) == ("Hello RTF\n", None)
    (part,) = mail.attachments
    assert (part.filename, part.content_type, part.data) == ("body.rtf", "application/rtf", rtf)


def test_winmail_compressed_rtf_body_becomes_the_text():
    rtf = rb"{\rtf1\ansi\ansicpg1252 Gr\'fc\'dfe aus {\b Outlook}\par}"
    props = tnef_record(
        LEVEL_MESSAGE,
        ATT_MSG_PROPS,
        mapi_props(PT_BINARY, PR_RTF_COMPRESSED, compressed_rtf.compress(rtf)),
    )
    mail = parse_message(winmail_mail(build_tnef(extra=(props,))))
    assert mail.text == "Grüße aus Outlook\n"
    assert [p.data for p in mail.attachments] == [rtf]


def test_winmail_html_body_is_kept_beside_a_plain_text_stub():
    html = b"<html><body><p>The <b>real</b> body.</p></body></html>"
    props = tnef_record(LEVEL_MESSAGE, ATT_MSG_PROPS, mapi_props(PT_BINARY, PR_BODY_HTML, html))
    mail = parse_message(winmail_mail(build_tnef(extra=(props,)), text="Plain stub."))
    assert mail.text == "Plain stub.\n"
    assert mail.html == html.decode()


@pytest.mark.parametrize(
    "tnef",
    [
        b"not tnef at all",
        SAMPLE_TNEF[:40],
        struct.pack("<IH", TNEF_SIGNATURE, 1)
        + tnef_record(LEVEL_ATTACHMENT, ATT_ATTACH_DATA, b"x"),
        # forged counts that would make tnefparse loop for minutes
        build_tnef(extra=(tnef_record(LEVEL_MESSAGE, ATT_MSG_PROPS, b"\xff\xff\xff\xff"),)),
        build_tnef(
            extra=(
                tnef_record(
                    LEVEL_MESSAGE,
                    ATT_MSG_PROPS,
                    struct.pack("<IHHI", 1, 0x1002, 0x3A00, 0xFFFFFFF0) + b"\x00" * 8,
                ),
            )
        ),
    ],
    ids=["garbage", "truncated", "attachment-before-rend-data", "huge-count", "huge-multivalue"],
)
def test_undecodable_winmail_dat_is_kept_with_a_defect(tnef):
    mail = parse_message(winmail_mail(tnef))
    (part,) = mail.attachments
    assert (part.filename, part.data) == ("winmail.dat", tnef)
    assert any("winmail.dat" in defect for defect in mail.defects)


# --- never raises -----------------------------------------------------------------------

GARBAGE = [
    b"",
    b"\x00",
    b"\r\n\r\n",
    b"Subject: only a header\r\n",
    b"Subject: no blank line and no body",
    b":\r\n:\r\n\r\n",
    b"Content-Type: multipart/mixed\r\n\r\n--",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain",
    b'Content-Type: text/plain; charset="\x00"\r\n\r\n\xff',
    b"Content-Type: text/plain; charset=zlib_codec\r\n\r\nx",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!*==abc",
    b"Content-Type: message/rfc822\r\n\r\n\xff\xfe\r\n\r\n",
    b'From: <<<@@@>>>, "unterminated\r\nTo: ;;;,,,@\r\nCc: =?utf-8?q?=FF?= <@>\r\n\r\n',
    b"Message-ID: \r\nReferences: <a> <b\r\nIn-Reply-To: <\r\n\r\n",
    b"Content-Disposition: attachment; filename*=bogus'xx'%FF%FE\r\n\r\nx",
    b"Subject: =?utf-8*en?Q?ok?= =?unknown?b?AAAA?= =?utf-16?b?2D3YPQ==?=\r\n\r\n",
    b"\xff" * 1000,
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
    + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 300,
]


@pytest.mark.parametrize("raw", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(raw):
    mail = parse_message(raw)
    assert isinstance(mail, ParsedMail)
    assert_clean(mail)


def test_random_bytes_never_raise():
    rng = random.Random(2024)
    for size in [1, 7, 100, 1_000, 20_000] * 4:
        assert_clean(parse_message(rng.randbytes(size)))


def test_mutated_samples_never_raise():
    """A small fuzz: flip, cut and repeat bytes of every sample, TNEF included."""
    rng = random.Random(25)
    samples = [p.read_bytes() for p in sorted(DATA.glob("*.eml"))]
    samples.append(winmail_mail(SAMPLE_TNEF))
    for sample in samples:
        for _ in range(60):
            assert_clean(parse_message(mutate(sample, rng)))


def mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.5:
            data[pos] = rng.randrange(256)
        elif choice < 0.7:
            del data[pos:]
        elif choice < 0.9:
            data[pos:pos] = data[pos : pos + rng.randint(1, 64)]
        else:
            data[pos:pos] = rng.choice([b"=?", b"\r\n\r\n", b"--", b";", b"\x00", b"\xff\xfe"])
        if not data:
            break
    return bytes(data)


def test_non_bytes_like_input_does_not_raise():
    mail = parse_message(bytearray(b"Subject: hi\r\n\r\nbody"))
    assert mail.subject == "hi"
    assert parse_message(None).defects  # type: ignore[arg-type]


def test_parsed_values_are_frozen():
    mail = load("forwarded.eml")
    with pytest.raises(AttributeError):
        mail.subject = "changed"  # type: ignore[misc]
    assert all(not isinstance(getattr(mail, f.name), list) for f in fields(mail))


# --- mail as tolerant parsers read it (tests/data/tolerant/) ------------------------------

TOLERANT = DATA / "tolerant"
SAMPLE_BYTES = bytes(range(256)) * 4


def load_tolerant(name: str) -> ParsedMail:
    mail = parse_message((TOLERANT / name).read_bytes())
    assert_clean(mail)
    return mail


def test_transfer_encoding_with_a_trailing_blank_is_decoded():
    mail = load_tolerant("cte_trailing_space.eml")
    (part,) = mail.attachments
    assert (part.filename, part.data, part.defects) == ("bytes.bin", SAMPLE_BYTES, ())


def test_damaged_base64_is_decoded_as_far_as_it_goes_and_flagged():
    cut, chunks, odd = load_tolerant("base64_bad_length.eml").attachments
    assert cut.data == SAMPLE_BYTES[:300]
    assert cut.defects == ("base64 had an impossible length; its last character was dropped",)
    assert chunks.data == SAMPLE_BYTES[:20]
    assert odd.data == b"uryyb"
    assert odd.defects == ("unknown transfer encoding 'x-rot13'; kept undecoded",)


def test_defects_of_parts_are_also_the_message_s():
    mail = load_tolerant("base64_bad_length.eml")
    assert (
        "application/octet-stream part: base64 had an impossible length; "
        "its last character was dropped"
    ) in mail.defects


def test_obsolete_header_syntax_is_read():
    mail = load_tolerant("obsolete_syntax.eml")
    assert mail.subject.startswith("Fields with blanks before the colon")
    assert mail.subject.endswith("and an empty line in the folding")
    assert mail.from_ == "Obsolete Sender <old@example.org>"
    assert mail.to == ("app@example.com",)
    assert mail.date == datetime(2024, 3, 5, 8, 15, tzinfo=UTC)
    assert mail.message_id == "<obsolete-1@example.org>"
    assert mail.text == "The body.\n"
    assert [name for name, _ in mail.headers] == ["Subject", "From", "To", "Date", "Message-ID"]


def test_unquoted_boundary_and_name_with_equals_and_blanks():
    mail = load_tolerant("unquoted_parameters.eml")
    assert mail.text == "The real body.\n"
    (part,) = mail.attachments
    assert (part.filename, part.data) == ("This is a test.txt", b"file content")


def test_delimiter_lines_with_trailing_text_and_no_preamble_or_epilogue_in_the_body():
    mail = load_tolerant("boundary_trailing_text.eml")
    assert mail.text == "First part."
    (notes,) = mail.attachments
    assert (notes.filename, notes.data) == ("notes.txt", b"notes")


def test_an_empty_part_keeps_the_epilogue_out_of_the_body():
    mail = load_tolerant("empty_part_epilogue.eml")
    assert "Epilogue" not in (mail.text or "") and mail.attachments == ()


def test_addresses_as_real_mail_writes_them():
    mail = load_tolerant("odd_addresses.eml")
    assert mail.from_ == "develop!nextmime@ebony@sblab.att.com"  # two equal From fields: one
    assert mail.to == ('"Mikel@Lindsaar" <raasdnil@gmail.com>', '"Doe, Jane" <jane@example.org>')
    assert mail.cc == (
        '"ФГУП \\"СибНИА им.С.А.Чаплыгина\\"\\"" <user@domain.ru>',
        "Ann Example <ann@example.org>",
    )
    assert mail.subject == "Adjacent encoded words"


def test_iso_2022_jp_with_nec_special_characters():
    mail = load_tolerant("iso2022jp_nec.eml")
    assert mail.subject == "№① 41"
    assert mail.from_ == "山田 <yamada@example.jp>"
    assert mail.text == "㈱㈲ ok\n"
    assert mail.defects == ()


@pytest.mark.parametrize(
    ("label", "data", "text"),
    [
        ("iso-8859-1", b"\x93quoted\x94 \x80", "\u201cquoted\u201d €"),  # cp1252 in fact
        ("gb2312", "镕".encode("gbk"), "镕"),
        ("big5", "㗎".encode("big5hkscs"), "㗎"),
        ("ks_c_5601-1987", "똠".encode("cp949"), "똠"),
        ("shift_jis", "①".encode("cp932"), "①"),
        ("windows-874", "ก".encode("cp874"), "ก"),
    ],
)
def test_charset_labels_mean_what_clients_write(label: str, data: bytes, text: str):
    raw = f"Subject: x\r\nContent-Type: text/plain; charset={label}\r\n\r\n".encode() + data
    mail = parse_message(raw)
    assert (mail.text, mail.defects) == (text, ())


def test_text_picture_text_is_one_body_with_the_picture_in_place():
    mail = load_tolerant("text_image_text.eml")
    (image,) = mail.attachments
    assert image.filename == "dot.png" and image.content_id
    html = mail.html or ""
    before, picture, after = (
        html.index("Before the picture"),
        html.index(f'src="cid:{image.content_id}"'),
        html.index("After the picture"),
    )
    assert before < picture < after
    assert mail.text == "Before the picture.\n\nAfter the picture."


def test_an_inline_text_file_is_the_body_when_there_is_no_other():
    mail = load_tolerant("inline_named_text.eml")
    assert mail.text == "Hello from a named inline part."


def test_an_enclosed_message_keeps_the_bytes_it_had():
    mail = load_tolerant("rfc822_exact.eml")
    (enclosed,) = mail.attachments
    raw = (TOLERANT / "rfc822_exact.eml").read_bytes()
    start = raw.index(b"From: Inner Sender")
    assert enclosed.data == raw[start : raw.index(b"\r\n--outer--")]
    assert b"Subject:   Enclosed,\r\n  folded   oddly" in enclosed.data


def test_the_raw_payload_is_read_as_the_parser_stored_it():
    """parsing._raw_payload reads `Message._payload`: 8-bit bytes of a part must come back
    exactly, which `get_payload()` does not give (it re-decodes with the charset)."""
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: application/octet-stream; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\x80raw\r\n--b--\r\n"
    )
    (part,) = parse_message(raw).attachments
    assert part.data == b"\xff\xfe\x80raw"


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1"])
def test_text_labelled_base64_but_written_plain_is_shown_as_written(charset: str):
    words = "ploozdect  nispplul swunkglap zarplontruskdremp fruftsist\r\n" * 3
    raw = (
        f"Subject: x\r\nContent-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{words}"
    ).encode()
    mail = parse_message(raw)
    assert mail.text == words.replace("\r\n", "\n")
    assert "text/plain body: labelled base64 but written as text; shown undecoded" in mail.defects


def test_uuencoded_files_in_a_text_body_become_attachments():
    mail = load_tolerant("uuencoded_in_text.eml")
    assert mail.text == "Two files follow.\n\nThat was all.\n"
    assert [(p.filename, p.content_type, p.data) for p in mail.attachments] == [
        ("bytes.bin", "application/octet-stream", SAMPLE_BYTES[:100]),
        ("notes.txt", "text/plain", b"uuencoded notes\n"),
    ]


def test_a_body_of_endless_uuencode_headers_stays_text_and_is_bounded():
    body = b"begin 644 a\r\nend\r\n" * (MAX_UUENCODED_FILES + 5)
    mail = parse_message(b"Subject: x\r\n\r\n" + body)
    assert len(mail.attachments) == MAX_UUENCODED_FILES
    assert mail.text is not None and mail.text.count("begin 644 a") == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Fri, 21 Nov 1997 09(comment):   55  :  06 -0600", datetime(1997, 11, 21, 15, 55, 6)),
        ("Tue, 5 Mar 2024 09:15:00 +0100 (CET)", datetime(2024, 3, 5, 8, 15)),
    ],
)
def test_obsolete_dates_are_read(value: str, expected: datetime):
    mail = parse_message(f"Date: {value}\r\n\r\n".encode())
    assert mail.date == expected.replace(tzinfo=UTC)


def test_file_names_from_where_other_clients_put_them():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b'--b\r\nContent-Type: application/octet-stream; file="SETUP.EXE"\r\n\r\nx\r\n'
        b"--b\r\nContent-Type: image/jpeg\r\nContent-Location: http://x.example/a/Photo25.jpg\r\n"
        b"Content-Disposition: inline\r\n\r\ny\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b' filename="=?UTF-8?B?' + base64.b64encode(b"Konto\nutskrift.pdf") + b'?="\r\n\r\nz\r\n'
        b"--b--\r\n"
    )
    names = [p.filename for p in parse_message(raw).attachments]
    assert names == ["SETUP.EXE", "Photo25.jpg", "Konto_utskrift.pdf"]


def test_a_text_part_with_a_content_location_is_still_the_body():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Location: text.txt\r\n\r\nSome text\r\n"
        b"--b--\r\n"
    )
    mail = parse_message(raw)
    assert (mail.text, mail.attachments) == ("Some text", ())


def test_a_field_name_folded_away_from_its_colon_is_still_a_field():
    raw = (
        b"Subject: x\r\nFrom\r\n : <any@attack.example>\r\nFrom: <admin@legitimate.example>\r\n"
        b"\r\nbody\r\n"
    )
    mail = parse_message(raw)
    assert mail.from_ == "any@attack.example, admin@legitimate.example"
    assert mail.text == "body\n"


def test_a_header_line_that_is_no_field_is_skipped_when_fields_follow():
    mail = load_tolerant("invalid_header_line.eml")
    assert mail.subject == "Still read"
    assert mail.from_ == "Ann <ann@example.org>"
    assert mail.to == ("Mary Smith <mary@example.net>",)
    assert mail.message_id == "<still-read@example.org>"
    assert mail.text == "The body.\n"
    assert "header: a line that is no field was left out: 'This line is no field'" in (mail.defects)


def test_a_part_header_that_runs_into_its_body_keeps_every_body_line():
    raw = (
        b"Content-Type: multipart/mixed; boundary=M\r\n\r\n"
        b"--M\r\nHi Bob,\r\nTime: 10:00\r\nPlace: office\r\n\r\nSee you.\r\n--M--\r\n"
    )
    text = parse_message(raw).text or ""
    assert "Hi Bob," in text and "See you." in text


def test_a_boundary_that_ends_in_blanks_is_kept_whole():
    mail = load_tolerant("boundary_with_blanks.eml")
    assert mail.text == (
        "First part.\n--b1 \nThe line above is no delimiter: it lacks one of the blanks."
    )
    assert [p.filename for p in mail.attachments] == ["second.txt"]
    assert ("Content-Type", 'multipart/mixed; boundary="b1  "') in mail.headers


def test_utf_8_labelled_iso_2022_jp_is_read_as_utf_8():
    raw = "Subject: x\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\nエラー".encode()
    mail = parse_message(raw)
    assert mail.text == "エラー"
    assert mail.defects == ("text/plain body: text is not valid iso-2022-jp; decoded as UTF-8",)


def test_each_enclosed_part_of_a_report_keeps_its_own_bytes():
    returned = b"From:   Sender <s@example.org>\r\nSubject:  kept   as written\r\n\r\nHello\r\n"
    status = b"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; x@y\r\n"
    raw = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        b"--r\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\n" + status + b"\r\n"
        b"--r\r\nContent-Type: message/rfc822\r\n\r\n" + returned + b"--r--\r\n"
    )
    parts = {p.content_type: p.data for p in parse_message(raw).attachments}
    assert parts["message/rfc822"] == returned[:-2]
    assert parts["message/delivery-status"] == status


def test_the_blank_line_ends_the_header_even_when_the_body_looks_like_fields():
    raw = b"Subject: s\r\nThis is no field\r\nFrom: a@example.org\r\n\r\nTime: 10:00\r\nbody\r\n"
    mail = parse_message(raw)
    assert mail.from_ == "a@example.org"
    assert mail.text == "Time: 10:00\nbody\n"


def test_a_parameter_line_that_lost_its_indent_continues_its_field():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b'Content-Type: application/zip; x-unix-mode=0600;\r\nname="a.zip"\r\n'
        b'Content-Disposition: attachment; filename="a.zip"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--b--\r\n"
    )
    (part,) = parse_message(raw).attachments
    assert (part.filename, part.content_type, part.data) == (
        "a.zip",
        "application/zip",
        b"PK\x03\x04",
    )


def test_a_thousand_addresses_without_commas_are_all_read():
    raw = b"To: " + b"".join(b"<u%d@x.example>" % i for i in range(1500)) + b"\r\n\r\nx\r\n"
    mail = parse_message(raw)
    assert len(mail.to) == 1500 and mail.text == "x\n"


def test_base64_text_with_trailing_blanks_on_its_lines_is_decoded():
    words = base64.encodebytes("Grüße aus dem Büro. ".encode() * 20).replace(b"\n", b"  \r\n")
    raw = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert parse_message(raw + words).text == "Grüße aus dem Büro. " * 20


def test_a_picture_the_html_already_shows_is_not_placed_again():
    raw = (
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        b'Content-Type: multipart/related; boundary="r"\r\n\r\n'
        b'--r\r\nContent-Type: text/html\r\n\r\n<p>Logo <img src="cid:logo@x"></p>\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n\r\npng\r\n--r--\r\n"
        b"--m\r\nContent-Type: text/html\r\n\r\n<p>List footer</p>\r\n--m--\r\n"
    )
    html = parse_message(raw).html or ""
    assert html.count("cid:logo@x") == 1 and "List footer" in html


def test_uuencode_names_lose_control_characters_and_long_blanks_cost_nothing():
    raw = b"\r\n\r\nbegin 644 a\x1b[31m.txt\r\n#86)C\r\n`\r\nend\r\n"
    (part,) = parse_message(raw).attachments
    assert part.filename == "a_[31m.txt" and part.data == b"abc"
    started = time.perf_counter()
    parse_message(b"\r\n\r\nbegin 644 " + b" " * 200_000 + b"x\r\nend\r\n")
    assert time.perf_counter() - started < 2


def test_a_utf_8_name_cut_in_the_middle_of_a_letter_keeps_the_rest():
    name = "отчёт чт".encode()[:-1]  # mailers cut long names at a byte count
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b'Content-Disposition: attachment; filename="' + name + b'"\r\n\r\nx\r\n--b--\r\n'
    )
    (part,) = parse_message(raw).attachments
    assert part.filename == "отчёт ч\ufffd"


def test_defects_are_listed_once_and_at_most_a_hundred():
    raw = b"Subject: " + b" ".join(b"=?x-bad%d?q?a?=" % i for i in range(500)) + b"\r\n\r\nx"
    defects = parse_message(raw).defects
    assert len(defects) == MAX_DEFECTS + 1
    assert defects[-1] == f"more than {MAX_DEFECTS} defects; the rest are not listed"


def test_an_rtf_body_larger_than_the_limit_is_left_out():
    from mxsmtp_web.mail.tnef import MAX_RTF_BYTES

    stream = struct.pack("<II", 16, MAX_RTF_BYTES + 1) + b"LZFu" + b"\x00" * 8
    props = tnef_record(
        LEVEL_MESSAGE, ATT_MSG_PROPS, mapi_props(PT_BINARY, PR_RTF_COMPRESSED, stream)
    )
    mail = parse_message(winmail_mail(build_tnef(extra=(props,))))
    assert any("RTF body is larger than" in defect for defect in mail.defects)
