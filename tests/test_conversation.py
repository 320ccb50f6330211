"""Conversation facts from real-shaped mail: the kind, the new text of a reply, the parents.

The samples under tests/data/replies/ follow what each client sends: Gmail, Outlook desktop
and web, Apple Mail, Thunderbird, Mutt, iPhone and Android, in English, German, French, Spanish,
Dutch, Russian, Italian, Portuguese, Polish, Swedish, Japanese and Chinese, answered on top,
below the quote (Thunderbird's default) or between quotes; an Exchange out-of-office, a Gmail
vacation responder, a Mailman digest, a Postfix and an Exchange DSN.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mxsmtp_web.mail.conversation import BounceInfo, classify, html_to_text, references, reply_text
from mxsmtp_web.mail.parsing import ParsedMail, parse_message

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
    # Answered below the quote, whose own quote has an attribution line ("> On ... wrote:").
    "thunderbird_bottom_post_en.eml": (
        "Thanks, that explains the 429s.\n\n"
        "Could you raise the limit to 100 requests per second for the nightly sync?"
    ),
    # Answered between the quotes: the greeting, then each answer; a wrapped quote line is
    # no answer.
    "interleaved_en.eml": (
        "Hi Sam,\n\nVersion 4.2.1 on Windows 11.\n\nNo, only in the desktop app.\n\n"
        "Attached: crash-2025-01-06.log"
    ),
    "thunderbird_ru.eml": "Спасибо, новый пароль подошёл.",  # "... пишет:"
    "gmail_ru.eml": "Курьер приехал, всё в порядке.",  # "пн, 6 янв. 2025 г. в 10:15, ... <...>:"
    "outlook_desktop_ru.eml": (  # "-----Исходное сообщение-----", "От:", "Отправлено:"
        "Добрый день!\n\nПодтверждаю участие двух сотрудников.\n\n"
        "Наталья Кузнецова\nООО «Фирма» | +7 495 000-00-00"
    ),
    "gmail_it.eml": "Perfetto, la fattura è arrivata. Grazie mille!",  # "Il giorno ..."
    "outlook_desktop_it.eml": "Buongiorno,\n\nconfermo il rinnovo per altri due anni.",
    "gmail_pt.eml": "Pode mudar para o plano anual, por favor.",  # "Em ...\nescreveu:"
    "thunderbird_pl.eml": "ul. Długa 5, 00-238 Warszawa.",  # "W dniu ... pisze:", below
    "outlook_desktop_pl.eml": "Dzień dobry,\n\nproszę o fakturę korygującą na 3 licencje.",
    "gmail_sv.eml": "Nu fungerar det igen!",  # "Den mån ... skrev ...:"
    "apple_mail_sv.eml": "Paketet kom fram i dag, tack.",  # "> 6 jan. 2025 kl. 10:15 skrev"
    "thunderbird_ja.eml": "ログインできました。ありがとうございます。",  # "... さんは書きました:"
    "gmail_zh.eml": "发票已经收到，谢谢！",  # "... 于2025年1月6日周一 10:15写道："
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


def test_mailman_digest_with_two_precedence_headers_is_an_auto_reply() -> None:
    parsed, raw = load("mailman_digest.eml")
    values = [value for key, value in parsed.headers if key.lower() == "precedence"]
    assert values == ["list", "bulk"]  # the first one alone says "message"
    kind = classify(parsed, raw)
    assert (kind.kind, kind.reason) == ("auto_reply", "Precedence: bulk")


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
        ("Subject: Hello\nPrecedence: list\nPrecedence: bulk", "auto_reply"),
        ("Subject: Hello\nPrecedence: list\nPrecedence: List", "message"),
        ("Subject: Hello\nAuto-Submitted: no\nAuto-Submitted: auto-generated", "auto_reply"),
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


def test_inline_answers_without_the_quotes() -> None:
    text = "> Which day?\nThursday.\n\n> Which time?\nNine.\n\n> Thanks\n> Support"
    assert reply_text(text, None) == "Thursday.\n\nNine."
    greeted = "Hi,\n\nOn Mon, 6 Jan 2025, Bob wrote:\n> Which day?\nThursday.\n> Why?\nBecause."
    assert reply_text(greeted, None) == "Hi,\n\nThursday.\n\nBecause."


def test_bottom_posted_answers_below_the_quote() -> None:
    assert reply_text("On Mon, 6 Jan 2025, Bob wrote:\n> Hi\nHello", None) == "Hello"
    unattributed = "> one\n> two\n>\n> three\n\nAgreed.\n\n-- \nJane"
    assert reply_text(unattributed, None) == "Agreed."
    wrapped = (
        "On Mon, 6 Jan 2025, Bob wrote:\n"
        "> Which day would suit you and your whole team best during the week\n"
        "of the holidays.\n"  # the client wrapped the quoted line: no answer
        "> See the plan (attached as\n<https://example.com/plans/holidays-2025.pdf>)\n"
        "> Bob\n\nthursday, if possible."
    )
    assert reply_text(wrapped, None) == "thursday, if possible."
    answered = "On Mon, 6 Jan 2025, Bob wrote:\n> Which day would suit you and your team best?\n"
    assert reply_text(answered + "thursday.\n> Bob", None) == "thursday."


@pytest.mark.parametrize(
    "text",
    [
        "Hello,\n\nno quote at all here.\nData: 2025-01-06, rows 10-20\nDo: run it again\n\nJane",
        "Run this:\n> npm install\nand then restart.\n\nJane",
        "Try:\n> cd build\n> make\nIt fails at link time.",
        ">>> import json\n>>> json.loads('[1]')\n[1]\n>>> json.loads('{}')\n{}\nWorks for me.",
        ">From the start it failed.\nNow it works.",
        "As Knuth wrote:\nPremature optimization is the root of all evil.",
        "Иван написал:\nвсё работает.",
        "Karin skrev:\ndet fungerar nu.",
        "Urlop:\nOd: 6.01.2025\nDo: 10.01.2025\n\nAnna",
    ],
)
def test_text_that_only_looks_like_history_stays(text: str) -> None:
    assert reply_text(text, None) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # a list footer below the quote of a top-posted reply
            "Sure, Thursday works.\n\nOn Mon, 6 Jan 2025, Bob <bob@example.org> wrote:\n"
            "> Does Thursday work?\n\n-- \nYou received this message because you are "
            'subscribed to the Google Groups "ops" group.',
            "Sure, Thursday works.",
        ),
        ("Sure.\n\n> a\n> b\n> c\n\n=========\nACME Corp | +1 555 0100", "Sure."),
        (  # the quote is in the signature of a top-posted reply
            "Fine by me.\n\n-- \nJane\n> one\n> two\n> three\nACME Corp",
            "Fine by me.",
        ),
        (  # old answers between quotes below an Outlook header: all history
            "Done.\n\nFrom: Bob <bob@example.org>\nSent: Monday, 6 January 2025 10:15\n"
            "To: Jane\nSubject: RE: Plan\n\nSee inline.\n> q1\n> q2\na1\n> q3\na2",
            "Done.",
        ),
        (
            "FYI, see below.\n\n---------- Forwarded message ---------\n"
            "From: Bob <bob@example.org>\nDate: Mon, 6 Jan 2025\nSubject: Plan\nTo: Jane\n\n"
            "Old text.\n> q1\n> q2\n> q3\nOld answer.",
            "FYI, see below.",
        ),
        ("Begin forwarded message:\n\nFrom: Bob <bob@example.org>\nSubject: Plan\n\nx", ""),
    ],
)
def test_top_posted_replies_and_forwards_keep_the_text_on_top(text: str, expected: str) -> None:
    assert reply_text(text, None) == expected


@pytest.mark.parametrize(
    "attribution",
    [
        "06.01.2025 10:15, Support Team пишет:",
        "6 янв. 2025 г., в 10:15, Support Team <support@example.com> написал(а):",
        '06.01.2025 14:20 пользователь "Support" <\nsupport@example.com> написал:',
        "пн, 6 янв. 2025 г. в 10:15, Support Team <support@example.com>:",
        "Il 06/01/2025 10:15, Support Team ha scritto:",
        "Em 06/01/2025 10:15, Support Team escreveu:",
        "Support Team <support@example.com> escreveu no dia segunda, 6/01/2025 à(s) 10:15:",
        "W dniu 6.01.2025 o 10:15, Support Team pisze:",
        "pon., 6 sty 2025 o 10:15 Support Team <support@example.com> napisał(a):",
        "Wiadomość napisana przez Support Team <support@example.com> w dniu 06.01.2025, "
        "o godz. 10:15:",
        "Den 2025-01-06 kl. 10:15, skrev Support Team:",
        "Support Team skrev:",
        "2025年1月6日(月) 10:15 Support Team <support@example.com>:",
        "2025/01/06 10:15、Support Team <support@example.com>のメール:",
        "Support Team さんは書きました:",
        "在 2025年1月6日，上午10:15，Support Team <support@example.com> 写道：",
        "Support Team <support@example.com> 於 2025年1月6日 週一 上午10:15寫道：",
        "--- On Mon, 1/6/25, Support Team <support@example.com> wrote:",
        "At 10:15 06.01.2025, Support Team wrote:",
        "Support Team <support@example.com> wrote:",
        "Quoting Support Team <support@example.com>:",
    ],
)
def test_attribution_lines_in_more_languages(attribution: str) -> None:
    assert reply_text(f"Answer.\n\n{attribution}\n> old text\n> more", None) == "Answer."
    bottom = f"{attribution}\n> old text\n\nAnswer.\n"
    assert reply_text(bottom, None) == "Answer."


@pytest.mark.parametrize(
    "header",
    [
        "-----Исходное сообщение-----\nОт: Support\nОтправлено: 6 января 2025 г.\nКому: Иван",
        "Od: Support <s@example.com>\nWysłano: 6 stycznia 2025\nDo: Anna\nTemat: Faktura",
        "De: Support <s@example.com>\nEnviado: segunda-feira\nPara: João\nAssunto: Plano",
        "差出人: Support <s@example.com>\n送信日時: 2025年1月6日 10:15\n宛先: 山田\n件名: 注文",
        "寄件者：Support <s@example.com>\n寄件日期：2025年1月6日 10:15\n收件者：王\n主旨：發票",
        "------------------ 原始邮件 ------------------\n发件人: Support\n发送时间: 2025年1月6日",
        "-----Ursprüngliche Nachricht-----\nVon: Support\nGesendet: Montag\nAn: Hans",
        "-------- Original message --------\nFrom: Support\nDate: 06/01/2025 10:15",
    ],
)
def test_history_headers_in_more_languages(header: str) -> None:
    assert reply_text(f"Answer.\n\n{header}\n\nOld text.", None) == "Answer."


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


def test_html_answers_below_a_leading_quote() -> None:
    html = (
        '<div class="moz-cite-prefix">On Mon, Bob wrote:</div><blockquote type="cite">'
        "<div>q1</div><blockquote>older</blockquote></blockquote><p>a1</p>"
        "<blockquote>q2</blockquote><p>a2</p>"
    )
    assert html_to_text(html) == "a1\n\na2"
    outlook = '<div id="divRplyFwdMsg">From: Bob</div><div>history</div>'
    assert html_to_text(outlook) == ""  # Outlook's history follows its mark, not inside


def test_hostile_bodies_stay_fast() -> None:
    lines = [
        "On " + "a " * 57 + ":\n",
        "Op " + "a " * 57 + "\nb:\n",
        "x" * 5000 + "\n",
        "Il " + "a " * 400 + "ha scritto\n",
        "Fredrik " + "a " * 40 + "skrev " + "b " * 400 + "\n",
        "2025年1月6日(月) 10:15 " + "a <b> " * 150 + "\n",
        "> a\nb\n",
        "x wrote:\n> y\n",
    ]
    for line in lines:
        body = line * (200_000 // len(line))
        started = time.perf_counter()
        reply_text(body, None)
        reply_text(None, f"<div>{body}</div>")
        assert time.perf_counter() - started < 5


def test_many_closing_lines_are_read_in_linear_time() -> None:
    started = time.perf_counter()
    assert reply_text("x\n" + "lg\n" * 16_000, None) is not None
    assert time.perf_counter() - started < 2  # was 6 s: the tail was counted for every line
