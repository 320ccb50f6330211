"""Every private aiosmtpd name mxsmtp still uses, in one list. pyproject.toml pins aiosmtpd to
the range these were tested with (>=1.4.6,<1.5); an upgrade that moves or renames one of
them fails here, loudly, instead of in a session. `_create_envelope` is the documented way to
give the protocol a richer envelope; the others are internals we rely on."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import aiosmtpd
import pytest
from aiosmtpd.smtp import SMTP

SMTP_PACKAGE = Path(__file__).resolve().parent.parent / "mxsmtp_web" / "smtp"

#: name -> what we rely on it for
PRIVATE_METHODS = {
    "_handle_client": "the session loop we wrap to apply per-session limits first",
    "_reset_timeout": "re-arming the idle timer while the DATA reader receives",
    "_timeout_cb": "the idle timer's callback, answered 421 instead of a silent close",
    "_getaddr": "path parsing, with a fast path for <local@domain>",
    "_create_envelope": "our envelope subclass",
    "_call_handler_hook": "calling handle_DATA from our DATA reader",
    "_set_post_data_state": "the state after DATA, as aiosmtpd's own reader leaves it",
}
#: instance attributes set by SMTP.__init__ / connection_made that we read or set
PRIVATE_ATTRIBUTES = {
    "_reader": "the stream our DATA reader reads",
    "_timeout_duration": "the idle timeout, set per session from the settings",
}


def test_the_pinned_range_is_the_one_installed() -> None:
    major, minor, *_ = (int(part) for part in aiosmtpd.__version__.split(".")[:3])
    assert (major, minor) == (1, 4), aiosmtpd.__version__


@pytest.mark.parametrize("name", sorted(PRIVATE_METHODS))
def test_private_method_is_still_there(name: str) -> None:
    assert callable(getattr(SMTP, name, None)), f"aiosmtpd.smtp.SMTP.{name} moved"


@pytest.mark.parametrize("name", sorted(PRIVATE_ATTRIBUTES))
def test_private_attribute_is_still_set(name: str) -> None:
    assert re.search(rf"self\.{name}\b\s*[:=]", inspect.getsource(SMTP)), name


def test_the_list_is_complete() -> None:
    """A private aiosmtpd name used in mxsmtp_web/smtp but missing above fails this test."""
    used: set[str] = set()
    for path in SMTP_PACKAGE.glob("*.py"):
        used |= set(re.findall(r"\b(_[a-z][a-z_]*)\b", path.read_text()))
    set_by_aiosmtpd = set(re.findall(r"self\.(_[a-z_]+)\s*[:=]", inspect.getsource(SMTP)))
    theirs = {name for name in used if hasattr(SMTP, name) or name in set_by_aiosmtpd}
    assert theirs <= set(PRIVATE_METHODS) | set(PRIVATE_ATTRIBUTES), sorted(theirs)
