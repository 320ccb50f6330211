"""Each role a process: `mxsmtp smtp` on its own address (`--listen`, MXSMTP_LISTEN), with or
without workers of its own (`--workers`), `mxsmtp worker` processes taking the queue, every
node on the status page, one retention purge per cluster, and a warning for a node whose
secret key differs from its database's other nodes."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.engine import make_url

from conftest import answers, free_port, postgres_server, simple_message, wait_for
from mxsmtp_web.smtp import listener as listener_module
from mxsmtp_web.smtp.listener import Listener
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store import status, storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Revision

MXSMTP = str(Path(sys.executable).parent / "mxsmtp")
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def node(
    *args: str,
    env: dict[str, str] | None = None,
    program: str = MXSMTP,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """An `mxsmtp` process as an admin starts one, its output in a file (a pipe nobody reads
    would fill); stopped (SIGTERM) at the end."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [program, *args] if program == MXSMTP else [program, *args[1:]],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        process.log = log  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def stopped_output(process: subprocess.Popen) -> str:
    """Everything the node printed, once it has stopped on SIGTERM."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    return log.read()


def send(port: int, count: int, prefix: str = "m") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for number in range(count):
            message = simple_message(
                subject=f"{prefix} {number}", message_id=f"<{prefix}-{number}@sender.example>"
            )
            assert client.sendmail("a@sender.example", ["b@example.com"], message) == {}


def waiting(app: Flask) -> int:
    with app.app_context():
        return len(storage.unparsed_messages())


def test_listen_option_and_environment_override_the_shared_port(app: Flask) -> None:
    own, other = free_port(), free_port()
    with node("smtp", "--listen", f"127.0.0.1:{own}"):
        wait_for(lambda: answers(own), timeout=30, what="the node on its --listen port")
        with app.app_context():
            assert not answers(settings_module.load().port)  # the shared port is not used
    with node("smtp", env={"MXSMTP_LISTEN": f"127.0.0.1:{other}"}):
        wait_for(lambda: answers(other), timeout=30, what="the node on its MXSMTP_LISTEN port")
    with app.app_context():
        shared = status.reports()
    assert all(report.port != own for report in shared)  # gone with its node


def test_a_bad_listen_value_is_one_line(app: Flask) -> None:
    for args, env in (
        (("smtp", "--listen", "nowhere"), None),
        (("smtp",), {"MXSMTP_LISTEN": "x:0"}),
    ):
        result = subprocess.run(
            [MXSMTP, *args],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: --listen / MXSMTP_LISTEN:") and "ADDRESS:PORT" in line


def test_workers_zero_leaves_bodies_to_a_separate_worker(app: Flask) -> None:
    port = free_port()
    with node("smtp", "--workers", "0", "--listen", f"127.0.0.1:{port}") as smtp:
        wait_for(lambda: answers(port), timeout=30, what="the listener")
        send(port, 5)
        assert smtp.poll() is None
        assert waiting(app) == 5  # received and committed, not parsed: no worker runs
        with node("worker") as worker:
            wait_for(lambda: waiting(app) == 0, timeout=30, what="the worker to parse them")
            output = stopped_output(worker)
    assert "5 message(s)" in output, output
    with app.app_context():
        stored = storage.get_message(storage.list_messages()[0].id)
    assert stored is not None and stored.text == "Hi Bob.\n"


def test_workers_share_the_queue_without_doing_anything_twice(app: Flask, engine: str) -> None:
    if engine == "sqlite":
        pytest.skip("on SQLite one worker per database is the design")
    port = free_port()
    with node("smtp", "--workers", "0", "--listen", f"127.0.0.1:{port}"):
        wait_for(lambda: answers(port), timeout=30, what="the listener")
        send(port, 120)
    with node("worker") as first, node("worker") as second:
        wait_for(lambda: waiting(app) == 0, timeout=60, what="the workers to drain the queue")
        outputs = [stopped_output(first), stopped_output(second)]
    counts = [int(re.search(r"(\d+) message\(s\)", text).group(1)) for text in outputs]
    assert sum(counts) == 120, outputs  # each message completed once, by one of them
    with app.app_context():
        assert len(storage.list_messages()) == 120


def test_status_page_lists_every_listener_and_worker(app: Flask, admin_client: FlaskClient) -> None:
    port = free_port()
    with node("smtp", "--workers", "0", "--listen", f"127.0.0.1:{port}") as smtp:
        with node("worker") as worker:
            wait_for(lambda: answers(port), timeout=30, what="the listener")

            def both_listed() -> bool:
                page = admin_client.get("/").get_data(as_text=True)
                return f":{smtp.pid}" in page and f":{worker.pid}" in page

            wait_for(both_listed, timeout=30, what="both nodes on the status page")
            page = admin_client.get("/").get_data(as_text=True)
    assert f"listening on 127.0.0.1:{port}" in page
    assert "Workers" in page and "message(s) completed" in page


def test_the_retention_purge_runs_once_per_cluster_per_hour(app: Flask) -> None:
    with app.app_context():
        taken = [storage.take_purge_turn(3600) for _ in range(3)]
        assert taken == [True, False, False]  # one node gets the turn, the others wait
        db.session.execute(
            update(Revision)
            .where(Revision.name == storage.PURGE_TURN)
            .values(value=int(time.time()) - 3601)
        )
        db.session.commit()
        assert storage.take_purge_turn(3600) is True


def test_a_node_with_another_secret_key_warns_at_start(app: Flask) -> None:
    port = free_port()
    with node("smtp", "--listen", f"127.0.0.1:{port}") as first:
        wait_for(lambda: answers(port), timeout=30, what="the first node")
        assert "secret key differs" not in stopped_output(first)
    other = free_port()
    env = {"MXSMTP_SECRET_KEY": "another key"}
    with node("smtp", "--listen", f"127.0.0.1:{other}", env=env) as second:
        wait_for(lambda: answers(other), timeout=30, what="the second node")
        output = stopped_output(second)
    assert "secret key differs from the one the other nodes of this database use" in output
    assert "another key" not in output


def test_a_slow_start_is_not_a_stop(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine the listener may take longer than its start timeout: it says so and
    keeps waiting, then listens on the configured port (it used to be declared stopped)."""
    monkeypatch.setattr(listener_module, "START_TIMEOUT_SECONDS", 0.001)
    listener = Listener(app)
    try:
        state = listener.start()
        with app.app_context():
            configured = settings_module.load().port
        assert state.running and state.port == configured, state
    finally:
        listener.stop(grace=5)


def test_a_listener_without_its_database_never_binds_the_default_port(
    app: Flask, engine: str, database_url: str | None
) -> None:
    """The database is gone when the listener starts: it waits for it and binds nothing (it
    used to fall back to the defaults' port 25000)."""
    if engine == "sqlite":
        pytest.skip("an SQLite file cannot be taken away from under an open app")
    server = postgres_server()
    assert server is not None and database_url is not None
    with app.app_context():
        db.engine.dispose()
    server.drop_now(make_url(database_url).database)
    listener = Listener(app)
    try:
        state = listener.start()
        assert state.running and state.port is None, state
        assert "waiting for the database" in (state.error or "")
    finally:
        listener.stop(grace=5)


def test_the_web_app_under_gunicorn_with_several_workers(app: Flask) -> None:
    """`gunicorn -w 4 wsgi:app` on the same database as the nodes: every worker serves the
    pages, and a login made through one is honoured by the others."""
    from conftest import PASSWORD, make_user

    make_user(app, "gina", "admin")
    port = free_port()
    with node(
        "gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "wsgi:app", program=GUNICORN, cwd=ROOT
    ) as server:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_status(f"{base}/login") == 200, timeout=60, what="gunicorn")
        session = requests_session()
        page = session.open(f"{base}/login").read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "gina", "password": PASSWORD, "csrf_token": token}
        ).encode()
        session.open(f"{base}/login", data=form)
        pages = [session.open(f"{base}/").read().decode() for _ in range(12)]
        assert server.poll() is None
    assert all("Stored mail" in page for page in pages)  # logged in, whichever worker


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return 0


def requests_session() -> urllib.request.OpenerDirector:
    """A client that keeps cookies, as a browser does."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
