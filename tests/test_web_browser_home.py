"""In a real Chromium: the start page shows the live listener and the chart; an admin creates
a viewer on the Users page, who then sees no admin menus; the pages fit a phone's width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from playwright.sync_api import expect

from conftest import Mailbox, simple_message, wait_for
from mxsmtp_web.store import status

PHONE = {"width": 390, "height": 844}
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth + 1"


def listening(app: Flask) -> bool:
    with app.app_context():
        return any(report.listening for report in status.reports())


def test_start_page_shows_listener_and_chart(
    page: Any, live_server: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    wait_for(lambda: listening(mailbox.app), what="the listener's report")
    mailbox.send(simple_message())
    page.goto(live_server + "/")
    expect(page.locator("#listener-state")).to_contain_text(
        f"listening on 127.0.0.1:{mailbox.port}"
    )
    expect(page.locator("#received-today")).to_have_text("1")
    chart = page.locator("#chart-day svg")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.accepted")).to_have_count(1)
    page.set_viewport_size(PHONE)
    page.screenshot(path=tmp_path / "status-phone.png", full_page=True)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)


def test_admin_creates_a_viewer_who_sees_no_admin_menus(
    page: Any, live_server: str, tmp_path: Path
) -> None:
    menu = page.locator("nav")
    menu.get_by_role("link", name="Users", exact=True).click()
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_label("Password", exact=True).fill("veras own secret")
    page.get_by_label("Repeat the password").fill("veras own secret")
    page.get_by_label("Ask for a new password at the first login").uncheck()
    page.get_by_role("button", name="Create user").click()
    expect(page.locator('tr[data-user="vera"]')).to_contain_text("viewer")

    page.set_viewport_size(PHONE)
    page.screenshot(path=tmp_path / "users-phone.png", full_page=True)
    assert page.evaluate(NO_SIDEWAYS_SCROLL)

    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Password").fill("veras own secret")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server + "/")
    expect(page.locator("nav")).to_contain_text("vera (viewer)")
    for entry in ("Users", "Settings"):
        expect(menu.get_by_role("link", name=entry, exact=True)).to_have_count(0)
    assert page.goto(live_server + "/users/").status == 403
