"""Fixtures: a real instance folder on disk, a real SQLite file, a real listener on a free
loopback port, and smtplib as the client. Nothing of ours is mocked."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from mxsmtp_web import create_app, storage
from mxsmtp_web import settings as settings_module
from mxsmtp_web.smtp.listener import Listener

DATA = Path(__file__).parent / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `condition()` is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "instance"
    monkeypatch.setenv("MXSMTP_INSTANCE", str(folder))
    return folder


@pytest.fixture
def app(instance: Path) -> Flask:
    app = create_app({"TESTING": True})
    with app.app_context():
        settings_module.save({"port": str(free_port()), "host_name": "mx.test.example"})
    return app


class Mailbox:
    """Test-side view of a running instance: change settings, write hooks, send, read."""

    def __init__(self, app: Flask, listener: Listener) -> None:
        self.app = app
        self.listener = listener

    @property
    def port(self) -> int:
        return self.settings().port

    def settings(self) -> settings_module.Settings:
        with self.app.app_context():
            return settings_module.load()

    def configure(self, **values: Any) -> None:
        with self.app.app_context():
            settings_module.save({key: settings_module.to_text(v) for key, v in values.items()})

    def write_hook(self, name: str, source: str) -> str:
        path = Path(self.app.config["HOOKS_DIR"]) / name
        path.write_text(source)
        return name

    def connect(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        client.ehlo("client.test.example")
        return client

    def send(
        self,
        message: bytes | str,
        sender: str = "alice@sender.example",
        recipients: tuple[str, ...] = ("bob@example.com",),
    ) -> dict:
        with self.connect() as client:
            return client.sendmail(sender, list(recipients), message)

    def messages(self) -> list[storage.MessageSummary]:
        with self.app.app_context():
            return storage.list_messages()

    def message(self, message_id: int) -> storage.StoredMessage:
        with self.app.app_context():
            stored = storage.get_message(message_id)
        assert stored is not None
        return stored

    def raw(self, message_id: int) -> bytes:
        with self.app.app_context():
            raw = storage.get_raw(message_id)
        assert raw is not None
        return raw

    def refusals(self) -> list[Any]:
        with self.app.app_context():
            return storage.list_refusals()


@pytest.fixture
def mailbox(app: Flask) -> Iterator[Mailbox]:
    listener = Listener(app)
    state = listener.start()
    assert state.running and state.error is None, state
    yield Mailbox(app, listener)
    listener.stop(grace=5)


def simple_message(
    subject: str = "Hello", body: str = "Hi Bob.\r\n", message_id: str = "<m1@sender.example>"
) -> bytes:
    return (
        f"From: Alice <alice@sender.example>\r\nTo: Bob <bob@example.com>\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()
