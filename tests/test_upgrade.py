"""An instance made by an earlier release upgrades in place, keeping everything it held.

tests/data/upgrade/release-0.1.sql is the database of a real instance of the release before
Alembic migrations (made by make_fixture.py next to it, on the commit it records): mail
received over SMTP, users, settings and a refusal. The test starts today's code on it and
checks, as users would, that every message, attachment, user, setting and refusal is there
and shows what that release showed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from conftest import log_in
from mxsmtp_web import create_app
from mxsmtp_web.store import database
from test_cli import run

FIXTURE = Path(__file__).parent / "data" / "upgrade"
RECORDED = json.loads((FIXTURE / "release-0.1.json").read_text())
pytestmark = pytest.mark.sqlite_only("release 0.1 kept its mail in SQLite only")


def release_0_1_instance(instance: Path) -> None:
    instance.mkdir(parents=True)
    database = sqlite3.connect(instance / "mxsmtp.sqlite3")
    database.executescript((FIXTURE / "release-0.1.sql").read_text())
    database.close()


@pytest.fixture
def upgraded(instance: Path) -> Flask:
    release_0_1_instance(instance)
    return create_app({"TESTING": True})


def test_db_upgrade_adopts_the_release_and_brings_it_to_head(instance: Path) -> None:
    release_0_1_instance(instance)
    assert run("db", "current")[1].startswith("none")
    assert run("db", "upgrade")[1].strip() == f"upgraded to {database.HEAD} (head)"
    assert run("db", "current")[1].strip() == f"{database.HEAD} (head)"
    code, output, _ = run("messages", "list", "--json")
    assert code == 0 and len(json.loads(output)) == len(RECORDED["messages"])


def contains(new: Any, old: Any) -> bool:
    """`new` says all that `old` said (a later release may add keys, never lose one)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(
            k in new and contains(new[k], v) for k, v in old.items()
        )
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(contains, new, old))
    return new == old


@pytest.mark.parametrize("recorded", RECORDED["messages"], ids=lambda m: m["subject"])
def test_every_message_shows_what_it_showed(upgraded: Flask, recorded: dict) -> None:
    code, output, _ = run("messages", "show", str(recorded["id"]), "--json")
    assert code == 0
    assert contains(json.loads(output), recorded)


def test_attachments_download_byte_exact(upgraded: Flask) -> None:
    client = upgraded.test_client()
    assert log_in(client, "victor", RECORDED["users"]["victor"]).status_code == 302
    parts = [part for message in RECORDED["messages"] for part in message["attachments"]]
    assert parts
    for part in parts:
        answer = client.get(f"/inbox/attachment/{part['id']}")
        assert answer.status_code == 200
        assert len(answer.data) == part["size"]


def test_users_settings_and_refusals_are_kept(upgraded: Flask) -> None:
    code, output, _ = run("settings", "show", "--json")
    assert code == 0 and contains(json.loads(output), RECORDED["settings"])
    admin = upgraded.test_client()
    assert log_in(admin, "ann", RECORDED["users"]["ann"]).status_code == 302
    refusals = admin.get("/refusals/").get_data(as_text=True)
    for _check, _recipient, reply in RECORDED["refusals"]:
        assert reply in refusals
    assert admin.get("/users/").status_code == 200  # ann is still an admin


def test_search_finds_the_old_messages(upgraded: Flask) -> None:
    client = upgraded.test_client()
    assert log_in(client, "victor", RECORDED["users"]["victor"]).status_code == 302
    page = client.get("/inbox/?q=pricing").get_data(as_text=True)
    assert "Question about pricing" in page and "Files for you" not in page
