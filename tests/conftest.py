"""Fixtures: a real instance folder on disk, a real database (every test that stores runs
twice: on an SQLite file and on a throwaway PostgreSQL cluster), a real listener on a free
loopback port, and smtplib as the client. Nothing of ours is mocked.

`MXSMTP_TEST_DATABASE_URL` names a PostgreSQL server to use instead of a throwaway cluster
(a superuser's URL: each test gets a database of its own there)."""

from __future__ import annotations

import itertools
import os
import queue
import re
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mxsmtp_web import create_app
from mxsmtp_web.smtp.listener import Listener
from mxsmtp_web.store import accounts, database, storage
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store.extensions import db
from pgcluster import Cluster, start_cluster

DATA = Path(__file__).parent / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    """Whether an SMTP server on the loopback `port` greets and answers NOOP."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


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


# --- the two engines ----------------------------------------------------------------------

ENGINES = ("sqlite", "postgresql")
TEST_URL_ENV = "MXSMTP_TEST_DATABASE_URL"
TEMPLATE = "mxsmtp_template"


class PostgresServer:
    """One server for the whole run; a database per test, copied from a migrated template."""

    def __init__(self, base_url: str, cluster: Cluster | None) -> None:
        self.base = make_url(base_url).set(drivername="postgresql+psycopg")
        self.cluster = cluster
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")
        self._names = itertools.count()
        self._prefix = f"t{os.getpid()}_"
        self._doomed: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dropper: threading.Thread | None = None
        self._make_template()

    def url_of(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def _make_template(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        self._execute(f"CREATE DATABASE {TEMPLATE}")
        url = make_url(self.url_of(TEMPLATE))
        engine = create_engine(url)
        database.prepare(engine, url)
        engine.dispose()

    def create(self) -> str:
        name = f"{self._prefix}{next(self._names)}"
        self._execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def drop(self, name: str) -> None:
        """Dropped behind the tests' back: a DROP DATABASE waits for a checkpoint."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_all, daemon=True)
            self._dropper.start()
        self._doomed.put(name)

    def drop_now(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _drop_all(self) -> None:
        while (name := self._doomed.get()) is not None:
            self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _execute(self, statement: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(statement))

    def close(self) -> None:
        if self._dropper is not None:
            self._doomed.put(None)
            self._dropper.join(timeout=60)
        self.admin.dispose()
        if self.cluster is not None:
            self.cluster.stop()


_postgres: PostgresServer | None = None
_postgres_missing: str | None = None


def postgres_server() -> PostgresServer | None:
    """The run's PostgreSQL server, started on first use; None (with the reason kept for the
    summary) where there is none to be had."""
    global _postgres, _postgres_missing
    if _postgres is None and _postgres_missing is None:
        given = os.environ.get(TEST_URL_ENV)
        try:
            if given:
                _postgres = PostgresServer(given, None)
            else:
                cluster = start_cluster()
                _postgres = PostgresServer(cluster.url, cluster)
        except Exception as error:  # no PostgreSQL here: run on SQLite, say so at the end
            _postgres_missing = f"{type(error).__name__}: {error}".splitlines()[0]
    return _postgres


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _postgres is not None:
        _postgres.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _postgres_missing is not None:
        terminalreporter.write_line(
            f"PostgreSQL SKIPPED: every database test ran on SQLite only ({_postgres_missing})",
            red=True,
        )


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Which database the test's instance uses; tests marked `sqlite_only` (they read the
    SQLite file itself) run once."""
    if request.param == "postgresql":
        marker = request.node.get_closest_marker("sqlite_only")
        if marker is not None:
            pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'reads the file'}")
        if postgres_server() is None:
            pytest.skip(f"PostgreSQL is not available here: {_postgres_missing}")
    return request.param


@pytest.fixture
def database_url(engine: str) -> Iterator[str | None]:
    """The MXSMTP_DATABASE_URL of the test's instance; None for the instance's SQLite file."""
    if engine == "sqlite":
        yield None
        return
    server = postgres_server()
    assert server is not None
    name = server.create()
    yield server.url_of(name)
    server.drop(name)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None) -> Path:
    folder = tmp_path / "instance"
    monkeypatch.setenv("MXSMTP_INSTANCE", str(folder))
    if database_url is not None:
        monkeypatch.setenv(database.URL_SETTING, database_url)
    else:
        monkeypatch.delenv(database.URL_SETTING, raising=False)
    return folder


@pytest.fixture
def app(instance: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True})
    with app.app_context():
        settings_module.save({"port": str(free_port()), "host_name": "mx.test.example"})
    yield app
    with app.app_context():
        db.engine.dispose()


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

    def bodies_parsed(self) -> None:
        """The listener answers 250 once the raw bytes are stored and parses bodies right
        after: wait for that before looking at bodies or attachments."""

        def settled() -> bool:
            with self.app.app_context():
                return not storage.unparsed_messages(1)

        wait_for(settled, timeout=60, what="message bodies to be parsed")

    def messages(self) -> list[storage.MessageSummary]:
        self.bodies_parsed()
        with self.app.app_context():
            return storage.list_messages()

    def message(self, message_id: int) -> storage.StoredMessage:
        self.bodies_parsed()
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


def age_messages(app: Flask, days: float, *conditions: Any) -> None:
    """Make stored messages (all, or those matching `conditions`) `days` older, on any engine."""
    from datetime import timedelta

    from sqlalchemy import update

    from mxsmtp_web.store.models import Message, utcnow

    with app.app_context():
        db.session.execute(
            update(Message).where(*conditions).values(received_at=utcnow() - timedelta(days=days))
        )
        db.session.commit()


def simple_message(
    subject: str = "Hello", body: str = "Hi Bob.\r\n", message_id: str = "<m1@sender.example>"
) -> bytes:
    return (
        f"From: Alice <alice@sender.example>\r\nTo: Bob <bob@example.com>\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


# --- the web admin ---------------------------------------------------------------------------

CSRF_FIELD = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'type="hidden" name="csrf_token" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)
PASSWORD = "correct horse battery"


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token from a form on `path`, as a browser would send it back."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_FIELD.search(page)
    assert match, f"no csrf_token on {path}"
    return next(group for group in match.groups() if group)


def make_user(app: Flask, username: str, role: str) -> None:
    with app.app_context():
        accounts.create_user(username, PASSWORD, admin=role == "admin")


def log_in(client: FlaskClient, username: str, password: str = PASSWORD, **extra: Any) -> Any:
    token = csrf_token(client, "/login")
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, **extra}
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_client(app: Flask) -> FlaskClient:
    make_user(app, "root", "admin")
    client = app.test_client()
    assert log_in(client, "root").status_code == 302
    return client


@pytest.fixture
def viewer_client(app: Flask) -> FlaskClient:
    make_user(app, "reader", "viewer")
    client = app.test_client()
    assert log_in(client, "reader").status_code == 302
    return client


# --- a real browser --------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; the browser tests skip where it is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def live_server(mailbox: Mailbox) -> Iterator[str]:
    """The app on waitress, on a free loopback port, beside the listener of `mailbox`."""
    from waitress.server import create_server

    server = create_server(mailbox.app, host="127.0.0.1", port=0, threads=4)
    closing = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except OSError:  # closed from this thread while its loop was in select(): EBADF
            if not closing.is_set():
                raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    closing.set()
    server.close()
    thread.join(5)


@pytest.fixture
def page(browser: Any, live_server: str, app: Flask) -> Iterator[Any]:
    """A browser page logged in as an admin."""
    make_user(app, "boss", "admin")
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(live_server + "/login")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server + "/")
    yield page
    context.close()
