"""Conversation facts from real-shaped mail: the kind, the new text of a reply, the parents.

The samples under tests/data/replies/ follow what each client sends: Gmail, Outlook desktop
and web, Apple Mail, Thunderbird, iPhone and Android, in English, German, French, Spanish and
Dutch; an Exchange out-of-office, a Gmail vacation responder, a Postfix and an Exchange DSN.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxsmtp_web.conversation import BounceInfo, classify, html_to_text, references, reply_text
from mxsmtp_web.parsing import ParsedMail, parse_message

SAMPLES = Path(__file__).parent / "data" / "replies"

#: sample -> exactly what the sender wrote on top.
REPLIES = {
    "gmail_en.eml": (
        "Thanks, that fixed it!\n\n"
        "One more thing: the export button is still greyed out for CSV.\n\nJane"
    ),
    "gmail_de.eml": (
        "Hallo,\n\ndie Rechnung ist jetzt angekommen. Vielen Dank für die schnelle Hilfe!"
    ),
    "gmail_nl.eml": "Het werkt weer, bedankt!",
    "android_es.eml": "Perfecto, muchas gracias. Lo recibo mañana entonces.",
    "outlook_desktop_en.eml": (
        "Hi,\n\nPlease renew for 25 seats, same billing address as last year.\n"
        "- PO number: 4711\n- Contact: accounts@acme.example"
    ),
    "outlook_desktop_de.eml": "Guten Morgen,\n\ndanke, ich kann mich wieder anmelden.",
    "outlook_web_en.eml": "The new address is 12 High Street, Leeds LS1 4AP.",
    "outlook_web_fr.eml": "Bonjour,\n\nJe serai absente mardi, merci de livrer mercredi.",
    "outlook_web_es_html.eml": "Hola,\n\nPrefiero el plan anual & la factura en PDF.",
    "apple_mail_en.eml": "The backup ran fine last night.\nI will keep an eye on it.\n\nTom",
    "apple_mail_nl.eml": "Klopt, het bedrag is inmiddels overgemaakt.",
    "apple_mail_de_html.eml": "Passt, Donnerstag um 9 Uhr.\n\nJonas",
    "thunderbird_en.eml": "Could you raise the limit to 100 requests per second?",
    "thunderbird_de.eml": "Der Export ist vollständig, danke.",
    "iphone_en.eml": "Done, thanks",
    "iphone_fr.eml": "C'est noté, à jeudi 14 h.",
}


def load(name: str) -> tuple[ParsedMail, bytes]:
    raw = (SAMPLES / name).read_bytes()
    return parse_message(raw), raw


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_reply_text_of_each_client(name: str) -> None:
    parsed, raw = load(name)
    assert reply_text(parsed.text, parsed.html) == REPLIES[name]
    assert classify(parsed, raw).kind == "reply"


@pytest.mark.parametrize(
    "name", [n for n in sorted(REPLIES) if parse_message((SAMPLES / n).read_bytes()).html]
)
def test_html_part_alone_gives_the_same_text(name: str) -> None:
    parsed, _ = load(name)
    assert reply_text(None, parsed.html) == REPLIES[name]


def test_html_only_samples_have_no_text_part() -> None:
    for name in ("outlook_web_es_html.eml", "apple_mail_de_html.eml"):
        parsed, _ = load(name)
        assert parsed.text is None and parsed.html


def test_exchange_out_of_office_is_an_auto_reply() -> None:
    parsed, raw = load("exchange_out_of_office.eml")
    kind = classify(parsed, raw)
    assert (kind.kind, kind.bounce) == ("auto_reply", None)
    assert kind.reason == "Auto-Submitted: auto-generated"


def test_gmail_vacation_is_an_auto_reply_although_it_answers_a_message() -> None:
    parsed, raw = load("gmail_vacation.eml")
    assert parsed.in_reply_to == "<ticket-42-1@example.com>"
    assert classify(parsed, raw, reply_ref="ticket:42").kind == "auto_reply"


def test_postfix_dsn() -> None:
    parsed, raw = load("postfix_dsn.eml")
    kind = classify(parsed, raw)
    assert kind.kind == "bounce"
    assert kind.bounce == BounceInfo(
        recipient="nobody@example.org",
        status="5.1.1",
        diagnostic="550 5.1.1 <nobody@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
    )


def test_exchange_dsn() -> None:
    parsed, raw = load("exchange_dsn.eml")
    kind = classify(parsed, raw)
    assert kind.kind == "bounce"
    assert kind.bounce == BounceInfo(
        recipient="Bob@contoso.com",  # Original-Recipient: as the application wrote it
        status="5.1.10",
        diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
        "Recipient not found by SMTP address lookup",
    )


def test_first_contact_is_a_message() -> None:
    parsed, raw = load("new_message.eml")
    assert classify(parsed, raw).kind == "message"
    assert reply_text(parsed.text, parsed.html) == (
        "Hello, do you offer a discount for schools?\n\nMaria"
    )


def mail(headers: str, body: str = "Hello\n") -> tuple[ParsedMail, bytes]:
    raw = f"From: a@example.org\nTo: b@example.com\n{headers}\n\n{body}".encode()
    return parse_message(raw), raw


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ("Subject: Hello", "message"),
        ("Subject: Re: Hello", "reply"),
        ("Subject: AW: Hallo", "reply"),
        ("Subject: SV: Hej", "reply"),
        ("Subject: Antw: Hallo", "reply"),
        ("Subject: RE[2]: Hello", "reply"),
        ("Subject: Réf : Bonjour", "reply"),
        ("Subject: Fwd: Hello", "message"),
        ("Subject: Hello\nIn-Reply-To: <p@example.com>", "reply"),
        ("Subject: Hello\nReferences: <p@example.com>", "reply"),
        ("Subject: Hello\nAuto-Submitted: no", "message"),
        ("Subject: Re: Hello\nAuto-Submitted: auto-replied; owner-email=x@y", "auto_reply"),
        ("Subject: Re: Hello\nX-Autoreply: yes", "auto_reply"),
        ("Subject: Re: Hello\nX-Autorespond: Hello", "auto_reply"),
        ("Subject: Hello\nPrecedence: bulk", "auto_reply"),
        ("Subject: Hello\nPrecedence: junk", "auto_reply"),
        ("Subject: Re: Hello\nPrecedence: auto_reply", "auto_reply"),
        ("Subject: Hello\nPrecedence: list", "message"),
        ("Subject: Out of Office: Hello", "auto_reply"),
        ("Subject: Automatic reply: Hello", "auto_reply"),
        ("Subject: Abwesenheitsnotiz: Hallo", "auto_reply"),
        ("Subject: Automatische Antwort: Hallo", "auto_reply"),
        ("Subject: =?utf-8?q?R=C3=A9ponse_automatique_:_Bonjour?=", "auto_reply"),
        ("Subject: Absence: Bonjour", "auto_reply"),
        ("Subject: =?utf-8?q?Respuesta_autom=C3=A1tica:_Hola?=", "auto_reply"),
        ("Subject: Afwezigheidsmelding: Hallo", "auto_reply"),
        ("Subject: Automatisch antwoord: Hallo", "auto_reply"),
        ("Subject: Mail failure\nX-Failed-Recipients: gone@example.org", "bounce"),
    ],
)
def test_kind_from_headers(headers: str, kind: str) -> None:
    parsed, raw = mail(headers)
    assert classify(parsed, raw).kind == kind


def test_a_reply_ref_makes_a_reply() -> None:
    parsed, raw = mail("Subject: Hello")
    assert classify(parsed, raw, reply_ref="ticket:42").kind == "reply"


def test_exim_failed_recipients() -> None:
    parsed, raw = mail("Subject: Mail delivery failed\nX-Failed-Recipients: gone@example.org")
    assert classify(parsed, raw).bounce == BounceInfo("gone@example.org", None, None)


def test_report_without_status_part_is_still_a_bounce() -> None:
    parsed, raw = mail(
        "Subject: Bounce\nMIME-Version: 1.0\nContent-Type: multipart/report; "
        'report-type=delivery-status; boundary="b"',
        "--b\nContent-Type: text/plain\n\nIt failed.\n--b--\n",
    )
    kind = classify(parsed, raw)
    assert (kind.kind, kind.bounce) == ("bounce", BounceInfo(None, None, None))


def test_broken_mime_never_raises() -> None:
    raw = b"Content-Type: multipart/report; report-type=delivery-status\n\n\xff\xfe--"
    parsed = parse_message(raw)
    assert classify(parsed, raw).kind in ("bounce", "message")
    assert classify(parsed, b"").kind == "message"


def test_references_nearest_parent_first() -> None:
    parsed, _ = mail(
        "Subject: Re: Hello\nIn-Reply-To: <c@x>\nReferences: <a@x> <b@x>\n <c@x>",
    )
    assert references(parsed) == ["<c@x>", "<b@x>", "<a@x>"]
    assert references(mail("Subject: Hello")[0]) == []
    assert references(load("gmail_en.eml")[0]) == ["<ticket-42-1@example.com>"]


# --- reply_text on its own --------------------------------------------------------------


def test_no_body_is_none_and_all_quoted_is_empty() -> None:
    assert reply_text(None, None) is None
    assert reply_text("> all of it\n> quoted", None) == ""
    assert reply_text("", None) == ""


def test_a_thank_you_in_the_middle_is_not_a_signature() -> None:
    text = "Hi,\n\nThanks, the fix works.\nBut the export still fails.\n\nJane"
    assert reply_text(text, None) == text
    many = "Thanks!\n\nOne more question:\n" + "".join(f"- item {n}\n" for n in range(12))
    assert reply_text(many, None) == many.strip()


def test_signature_dashes_and_closings_are_cut() -> None:
    assert reply_text("Fine by me.\n\n-- \nJane Doe\nACME", None) == "Fine by me."
    assert reply_text("Fine by me.\n\nKind regards,\nJane", None) == "Fine by me."
    assert reply_text("Passt.\n\nLG\nJonas", None) == "Passt."


def test_inline_answers_stay_and_the_quoted_tail_goes() -> None:
    text = "> Which day?\nThursday.\n\n> Which time?\nNine.\n\n> Thanks\n> Support"
    assert reply_text(text, None) == "> Which day?\nThursday.\n\n> Which time?\nNine."


def test_wrapped_attribution_lines() -> None:
    text = (
        "Agreed.\n\nOn Tue, 7 Jan 2025 at 09:00, A Very Long Sender Name\n"
        "<a.very.long.sender.name@example.com> wrote:\n> earlier"
    )
    assert reply_text(text, None) == "Agreed."
    spanish = "Vale.\n\nEl mar, 7 ene 2025 a las 9:00, Ana (<ana@example.es>)\nescribió:\n> x"
    assert reply_text(spanish, None) == "Vale."


def test_html_to_text_drops_scripts_styles_and_quotes() -> None:
    html = (
        "<html><head><style>p{}</style><title>t</title></head><body>"
        "<p>One &amp; two</p><script>alert(1)</script><div>Three<br>Four</div>"
        "<blockquote>old</blockquote><p>after the quote</p></body></html>"
    )
    assert html_to_text(html) == "One & two\nThree\nFour"
    assert html_to_text("<pre>a\n  b</pre>") == "a\nb"  # line breaks kept, indents not
    assert html_to_text("<div><b>unclosed") == "unclosed"


def test_hostile_bodies_stay_fast() -> None:
    lines = ["On " + "a " * 57 + ":\n", "Op " + "a " * 57 + "\nb:\n", "x" * 5000 + "\n"]
    for line in lines:
        body = line * (200_000 // len(line))
        started = time.perf_counter()
        reply_text(body, None)
        reply_text(None, f"<div>{body}</div>")
        assert time.perf_counter() - started < 5
