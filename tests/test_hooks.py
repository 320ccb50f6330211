"""Hook scripts: where they may live, how they are checked without running them, and how
their answers become SMTP replies; HTTP hooks' URLs, request bodies and answers (the calls
themselves are in test_http_hooks.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mxsmtp_web.hooks import (
    HookCallError,
    HookRunner,
    HookSpecError,
    HttpHook,
    SessionInfo,
    functions_in,
    interpret,
    read_answer,
    request_body,
    resolve,
    validate,
)


def test_relative_scripts_stay_inside_the_hooks_folder(tmp_path: Path) -> None:
    assert resolve("a.py:f", tmp_path) == ((tmp_path / "a.py").resolve(), "f")
    assert resolve("sub/a.py:f", tmp_path)[0] == (tmp_path / "sub" / "a.py").resolve()
    for sneaky in ("../a.py:f", "sub/../../a.py:f", "./../../etc/x.py:f"):
        with pytest.raises(HookSpecError, match="points outside"):
            resolve(sneaky, tmp_path)
    elsewhere = tmp_path.parent / "elsewhere.py"
    assert resolve(f"{elsewhere}:f", tmp_path) == (elsewhere.resolve(), "f")


def test_validate_reads_without_running(tmp_path: Path) -> None:
    (tmp_path / "h.py").write_text("raise SystemExit('ran!')\ndef check_sender(s, x):\n  pass\n")
    validate("h.py:check_sender", tmp_path)
    with pytest.raises(HookSpecError, match="does not define nope"):
        validate("h.py:nope", tmp_path)
    (tmp_path / "bad.py").write_text("def (:\n")
    with pytest.raises(HookSpecError, match="cannot read"):
        validate("bad.py:f", tmp_path)
    assert functions_in(tmp_path / "h.py") == ["check_sender"]


@pytest.mark.parametrize(
    ("result", "accepted", "reply", "failed"),
    [
        (True, True, None, False),
        (False, False, None, False),
        (None, False, None, False),
        ("550 5.1.1 No such ticket", False, "550 5.1.1 No such ticket", False),
        (
            "451 4.7.1 Greylisted, come back later",
            False,
            "451 4.7.1 Greylisted, come back later",
            False,
        ),
        ("250 2.1.5 Fine", True, "250 2.1.5 Fine", False),
        ("550 5.1.1 evil\r\nRSET", False, None, True),  # no reply injection
        ("yes please", False, None, True),
        (1, False, None, True),
    ],
)
def test_interpret(result: object, accepted: bool, reply: str | None, failed: bool) -> None:
    decision = interpret("h.py:f", result)
    assert decision.accepted is accepted and decision.failed is failed
    if failed:
        assert decision.reply.startswith("451 4.3.0")
    else:
        assert decision.reply == reply


def test_runner_reloads_a_changed_script_and_reports_exceptions(tmp_path: Path) -> None:
    runner = HookRunner(tmp_path)
    try:
        (tmp_path / "h.py").write_text("def f(x):\n    return x > 1\n")
        assert runner.run_blocking("h.py:f", (2,), 5).accepted
        (tmp_path / "h.py").write_text("def f(x):\n    return x > 5\n")
        assert not runner.run_blocking("h.py:f", (2,), 5).accepted
        (tmp_path / "h.py").write_text("def f(x):\n    return 1 / 0\n")
        decision = runner.run_blocking("h.py:f", (2,), 5)
        assert decision.failed and "ZeroDivisionError" in decision.error
        missing = runner.run_blocking("gone.py:f", (2,), 5)
        assert missing.failed and missing.reply.startswith("451 4.3.0")
    finally:
        runner.close()


def test_a_url_is_an_http_hook_checked_for_its_shape_only(tmp_path: Path) -> None:
    url = "https://app.example.com:8443/hooks/recipient?app=tickets"
    assert resolve(url, tmp_path) == HttpHook(url)
    validate("http://127.0.0.1:9/nothing-listens-here", tmp_path)  # not called


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http:///hook", "with a host name"),
        ("https://app.example.com/a b", "spaces or control characters"),
        ("https://bot:secret@app.example.com/", "carries a user name or password"),
        ("http://app.example.com:http/", "a port that is not a number"),
        ("ftp.py:f://x", "is not SCRIPT.py:FUNCTION or an http(s):// URL"),
    ],
)
def test_a_bad_url_says_what_to_change(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(HookSpecError, match=re.escape(says)):
        validate(url, tmp_path)


def test_request_bodies_name_the_arguments_a_script_gets() -> None:
    session = SessionInfo("192.0.2.7", 40001, "client.example", True, "TLS_AES_256_GCM_SHA384")
    as_json = {
        "peer_address": "192.0.2.7",
        "peer_port": 40001,
        "helo_name": "client.example",
        "tls": True,
        "tls_cipher": "TLS_AES_256_GCM_SHA384",
    }
    assert request_body(("", session)) == {"sender": "", "session": as_json}
    assert request_body(("b@example.com", "a@example.org", session)) == {
        "recipient": "b@example.com",
        "sender": "a@example.org",
        "session": as_json,
    }


@pytest.mark.parametrize(
    ("status", "body", "result"),
    [
        (200, b'{"accept": true}', True),
        (200, b'{"accept": false}', False),
        (200, b'{"accept": false, "reply": null}', False),
        (
            200,
            b'{"accept": false, "reply": "550 5.1.1 No such ticket"}',
            "550 5.1.1 No such ticket",
        ),
        (200, b'{"accept": true, "reply": "250 2.0.0 Queued as T-42"}', "250 2.0.0 Queued as T-42"),
    ],
)
def test_an_answer_reads_as_a_script_return_value(status: int, body: bytes, result: object) -> None:
    assert read_answer(status, "OK", body) == result


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (204, b"", "answered 204 No Content; a hook answers 200"),
        (301, b"", "answered 301"),
        (200, b"", "not JSON"),
        (200, b"accept", "not JSON: 'accept'"),
        (200, b"[" * 100_000, "more than"),
        (200, b"[true]", 'expected {"accept": true}'),
        (200, b'{"accept": "yes"}', 'expected {"accept": true}'),
        (200, b'{"accept": false, "reply": "250 2.0.0 OK"}', "4xx/5xx to refuse"),
        (200, b'{"accept": false, "reply": "550 x\\r\\nRSET"}', "is one line"),
        (200, b'{"accept": false, "reply": 550}', "is one line"),
    ],
)
def test_anything_else_is_an_error_that_says_what_came(status: int, body: bytes, says: str) -> None:
    with pytest.raises(HookCallError, match=re.escape(says)):
        read_answer(status, "No Content" if status == 204 else "Moved", body)
