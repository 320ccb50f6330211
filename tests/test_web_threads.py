"""Conversations in the web admin: the inbox's kind filter, thread marks and thread view, and
the message page's reply text, kind, bounce facts and links, for mail received over SMTP."""

from __future__ import annotations

import html
import re

from flask.testing import FlaskClient

from conftest import DATA, Mailbox
from mxsmtp_web.replies import reply_address

REPLIES = DATA / "replies"


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sample(name: str) -> bytes:
    return crlf((REPLIES / name).read_bytes())


def mail(message_id: str, in_reply_to: str = "", body: str = "Text.\r\n") -> bytes:
    head = f"From: Ann <a@sender.example>\r\nTo: b@example.com\r\nMessage-ID: {message_id}\r\n"
    head += f"Subject: About {message_id.strip('<>')}\r\n"
    head += f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    return (head + "\r\n" + body).encode()


def listed_ids(client: FlaskClient, query: str = "") -> list[int]:
    page = client.get("/inbox/" + query)
    assert page.status_code == 200
    return [int(i) for i in re.findall(r'data-id="(\d+)"', page.get_data(as_text=True))]


def received_ids(mailbox: Mailbox) -> list[int]:
    return sorted(m.id for m in mailbox.messages())


def test_the_inbox_filters_by_kind(mailbox: Mailbox, admin_client: FlaskClient) -> None:
    address = reply_address("ticket:42")
    mailbox.send(sample("gmail_en.eml"), recipients=(address,))
    mailbox.send(sample("gmail_vacation.eml"))
    mailbox.send(sample("postfix_dsn.eml"), sender="")
    mailbox.send(sample("new_message.eml"))
    reply, auto, bounce, plain = received_ids(mailbox)
    assert listed_ids(admin_client, "?kind=reply") == [reply]
    assert listed_ids(admin_client, "?kind=auto_reply") == [auto]
    assert listed_ids(admin_client, "?kind=bounce") == [bounce]
    assert listed_ids(admin_client, "?kind=message") == [plain]
    assert listed_ids(admin_client, "?kind=") == [plain, bounce, auto, reply]
    assert listed_ids(admin_client, "?kind=nonsense") == []  # never "everything"
    page = admin_client.get("/inbox/").get_data(as_text=True)
    assert 'name="kind"' in page and "Auto-replies" in page
    assert "kind-bounce" in page and "kind-auto_reply" in page


def test_threads_are_marked_and_shown_oldest_first(
    mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    mailbox.send(mail("<a1@x>"))
    mailbox.send(mail("<b1@x>"))
    mailbox.send(mail("<a2@x>", in_reply_to="<a1@x>"))
    mailbox.send(mail("<a3@x>", in_reply_to="<a2@x>"))
    a1, b1, a2, a3 = received_ids(mailbox)
    page = admin_client.get("/inbox/").get_data(as_text=True)
    assert page.count(f'href="/inbox/?thread={a1}"') == 3  # one mark per message of the thread
    assert "thread · 3" in page
    assert f"?thread={b1}" not in page  # a lone message has no mark
    assert listed_ids(admin_client, f"?thread={a1}") == [a1, a2, a3]
    assert listed_ids(admin_client, f"?thread={a1}&order=desc") == [a3, a2, a1]
    assert listed_ids(admin_client, f"?thread={a1}&q=a2") == [a2]
    thread_page = admin_client.get(f"/inbox/?thread={a1}").get_data(as_text=True)
    assert "Showing one conversation" in thread_page
    assert '<a href="/inbox/?kind=reply">Show all messages</a>' in admin_client.get(
        f"/inbox/?thread={a1}&kind=reply"
    ).get_data(as_text=True)
    assert listed_ids(admin_client, "?thread=0") == []


def test_the_message_page_shows_the_reply_first_with_the_quote_folded(
    mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    mailbox.send(mail("<q1@x>"))
    address = reply_address("ticket:42")
    body = (
        "Tuesday suits me.\r\n\r\n"
        "On Mon, 6 Jan 2025 at 10:15, Ann <a@sender.example> wrote:\r\n"
        "> Shall we meet on Tuesday?\r\n"
    )
    mailbox.send(mail("<q2@x>", in_reply_to="<q1@x>", body=body), recipients=(address,))
    first, reply = received_ids(mailbox)
    page = html.unescape(admin_client.get(f"/inbox/message/{reply}").get_data(as_text=True))
    shown_reply = page.index('id="reply-text"')
    assert page.index("Tuesday suits me.", shown_reply) < page.index("Show quoted text")
    folded = page[page.index('<details class="mt-2" id="quoted-text">') :]
    assert "> Shall we meet on Tuesday?" in folded.split("</details>")[0]
    assert page.index('id="reply-text"') < page.index('id="message-tabs"')
    assert '<td id="message-kind">reply</td>' in page
    assert '<code id="reply-ref">ticket:42</code>' in page
    assert f'href="/inbox/message/{first}"' in page
    assert f'href="/inbox/?thread={first}"' in page and "(2 messages)" in page
    parent_page = admin_client.get(f"/inbox/message/{first}").get_data(as_text=True)
    assert 'id="reply-text"' not in parent_page  # not a reply: no reply section
    assert f'href="/inbox/?thread={first}"' in parent_page


def test_the_message_page_shows_bounce_facts(mailbox: Mailbox, admin_client: FlaskClient) -> None:
    mailbox.send(sample("postfix_dsn.eml"), sender="")
    [bounce] = received_ids(mailbox)
    stored = mailbox.message(bounce)
    assert stored.summary.bounce is not None
    page = html.unescape(admin_client.get(f"/inbox/message/{bounce}").get_data(as_text=True))
    facts = page[page.index('id="bounce-facts"') :].split("</td>")[0]
    assert stored.summary.bounce.recipient in facts
    assert stored.summary.bounce.status in facts
    assert '<td id="message-kind">bounce</td>' in page


def test_a_reply_that_quotes_everything_says_so(
    mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    body = "On Mon, 6 Jan 2025 at 10:15, Ann <a@sender.example> wrote:\r\n> Hello?\r\n"
    mailbox.send(mail("<e1@x>", in_reply_to="<gone@x>", body=body))
    [reply] = received_ids(mailbox)
    page = admin_client.get(f"/inbox/message/{reply}").get_data(as_text=True)
    assert "Nothing new: the whole message is quoted." in page
