"""Make the upgrade fixture: an instance as the release before Alembic migrations wrote it.

Run once, on that release (commit recorded in release-0.1.json), to freeze what its
database holds after real use: mail received over SMTP (plain, with attachments, HTML, a
reply, a bounce, a damaged part), users, settings and a refusal. The database is kept as
an SQL dump (text: reviewable, small; without the derived full-text index) next to what
`mxsmtp messages show --json` and `settings show --json` said of it, so that
tests/test_upgrade.py can check that a later release upgrades such a database in place
and shows the same.

    .venv/bin/python tests/data/upgrade/make_fixture.py

Loopback only. Not part of `make test`.
"""

from __future__ import annotations

import json
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
PROJECT = DATA.parent.parent
sys.path.insert(0, str(PROJECT / "bench"))

from launch import free_port, wait_ready  # noqa: E402

BIN = Path(sys.executable).parent
SENDER_HOOK = """def check_sender(sender, session):
    if sender.startswith("spam@"):
        return "550 5.7.1 We do not take mail from you"
    return True
"""
MESSAGES = (
    DATA / "replies" / "new_message.eml",
    DATA / "attachments.eml",
    DATA / "newsletter.eml",
    DATA / "replies" / "gmail_en.eml",
    DATA / "replies" / "postfix_dsn.eml",
    DATA / "tolerant" / "base64_bad_length.eml",
)


def mxsmtp(instance: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
    done = subprocess.run(
        [str(BIN / "mxsmtp"), *args], env=env, input=stdin, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"mxsmtp {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def fill(instance: Path, port: int) -> None:
    """Settings, users and mail, as an admin and senders would make them."""
    (instance / "hooks").mkdir(parents=True, exist_ok=True)
    (instance / "hooks" / "fixture.py").write_text(SENDER_HOOK)
    for key, value in (
        ("port", str(port)),
        ("host_name", "mx.fixture.example"),
        ("max_message_size", "5000000"),
        ("retention_days", "365"),
        ("sender_hook", "fixture.py:check_sender"),
    ):
        mxsmtp(instance, "settings", "set", key, value)
    mxsmtp(instance, "users", "create", "ann", "--admin", "--password-stdin", stdin="ann-pass-1\n")
    mxsmtp(instance, "users", "create", "victor", "--password-stdin", stdin="victor-pass-1\n")


def send_mail(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for path in MESSAGES:
            client.sendmail("sender@fixture.example", ["inbox@fixture.example"], path.read_bytes())
        try:
            client.sendmail(
                "spam@fixture.example", ["inbox@fixture.example"], b"Subject: x\r\n\r\nx"
            )
        except smtplib.SMTPSenderRefused:
            pass


def wait_parsed(instance: Path, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = json.loads(mxsmtp(instance, "messages", "list", "--json"))
        if len(listed) == count and all(m["parsed"] for m in listed):
            return listed
        time.sleep(0.2)
    raise SystemExit("messages were not parsed in time")


def _derived(statement: str) -> bool:
    """The full-text index (FTS5 tables and their triggers) is derived from the messages, and
    an SQL dump cannot rebuild an external-content FTS5 table faithfully: it is left out, and
    the release rebuilds it at start as it does for any database that lacks it."""
    return "message_fts" in statement or "writable_schema" in statement


def main() -> None:
    commit = subprocess.run(
        ["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        instance = Path(folder) / "instance"
        port = free_port()
        fill(instance, port)
        env = {**os.environ, "MXSMTP_INSTANCE": str(instance)}
        server = subprocess.Popen([str(BIN / "mxsmtp"), "smtp"], env=env)
        try:
            wait_ready(port, server)
            send_mail(port)
            listed = wait_parsed(instance, len(MESSAGES))
            shown = [
                json.loads(mxsmtp(instance, "messages", "show", str(m["id"]), "--json"))
                for m in listed
            ]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        settings = json.loads(mxsmtp(instance, "settings", "show", "--json"))
        database = sqlite3.connect(instance / "mxsmtp.sqlite3")
        refusals = database.execute('SELECT "check", recipient, reply FROM refusal').fetchall()
        statements = [s for s in database.iterdump() if not _derived(s)]
        (HERE / "release-0.1.sql").write_text("\n".join(statements) + "\n")
        database.close()
    facts = {
        "commit": commit,
        "messages": shown,
        "settings": settings,
        "users": {"ann": "ann-pass-1", "victor": "victor-pass-1"},
        "refusals": [list(row) for row in refusals],
    }
    (HERE / "release-0.1.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {HERE / 'release-0.1.sql'} and release-0.1.json ({len(shown)} messages)")


if __name__ == "__main__":
    main()
