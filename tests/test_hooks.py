"""Hook scripts: where they may live, how they are checked without running them, and how
their answers become SMTP replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxsmtp_web.hooks import HookRunner, HookSpecError, functions_in, interpret, resolve, validate


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
