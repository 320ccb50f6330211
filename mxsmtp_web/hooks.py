"""Hook scripts: finding them, loading and reloading them, calling them off the event loop
with a timeout, and turning what they return into an SMTP decision.

A hook is `SCRIPT.py:FUNCTION`: a file in the instance's `hooks/` folder (or an absolute path
an admin chose on purpose) and a function in it. The file is reloaded when it changes.
A hook may also be an `http://` or `https://` URL: the same arguments are POSTed as JSON,
signed like webhooks, and the JSON answer decides (see README, "HTTP hooks").
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import http.client
import json
import logging
import re
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

from mxsmtp_web.mail.parsing import ParsedPart
from mxsmtp_web.reply_codes import TEMPORARY_FAILURE
from mxsmtp_web.store import storage
from mxsmtp_web.store.shapes import message_json
from mxsmtp_web.store.webhook_secrets import sign_headers, signing_secrets

if TYPE_CHECKING:  # conversation loads the reply parser: the CLI's hook checks need not
    from mxsmtp_web.mail.conversation import BounceInfo

log = logging.getLogger(__name__)

# RFC 5321 4.2 reply line: three digits, then text on one line.
_REPLY_LINE = re.compile(r"^[245][0-9][0-9](?: [\x20-\x7e]*)?$")
MAX_REPLY_LENGTH = 512
HOOK_WORKERS = 16
URL_SCHEMES = ("http", "https")
# An HTTP hook's answer is a small JSON object; more than this is not an answer.
MAX_ANSWER_BYTES = 64 * 1024
EXCERPT_CHARACTERS = 200  # of a wrong answer, in the error that is logged and kept
USER_AGENT = "mxsmtp (HTTP hook)"


class HookSpecError(ValueError):
    """A hook setting that does not point at a usable function."""


class HookCallError(Exception):
    """An HTTP hook that could not be asked, or did not answer as a hook answers. The message
    says what happened; a traceback would add nothing."""


class HookTimedOut(TimeoutError):
    """An HTTP hook that did not answer within hook_timeout. It leaves `_call` as the wait for
    the hook's thread ends, so a timeout is answered and logged in one place however it is
    noticed."""


class ScriptHook(NamedTuple):
    """A hook script and the function in it (a tuple, so `path, function = ...` reads)."""

    path: Path
    function: str


@dataclass(frozen=True)
class HttpHook:
    """A hook that is an endpoint: called with a signed JSON POST."""

    url: str


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
    """What to answer after a hook ran. `error` holds the traceback, or what went wrong,
    when the hook failed."""

    accepted: bool
    reply: str | None  # None: the caller's usual reply (250 OK or its refusal text)
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


def is_url(spec: str) -> bool:
    """Whether a hook setting names an endpoint rather than a script."""
    scheme, separator, _ = spec.partition("://")
    return bool(separator) and scheme.lower() in URL_SCHEMES


def resolve(spec: str, hooks_dir: Path) -> ScriptHook | HttpHook:
    """What a hook setting points at. A URL is checked for its shape only. `SCRIPT.py:FUNCTION`
    is split and the file found: relative scripts must stay inside `hooks_dir`; `..` tricks
    are refused. Raises HookSpecError."""
    if is_url(spec):
        return HttpHook(checked_url(spec))
    script, _, function = spec.rpartition(":")
    if not script.endswith(".py") or not function.isidentifier():
        raise HookSpecError(f"{spec!r} is not SCRIPT.py:FUNCTION or an http(s):// URL")
    path = Path(script)
    if path.is_absolute():
        return ScriptHook(path.resolve(), function)
    base = hooks_dir.resolve()
    resolved = (base / path).resolve()
    if not resolved.is_relative_to(base):
        raise HookSpecError(
            f"{script!r} points outside {base}; give an absolute path to use a script elsewhere"
        )
    return ScriptHook(resolved, function)


def checked_url(url: str) -> str:
    """The URL of an HTTP hook, if mxsmtp can POST to it as it stands. Raises HookSpecError
    that says what to change."""
    if any(character.isspace() or not character.isprintable() for character in url):
        raise HookSpecError(f"{url!r} contains spaces or control characters; percent-encode them")
    parts = urlsplit(url)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        raise HookSpecError(f"{url!r} is not an http:// or https:// URL with a host name")
    if "@" in parts.netloc:
        raise HookSpecError(
            f"{url!r} carries a user name or password; the request is signed instead (see "
            "README, HTTP hooks), so leave them out"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise HookSpecError(f"{url!r} has a port that is not a number from 0 to 65535") from None
    return url


def validate(spec: str, hooks_dir: Path) -> None:
    """Check, without running it, that the script exists and defines the function, or that
    a URL has the shape of one (it is not called). Raises HookSpecError with a message that
    says what is wrong."""
    target = resolve(spec, hooks_dir)
    if isinstance(target, HttpHook):
        return
    path, function = target
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
    """Loads hook scripts (again when the file changes) and calls them in worker threads; an
    HTTP hook is asked from the same threads, within the same timeout.

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
        self._tls: ssl.SSLContext | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=HOOK_WORKERS, thread_name_prefix="mxsmtp-hook"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def load(self, spec: str) -> Callable[..., Any]:
        """The hook function, from a fresh module if the file changed since the last load."""
        target = resolve(spec, self.hooks_dir)
        if isinstance(target, HttpHook):
            raise HookSpecError(f"{spec} is an HTTP hook: it is called, not loaded")
        path, function = target
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
        future = self._pool.submit(self._call, spec, args, timeout)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:  # this wait ran out, or an HTTP hook's own deadline (HookTimedOut)
            return _timed_out(spec, timeout)

    def run_blocking(self, spec: str, args: tuple[Any, ...], timeout: float) -> Decision:
        """Call the hook from ordinary code (the CLI, the web pages)."""
        future = self._pool.submit(self._call, spec, args, timeout)
        try:
            return future.result(timeout)
        except TimeoutError:  # this wait ran out, or an HTTP hook's own deadline (HookTimedOut)
            return _timed_out(spec, timeout)

    def _call(self, spec: str, args: tuple[Any, ...], timeout: float) -> Decision:
        """The hook's decision; every way it can fail ends in `_failed` (451 4.3.0)."""
        deadline = time.monotonic() + timeout
        try:
            with self._context():
                result = self._result(spec, args, deadline)
        except HookTimedOut:
            raise  # to `run` or `run_blocking`, as if their own wait had run out
        except HookCallError as error:
            return _failed(f"hook {spec} failed: {error}")
        except Exception:
            text = traceback.format_exc()
            return _failed(text, f"hook {spec} raised:\n{text}")
        return interpret(spec, result)

    def _result(self, spec: str, args: tuple[Any, ...], deadline: float) -> Any:
        """What the hook returned: the script's value, or an HTTP answer as the same value."""
        target = resolve(spec, self.hooks_dir)
        if isinstance(target, HttpHook):
            return ask_over_http(target.url, args, deadline, self._tls_context)
        return self.load(spec)(*args)

    def _tls_context(self) -> ssl.SSLContext:
        """Certificates checked against the system's authorities (or SSL_CERT_FILE's), read
        once per runner: loading them takes tens of milliseconds."""
        with self._lock:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return self._tls


def interpret(spec: str, result: Any) -> Decision:
    """True accepts; False (or None) refuses with the caller's usual reply; a reply line such
    as "550 5.1.1 No such ticket" chooses the answer. Anything else is a hook error."""
    if result is True:
        return Decision(accepted=True, reply=None)
    if result is False or result is None:
        return Decision(accepted=False, reply=None)
    if is_reply_line(result):
        return Decision(accepted=result.startswith("2"), reply=result)
    return _failed(
        f"hook {spec} returned {result!r:.200}; expected True, False or a reply line like "
        "'550 5.1.1 No such user'"
    )


def is_reply_line(value: Any) -> bool:
    """One RFC 5321 reply line a hook may send: no CR or LF, so it cannot inject a command."""
    return (
        isinstance(value, str) and len(value) <= MAX_REPLY_LENGTH and bool(_REPLY_LINE.match(value))
    )


def _timed_out(spec: str, timeout: float) -> Decision:
    return _failed(f"hook {spec} did not answer within {timeout:g} s (hook_timeout)")


def _failed(error: str, logged: str | None = None) -> Decision:
    """The one answer to a hook that failed, however it failed: 451 4.3.0 so the sender
    retries; the error is logged and kept (in the hook log and with the refusal)."""
    log.error("%s", logged or error)
    return Decision(accepted=False, reply=TEMPORARY_FAILURE, error=error)


# --- HTTP hooks ------------------------------------------------------------------------------


def ask_over_http(
    url: str,
    args: tuple[Any, ...],
    deadline: float,
    tls: Callable[[], ssl.SSLContext] = ssl.create_default_context,
) -> bool | str:
    """POST a hook's arguments to `url`, signed per Standard Webhooks with a fresh id, and
    read the answer as a script's return value (True, False or a reply line). Needs an app
    context (the stored message, the signing secrets). Raises HookTimedOut once `deadline`
    (a time.monotonic() value) has passed, HookCallError for any other failure."""
    body = json.dumps(request_body(args)).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **sign_headers(signing_secrets(), f"msg_{uuid.uuid4().hex}", int(time.time()), body),
    }
    return read_answer(*_post(url, body, headers, deadline, tls))


def request_body(args: tuple[Any, ...]) -> dict[str, Any]:
    """The JSON an HTTP hook gets: the arguments a Python hook gets, by name. A message goes
    as `mxsmtp messages show --json` shows it (it is stored before its hook runs), with the
    mailbox and route its hook sees."""
    match args:
        case (str() as sender, SessionInfo() as session):
            return {"sender": sender, "session": session_json(session)}
        case (str() as recipient, str() as sender, SessionInfo() as session):
            return {"recipient": recipient, "sender": sender, "session": session_json(session)}
        case (HookMessage() as message,):
            return {"message": _message_json(message)}
    raise TypeError(f"no HTTP form for hook arguments {[type(arg).__name__ for arg in args]}")


def session_json(session: SessionInfo) -> dict[str, Any]:
    return {
        "peer_address": session.peer_address,
        "peer_port": session.peer_port,
        "helo_name": session.helo_name,
        "tls": session.tls,
        "tls_cipher": session.tls_cipher,
    }


def _message_json(message: HookMessage) -> dict[str, Any]:
    stored = storage.get_message(message.id) if message.id is not None else None
    if stored is None:
        raise HookCallError(f"message {message.id} is not stored, so there is nothing to send")
    return {**message_json(stored), "mailbox": message.mailbox, "route": message.route}


def read_answer(status: int, reason: str, body: bytes) -> bool | str:
    """An endpoint's answer as a script's return value: 200 `{"accept": true}` is True,
    `{"accept": false}` False, and a "reply" that agrees with "accept" is that reply line.
    Raises HookCallError, saying what was wrong, for anything else."""
    if status != 200:
        raise HookCallError(f"answered {status} {reason}{_excerpt(body)}; a hook answers 200")
    if len(body) > MAX_ANSWER_BYTES:
        raise HookCallError(f"answered more than {MAX_ANSWER_BYTES} bytes; expected {_SHAPE}")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        raise HookCallError(
            f"answered 200 but not JSON{_excerpt(body)}; expected {_SHAPE}"
        ) from None
    if not isinstance(answer, dict) or not isinstance(answer.get("accept"), bool):
        raise HookCallError(f"answered{_excerpt(body)}; expected {_SHAPE}")
    reply = answer.get("reply")
    if reply is None:
        return answer["accept"]
    if not is_reply_line(reply) or reply.startswith("2") != answer["accept"]:
        raise HookCallError(
            f"answered reply {reply!r:.200} with accept {json.dumps(answer['accept'])}; a reply "
            "is one line, 2xx to accept or 4xx/5xx to refuse, e.g. '550 5.1.1 No such ticket'"
        )
    return reply


_SHAPE = '{"accept": true} or {"accept": false}, with "reply" to choose the reply line'


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT_CHARACTERS].decode("utf-8", "replace")
    return f": {text!r}" if text else ""


def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    tls: Callable[[], ssl.SSLContext],
) -> tuple[int, str, bytes]:
    """One POST; a redirect is an answer like any other (not followed). Connecting, sending
    and reading each get what is left of the deadline. Returns the status, the reason and at
    most MAX_ANSWER_BYTES + 1 bytes of the body."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection = _connection(parts, tls, _left(deadline))
        try:
            connection.request("POST", target, body, headers)
            connection.sock.settimeout(_left(deadline))
            response = connection.getresponse()
            return response.status, response.reason, response.read(MAX_ANSWER_BYTES + 1)
        finally:
            connection.close()
    except TimeoutError:
        raise HookTimedOut(url) from None
    except (OSError, http.client.HTTPException) as error:
        raise HookCallError(f"could not be asked: {error or type(error).__name__}") from None


def _connection(
    parts: SplitResult, tls: Callable[[], ssl.SSLContext], timeout: float
) -> http.client.HTTPConnection:
    # The port is always given: http.client would read "::1" without one as host "::", port 1.
    host = parts.hostname
    if parts.scheme.lower() == "https":
        port = parts.port if parts.port is not None else http.client.HTTPS_PORT
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls())
    port = parts.port if parts.port is not None else http.client.HTTP_PORT
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _import_script(path: Path, source: bytes) -> ModuleType:
    """Execute the script as a fresh module that is not registered in sys.modules."""
    module = ModuleType("mxsmtp_hook_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - admin's hook code
    return module
