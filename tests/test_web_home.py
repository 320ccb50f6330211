"""The start page: who may see it, and that its numbers follow real mail through a real
listener."""

from __future__ import annotations

import re
import smtplib

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import Mailbox, simple_message
from mxsmtp_web.store.models import utcnow


def test_start_page_needs_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.location


@pytest.mark.parametrize("who", ["admin_client", "viewer_client"])
def test_both_roles_see_the_status(who: str, app: Flask, request: pytest.FixtureRequest) -> None:
    client: FlaskClient = request.getfixturevalue(who)  # `app` above: on both engines
    page = client.get("/").get_data(as_text=True)
    assert "SMTP listener" in page and "Stored mail" in page
    assert "No listener is running in any process" in page
    assert 'id="chart-day"' in page and 'id="chart-week"' in page


def test_listener_state_is_shown(mailbox: Mailbox, viewer_client: FlaskClient) -> None:
    page = viewer_client.get("/").get_data(as_text=True)
    assert f"listening on 127.0.0.1:{mailbox.port}" in page


def _count(page: str, element_id: str) -> int:
    match = re.search(rf'id="{element_id}">(\d+)<', page)
    assert match, element_id
    return int(match.group(1))


def _bar_title(page: str, chart: str, hour: str) -> str:
    section = page.split(f'id="{chart}"', 1)[1]
    match = re.search(rf'data-hour="{hour}">\s*<title>([^<]*)</title>', section)
    assert match, f"no bar for {hour} in {chart}"
    return match.group(1)


def test_counts_and_chart_follow_real_mail(mailbox: Mailbox, viewer_client: FlaskClient) -> None:
    mailbox.write_hook(
        "gate.py",
        "def check_sender(sender, session):\n    return not sender.startswith('spam@')\n",
    )
    mailbox.configure(sender_hook="gate.py:check_sender")
    mailbox.send(simple_message(message_id="<a@x>"))
    mailbox.send(simple_message(message_id="<b@x>"))
    with pytest.raises(smtplib.SMTPSenderRefused):
        mailbox.send(simple_message(message_id="<c@x>"), sender="spam@bad.example")
    hour = f"{utcnow():%Y-%m-%dT%H}"

    page = viewer_client.get("/").get_data(as_text=True)

    assert _count(page, "received-today") == 2
    assert _count(page, "received-total") == 2
    row = re.search(r'data-check="sender_hook">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r">(\d+)<", row) == ["1", "1"]
    for chart in ("chart-day", "chart-week"):
        assert _bar_title(page, chart, hour).endswith("UTC: 2 accepted, 1 refused")
    assert page.count('class="accepted"') == 2 and page.count('class="refused"') == 2


def test_the_last_hook_error_shows_its_traceback(
    mailbox: Mailbox, admin_client: FlaskClient
) -> None:
    mailbox.write_hook(
        "broken.py",
        "def process_message(message):\n    raise RuntimeError('ticket database is down')\n",
    )
    mailbox.configure(message_hook="broken.py:process_message")
    with pytest.raises(smtplib.SMTPDataError):
        mailbox.send(simple_message())

    page = admin_client.get("/").get_data(as_text=True)

    errors = page.split('id="hook-errors"', 1)[1]
    assert "message_hook" in errors
    assert "Traceback" in errors and "RuntimeError: ticket database is down" in errors
    assert "<details>" in errors


def test_quiet_instance_says_so(app: Flask, admin_client: FlaskClient) -> None:
    page = admin_client.get("/").get_data(as_text=True)
    assert "Nothing was refused in the last 7 days." in page
    assert "No hook has failed lately." in page
    assert _count(page, "received-total") == 0
