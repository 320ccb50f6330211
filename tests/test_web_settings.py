"""The settings page through the test client: one form for every setting, checked like the CLI
checks them; the listener's state with Stop and Start; a test message over real SMTP."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import Mailbox, csrf_token, free_port, wait_for
from mxsmtp_web.store import settings
from mxsmtp_web.web import compose
from mxsmtp_web.web.settings_page import GROUPS

HOOKS = """
def check_sender(sender, session):
    return True


def check_recipient(recipient, sender, session):
    if recipient.startswith("nobody@"):
        return "550 5.1.1 No such mailbox here"
    return True


def _private():
    return None
"""


def current(app: Flask) -> settings.Settings:
    with app.app_context():
        return settings.load()


def form_data(client: FlaskClient, app: Flask, **changes: str | bool) -> dict[str, Any]:
    """The settings form as a browser submits it: every field, checkboxes only when ticked."""
    data: dict[str, Any] = {"csrf_token": csrf_token(client, "/settings/")}
    values: dict[str, Any] = {key: getattr(current(app), key) for key in settings.SPECS}
    values.update(changes)
    for key, value in values.items():
        if value is True:
            data[key] = "y"
        elif value is not False:
            data[key] = settings.to_text(value)
    return data


def error_next_to(page: str, key: str) -> str:
    """The error shown in the form group of the input of `key` (empty when there is none)."""
    group = page[page.index(f'id="{key}"') :]
    group = group[: group.index('<div class="form-group">')] if "form-group" in group else group
    match = re.search(r'<div class="invalid-feedback d-block">([^<]*)</div>', group)
    return match.group(1) if match else ""


# --- access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/settings/"])
def test_logged_out_users_are_sent_to_login(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.location


@pytest.mark.parametrize("path", ["/settings/", "/settings/listener", "/settings/test-message"])
def test_viewers_get_403(viewer_client: FlaskClient, path: str) -> None:
    token = csrf_token(viewer_client, "/account/password")
    assert viewer_client.get("/settings/").status_code == 403
    response = viewer_client.post(path, data={"csrf_token": token, "action": "stop"})
    assert response.status_code == 403


def test_viewers_do_not_see_settings_in_the_menu(viewer_client: FlaskClient) -> None:
    assert 'href="/settings/"' not in viewer_client.get("/").get_data(as_text=True)


def test_a_post_without_csrf_token_is_refused(app: Flask, admin_client: FlaskClient) -> None:
    data = form_data(admin_client, app, port="2626")
    del data["csrf_token"]
    assert admin_client.post("/settings/", data=data).status_code == 400
    assert admin_client.post("/settings/listener", data={"action": "stop"}).status_code == 400
    assert current(app).port != 2626 and current(app).listener_enabled


# --- the form --------------------------------------------------------------------------------


def test_every_setting_has_a_labelled_field_in_a_group(admin_client: FlaskClient) -> None:
    page = admin_client.get("/settings/").get_data(as_text=True)
    grouped = [key for _, _, keys in GROUPS for key in keys]
    assert sorted(grouped) == sorted(settings.SPECS)
    for key in settings.SPECS:
        assert re.search(rf'<label[^>]* for="{key}"', page), key
        assert f'id="{key}"' in page, key
    for title in ("Listener", "Limits", "Hooks", "HTML filter", "Retention"):
        assert f">{title}</legend>" in page
    assert "double-bounce@their.host" in page  # what a double-bounce address is
    assert "Text only: every tag is removed" in page  # what the strict level keeps


def test_host_name_shows_the_effective_value(app: Flask, admin_client: FlaskClient) -> None:
    with app.app_context():
        settings.save({"host_name": ""})
        fqdn = settings.machine_fqdn()
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert f"Empty means this machine&#39;s name: {fqdn}." in page


def test_saving_valid_values_changes_the_settings(app: Flask, admin_client: FlaskClient) -> None:
    data = form_data(
        admin_client,
        app,
        port="2626",
        max_recipients="7",
        xss_filter_level="strict",
        delete_after_process=True,
        double_bounce_address="double-bounce@mx.test.example",
    )
    response = admin_client.post("/settings/", data=data, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Saved: port, max_recipients, double_bounce_address" in page
    assert "The listener moves to 127.0.0.1:2626 within a second." in page
    saved = current(app)
    assert (saved.port, saved.max_recipients, saved.xss_filter_level) == (2626, 7, "strict")
    assert saved.delete_after_process and saved.double_bounce_address.startswith("double-bounce")


def test_unticking_a_checkbox_saves_false(app: Flask, admin_client: FlaskClient) -> None:
    data = form_data(admin_client, app, xss_filter=False)
    assert admin_client.post("/settings/", data=data).status_code == 302
    assert current(app).xss_filter is False


@pytest.mark.parametrize(
    ("key", "bad", "message"),
    [
        ("port", "70000", "Expects a whole number from 1 to 65535"),
        ("port", "twenty-five", "Expects a whole number from 1 to 65535"),
        ("listen_address", "not an address!", "Expects an IP address of this machine"),
        ("host_name", "bad_host name", "Expects a host name such as mail.example.com"),
        ("max_message_size", "12", "Expects a whole number from 1024"),
        ("max_recipients", "0", "Expects a whole number from 1 to 100000"),
        ("double_bounce_address", "nobody", "Expects an email address"),
        ("hook_timeout", "0", "Expects a number of seconds above 0"),
        ("retention_days", "-1", "Expects a whole number from 0 to 36500"),
        ("sender_hook", "no colon", "Expects SCRIPT.py:FUNCTION"),
        ("recipient_hook", "missing.py:check_recipient", "no such script"),
        ("message_hook", "hooks.py:not_there", "hooks.py does not define not_there"),
        ("message_hook", "../outside.py:f", "points outside"),
        ("sender_hook", "http://app example.com/", "an http:// or https:// URL"),
        ("message_hook", "https://app.example.com:99999/", "a port that is not a number"),
    ],
)
def test_a_bad_value_shows_its_message_next_to_its_field_and_saves_nothing(
    app: Flask, admin_client: FlaskClient, key: str, bad: str, message: str
) -> None:
    (Path(app.config["HOOKS_DIR"]) / "hooks.py").write_text(HOOKS)
    before = current(app)
    data = form_data(admin_client, app, **{key: bad, "max_recipients": "7"})
    if key == "max_recipients":
        data["max_recipients"] = bad
    response = admin_client.post("/settings/", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in error_next_to(page, key)
    assert "Nothing was saved" in page
    assert current(app) == before


def test_an_unknown_filter_level_is_refused(app: Flask, admin_client: FlaskClient) -> None:
    data = form_data(admin_client, app, xss_filter_level="paranoid")
    page = admin_client.post("/settings/", data=data).get_data(as_text=True)
    assert error_next_to(page, "xss_filter_level")
    assert current(app).xss_filter_level == "standard"


def test_hook_fields_offer_the_scripts_and_functions_of_the_hooks_folder(
    app: Flask, admin_client: FlaskClient
) -> None:
    hooks_dir = Path(app.config["HOOKS_DIR"])
    (hooks_dir / "hooks.py").write_text(HOOKS)
    (hooks_dir / "team").mkdir()
    (hooks_dir / "team" / "tickets.py").write_text("def process_message(message):\n    return 1\n")
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert 'list="hook-choices"' in page
    datalist = page[page.index('<datalist id="hook-choices">') :]
    datalist = datalist[: datalist.index("</datalist>")]
    for choice in ("hooks.py:check_sender", "hooks.py:check_recipient", "team/tickets.py:"):
        assert f'<option value="{choice}' in datalist
    assert "_private" not in datalist


def test_a_chosen_hook_and_a_typed_absolute_path_are_saved(
    app: Flask, admin_client: FlaskClient, tmp_path: Path
) -> None:
    (Path(app.config["HOOKS_DIR"]) / "hooks.py").write_text(HOOKS)
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("def process_message(message):\n    return True\n")
    data = form_data(
        admin_client,
        app,
        recipient_hook="hooks.py:check_recipient",
        message_hook=f"{elsewhere}:process_message",
    )
    assert admin_client.post("/settings/", data=data).status_code == 302
    saved = current(app)
    assert saved.recipient_hook == "hooks.py:check_recipient"
    assert saved.message_hook == f"{elsewhere}:process_message"


def test_a_url_is_saved_as_an_http_hook_without_calling_it(
    app: Flask, admin_client: FlaskClient
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/message"  # nothing listens there
    data = form_data(admin_client, app, message_hook=url)
    assert admin_client.post("/settings/", data=data).status_code == 302
    assert current(app).message_hook == url
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert "Warning: the saved hook does not work now" not in page


# --- the listener ----------------------------------------------------------------------------


def test_without_a_listener_the_page_says_so(admin_client: FlaskClient) -> None:
    assert "No listener is running" in admin_client.get("/settings/").get_data(as_text=True)


def test_stop_and_start_flip_listener_enabled_and_the_state_follows(
    app: Flask, admin_client: FlaskClient, mailbox: Mailbox
) -> None:
    port = mailbox.port
    assert f"listening on 127.0.0.1:{port}" in admin_client.get("/settings/").get_data(as_text=True)

    def page() -> str:
        return admin_client.get("/settings/").get_data(as_text=True)

    token = csrf_token(admin_client, "/settings/")
    response = admin_client.post("/settings/listener", data={"csrf_token": token, "action": "stop"})
    assert response.status_code == 302 and current(app).listener_enabled is False
    wait_for(lambda: "stopped: listener_enabled is off" in page(), what="the stopped state")

    response = admin_client.post(
        "/settings/listener", data={"csrf_token": token, "action": "start"}
    )
    assert response.status_code == 302 and current(app).listener_enabled is True
    wait_for(lambda: f"listening on 127.0.0.1:{port}" in page(), what="listening again")


def test_a_port_in_use_is_shown_in_words(
    app: Flask, admin_client: FlaskClient, mailbox: Mailbox
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        mailbox.configure(port=busy)
        wait_for(
            lambda: "the port is in use" in admin_client.get("/settings/").get_data(as_text=True),
            what="the bind error on the page",
        )


# --- the test message ------------------------------------------------------------------------


def send_test(client: FlaskClient, **fields: Any) -> str:
    data = {
        "test-csrf_token": csrf_token(client, "/settings/"),
        "test-mail_from": "alice@sender.example",
        "test-rcpt_to": "bob@example.com",
        "test-subject": "Trying the hooks",
        "test-body": "Hello from the settings page.",
        **{f"test-{key}": value for key, value in fields.items()},
    }
    response = client.post("/settings/test-message", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_test_message_is_accepted_stored_and_linked(
    admin_client: FlaskClient, mailbox: Mailbox
) -> None:
    attachment = (io.BytesIO(b"\x00\x01 r\xc3\xa9sum\xc3\xa9"), "résumé 1.bin")
    page = send_test(admin_client, attachment=attachment)
    assert "Accepted." in page
    [stored] = mailbox.messages()
    assert f'href="/inbox/message/{stored.id}"' in page
    assert stored.subject == "Trying the hooks"
    assert [a.filename for a in stored.attachments] == ["résumé 1.bin"]
    assert "Hello from the settings page." in (mailbox.message(stored.id).text or "")


def test_a_test_message_refused_by_the_recipient_hook_shows_the_reply(
    admin_client: FlaskClient, mailbox: Mailbox
) -> None:
    mailbox.write_hook("hooks.py", HOOKS)
    mailbox.configure(recipient_hook="hooks.py:check_recipient")
    page = send_test(admin_client, rcpt_to="nobody@example.com")
    assert "Refused." in page
    assert "RCPT TO nobody@example.com: <code>550 5.1.1 No such mailbox here</code>" in page
    assert mailbox.messages() == []


def test_one_refused_recipient_keeps_the_others(
    admin_client: FlaskClient, mailbox: Mailbox
) -> None:
    mailbox.write_hook("hooks.py", HOOKS)
    mailbox.configure(recipient_hook="hooks.py:check_recipient")
    page = send_test(admin_client, rcpt_to="nobody@example.com, bob@example.com")
    assert "Accepted." in page and "550 5.1.1 No such mailbox here" in page
    assert [m.rcpt_tos for m in mailbox.messages()] == [("bob@example.com",)]


def test_a_test_message_without_listener_says_it_is_not_running(
    app: Flask, admin_client: FlaskClient
) -> None:
    port = free_port()
    with app.app_context():
        settings.save({"port": str(port)})
    page = send_test(admin_client)
    assert f"the listener is not running on 127.0.0.1:{port}" in page


def test_the_test_message_form_needs_a_recipient(admin_client: FlaskClient) -> None:
    page = send_test(admin_client, rcpt_to=" , ")
    assert "Give at least one address." in page


@pytest.mark.parametrize(
    ("listen_address", "host"),
    [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("127.0.0.2", "127.0.0.2")],
)
def test_a_wildcard_listener_is_reached_on_loopback(listen_address: str, host: str) -> None:
    assert compose.listener_host(listen_address) == host


def test_a_saved_hook_whose_script_is_gone_is_flagged_but_does_not_block_saving(
    app: Flask, admin_client: FlaskClient
) -> None:
    script = Path(app.config["HOOKS_DIR"]) / "hooks.py"
    script.write_text(HOOKS)
    with app.app_context():
        settings.save({"sender_hook": "hooks.py:check_sender"})
    script.unlink()
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert "Warning: the saved hook does not work now: no such script" in page
    data = form_data(admin_client, app, max_recipients="9")
    assert admin_client.post("/settings/", data=data).status_code == 302
    assert current(app).max_recipients == 9
