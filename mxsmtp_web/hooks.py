"""Hook scripts: finding them, loading and reloading them, calling them off the event loop
with a timeout, and turning what they return into an SMTP decision.

A hook is `SCRIPT.py:FUNCTION`: a file in the instance's `hooks/` folder (or an absolute path
an admin chose on purpose) and a function in it. The file is reloaded when it changes.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import logging
import re
import threading
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mxsmtp_web.mail.parsing import ParsedPart
from mxsmtp_web.reply_codes import TEMPORARY_FAILURE

if TYPE_CHECKING:  # conversation loads the reply parser: the CLI's hook checks need not
    from mxsmtp_web.mail.conversation import BounceInfo

log = logging.getLogger(__name__)

# RFC 5321 4.2 reply line: three digits, then text on one line.
_REPLY_LINE = re.compile(r"^[245][0-9][0-9](?: [\x20-\x7e]*)?$")
MAX_REPLY_LENGTH = 512
HOOK_WORKERS = 16


class HookSpecError(ValueError):
    """A hook setting that does not point at a usable function."""


@dataclass(frozen=True)
class SessionInfo:
    """What a hook may know about the SMTP session: plain, read-only values."""

    peer_address: str
    peer_port: int
    helo_name: str
    tls: bool
    tls_cipher: str | None = None

    @property
    def peer(self) -> tuple[str, int]:
        """The peer as aiosmtpd gives it: (address, port)."""
        return (self.peer_address, self.peer_port)


@dataclass(frozen=True)
class HookMessage:
    """Everything `process_message` gets: envelope, headers, bodies, attachments, raw bytes."""

    id: int | None
    received_at: datetime | None
    sender: str  # the envelope sender; "" for the null sender <>
    recipients: tuple[str, ...]  # the envelope recipients, as sent
    session: SessionInfo
    headers: tuple[tuple[str, str], ...]
    subject: str
    from_: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    message_id: str | None
    text: str | None
    html: str | None  # as stored: sanitised when the XSS filter is on
    attachments: tuple[ParsedPart, ...]  # each with its own `defects`
    raw: bytes
    defects: tuple[str, ...] = ()  # what could not be read as it should (empty: nothing)
    # The conversation (see README, "Replies into your application").
    reply_ref: str | None = None  # the ref of the valid reply address it was sent to
    reply_text: str | None = None  # what the sender wrote, without quotes and signature
    kind: str = "message"  # reply, auto_reply, bounce or message
    parent_id: int | None = None  # the stored message it answers
    thread_id: int | None = None  # the first stored message of its thread (its own id)
    bounce: BounceInfo | None = None  # recipient, status, diagnostic of a bounce
    # The mailbox whose hook this is (see README, "Mailboxes"), and how the recipient matched:
    # {"address": the recipient, "captures": {"match": what * stood for, or the named groups}}.
    mailbox: str = "default"
    route: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called `name` (case-insensitive)."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), default)


@dataclass(frozen=True)
class Decision:
    """What to answer after a hook ran. `error` holds the traceback when the hook failed."""

    accepted: bool
    reply: str | None  # None: the caller's usual reply (250 OK or its refusal text)
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


def resolve(spec: str, hooks_dir: Path) -> tuple[Path, str]:
    """Split `SCRIPT.py:FUNCTION` and find the file. Relative scripts must stay inside
    `hooks_dir`; `..` tricks are refused. Raises HookSpecError."""
    script, _, function = spec.rpartition(":")
    if not script.endswith(".py") or not function.isidentifier():
        raise HookSpecError(f"{spec!r} is not SCRIPT.py:FUNCTION")
    path = Path(script)
    if path.is_absolute():
        return path.resolve(), function
    base = hooks_dir.resolve()
    resolved = (base / path).resolve()
    if not resolved.is_relative_to(base):
        raise HookSpecError(
            f"{script!r} points outside {base}; give an absolute path to use a script elsewhere"
        )
    return resolved, function


def validate(spec: str, hooks_dir: Path) -> None:
    """Check, without running it, that the script exists and defines the function.
    Raises HookSpecError with a message that says what is wrong."""
    path, function = resolve(spec, hooks_dir)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except FileNotFoundError:
        raise HookSpecError(f"no such script: {path}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise HookSpecError(f"cannot read {path}: {error}") from None
    names = _top_level_names(tree)
    if function not in names:
        defined = ", ".join(sorted(names)) or "nothing"
        raise HookSpecError(f"{path.name} does not define {function} (it defines: {defined})")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def functions_in(path: Path) -> list[str]:
    """The public functions a script defines, for the settings page."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return []
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]


class HookRunner:
    """Loads hook scripts (again when the file changes) and calls them in worker threads.

    A hook that runs past its timeout is abandoned, not killed: Python cannot stop a thread.
    The pool is sized so a few stuck hooks do not stop the others.
    """

    def __init__(
        self,
        hooks_dir: Path,
        context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.hooks_dir = hooks_dir
        self._context = context
        self._modules: dict[Path, tuple[bytes, ModuleType]] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=HOOK_WORKERS, thread_name_prefix="mxsmtp-hook"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def load(self, spec: str) -> Callable[..., Any]:
        """The hook function, from a fresh module if the file changed since the last load."""
        path, function = resolve(spec, self.hooks_dir)
        source = path.read_bytes()  # compared whole: mtimes are too coarse for quick rewrites
        with self._lock:
            cached = self._modules.get(path)
            if cached is None or cached[0] != source:
                cached = (source, _import_script(path, source))
                self._modules[path] = cached
        hook = getattr(cached[1], function, None)
        if not callable(hook):
            raise HookSpecError(f"{path.name} does not define a function {function}")
        return hook

    async def run(self, spec: str, args: tuple[Any, ...], timeout: float) -> Decision:
        """Call the hook without blocking the event loop."""
        future = self._pool.submit(self._call, spec, args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            return _timed_out(spec, timeout)

    def run_blocking(self, spec: str, args: tuple[Any, ...], timeout: float) -> Decision:
        """Call the hook from ordinary code (the CLI, the web pages)."""
        future = self._pool.submit(self._call, spec, args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            return _timed_out(spec, timeout)

    def _call(self, spec: str, args: tuple[Any, ...]) -> Decision:
        try:
            with self._context():
                hook = self.load(spec)
                result = hook(*args)
        except Exception:
            text = traceback.format_exc()
            log.error("hook %s raised:\n%s", spec, text)
            return Decision(accepted=False, reply=TEMPORARY_FAILURE, error=text)
        return interpret(spec, result)


def interpret(spec: str, result: Any) -> Decision:
    """True accepts; False (or None) refuses with the caller's usual reply; a reply line such
    as "550 5.1.1 No such ticket" chooses the answer. Anything else is a hook error."""
    if result is True:
        return Decision(accepted=True, reply=None)
    if result is False or result is None:
        return Decision(accepted=False, reply=None)
    if isinstance(result, str) and len(result) <= MAX_REPLY_LENGTH and _REPLY_LINE.match(result):
        return Decision(accepted=result.startswith("2"), reply=result)
    error = (
        f"hook {spec} returned {result!r:.200}; expected True, False or a reply line like "
        "'550 5.1.1 No such user'"
    )
    log.error(error)
    return Decision(accepted=False, reply=TEMPORARY_FAILURE, error=error)


def _timed_out(spec: str, timeout: float) -> Decision:
    error = f"hook {spec} did not answer within {timeout:g} s (hook_timeout)"
    log.error(error)
    return Decision(accepted=False, reply=TEMPORARY_FAILURE, error=error)


def _import_script(path: Path, source: bytes) -> ModuleType:
    """Execute the script as a fresh module that is not registered in sys.modules."""
    module = ModuleType("mxsmtp_hook_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - admin's hook code
    return module
