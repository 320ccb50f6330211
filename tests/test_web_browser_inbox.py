"""The inbox and the message page in a real headless Chromium: a mail sent over SMTP shows up,
its preview renders with its inline picture, nothing in it runs, and attachments download
byte-exact under their names."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from conftest import Mailbox

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
BLOB = bytes(range(256)) * 64 + b"\r\n\x00end"
ATTACHMENT_NAME = "Quarterly résumé 2024.pdf"
EVIL_HTML = (
    "<p id='greeting'>Nothing to see</p>"
    "<script>window.parent.pwned=1;window.pwned=1</script>"
    '<img src=x onerror="window.parent.pwned=1;window.pwned=1">'
)


def newsletter() -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@sender.example>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Browser newsletter"
    message.set_content("The text version.")
    message.add_alternative(
        '<h1>Hello from the newsletter</h1><img alt="logo" src="cid:logo@mx" '
        'width="40" height="40"><img alt="pixel" src="https://tracker.invalid/p.gif">',
        subtype="html",
    )
    message.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@mx>")
    message.add_attachment(BLOB, maintype="application", subtype="pdf", filename=ATTACHMENT_NAME)
    return message.as_bytes()


def open_message(page: Any, live_server: str, subject: str) -> None:
    page.goto(live_server + "/inbox/")
    page.get_by_role("link", name=subject).click()
    page.wait_for_url(re.compile(r"/inbox/message/\d+$"))


def preview_frame(page: Any) -> Any:
    page.wait_for_load_state("load")
    return next(frame for frame in page.frames if "/preview" in frame.url)


def test_sent_mail_appears_renders_and_downloads(
    page: Any, live_server: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    mailbox.send(newsletter())
    open_message(page, live_server, "Browser newsletter")
    frame_element = page.locator("#preview-frame")
    assert frame_element.get_attribute("sandbox") == ""
    title = page.frame_locator("#preview-frame").locator("h1")
    title.wait_for()
    assert title.inner_text() == "Hello from the newsletter"
    frame = preview_frame(page)
    assert frame.evaluate("document.images[0].naturalWidth") == 1  # cid: picture
    assert frame.evaluate("document.images[1].naturalWidth") == 0  # blocked
    screenshot = tmp_path / "preview.png"
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.stat().st_size > 0

    with page.expect_download() as download:
        page.get_by_role("link", name=ATTACHMENT_NAME).click()
    assert download.value.suggested_filename == ATTACHMENT_NAME
    assert Path(download.value.path()).read_bytes() == BLOB

    page.get_by_role("link", name="Plain text").click()
    assert "The text version." in page.locator(".message-tab").inner_text()


def test_scripts_in_a_mail_do_not_run_with_the_filter_off(
    page: Any, live_server: str, mailbox: Mailbox
) -> None:
    mailbox.configure(xss_filter=False)
    message = EmailMessage()
    message["Subject"] = "Unfiltered"
    message.set_content(EVIL_HTML, subtype="html")
    mailbox.send(message.as_bytes())
    (summary,) = mailbox.messages()
    assert "<script>" in mailbox.message(summary.id).html  # stored raw, as configured
    open_message(page, live_server, "Unfiltered")
    page.frame_locator("#preview-frame").locator("#greeting").wait_for()
    assert page.locator("#preview-frame").get_attribute("sandbox") == ""
    assert page.evaluate("window.pwned") is None
    frame = preview_frame(page)
    assert frame.evaluate("window.pwned") is None
    assert frame.evaluate("document.querySelector('img').complete")  # the onerror had its chance
    page.get_by_role("link", name="Load remote content").click()
    page.frame_locator("#preview-frame").locator("#greeting").wait_for()
    assert page.evaluate("window.pwned") is None
    assert preview_frame(page).evaluate("window.pwned") is None
