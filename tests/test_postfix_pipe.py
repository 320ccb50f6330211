"""A real Postfix, started by the test on a free loopback port with a configuration of its own,
delivers into `mxsmtp ingest` through its pipe(8) transport, as the README sets it up: stored
mail, a refused recipient bounced with our reply in Postfix's log, a failing hook deferred.
Needs Debian's postfix package and root (Postfix's master runs as root); skipped otherwise."""

from __future__ import annotations

import os
import shutil
import site
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from conftest import answers, free_port, wait_for
from mxsmtp_web.app import create_app
from mxsmtp_web.store import settings as settings_module
from mxsmtp_web.store import storage
from mxsmtp_web.store.extensions import db

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MXSMTP = str(Path(sys.executable).parent / "mxsmtp")
PIPE_USER = "nobody"
PROJECT = Path(__file__).resolve().parent.parent


def pipe_command() -> str:
    """How the pipe's user runs `mxsmtp ingest`: the venv's own `mxsmtp`, unless its
    interpreter lies where that user cannot go (a pyenv under /root, as on CI): then the same
    script and packages under the system's Python of the same version."""
    interpreter = Path(sys.executable)
    probe = subprocess.run(
        ["su", "-s", "/bin/sh", PIPE_USER, "-c", f"exec {interpreter} -c ''"],
        capture_output=True,
    )
    if probe.returncode == 0:
        return MXSMTP
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"{PIPE_USER} cannot run {interpreter.resolve()}, and there is no {system}")
    packages = ":".join([str(PROJECT), *site.getsitepackages()])
    return f"PYTHONPATH={packages} {system} {MXSMTP}"


pytestmark = pytest.mark.skipif(
    not Path(POSTFIX).exists() or os.geteuid() != 0,
    reason="needs Debian's postfix package and root",
)

MASTER_CF = """\
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
# As the README shows it, with this test's instance and database.
mxsmtp    unix  -       n       n       -       -       pipe
  flags=DRq user={user} null_sender= argv=/usr/bin/env {environment}
  {mxsmtp} ingest --sender ${{sender}} --recipient ${{recipient}}
  --peer ${{client_address}} --helo ${{client_helo}}
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.test.example
mydestination =
relay_domains = app.example.com
transport_maps = texthash:{base}/etc/transport
default_transport = discard
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
maillog_file = {base}/postfix.log
maillog_file_prefixes = {base}
mxsmtp_destination_recipient_limit = 1
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""


class Relay:
    """A running Postfix with its log, in front of the test's instance."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port

    def send(self, message: bytes, sender: str, recipients: tuple[str, ...]) -> dict:
        with smtplib.SMTP(
            "127.0.0.1", self.port, local_hostname="client.test.example", timeout=30
        ) as client:
            return client.sendmail(sender, list(recipients), message)

    def wait(self, condition: object, what: str) -> None:
        """wait_for, with Postfix's log in the failure: it says what the pipe answered."""
        try:
            wait_for(condition, timeout=60, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; Postfix's log ends:\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        path = self.base / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def pipe_instance(monkeypatch: pytest.MonkeyPatch, database_url: str | None) -> Iterator[Path]:
    """An instance folder the pipe's unprivileged user can use (pytest's folders are root's)."""
    base = Path(tempfile.mkdtemp(prefix="mxsmtp-pipe-", dir="/tmp"))
    base.chmod(0o755)
    folder = base / "instance"
    monkeypatch.setenv("MXSMTP_INSTANCE", str(folder))
    if database_url is not None:
        monkeypatch.setenv("MXSMTP_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("MXSMTP_DATABASE_URL", raising=False)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pipe_app(pipe_instance: Path) -> Iterator[Flask]:
    app = create_app({"TESTING": True})
    with app.app_context():
        settings_module.save({"host_name": "mx.test.example"})
    subprocess.run(["chown", "-R", PIPE_USER, str(pipe_instance)], check=True)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def relay(pipe_instance: Path, database_url: str | None) -> Iterator[Relay]:
    base = Path(tempfile.mkdtemp(prefix="postfix-", dir="/tmp"))
    base.chmod(0o755)  # Postfix's daemons run as the postfix user
    for name in ("etc", "spool", "data"):
        (base / name).mkdir()
    shutil.chown(base / "data", "postfix")
    port = free_port()
    command = pipe_command()
    environment = f"MXSMTP_INSTANCE={pipe_instance}"
    if database_url is not None:
        environment += f" MXSMTP_DATABASE_URL={database_url}"
    (base / "etc" / "master.cf").write_text(
        MASTER_CF.format(port=port, user=PIPE_USER, environment=environment, mxsmtp=command)
    )
    (base / "etc" / "main.cf").write_text(MAIN_CF.format(base=base))
    (base / "etc" / "transport").write_text("app.example.com    mxsmtp:\n")
    started = subprocess.run(
        [POSTFIX, "-c", str(base / "etc"), "start"], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, (base / "postfix.log").read_text(errors="replace")
    relay = Relay(base, port)
    try:
        wait_for(lambda: answers(port), timeout=30, what="Postfix's smtpd to listen")
        yield relay
    finally:
        subprocess.run([POSTFIX, "-c", str(base / "etc"), "abort"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _stored(app: Flask) -> list[storage.MessageSummary]:
    with app.app_context():
        return storage.list_messages()


def _configure(app: Flask, **values: str) -> None:
    with app.app_context():
        settings_module.save(values)


def _hook(app: Flask, name: str, source: str) -> str:
    """Write a hook script the pipe's user can read; its SCRIPT.py:FUNCTION."""
    path = Path(app.config["HOOKS_DIR"]) / name
    path.write_text(source)
    shutil.chown(path, PIPE_USER)
    function = source.split("def ", 1)[1].split("(", 1)[0]
    return f"{name}:{function}"


MESSAGE = (
    b"From: Alice <alice@sender.example>\r\nTo: support@app.example.com\r\n"
    b"Subject: Through Postfix\r\nMessage-ID: <pf1@sender.example>\r\n\r\nHello.\r\n"
)


def test_postfix_delivers_through_the_pipe_into_the_store(pipe_app: Flask, relay: Relay) -> None:
    seen = Path(pipe_app.config["HOOKS_DIR"]) / "seen.txt"
    _configure(
        pipe_app,
        sender_hook=_hook(
            pipe_app,
            "who.py",
            "def check_sender(sender, session):\n"
            f"    open({str(seen)!r}, 'a').write(repr((sender, session.peer_address, "
            "session.helo_name)) + '\\n')\n"
            "    return True\n",
        ),
    )
    relay.send(MESSAGE, "alice@sender.example", ("support@app.example.com",))
    relay.send(MESSAGE.replace(b"pf1", b"pf2"), "", ("support@app.example.com",))
    relay.wait(lambda: len(_stored(pipe_app)) == 2, "two piped messages")
    # Postfix delivers the two at once: in either order
    stored = sorted(_stored(pipe_app), key=lambda s: s.mail_from, reverse=True)
    assert [s.mail_from for s in stored] == ["alice@sender.example", ""]  # null sender kept
    assert all(s.rcpt_tos == ("support@app.example.com",) for s in stored)
    with pipe_app.app_context():
        raw = storage.get_raw(stored[0].id)
    assert b"Delivered-To: support@app.example.com" in raw and raw.endswith(b"Hello.\r\n")
    assert b"with local" in raw.split(b"\r\n\r\n")[0]
    assert sorted(seen.read_text().splitlines()) == [
        repr(("", "127.0.0.1", "client.test.example")),
        repr(("alice@sender.example", "127.0.0.1", "client.test.example")),
    ]
    relay.wait(lambda: relay.log().count("status=sent") >= 2, "Postfix's log of both")


def test_a_refused_recipient_bounces_with_our_reply(pipe_app: Flask, relay: Relay) -> None:
    _configure(
        pipe_app,
        recipient_hook=_hook(
            pipe_app,
            "rcpt.py",
            "def check_recipient(recipient, sender, session):\n"
            "    return '550 5.1.1 No such ticket'\n",
        ),
    )
    relay.send(MESSAGE, "alice@sender.example", ("nobody@app.example.com",))
    relay.wait(lambda: "status=bounced" in relay.log(), "the bounce")
    bounced = next(line for line in relay.log().splitlines() if "status=bounced" in line)
    assert "No such ticket" in bounced
    assert _stored(pipe_app) == []


def test_a_failing_hook_is_deferred_and_retried(pipe_app: Flask, relay: Relay) -> None:
    flag = Path(pipe_app.config["HOOKS_DIR"]) / "broken"
    flag.touch()
    _configure(
        pipe_app,
        message_hook=_hook(
            pipe_app,
            "flaky.py",
            "import os\n"
            "def process_message(message):\n"
            f"    if os.path.exists({str(flag)!r}):\n"
            "        raise RuntimeError('the application is down')\n"
            "    return True\n",
        ),
    )
    relay.send(MESSAGE, "alice@sender.example", ("support@app.example.com",))
    relay.wait(lambda: "status=deferred" in relay.log(), "the deferral")
    assert "4.3.0" in next(line for line in relay.log().splitlines() if "status=deferred" in line)
    flag.unlink()
    subprocess.run([POSTFIX, "-c", str(relay.base / "etc"), "flush"], capture_output=True)

    def delivered() -> bool:
        return any(s.status == "processed" for s in _stored(pipe_app))

    relay.wait(delivered, "the retried delivery")
