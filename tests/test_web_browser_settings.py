"""The settings and purge pages in a real headless Chromium, against the app on waitress and a
real listener: what an admin does, checked where it matters (the port, the database)."""

from __future__ import annotations

import smtplib
from typing import Any

from flask import Flask

from conftest import Mailbox, age_messages, free_port, simple_message, wait_for


def answers_on(port: int) -> bool:
    """True when an SMTP server greets and answers NOOP on 127.0.0.1:`port`."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def test_changing_the_port_moves_the_listener(
    page: Any, live_server: str, mailbox: Mailbox
) -> None:
    from playwright.sync_api import expect

    old_port, new_port = mailbox.port, free_port()
    page.goto(live_server + "/settings/")
    expect(page.locator(".listener-state").first).to_contain_text(
        f"listening on 127.0.0.1:{old_port}"
    )
    page.get_by_label("Port", exact=True).fill(str(new_port))
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".alert-success")).to_contain_text(f"moves to 127.0.0.1:{new_port}")
    wait_for(lambda: answers_on(new_port), what=f"the listener on port {new_port}")
    wait_for(lambda: not answers_on(old_port), what=f"port {old_port} to close")
    page.reload()
    expect(page.locator(".listener-state").first).to_contain_text(
        f"listening on 127.0.0.1:{new_port}"
    )


def test_a_bad_value_shows_its_error_next_to_the_field(
    page: Any, live_server: str, mailbox: Mailbox
) -> None:
    from playwright.sync_api import expect

    page.goto(live_server + "/settings/")
    port = page.get_by_label("Port", exact=True)
    port.fill("70000")
    page.get_by_role("button", name="Save settings").click()
    expect(port).to_have_class("form-control is-invalid")
    expect(page.locator("#port + .invalid-feedback")).to_contain_text(
        "Expects a whole number from 1 to 65535"
    )
    assert mailbox.settings().port != 70000 and answers_on(mailbox.port)


def test_purge_removes_old_mails_and_keeps_new_ones(
    page: Any, live_server: str, mailbox: Mailbox, app: Flask
) -> None:
    from playwright.sync_api import expect

    mailbox.send(simple_message(subject="Old", message_id="<old@sender.example>"))
    age_messages(app, 10)
    mailbox.send(simple_message(subject="New", message_id="<new@sender.example>"))

    page.goto(live_server + "/purge/")
    page.get_by_label("Older than (days)").fill("7")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#purge-preview .purge-count")).to_have_text("1")
    page.get_by_role("button", name="Delete 1 message(s)").click()
    expect(page.locator("#purge-report .purge-count")).to_have_text("1")
    assert [m.subject for m in mailbox.messages()] == ["New"]
