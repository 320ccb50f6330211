"""Reply addresses: signed round trips through mail systems that change letter case, and
None (never an exception) for anything forged, altered, expired or malformed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask

from mxsmtp_web import replies
from mxsmtp_web.replies import (
    looks_like_reply_address,
    make_token,
    read_reply_address,
    read_token,
    reply_address,
)
from mxsmtp_web.store.settings import machine_fqdn

KEY = b"0123456789abcdef" * 4
LONGEST_REF = replies.REF_ALPHABET[-1] * replies.MAX_REF_LENGTH  # the largest number


def local_part(address: str) -> str:
    return address.rpartition("@")[0]


def token_of(address: str) -> str:
    return local_part(address).partition("+")[2]


def store_setting(instance: Path, key: str, value: str) -> None:
    """Write a setting row the way `mxsmtp settings set` stores it (unchecked: a bad value
    must be read as the default), in the instance's database, whichever engine."""
    from mxsmtp_web import create_app
    from mxsmtp_web.store.extensions import db
    from mxsmtp_web.store.models import Setting

    app = create_app(web=False)
    with app.app_context():
        db.session.merge(Setting(key=key, value=value))
        db.session.commit()
        db.engine.dispose()


def test_round_trip(instance: Path) -> None:
    address = reply_address("ticket:42", domain="mx.example.com")
    assert address.startswith("reply+") and address.endswith("@mx.example.com")
    assert read_reply_address(address) == "ticket:42"
    assert (instance / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "spelling", [str.lower, str.upper, lambda a: f"<{a}>", lambda a: f" <{a.upper()}> "]
)
def test_case_and_brackets_changed_by_mail_systems(instance: Path, spelling) -> None:
    address = reply_address("Order-7:AbC_x.Y", domain="Mx.Example.com")
    assert read_reply_address(spelling(address)) == "Order-7:AbC_x.Y"


def test_any_domain_is_accepted(instance: Path) -> None:
    address = reply_address("ticket:42", domain="mx.example.com")
    assert read_reply_address(local_part(address) + "@other.example.net") == "ticket:42"
    assert read_reply_address(f'"{local_part(address)}"@other.example.net') == "ticket:42"


def test_every_altered_character_is_refused(instance: Path) -> None:
    address = reply_address("ticket:42", domain="mx.example.com")
    token = token_of(address)
    for index, char in enumerate(token):
        for other in {"0", "z", "a"} - {char}:
            altered = token[:index] + other + token[index + 1 :]
            assert read_reply_address(f"reply+{altered}@mx.example.com") is None


def test_forged_token_for_another_ref_is_refused(instance: Path) -> None:
    reply_address("x", domain="mx.example.com")  # the instance has a key
    forged = make_token("ticket:43", b"a guess at the key")
    assert read_reply_address(f"reply+{forged}@mx.example.com") is None


def test_expiry() -> None:
    token = make_token("ticket:42", KEY, expires_in=1, now=1_800_000_000)
    assert read_token(token, [KEY], now=1_800_000_000) == "ticket:42"
    assert read_token(token, [KEY], now=1_800_000_000.9) == "ticket:42"
    assert read_token(token, [KEY], now=1_800_000_001) is None
    assert read_token(make_token("ticket:42", KEY), [KEY], now=5_000_000_000) == "ticket:42"


def test_expired_address_reads_as_none(instance: Path) -> None:
    fresh = reply_address("ticket:42", domain="mx.example.com", expires_in=3600)
    assert read_reply_address(fresh) == "ticket:42"
    key = (instance / "secret_key").read_text().encode()
    stale = make_token("ticket:42", key, expires_in=1, now=time.time() - 10)
    assert read_reply_address(f"reply+{stale}@mx.example.com") is None


def test_expiry_cannot_be_removed(instance: Path) -> None:
    """Expiry and ref are signed together: the same ref without the expiry is another token."""
    key = b"k" * 64
    with_expiry = make_token("ticket:42", key, expires_in=60, now=1_800_000_000)
    number = int(with_expiry, 36)
    without = number & ~(((1 << 32) - 1) << 64)
    assert read_token(replies._to_base36(without), [key]) is None


def test_local_part_stays_under_64_octets(instance: Path) -> None:
    longest = reply_address(LONGEST_REF, domain="x.example", expires_in=100 * 365 * 86400)
    assert len(local_part(longest).encode()) < 64
    assert read_reply_address(longest) == LONGEST_REF
    assert len(local_part(reply_address("ticket:42", domain="x.example"))) <= 36


@pytest.mark.parametrize(
    "ref", ["", "a" * 33, "ticket 42", "ticket/42", "tïcket", "a@b", "a+b"], ids=repr
)
def test_refs_that_cannot_be_carried(instance: Path, ref: str) -> None:
    with pytest.raises(ValueError, match="reply ref"):
        reply_address(ref, domain="x.example")


@pytest.mark.parametrize("expires_in", [0, -5])
def test_expiry_must_be_positive(instance: Path, expires_in: int) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        reply_address("ticket:42", domain="x.example", expires_in=expires_in)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "@",
        "reply+@mx.example.com",
        "reply@mx.example.com",
        "replyplus@mx.example.com",
        "support@mx.example.com",
        "reply+0@mx.example.com",
        "reply+!!!@mx.example.com",
        "reply+" + "z" * 61 + "@mx.example.com",
        "reply+" + "9" * 4400 + "@mx.example.com",
        "reply+\x00@mx.example.com",
    ],
    ids=repr,
)
def test_malformed_addresses_read_as_none(instance: Path, address: str) -> None:
    reply_address("x", domain="mx.example.com")
    assert read_reply_address(address) is None


def test_looks_like_reply_address_tells_forged_from_foreign(instance: Path) -> None:
    """What the example recipient hook does: refuse reply addresses that fail the check."""
    good = reply_address("ticket:42", domain="mx.example.com")
    forged = "reply+" + make_token("ticket:42", b"not our key") + "@mx.example.com"
    assert looks_like_reply_address(good) and read_reply_address(good) == "ticket:42"
    assert looks_like_reply_address(forged) and read_reply_address(forged) is None
    assert not looks_like_reply_address("support@mx.example.com")
    assert not looks_like_reply_address(None)  # type: ignore[arg-type]


def test_leading_zero_spelling_is_refused(instance: Path) -> None:
    address = reply_address("ticket:42", domain="mx.example.com")
    assert read_reply_address(address.replace("reply+", "reply+0")) is None


def test_never_raises_on_wrong_types(instance: Path) -> None:
    assert read_reply_address(None) is None  # type: ignore[arg-type]
    assert read_reply_address(b"reply+abc@x") is None  # type: ignore[arg-type]


def test_reading_never_creates_a_key(instance: Path) -> None:
    assert read_reply_address("reply+abc@mx.example.com") is None
    assert not (instance / "secret_key").exists()


def test_another_instance_secret_reads_as_none(
    instance: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = reply_address("ticket:42", domain="mx.example.com")
    monkeypatch.setenv("MXSMTP_INSTANCE", str(tmp_path / "other"))
    reply_address("ticket:42", domain="mx.example.com")  # the other instance gets its own key
    assert read_reply_address(address) is None


def test_rotation_keeps_the_previous_key_readable(instance: Path) -> None:
    old = reply_address("ticket:42", domain="mx.example.com")
    (instance / "secret_key").rename(instance / "secret_key.previous")
    new = reply_address("ticket:43", domain="mx.example.com")
    assert (instance / "secret_key").exists()
    assert read_reply_address(old) == "ticket:42"
    assert read_reply_address(new) == "ticket:43"
    (instance / "secret_key.previous").unlink()
    assert read_reply_address(old) is None
    assert read_reply_address(new) == "ticket:43"


def test_domain_defaults_to_host_name_then_reply_domain(app: Flask, instance: Path) -> None:
    assert reply_address("ticket:42").endswith("@mx.test.example")
    store_setting(instance, "reply_domain", "replies.example.com")
    address = reply_address("ticket:42")
    assert address.endswith("@replies.example.com")
    assert reply_address("ticket:42", domain="explicit.example").endswith("@explicit.example")


def test_domain_without_database_is_the_machine_name(instance: Path) -> None:
    assert reply_address("ticket:42").endswith("@" + machine_fqdn())


def test_separator_setting(app: Flask, instance: Path) -> None:
    plus = reply_address("ticket:42")
    store_setting(instance, "reply_separator", "-")
    dash = reply_address("ticket:42")
    assert dash.startswith("reply-")
    assert read_reply_address(dash) == "ticket:42"
    assert read_reply_address(plus) is None  # the other separator is not ours any more
    store_setting(instance, "reply_separator", "#")  # not a usable separator: the default
    assert read_reply_address(plus) == "ticket:42"


def test_works_in_a_plain_process_with_only_the_instance_set(instance: Path) -> None:
    """A host application's worker: no Flask app, just MXSMTP_INSTANCE in its environment."""
    script = (
        "from mxsmtp_web.replies import reply_address, read_reply_address\n"
        "address = reply_address('ticket:42', domain='mx.example.com')\n"
        "assert read_reply_address(address.upper()) == 'ticket:42'\n"
        "print(address)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={"MXSMTP_INSTANCE": str(instance)},
        cwd=instance.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert read_reply_address(done.stdout.strip()) == "ticket:42"
