"""Settings: defaults, validation that names the key and what it accepts, nothing half-saved."""

from __future__ import annotations

import pytest
from flask import Flask

from mxsmtp_web import create_app
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.settings import SettingError


@pytest.fixture
def fresh_app(instance: object) -> Flask:
    return create_app({"TESTING": True})


def test_defaults(fresh_app: Flask) -> None:
    with fresh_app.app_context():
        values = settings_module.as_dict(settings_module.load())
    assert values["port"] == 25000
    assert values["listen_address"] == "127.0.0.1"
    assert values["max_message_size"] == 10485760
    assert values["double_bounce_address"] == ""
    assert values["delete_after_process"] is False
    assert values["xss_filter"] is True
    assert values["xss_filter_level"] == "standard"
    assert values["sender_hook"] == values["recipient_hook"] == values["message_hook"] == ""
    assert values["hook_timeout"] == 10
    assert values["host_name"]  # the machine's FQDN


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("port", "seventy", "a whole number from 1 to 65535"),
        ("port", "70000", "a whole number from 1 to 65535"),
        ("listen_address", "not an address!", "an IP address"),
        ("max_message_size", "-5", "a whole number"),
        ("delete_after_process", "maybe", "true or false"),
        ("xss_filter_level", "paranoid", "strict, basic, standard, relaxed"),
        ("sender_hook", "hook.js", "SCRIPT.py:FUNCTION"),
        ("sender_hook", "ftp://app.example.com/hook", "an http:// or https:// URL"),
        ("message_hook", "https://user:pw@app.example.com/", "an http:// or https:// URL"),
        ("hook_timeout", "0", "above 0"),
        ("double_bounce_address", "nobody", "an email address"),
        ("no_such_key", "1", "no such setting"),
    ],
)
def test_bad_values_name_the_key_and_change_nothing(
    fresh_app: Flask, key: str, value: str, says: str
) -> None:
    with fresh_app.app_context():
        before = settings_module.load()
        with pytest.raises(SettingError) as error:
            settings_module.save({"port": "2600", key: value})
        assert str(error.value).startswith(f"{key}: ")
        assert says in str(error.value)
        assert settings_module.load() == before


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hooks/sender",
        "https://app.example.com/mxsmtp?token=abc",
        "HTTPS://app.example.com",
        "http://[::1]:9000/hook",
    ],
)
def test_a_hook_may_be_an_http_url(fresh_app: Flask, url: str) -> None:
    with fresh_app.app_context():
        assert settings_module.save({"recipient_hook": url}).recipient_hook == url


def test_save_bumps_the_revision_other_processes_poll(fresh_app: Flask) -> None:
    with fresh_app.app_context():
        first = settings_module.current_revision()
        saved = settings_module.save({"port": "2525", "delete_after_process": "yes"})
        assert settings_module.current_revision() == first + 1 == saved.revision
        assert (saved.port, saved.delete_after_process) == (2525, True)
