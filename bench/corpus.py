"""Corpus benchmark: real and malformed mail from other projects' test suites, through SMTP into
a fresh mxsmtp, compared with what those projects expect.

    .venv/bin/python bench/corpus.py [--corpus PATH] [--source NAME ...] [--json OUT] [--keep]

It reads ../shared/corpus/external/ (next to the project; SOURCES.md there describes it) and
never copies a file of it into the project. Everything goes to 127.0.0.1 only:

1. a fresh instance in a temporary folder runs `mxsmtp serve` (web and SMTP in one process) on
   free ports, with an admin user created by `mxsmtp users create`;
2. every message of MANIFEST.json goes over SMTP twice: "as relayed" (line ends made CRLF, a
   leading mbox `From ` line removed, sent with smtplib) and "byte for byte" (the file's exact
   bytes, dot-stuffed by us after a DATA we speak ourselves); counted: 250s and raw exact;
3. once every body is parsed, every page and download of every message is fetched through the
   web admin (logged in through the login form, CSRF token included);
4. what `mxsmtp messages show ID --json` exposes is compared, on meaning, with the values ten
   of the sources expect (`<source>/expected.json`, whose `_meta` says what each field means);
   values mxsmtp does not expose (a MIME tree, byte offsets, a library's own buckets) are
   skipped and listed, never counted as failures;
5. sisimai's bounces: how many get `kind` "bounce", and with a recipient and a status;
6. talon's replies: `reply_text` against EXPECTED_REPLY_TEXTS.md.

Choices, so that the figures can be read (each is explained again where it is made):

* Raw exact: `messages show ID --raw` is mxsmtp's trace header followed by exactly the bytes
  sent, where a DATA section always ends with CRLF (RFC 5321 4.1.1.4): a file that does not
  end with CRLF is sent, and must be kept, with one added. The byte-for-byte form is sent
  without any other change, also bare CR, NUL and a leading mbox line.
* Expected values are compared in both forms. The byte-for-byte form carries the very bytes
  each source computed its values from; in the relayed form, values about the exact bytes of
  a part (size, hash) are skipped for files that were not CRLF, as the relay changed them.
* The XSS filter is off in this instance, so that `html` is the decoded HTML the sources
  describe; the filter is measured by tests/test_xss_corpus.py.
* Text is compared whitespace-normalised, addresses as lower-cased addr-specs (without
  comments or an obsolete route) plus the display name where the source gives one, dates as
  instants, parts by decoded size and sha256.

It prints a summary table and exits 0 whenever it ran (it is a measurement, not a test); 2 when
the corpus folder is absent. Not part of `make test`. `--keep` keeps the instance folder (the
server is stopped) for a look at what was stored.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html as html_module
import http.client
import http.cookiejar
import json
import os
import quopri
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any

from launch import free_port, wait_ready

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpus" / "external"
BIN = Path(sys.executable).parent

SENDER = "corpus-bench@sender.example"
RECIPIENT = "inbox@corpus.example"
HELO = "corpus-bench.client.example"
HOST_NAME = "mx.corpus.example"
USER = "bench"
PASSWORD = "corpus-bench-password-1"
NEW_PASSWORD = "corpus-bench-password-2"

FORMS = ("relayed", "exact")
FORM_LABELS = {"relayed": "as relayed", "exact": "byte for byte"}
SMTP_THREADS = 4
WEB_THREADS = 4
PARSE_TIMEOUT = 300.0
INBOX_PAGE_SIZE = 50
# Folders of a source that hold no messages (SOURCES.md).
NOT_MESSAGES = frozenset({"_upstream", "_reference"})
SISIMAI = "sisimai-set-of-emails"
SISIMAI_NOT_BOUNCES = "maildir/not/"
TALON = "mailgun-talon"

# The trace header mxsmtp puts in front of the raw bytes (README: "the raw message byte for
# byte (with our Received header in front)"), as written for one recipient. Raw exact means:
# the stored bytes are this header followed by exactly the bytes we sent.
TRACE_HEADER = re.compile(
    rb"Received: from "
    + re.escape(HELO.encode())
    + rb" \(\[127\.0\.0\.1\]\)\r\n\tby "
    + re.escape(HOST_NAME.encode())
    + rb" \([^\r\n]*\) with ESMTP id [0-9a-f]+\r\n\tfor <"
    + re.escape(RECIPIENT.encode())
    + rb">;\r\n\t[^\r\n]*\r\n"
)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_OBSOLETE_FROM_FIELD = re.compile(rb"From[ \t]*:")
_LINE_START_DOT = re.compile(rb"(?m)^\.")
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# --- the corpus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusMessage:
    """One message file of MANIFEST.json."""

    file: str  # relative to external/
    source: str
    name: str  # relative to the source folder: the key in <source>/expected.json
    eol: str
    ends_crlf: bool
    mbox_line: bool  # the manifest's starts_with_from_: a leading mbox "From " line
    path: Path


def load_manifest(corpus: Path, sources: set[str] | None) -> list[CorpusMessage]:
    """The messages of MANIFEST.json; the licence and reference folders hold none."""
    manifest = json.loads((corpus / "MANIFEST.json").read_text(encoding="utf-8"))
    messages = []
    for record in manifest["messages"]:
        parts = PurePosixPath(record["file"]).parts
        if NOT_MESSAGES.intersection(parts[1:-1]) or (sources and parts[0] not in sources):
            continue
        path = corpus / record["file"]
        if path.is_file():
            name = str(PurePosixPath(*parts[1:]))
            ends_crlf = path.read_bytes().endswith(b"\r\n")
            mbox_line = bool(record["starts_with_from_"])
            messages.append(
                CorpusMessage(
                    record["file"], parts[0], name, record["eol"], ends_crlf, mbox_line, path
                )
            )
    return messages


def load_expected(corpus: Path, source: str) -> dict[str, Any]:
    path = corpus / source / "expected.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def relayed_form(data: bytes, mbox_line: bool) -> bytes:
    """What a relay delivers: every line end CRLF (bare LF and bare CR too), and no mbox
    `From ` line (the manifest says which files start with "From "; a header "From : x" in
    obsolete syntax looks alike, and is kept)."""
    data = _LINE_END.sub(b"\r\n", data)
    if mbox_line and not _OBSOLETE_FROM_FIELD.match(data):
        end = data.find(b"\r\n")
        data = b"" if end < 0 else data[end + 2 :]
    return data


def stored_form(sent: bytes) -> bytes:
    """The bytes mxsmtp must keep after its trace header for a DATA section carrying `sent`:
    the data always ends with CRLF before the final "." (RFC 5321 4.1.1.4), so a CRLF is
    added, by smtplib and by us alike, when the bytes do not end with one."""
    return sent if sent.endswith(b"\r\n") else sent + b"\r\n"


def dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency for the byte-for-byte form. A dot after a bare LF is
    stuffed too: mxsmtp (like aiosmtpd and Postfix) unstuffs after any LF; a bare CR does
    not start a line for either side."""
    return _LINE_START_DOT.sub(b"..", stored_form(data))


# --- the instance -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    folder: Path
    smtp_port: int
    web_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def mxsmtp(instance: Path, *args: str, stdin: str | None = None) -> str:
    """One `mxsmtp` command on `instance`, as an operator runs it."""
    result = subprocess.run(
        [str(BIN / "mxsmtp"), *args],
        env={**os.environ, "MXSMTP_INSTANCE": str(instance)},
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def start_instance(folder: Path) -> Instance:
    """`mxsmtp serve` on a fresh instance. launch.start_mxsmtp starts `mxsmtp smtp` (no web),
    so the settings are made here the same way. Every session comes from 127.0.0.1, so the
    per-address session limit is lifted; the XSS filter is off so that `html` is the decoded
    body the sources describe (with it on, every HTML value differs by design; the filter has
    its own suite, tests/test_xss_corpus.py). Other limits stay at their defaults: a message
    refused by one of them is a finding."""
    smtp_port, web_port = free_port(), free_port()
    while web_port == smtp_port:
        web_port = free_port()
    settings = {
        "port": str(smtp_port),
        "host_name": HOST_NAME,
        "max_sessions_per_peer": "100",
        "xss_filter": "false",
    }
    for key, value in settings.items():
        mxsmtp(folder, "settings", "set", key, value)
    mxsmtp(folder, "users", "create", USER, "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    log = folder / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(BIN / "mxsmtp"), "serve", "--host", "127.0.0.1", "--port", str(web_port)],
            env={**os.environ, "MXSMTP_INSTANCE": str(folder)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    instance = Instance(folder, smtp_port, web_port, process, log)
    try:
        wait_ready(smtp_port, process)
        wait_web(instance)
    except RuntimeError:
        stop_instance(instance)
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    return instance


def wait_web(instance: Instance, timeout: float = 30) -> None:
    """Until the web side answers the login page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise RuntimeError(f"mxsmtp serve exited with {instance.process.returncode}")
        try:
            with urllib.request.urlopen(instance.base_url + "/login", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the web admin did not answer")


def stop_instance(instance: Instance) -> None:
    """SIGTERM to the serve process we started: it stops its listener and helpers itself."""
    if instance.process.poll() is None:
        instance.process.send_signal(signal.SIGTERM)
        try:
            instance.process.wait(60)
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait(10)


# --- sending ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One message in one form and how the server answered its DATA."""

    message: CorpusMessage
    form: str
    digest: str  # sha256 of stored_form(sent)
    code: int
    reply: str

    @property
    def accepted(self) -> bool:
        return self.code == 250


def _connect(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=120)
    client.ehlo()
    return client


def _send_relayed(client: smtplib.SMTP, data: bytes) -> tuple[int, str]:
    """smtplib's own DATA: it dot-stuffs and adds the final CRLF (the bytes are CRLF already,
    so its line-end fixing changes nothing)."""
    code, reply = client.mail(SENDER)
    if code == 250:
        code, reply = client.rcpt(RECIPIENT)
    if code == 250:
        code, reply = client.data(data)
    return code, reply.decode("utf-8", "replace")


def _send_exact(client: smtplib.SMTP, data: bytes) -> tuple[int, str]:
    """DATA spoken by hand: smtplib's data() would rewrite bare LF and CR."""
    code, reply = client.mail(SENDER)
    if code == 250:
        code, reply = client.rcpt(RECIPIENT)
    if code == 250:
        client.putcmd("data")
        code, reply = client.getreply()
        if code == 354:
            client.send(dot_stuffed(data) + b".\r\n")
            code, reply = client.getreply()
    return code, reply.decode("utf-8", "replace")


def send_batch(port: int, batch: Sequence[tuple[CorpusMessage, str]]) -> list[Delivery]:
    """One SMTP session (reopened after a broken connection) sending `batch` in order."""
    results: list[Delivery] = []
    client: smtplib.SMTP | None = None
    for message, form in batch:
        data = message.path.read_bytes()
        sent = relayed_form(data, message.mbox_line) if form == "relayed" else data
        digest = hashlib.sha256(stored_form(sent)).hexdigest()
        try:
            client = client or _connect(port)
            send = _send_relayed if form == "relayed" else _send_exact
            code, reply = send(client, sent)
            if code != 250:
                client.rset()
        except smtplib.SMTPResponseException as error:  # e.g. DATA refused before the 354
            code, reply = error.smtp_code, error.smtp_error.decode("utf-8", "replace")
            client = _close(client)
        except (smtplib.SMTPException, OSError) as error:
            code, reply = 0, f"{type(error).__name__}: {error}"
            client = _close(client)
        results.append(Delivery(message, form, digest, code, reply))
    _close(client)
    return results


def _close(client: smtplib.SMTP | None) -> None:
    if client is None:
        return None
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
    return None


def send_all(port: int, messages: Sequence[CorpusMessage]) -> list[Delivery]:
    """Both forms of every message over SMTP_THREADS sessions at once."""
    jobs = [(message, form) for message in messages for form in FORMS]
    batches = [jobs[start::SMTP_THREADS] for start in range(SMTP_THREADS)]
    with ThreadPoolExecutor(SMTP_THREADS) as pool:
        return [d for batch in pool.map(lambda b: send_batch(port, b), batches) for d in batch]


# --- reading what was stored --------------------------------------------------------------


class Cli:
    """`mxsmtp` commands run in this process through click's test runner: the same code and
    output as the installed command, without a new interpreter per call (0.7 s each, so an
    hour for the show --json and show --raw of every message)."""

    def __init__(self, instance: Path) -> None:
        os.environ["MXSMTP_INSTANCE"] = str(instance)
        from click.testing import CliRunner

        from mxsmtp_web import cli

        self.runner = CliRunner()
        self.main = cli.main

    def run(self, *args: str) -> bytes:
        result = self.runner.invoke(self.main, list(args), catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(f"mxsmtp {' '.join(args)}: {result.output.strip()}")
        return result.stdout_bytes

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))


def wait_parsed(cli: Cli, expected: int) -> tuple[list[dict[str, Any]], float]:
    """Until `expected` messages are listed and every one is parsed (bounded: PARSE_TIMEOUT);
    the summaries, and how long the wait took."""
    started = time.monotonic()
    while True:
        summaries = cli.json("messages", "list")
        waiting = sum(not s["parsed"] for s in summaries)
        if len(summaries) >= expected and not waiting:
            return summaries, time.monotonic() - started
        if time.monotonic() - started > PARSE_TIMEOUT:
            print(f"  gave up waiting: {waiting} of {len(summaries)} still unparsed")
            return summaries, time.monotonic() - started
        time.sleep(1.0)


@dataclass(frozen=True)
class Attachment:
    """A stored part as `messages show --json` lists it, with the bytes its download gave."""

    id: int
    filename: str | None
    content_type: str
    content_id: str | None
    disposition: str
    size: int
    sha256: str
    data: bytes | None = None

    @property
    def md5(self) -> str | None:
        return None if self.data is None else hashlib.md5(self.data).hexdigest()


@dataclass(frozen=True)
class Stored:
    """One stored message: its JSON, whether its raw bytes are exactly what was sent, and the
    delivery those bytes belong to (None when they match none)."""

    id: int
    delivery: Delivery | None
    raw_sha256: str
    data: dict[str, Any]
    attachments: tuple[Attachment, ...] = ()
    preview: str | None = None

    @property
    def raw_exact(self) -> bool:
        return self.delivery is not None

    @property
    def label(self) -> str:
        if self.delivery is None:
            return f"message {self.id} (matches no delivery)"
        return f"{self.delivery.message.file} [{FORM_LABELS[self.delivery.form]}]"


def read_stored(cli: Cli, ids: Iterable[int], deliveries: Sequence[Delivery]) -> Iterator[Stored]:
    """`messages show ID --json` and `--raw` of each message; the raw bytes tie it to its
    delivery: trace header, then exactly the sent bytes (so byte-identical files and forms
    are interchangeable, and it does not matter which one a stored copy is taken for)."""
    waiting: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        if delivery.accepted:
            waiting[delivery.digest].append(delivery)
    for message_id in ids:
        raw = cli.run("messages", "show", str(message_id), "--raw")
        data = cli.json("messages", "show", str(message_id))
        trace = TRACE_HEADER.match(raw)
        digest = hashlib.sha256(raw[trace.end() :]).hexdigest() if trace else ""
        delivery = waiting[digest].pop() if waiting.get(digest) else None
        raw_sha256 = hashlib.sha256(raw).hexdigest()
        yield Stored(message_id, delivery, raw_sha256, data)


# --- the web admin ------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer of its own: a page that sends us to the login form failed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error


class Web:
    """A logged-in session of the web admin: the login through urllib and a cookie jar
    (`requests` is not in the venv), then pages over one kept-alive connection per thread,
    carrying the session cookie."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )
        self.local = threading.local()

    def request(self, path: str, form: dict[str, str] | None = None) -> Answer:
        """Through the cookie jar: for the login forms."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base_url + path, data=data, timeout=120) as answer:
                return Answer(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            body = error.read()
            return Answer(error.code, body, error.headers.get("Location", ""))
        except (OSError, ValueError) as error:
            return Answer(0, b"", error=f"{type(error).__name__}: {error}")

    def get(self, path: str) -> Answer:
        """A GET on this thread's connection, opened again once if the server closed it."""
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("GET", path, headers={"Cookie": cookie})
                answer = connection.getresponse()
                body = answer.read()
            except (http.client.HTTPException, OSError) as error:
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    return Answer(0, b"", error=f"{type(error).__name__}: {error}")
                continue
            if answer.will_close:
                connection.close()
                self.local.connection = None
            return Answer(answer.status, body, answer.getheader("Location") or "")
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            host = urllib.parse.urlsplit(self.base_url)
            connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
            self.local.connection = connection
        return connection

    def _post_form(self, path: str, fields: dict[str, str]) -> Answer:
        page = self.request(path)
        token = _CSRF.search(page.body.decode("utf-8", "replace"))
        if token is None:
            raise RuntimeError(f"no CSRF token on {path} ({page.status})")
        return self.request(path, {"csrf_token": token.group(1), **fields})

    def login(self, user: str, password: str) -> None:
        """The login form; then, if the account must choose a new password first (as the
        generated first admin must; a user made by `users create` need not), that form."""
        answer = self._post_form("/login", {"username": user, "password": password})
        if answer.status not in (302, 303):
            raise RuntimeError(f"login failed with {answer.status}")
        home = self.request("/")
        if home.status in (302, 303) and "/account/password" in home.location:
            fields = {"current": password, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
            changed = self._post_form("/account/password", fields)
            if changed.status not in (302, 303):
                raise RuntimeError(f"password change failed with {changed.status}")
            home = self.request("/")
        if not home.ok:
            raise RuntimeError(f"the start page answered {home.status} after the login")


@dataclass(frozen=True)
class PageCheck:
    """One URL fetched for one stored message (or the inbox), and what was wrong, if anything."""

    label: str
    url: str
    status: int
    problem: str

    @property
    def ok(self) -> bool:
        return not self.problem


def message_urls(stored: Stored) -> list[tuple[str, bool]]:
    """The pages and downloads of one message (templates/mxsmtp/message.html links them),
    each with whether it must carry exactly the stored raw bytes."""
    base = f"/inbox/message/{stored.id}"
    # The page without ?tab= is the preview or the text tab, both fetched anyway.
    urls = [(f"{base}?tab={tab}", False) for tab in ("preview", "text", "headers", "raw")]
    urls += [(f"{base}/preview", False), (f"{base}/raw", True), (f"{base}.eml", True)]
    return urls


def check_message_pages(
    web: Web, stored: Stored, keep_bytes: bool
) -> tuple[list[PageCheck], Stored]:
    """Fetch every page and download of `stored`; downloads must be byte-exact (the raw
    source and .eml equal `show --raw`, an attachment its listed size and sha256). Returns the
    checks and `stored` with the preview and (if `keep_bytes`) the attachment bytes."""
    checks, preview = [], None
    for url, exact in message_urls(stored):
        answer = web.get(url)
        problem = _problem(answer)
        if not problem and exact and hashlib.sha256(answer.body).hexdigest() != stored.raw_sha256:
            problem = f"download differs from the stored raw bytes ({len(answer.body)} bytes)"
        if url.endswith("/preview") and answer.ok:
            preview = answer.body.decode("utf-8", "replace")
        checks.append(PageCheck(stored.label, url, answer.status, problem))
    attachments = []
    for part in stored.data["attachments"]:
        url = f"/inbox/attachment/{part['id']}"
        answer = web.get(url)
        problem = _problem(answer)
        if not problem and (
            len(answer.body) != part["size"]
            or hashlib.sha256(answer.body).hexdigest() != part["sha256"]
        ):
            problem = f"download is {len(answer.body)} bytes, not the listed size/sha256"
        checks.append(PageCheck(stored.label, url, answer.status, problem))
        data = answer.body if answer.ok and keep_bytes else None
        attachments.append(_attachment(part, data))
    return checks, replace(stored, attachments=tuple(attachments), preview=preview)


def _problem(answer: Answer) -> str:
    if answer.error:
        return answer.error
    if not answer.ok:
        return f"HTTP {answer.status}" + (f" -> {answer.location}" if answer.location else "")
    return ""


def _attachment(part: dict[str, Any], data: bytes | None) -> Attachment:
    return Attachment(
        id=part["id"],
        filename=part["filename"],
        content_type=(part["content_type"] or "").lower(),
        content_id=part["content_id"],
        disposition=part["disposition"],
        size=part["size"],
        sha256=part["sha256"],
        data=data,
    )


def check_inbox(web: Web, total: int) -> list[PageCheck]:
    """Every page of the inbox list, INBOX_PAGE_SIZE messages each."""
    checks = []
    for page in range(1, max(1, -(-total // INBOX_PAGE_SIZE)) + 1):
        url = f"/inbox/?page={page}"
        answer = web.get(url)
        checks.append(PageCheck("inbox", url, answer.status, _problem(answer)))
    return checks


# --- comparing on meaning -----------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One expected value of a source next to what mxsmtp exposes for it."""

    source: str
    file: str
    form: str
    field: str
    expected: Any
    got: Any
    ok: bool


@dataclass(frozen=True)
class Skip:
    """An expected value that mxsmtp does not expose (or that is not a property of the
    message), and why; listed, never counted."""

    source: str
    form: str
    field: str
    reason: str


# Expected values that are one library's reading against the RFCs; listed as skipped.
SOURCE_QUIRKS = {
    ("mimekit", "mbox-split/content-length/content-length-022.eml", "date"): (
        'the zone "cst" is RFC 5322 4.3\'s CST (-0600); MimeKit reads it as +0000'
    ),
    ("mimekit", "mbox-split/content-length/content-length-006.eml", "from_display"): (
        "MimeKit cuts develop!nextmime@ebony@sblab.att.com at its second @ (issue 10 asks "
        "for the whole address)"
    ),
    # Issue 10 item 4: every inline text/HTML part of a multipart/mixed is shown in its place,
    # as mail clients show it. These sources return the first HTML part only, or count a
    # later inline text part as an attachment.
    ("zbateson-mail-mime-parser", "emails/m0020.txt", "html_equals_file"): (
        "zbateson returns the first HTML fragment of Apple Mail's text-picture-text only "
        "(issue 10 item 4 names this message and asks for every fragment in its place)"
    ),
    ("jhillyerd-enmime", "testdata/mail/mime-mixed-related.raw", "envelope.html_equals"): (
        "enmime returns the first HTML part only; the second inline HTML part of the "
        "multipart/mixed continues the body (issue 10 item 4)"
    ),
    ("spamscope-mail-parser", "mails/mail_malformed_1", "attachments_count"): (
        "mail-parser counts the inline text part after the body as an attachment; it "
        "continues the body (issue 10 item 4)"
    ),
}
# Expected values that cannot be compared with what mxsmtp exposes; listed as skipped.
NOT_COMPARABLE = {
    ("apache-james-mime4j", "mimetools-testmsgs/german-qp.msg", "leaves[1].content"): (
        "the decoded bytes mix CRLF and LF line ends; mxsmtp's text body has LF line ends "
        "(README), so the hash of those bytes cannot be rebuilt from it"
    ),
}
ENCLOSED_TYPES = frozenset({"message/rfc822", "message/global"})
# Keys of expected.json entries that describe the test, not the message.
METADATA_KEYS = frozenset({"test", "tests", "note", "spec_lines", "text_note"})
_COMMENT = re.compile(r"\([^()]*\)")
_ROUTE = re.compile(r"^@[^:]*:")
_TAG = re.compile(r"<[^>]*>")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)


def ws(text: Any) -> str:
    """Whitespace-normalised text: line ends, folding and runs of blanks carry no meaning in
    the values compared here (every source compares text this way or more loosely)."""
    return " ".join(unicodedata.normalize("NFC", str(text or "")).split())


def addr_spec(address: str | None) -> str:
    """An addr-spec's meaning: comments (RFC 5322 3.2.2), an obsolete route (4.4) and blanks
    around its dots carry none; letter case is ignored."""
    text = address or ""
    while (stripped := _COMMENT.sub("", text)) != text:
        text = stripped
    text = _ROUTE.sub("", text.strip())
    return "".join(text.split()).strip("<>").lower()


def decoded_words(text: str) -> str:
    """RFC 2047 words of a raw header value decoded (mime4j's raw values are not), with the
    blanks between adjacent words dropped (6.2; email.header.make_header puts a space
    between words of different charsets). A word that does not decode stays as it is."""
    out, position = [], 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if not (position and not between.strip()):
            out.append(between)
        out.append(_decode_word(match))
        position = match.end()
    out.append(text[position:])
    return "".join(out)


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.group(1).split("*")[0], match.group(2), match.group(3)
    try:
        if encoding in "qQ":
            data = quopri.decodestring(payload.replace("_", " ").encode("ascii"), header=True)
        else:
            data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        return data.decode(charset)
    except (LookupError, UnicodeError, ValueError):
        return match.group()


def without_comments(text: str) -> str:
    """An address-list text without its RFC 5322 comments (outside quoted strings): a
    comment is no display name, although `getaddresses` reads "addr (Name)" as one."""
    out, depth, quoted, escaped = [], 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if not depth:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
        elif char == '"' and not depth:
            quoted = not quoted
        elif char == "(" and not quoted:
            depth += 1
            continue
        elif char == ")" and not quoted and depth:
            depth -= 1
            continue
        if not depth:
            out.append(char)
    return "".join(out)


def parse_addresses(values: Iterable[str], decode: bool = False) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of address-list texts, empty entries dropped."""
    texts = [" ".join(v.split()) for v in values if v]
    try:
        pairs = getaddresses(texts, strict=False)
    except TypeError:  # a Python without the strict parameter
        pairs = getaddresses(texts)
    return [(decoded_words(n) if decode else n, a) for n, a in pairs if n or a]


def same_addresses(
    expected: Sequence[tuple[str | None, str]], got: Sequence[tuple[str, str]]
) -> bool:
    """Same number, same addr-specs in order, and the same display name wherever the source
    gives one (a "name" equal to the address, as php-mime-mail-parser reports bare ones, is
    no name)."""
    if len(expected) != len(got):
        return False
    for (name, address), (got_name, got_address) in zip(expected, got, strict=True):
        if addr_spec(address) != addr_spec(got_address):
            return False
        if name and addr_spec(name) != addr_spec(address) and ws(name) != ws(got_name):
            return False
    return True


def instant(text: str | None) -> datetime | None:
    """The moment a date text names (RFC 5322, or ISO 8601 as mxsmtp writes it), or None."""
    if not text:
        return None
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def visible_text(html: str | None) -> str:
    """An HTML body as zbateson compares it: tags stripped, entities decoded, &nbsp; a space."""
    return ws(html_module.unescape(_TAG.sub(" ", html or "")).replace("\xa0", " "))


def decode_attachment_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class View:
    """What mxsmtp exposes for one stored message, in the shapes the comparisons need."""

    def __init__(self, stored: Stored) -> None:
        data = stored.data
        self.stored = stored
        self.subject: str = data["subject"] or ""
        self.text: str | None = data["text"]
        self.html: str | None = data["html"]
        self.from_ = parse_addresses([data["from"] or ""])
        self.to = parse_addresses(data["to"])
        self.cc = parse_addresses(data["cc"])
        self.date = instant(data["date"])
        self.message_id = (data["message_id"] or "").strip("<>") or None
        self.in_reply_to = (data["in_reply_to"] or "").strip("<>") or None
        self.references = [ref.strip("<>") for ref in data["references"]]
        headers = [(name, value) for name, value in data["headers"]]
        if headers and headers[0][0] == "Received" and f"by {HOST_NAME} " in headers[0][1]:
            headers = headers[1:]  # our trace header
        self.headers = headers
        self.attachments = stored.attachments
        self.preview = stored.preview
        self.defects: list[str] = list(data.get("defects") or [])

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_addresses(self, name: str) -> list[tuple[str, str]]:
        return parse_addresses(self.header_all(name))

    def enclosed_messages(self) -> bool:
        return any(a.content_type in ENCLOSED_TYPES for a in self.attachments)

    def attachment_named(self, name: str, used: Collection[int] = ()) -> Attachment | None:
        wanted = unicodedata.normalize("NFC", name)
        return next(
            (
                a
                for a in self.attachments
                if a.id not in used and unicodedata.normalize("NFC", a.filename or "") == wanted
            ),
            None,
        )

    def texts(self) -> list[str]:
        """Every text the product shows: the bodies and the text-like attachments."""
        found = [self.text or "", self.html or ""]
        for part in self.attachments:
            if part.data is not None and (
                part.content_type.startswith(("text/", "message/"))
                or part.content_type == "application/octet-stream"
            ):
                found.append(decode_attachment_text(part.data))
        return found


class Recorder:
    """Collects the values and skips of one message of one source in one form."""

    def __init__(self, source: str, stored: Stored, meta: dict[str, Any], corpus: Path) -> None:
        assert stored.delivery is not None
        self.source = source
        self.message = stored.delivery.message
        self.form = stored.delivery.form
        self.meta = meta
        self.corpus = corpus
        self.values: list[Value] = []
        self.skips: list[Skip] = []

    def check(self, field: str, expected: Any, got: Any, ok: bool | None = None) -> None:
        key = (self.source, self.message.name, field)
        if key in SOURCE_QUIRKS:
            self.skip(field, f"the source's own reading: {SOURCE_QUIRKS[key]}")
            return
        if key in NOT_COMPARABLE:
            self.skip(field, f"not comparable: {NOT_COMPARABLE[key]}")
            return
        ok = expected == got if ok is None else ok
        self.values.append(
            Value(self.source, self.message.file, self.form, field, expected, got, ok)
        )

    def skip(self, field: str, reason: str) -> None:
        self.skips.append(Skip(self.source, self.form, field, reason))

    def content(self, field: str, expected: Any, got: Any, ok: bool) -> None:
        """A value about the exact bytes of a part: not comparable after a relay rewrote
        the line ends of a file that was not CRLF (the decoded bytes of a 7bit or
        quoted-printable part change with them)."""
        if self.form == "relayed" and self.message.eol != "CRLF":
            self.skip(field, "relayed with rewritten line ends: the part's bytes changed")
        else:
            self.check(field, expected, got, ok)

    # Shared shapes of comparison ------------------------------------------------------

    def text_equals(self, field: str, expected: str, got: str | None) -> None:
        self.check(field, expected, got, ws(expected) == ws(got))

    def header_equals(self, field: str, expected: str, got: str | None) -> None:
        """A header value: the field must be there (an empty value is not a missing field)."""
        self.check(field, expected, got, got is not None and ws(expected) == ws(got))

    def contains(self, field: str, expected: str, got: str | None) -> None:
        self.check(field, expected, _short(got), ws(expected) in ws(got))

    def addresses(
        self, field: str, expected: Sequence[tuple[str | None, str]], got: list[tuple[str, str]]
    ) -> None:
        self.check(field, _pairs(expected), _pairs(got), same_addresses(expected, got))

    def date(self, field: str, expected: str, got: datetime | None) -> None:
        moment = instant(expected)
        self.check(field, expected, got.isoformat() if got else None, moment == got)

    def unhandled(self, key: str) -> None:
        self.skip(key, "no rule for this field")


def _pairs(pairs: Sequence[tuple[str | None, str]]) -> list[str]:
    return [f"{name} <{address}>" if name else address for name, address in pairs]


def _short(text: str | None, limit: int = 200) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text)} chars)"


def _plain_pairs(
    items: Iterable[dict[str, Any]], name: str = "name", email: str = "email"
) -> list[tuple[str | None, str]]:
    return [(item.get(name) or None, item.get(email) or "") for item in items]


def _is_metadata(key: str) -> bool:
    return key in METADATA_KEYS or key.endswith("_note")


# mime4j: apache-james-mime4j/expected.json ---------------------------------------------


def _mime4j_ids(tree: Sequence[Sequence[Any]]) -> dict[str, str | None]:
    """mime4j part ids ("1", "1_2", "1_2_1") of the depth-first [depth, type] tree."""
    ids: dict[str, str | None] = {}
    stack: list[list[Any]] = []  # [id, children so far]
    for depth, ctype in tree:
        del stack[depth:]
        if not stack:
            part = "1"
        else:
            stack[-1][1] += 1
            part = f"{stack[-1][0]}_{stack[-1][1]}"
            if ctype is None and ids[stack[-1][0]] == "multipart/digest":
                ctype = "message/rfc822"  # a digest's default (RFC 2046 5.1.5)
        ids[part] = ctype
        stack.append([part, 0])
    return ids


def _inside_message(part: str, types: dict[str, str | None]) -> bool:
    pieces = part.split("_")
    ancestors = ["_".join(pieces[:n]) for n in range(1, len(pieces))]
    return any((types.get(a) or "").startswith("message/") for a in ancestors)


def _encodings(text: str, charset: str | None) -> Iterator[tuple[bytes, bytes]]:
    """The bytes a body could have had, given its decoded text, with their line end: mxsmtp
    turns CRLF into LF and the charset into Unicode, and a part's hash is of the bytes
    before either."""
    charsets = dict.fromkeys(c for c in (charset, "utf-8", "latin-1", "cp1252") if c)
    for newline in ("\r\n", "\n"):
        body = text.replace("\r\n", "\n").replace("\n", newline)
        for name in charsets:
            try:
                yield body.encode(name, "replace"), newline.encode()
            except LookupError:
                continue


def _in_body(body: str, size: int, digest: str, charset: str | None) -> bool:
    """Whether the body holds a run of whole lines whose bytes are exactly the leaf's (mxsmtp
    joins the inline text parts of a message into one body, so a part may be one piece of
    it): at every line start, the `size` bytes that follow, when they end a line."""
    for data, newline in _encodings(body, charset):
        for candidate in (data, data + newline):
            starts = [0] + [m.end() for m in re.finditer(re.escape(newline), candidate)]
            for start in starts:
                end = start + size
                if end > len(candidate):
                    break
                ends_line = (
                    end == len(candidate)
                    or candidate[end - 1 : end] == b"\n"
                    or candidate[end : end + len(newline)] == newline
                )
                if ends_line and hashlib.sha256(candidate[start:end]).hexdigest() == digest:
                    return True
    return False


def _as_body(view: View, leaf: dict[str, Any]) -> str | None:
    """Which body ("text"/"html") shows the leaf's exact decoded bytes, if one does. An empty
    leaf that would be a body part (no file name, a text type) is shown by showing nothing."""
    ctype = leaf.get("content_type") or "text/plain"
    if leaf["decoded_size"] == 0 and ctype.startswith("text/") and not leaf.get("filename"):
        return "text" if ctype == "text/plain" else "html"
    charset = _CHARSET.search(leaf.get("content_type_raw") or "")
    for name, body in (("text", view.text), ("html", view.html)):
        if body is not None and _in_body(
            body,
            leaf["decoded_size"],
            leaf["decoded_sha256"],
            charset.group(1) if charset else None,
        ):
            return name
    return None


def _same_bytes(part: Attachment, digest: str, rec: Recorder) -> bool:
    """The part's bytes are the expected ones; in the byte-for-byte form of a file that does
    not end with CRLF, also with the CRLF that SMTP put at its end (stored_form), which
    belongs to the last part."""
    if part.sha256 == digest:
        return True
    added = rec.form == "exact" and not rec.message.ends_crlf
    return bool(added and part.data and part.data.endswith(b"\r\n")) and (
        hashlib.sha256(part.data[:-2]).hexdigest() == digest  # type: ignore[index]
    )


def _same_size(part: Attachment | None, size: int, rec: Recorder) -> bool:
    """As _same_bytes, for a source that gives only the decoded size."""
    if part is None:
        return False
    added = rec.form == "exact" and not rec.message.ends_crlf
    return part.size == size or bool(
        added and part.data and part.data.endswith(b"\r\n") and part.size == size + 2
    )


# Byte-identical to malformedHeader-nocrlfcrlf.msg and malformedHeader-noheader.msg, with other
# values: those of mime4j's non-default MimeConfig option MalformedHeaderStartsBody, which
# the names say; _meta promises the default configuration, whose values the twins carry.
MIME4J_NON_DEFAULT = frozenset(
    {
        "testmsgs/malformedHeaderStartsBody-nocrlfcrlf.msg",
        "testmsgs/malformedHeaderStartsBody-noheader.msg",
    }
)


def compare_mime4j(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """Raw top-level header values, the field count, and every leaf body by decoded size and
    sha256 (as an attachment, or as the text or HTML body, whose bytes before charset and
    line-end decoding are rebuilt from the text). The MIME tree itself is not exposed; parts
    of an enclosed message are kept whole in its .eml; winmail.dat is expanded (README)."""
    if rec.message.name in MIME4J_NON_DEFAULT:
        rec.skip("(all)", "values of a non-default mime4j option (MalformedHeaderStartsBody)")
        return
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key == "headers_raw":
            _mime4j_headers(expected, view, rec)
        elif key == "header_field_count":
            rec.check(key, expected, len(view.headers))
        elif key == "mime_tree":
            rec.skip(key, "the MIME tree is not exposed")
        elif key == "leaves":
            types = _mime4j_ids(entry.get("mime_tree", []))
            used: set[int] = set()
            for leaf in expected:
                _mime4j_leaf(leaf, types, view, rec, used)
        else:
            rec.unhandled(key)


def _mime4j_headers(headers: dict[str, str], view: View, rec: Recorder) -> None:
    for name, raw in headers.items():
        value = " ".join(raw.split())
        field = f"headers_raw.{name}"
        if name == "subject":
            rec.text_equals(field, decoded_words(value), view.subject)
        elif name in ("from", "to"):
            got = view.from_ if name == "from" else view.to
            rec.addresses(field, parse_addresses([without_comments(value)], decode=True), got)
        elif name == "date":
            rec.date(field, value, view.date)
        elif name == "message-id":
            rec.check(field, value, view.message_id, addr_spec(value) == addr_spec(view.message_id))
        else:  # mxsmtp's header values are decoded (README)
            rec.header_equals(field, decoded_words(value), view.header(name))


_UUENCODE_BEGIN = re.compile(rb"(?m)^begin [0-7]{3,4} \S")


def _has_uuencoded_file(rec: Recorder) -> bool:
    return bool(_UUENCODE_BEGIN.search((rec.corpus / rec.message.file).read_bytes()))


def _mime4j_leaf(
    leaf: dict[str, Any], types: dict[str, str | None], view: View, rec: Recorder, used: set[int]
) -> None:
    part, ctype = leaf["part"], leaf.get("content_type")
    filename = leaf.get("filename")
    if _inside_message(part, types):
        rec.skip("leaves", "a part inside an enclosed message (kept whole as one .eml)")
        return
    if ctype in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        (filename or "").lower() == "winmail.dat"
    ):
        rec.skip("leaves", "winmail.dat, expanded into its contents (README)")
        return
    field = f"leaves[{part}]"
    if leaf.get("body_kind") == "text" and _has_uuencoded_file(rec):
        rec.skip(
            f"{field}.content",
            "a text leaf holding uuencoded files: mxsmtp stores them as attachments and the "
            "text without them (issue 10 item 1: encoded text is never stored as content); "
            "mime4j keeps the text leaf whole",
        )
        return
    found = next(
        (
            a
            for a in view.attachments
            if a.id not in used and _same_bytes(a, leaf["decoded_sha256"], rec)
        ),
        None,
    )
    if found is None and filename:
        found = view.attachment_named(filename, used)
    if found is not None:
        used.add(found.id)
    same = found is not None and _same_bytes(found, leaf["decoded_sha256"], rec)
    body = None if same else _as_body(view, leaf)
    expected = f"{leaf['decoded_size']} bytes {leaf['decoded_sha256'][:12]}"
    if body:
        got = f"the {body} body"
    elif found is not None:
        got = f"{found.size} bytes {found.sha256[:12]} ({found.filename or 'unnamed'})"
    else:
        got = "no attachment or body with these bytes"
    rec.content(f"{field}.content", expected, got, same or body is not None)
    if filename:
        got_name = found.filename if found else None
        rec.check(f"{field}.filename", filename, got_name, got_name == filename)
    if found is not None:
        wanted = (ctype or "text/plain").lower()
        rec.check(f"{field}.content_type", wanted, found.content_type, wanted == found.content_type)


# inbucket -------------------------------------------------------------------------------


def compare_inbucket(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """Decoded From/To/Subject and the stored text and HTML of inbucket's goldens."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key in ("envelope", "envelope_variants", "mailbox"):
            rec.skip(key, "the envelope of inbucket's own test; this run sends its own")
        elif key == "from_display":
            rec.addresses(key, parse_addresses([expected]), view.from_)
        elif key == "to_display":
            if "no To: header" in entry.get("note", ""):
                rec.skip(key, "no To: header; inbucket shows its test's envelope recipient")
            else:
                rec.addresses(key, parse_addresses([expected]), view.to)
        elif key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key == "text_equals":
            rec.text_equals(key, expected, view.text)
        elif key == "html_equals":
            rec.text_equals(key, expected, view.html)
        else:
            rec.unhandled(key)


# enmime ---------------------------------------------------------------------------------

# enmime's error names with a meaning mxsmtp's defects can carry, by a word they would use.
ENMIME_DEFECT_WORDS = {"Malformed Base64": "base64", "Malformed Quoted-Printable": "quoted"}


def compare_enmime(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    for key, expected in entry.items():
        if key == "envelope":
            _enmime_envelope(expected, view, rec)
        elif key == "part_tree":
            _enmime_parts(expected, view, rec)
        else:
            rec.unhandled(key)


def _enmime_text(view: View) -> str | None:
    """enmime's Text: the text part; without one, the HTML down-converted (_meta), which is
    compared with the HTML's visible text."""
    if view.text is None and view.html is not None:
        return visible_text(view.html)
    return view.text


def _enmime_envelope(envelope: dict[str, Any], view: View, rec: Recorder) -> None:
    """Text/HTML, the three part buckets, decoded headers. enmime joins several inline text
    parts with a "--" line (mime-mixed.raw): such a text matches the same parts joined by
    any whitespace. Its Attachments bucket is mxsmtp's disposition "attachment"; Inlines
    and OtherParts (related parts without a disposition, which mxsmtp marks inline by their
    Content-ID) are mxsmtp's "inline"."""
    from_html = "Plain Text from HTML" in (
        [envelope.get("errors_first_name")] + list(envelope.get("errors_include_severe", []))
    )
    text = _enmime_text(view)
    kinds = Counter(a.disposition for a in view.attachments)
    for key, expected in envelope.items():
        if _is_metadata(key):
            continue
        field = f"envelope.{key}"
        if key.startswith("text_") and from_html:
            rec.skip(field, "enmime's conversion of the HTML to text (no text part)")
        elif key == "text_equals" or key == "text_trimmed_equals":
            pieces = " ".join(ws(piece) for piece in expected.split("\n--\n"))
            rec.check(field, expected, _short(text), ws(text) in (ws(expected), pieces))
        elif key == "text_contains":
            for phrase in expected:
                rec.contains(field, phrase, text)
        elif key == "html_equals":
            rec.text_equals(field, expected, view.html)
        elif key == "html_contains":
            for phrase in expected:
                rec.contains(field, phrase, view.html)
        elif key == "attachments_count":
            rec.check(field, expected, kinds["attachment"])
        elif key == "inlines_count":
            rec.check(field, expected, kinds["inline"] - envelope.get("otherparts_count", 0))
        elif key == "otherparts_count":
            rec.skip(field, "no such bucket in mxsmtp: folded into the inline count")
        elif key in ("attachments", "inlines", "otherparts"):
            _enmime_bucket(field, expected, key, view, rec)
        elif key == "headers":
            for name, value in expected.items():
                rec.header_equals(f"{field}.{name}", value, view.header(name))
        elif key == "errors_include_severe":
            _enmime_errors(field, expected, view, rec)
        elif key in ("errors_count", "errors_first_name"):
            rec.skip(field, "enmime's own error list (mxsmtp's defects are another taxonomy)")
        elif key == "with_parser_options":
            rec.skip(field, "holds only with a non-default enmime parser option")
        else:
            rec.unhandled(field)


def _enmime_bucket(
    field: str, parts: dict[str, dict[str, Any]], bucket: str, view: View, rec: Recorder
) -> None:
    disposition = "attachment" if bucket == "attachments" else "inline"
    in_bucket = [a for a in view.attachments if a.disposition == disposition]
    for index, expected in parts.items():
        name = expected.get("FileName")
        found = view.attachment_named(name) if name else None
        if found is None and not name and int(index) < len(in_bucket):
            found = in_bucket[int(index)]
        for key, value in expected.items():
            where = f"{field}[{index}].{key}"
            if key == "FileName":
                rec.check(where, value, found.filename if found else None, found is not None)
            elif key == "ContentID":
                got = found.content_id if found else None
                rec.check(where, value, got, (got or "").strip("<>") == value)
            elif key == "content_prefix_hex":
                data = found.data if found else None
                got = data[: len(value) // 2].hex() if data is not None else None
                rec.check(where, value, got, got == value)
            else:
                rec.unhandled(where)


def _enmime_errors(field: str, names: list[str], view: View, rec: Recorder) -> None:
    for name in names:
        word = ENMIME_DEFECT_WORDS.get(name)
        if word is None:
            rec.skip(field, f"enmime error {name!r} has no counterpart among mxsmtp's defects")
            continue
        defects = view.defects + [
            d for a in view.stored.data["attachments"] for d in a.get("defects", [])
        ]
        hit = [d for d in defects if word in d.lower()]
        rec.check(f"{field}[{name}]", name, hit[:1] or None, bool(hit))


def _enmime_parts(tree: dict[str, Any], view: View, rec: Recorder) -> None:
    """The part tree, as far as mxsmtp shows parts: a leaf's content must be shown somewhere
    (a body or a text attachment) and a named leaf must be an attachment of that name, type
    and (when the source gives one) disposition. Part ids, charsets, the tree's shape and
    part headers are not exposed."""
    for key, expected in tree.items():
        if _is_metadata(key):
            continue
        if key == "with_parser_options":
            rec.skip(f"part_tree.{key}", "holds only with a non-default enmime parser option")
            continue
        if key != "parts":
            rec.unhandled(f"part_tree.{key}")
            continue
        for path, part in expected.items():
            _enmime_part(f"part_tree[{path}]", part, view, rec)


def _enmime_part(field: str, part: dict[str, Any], view: View, rec: Recorder) -> None:
    if part.get("has_first_child") or (part.get("content_type") or "").startswith("multipart/"):
        rec.skip(field, "a multipart node of the MIME tree (not exposed)")
        return
    name = part.get("filename")
    found = view.attachment_named(name) if name else None
    for key, value in part.items():
        where = f"{field}.{key}"
        if key == "content_contains":
            for phrase in value:
                hit = any(ws(phrase) in ws(text) for text in view.texts())
                rec.check(where, phrase, None if hit else "not in any body or text part", hit)
        elif key == "content_equals":
            hit = any(ws(value) == ws(text) for text in view.texts())
            rec.check(where, value, None if hit else "no body or text part equals it", hit)
        elif key == "filename" and value:
            rec.check(where, value, found.filename if found else None, found is not None)
        elif key == "content_type" and name:
            got = found.content_type if found else None
            rec.check(where, value.lower(), got, got == value.lower())
        elif key == "disposition" and name and value:
            got = found.disposition if found else None
            rec.check(where, value, got, got == value.lower())
        elif key == "content_id" and name:
            got = found.content_id if found else None
            rec.check(where, value, got, (got or "").strip("<>") == value)
        else:
            rec.skip(f"part_tree.{key}", "a property of the MIME tree mxsmtp does not expose")


# mikel/mail (Ruby) ----------------------------------------------------------------------

MIKEL_ADDRESS_FIELDS = {"from": "from", "to": "to", "cc": "cc"}
MIKEL_HEADER_ADDRESSES = {
    "reply_to": "Reply-To",
    "resent_from": "Resent-From",
    "resent_to": "Resent-To",
    "sender": "Sender",
}
MIKEL_STRUCTURE = {
    "is_attachment": "whether the whole message is an attachment",
    "is_multipart": "the MIME structure",
    "parts": "the MIME tree",
    "parts_count": "the MIME tree",
    "boundary": "the MIME structure",
    "mime_type": "the parsed Content-Type",
    "main_type": "the parsed Content-Type",
    "sub_type": "the parsed Content-Type",
    "content_type": "the parsed Content-Type",
    "content_disposition": "the parsed Content-Disposition of the message",
    "is_multipart_report": "the MIME structure",
    "cc_group_names": "group names (cc lists the addresses only)",
    "to_group_addresses": "groups (to lists the addresses only)",
    "envelope_from": "the mbox From_ line (not part of the message)",
    "envelope_date": "the mbox From_ line (not part of the message)",
    "raw_envelope": "the mbox From_ line (not part of the message)",
    "dsn_action": "the DSN's Action field (bounce has recipient, status, diagnostic)",
    "dsn_remote_mta": "the DSN's Remote-MTA field (bounce has recipient, status, diagnostic)",
}


def compare_mikel(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """Ruby mail's values: bare addresses, ids without brackets, dates as instants, the
    attachment list, the DSN fields of bounces. An address list that Ruby gives as a string
    (rfc2822/example13, pending upstream) is read as an address list too."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key in MIKEL_ADDRESS_FIELDS:
            got = {"from": view.from_, "to": view.to, "cc": view.cc}[key]
            if isinstance(expected, str):  # a comment is no display name
                rec.addresses(key, parse_addresses([without_comments(expected)]), got)
            else:
                rec.addresses(key, [(None, a) for a in expected], got)
        elif key in MIKEL_HEADER_ADDRESSES:
            items = [expected] if isinstance(expected, str) else expected
            got = view.header_addresses(MIKEL_HEADER_ADDRESSES[key])
            rec.addresses(key, [(None, a) for a in items], got)
        elif key in ("from_addresses",):
            rec.addresses(key, [(None, a) for a in expected], view.from_)
        elif key == "from_display_names":
            rec.check(
                key,
                expected,
                [n for n, _ in view.from_],
                [ws(n) for n in expected] == [ws(n) for n, _ in view.from_],
            )
        elif key in ("from_header_to_s", "to_header_to_s"):
            got = view.from_ if key.startswith("from") else view.to
            rec.addresses(key, parse_addresses([expected]), got)
        elif key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key in ("message_id", "resent_message_id"):
            got = (
                view.message_id if key == "message_id" else (view.header("Resent-Message-ID") or "")
            )
            rec.check(key, expected, got, addr_spec(expected) == addr_spec(got))
        elif key in ("in_reply_to", "in_reply_to_ids"):
            items = [expected] if isinstance(expected, str) else expected
            got = [view.in_reply_to] if view.in_reply_to else []
            rec.check(key, items, got, [addr_spec(i) for i in items] == [addr_spec(g) for g in got])
        elif key in ("references", "references_ids"):
            items = [expected] if isinstance(expected, str) else expected
            rec.check(
                key,
                items,
                view.references,
                [addr_spec(i) for i in items] == [addr_spec(g) for g in view.references],
            )
        elif key in ("date", "resent_date"):
            got = view.date if key == "date" else instant(view.header("Resent-Date"))
            rec.date(key, expected["DateTime.parse"], got)
        elif key == "received":
            _mikel_received(expected, view, rec)
        elif key == "body_decoded":
            rec.text_equals(key, expected, view.text)
        elif key in ("attachments", "attachments_count"):
            _mikel_attachments(key, expected, view, rec)
        elif (
            key.startswith("dsn_")
            or key.startswith("is_bounced")
            or key == "is_delivery_status_report"
        ):
            _mikel_dsn(key, expected, view, rec)
        elif key in MIKEL_STRUCTURE:
            rec.skip(key, f"not exposed: {MIKEL_STRUCTURE[key]}")
        else:
            rec.unhandled(key)


def _mikel_received(received: dict[str, dict[str, Any]], view: View, rec: Recorder) -> None:
    """Received fields in order (ours is not among them): the text before ";" and the date."""
    values = view.header_all("Received")
    for index, expected in received.items():
        value = values[int(index)] if int(index) < len(values) else ""
        info, _, when = value.rpartition(";")
        rec.text_equals(f"received[{index}].info", expected["info"], info)
        rec.date(
            f"received[{index}].date_time",
            expected["date_time"]["DateTime.parse"],
            instant(when.strip()),
        )


def _ruby_attachments(view: View) -> list[Attachment]:
    """Mail::Message#attachments: every part with a filename or a non-inline disposition."""
    return [a for a in view.attachments if a.filename or a.disposition != "inline"]


def _mikel_attachments(key: str, expected: Any, view: View, rec: Recorder) -> None:
    listed = _ruby_attachments(view)
    nested = "Ruby mail counts the parts inside an enclosed message, which mxsmtp keeps whole"
    if key == "attachments_count":
        if view.enclosed_messages():
            rec.skip(key, nested)
        else:
            rec.check(key, expected, len(listed))
        return
    for index, wanted in expected.items():
        found = view.attachment_named(wanted["filename"]) if "filename" in wanted else None
        if found is None and "filename" not in wanted:
            if view.enclosed_messages():
                rec.skip(f"attachments[{index}]", nested)
                continue
            found = listed[int(index)] if int(index) < len(listed) else None
        if "filename" in wanted:
            got = found.filename if found else None
            rec.check(f"attachments[{index}].filename", wanted["filename"], got, found is not None)
        if "decoded_size" in wanted:
            got = found.size if found else None
            size = wanted["decoded_size"]
            rec.content(
                f"attachments[{index}].decoded_size", size, got, _same_size(found, size, rec)
            )


def _mikel_dsn(key: str, expected: Any, view: View, rec: Recorder) -> None:
    """Ruby's bounced? is a DSN whose action is "failed": a bounce with a 5.x.x status here
    (mxsmtp keeps no Action field; a delayed DSN carries a 4.x.x status)."""
    bounce = view.stored.data["bounce"] or {}
    is_bounce = view.stored.data["kind"] == "bounce"
    if key == "is_delivery_status_report":
        rec.check(key, expected, is_bounce)
    elif key == "is_bounced":
        failed = is_bounce and (bounce.get("status") or "").startswith("5")
        rec.check(key, expected, failed)
    elif key == "dsn_final_recipient":
        address = expected.rpartition(";")[2]
        got = bounce.get("recipient")
        rec.check(key, expected, got, addr_spec(address) == addr_spec(got))
    elif key == "dsn_error_status":
        rec.check(key, expected, bounce.get("status"))
    elif key == "dsn_diagnostic_code":
        want = ws(expected.partition(";")[2] if ";" in expected[:10] else expected)
        got = bounce.get("diagnostic") or ""
        plain = ws(got.partition(";")[2] if ";" in got[:10] else got)
        rec.check(key, expected, got, want == plain)
    else:
        rec.skip(key, f"not exposed: {MIKEL_STRUCTURE.get(key, 'a DSN field')}")


# MimeKit --------------------------------------------------------------------------------


def compare_mimekit(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """Display-form From/To, Subject, Date. MimeKit writes year 0001 when it found no date."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key in ("from_display", "to_display"):
            got = view.from_ if key == "from_display" else view.to
            rec.addresses(key, parse_addresses([expected]), got)
        elif key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key == "date":
            if " 0001 " in expected:
                rec.check(
                    key, None, view.date.isoformat() if view.date else None, view.date is None
                )
            else:
                rec.date(key, expected, view.date)
        elif key == "mime_tree":
            rec.skip(key, "the MIME tree is not exposed")
        elif key == "mbox_marker":
            rec.skip(key, "the mbox From_ line (not part of the message)")
        else:
            rec.unhandled(key)


# nodemailer/mailparser ------------------------------------------------------------------


def compare_nodemailer(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """mailparser's text, html, attachments and addresses. An attachment given by its index
    is looked for among all (index order is that library's). Its html inlines cid: pictures
    as data: URIs, as mxsmtp's preview does: a data: phrase is looked for in the preview."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key == "to_addresses":
            rec.addresses(key, _plain_pairs(expected, "name", "email"), view.to)
        elif key == "to_text":
            rec.addresses(key, parse_addresses([expected]), view.to)
        elif key == "attachments_count":
            rec.check(key, expected, len(view.attachments))
        elif key == "attachments_by_index":
            for index, wanted in expected.items():
                for hash_name, digest in wanted.items():
                    got = [getattr(a, hash_name) for a in view.attachments]
                    rec.check(
                        f"{key}[{index}].{hash_name}",
                        digest,
                        None if digest in got else got,
                        digest in got,
                    )
        elif key == "text_equals":
            rec.text_equals(key, expected, view.text)
        elif key == "text_contains":  # mailparser's text joins parts (_meta): any part here
            for phrase in expected:
                rec.check(key, phrase, None, any(ws(phrase) in ws(t) for t in view.texts()))
        elif key == "text_first_line":
            lines = [line.strip() for line in (view.text or "").splitlines() if line.strip()]
            rec.check(
                key, expected, lines[0] if lines else None, bool(lines) and lines[0] == expected
            )
        elif key == "html_contains":
            for phrase in expected:
                where = view.preview if phrase.startswith("data:") else view.html
                rec.contains(key, phrase, where)
        elif key in ("has_html", "html_nonempty"):
            rec.check(key, expected, bool(view.html and view.html.strip()))
        elif key == "html_part_length":
            got = len((view.html or "").encode("utf-8"))
            # the CRLF SMTP added at the end of a file without one ends this last part as LF
            added = rec.form == "exact" and not rec.message.ends_crlf
            rec.check(key, expected, got, got == expected or (added and got == expected + 1))
        else:
            rec.unhandled(key)


# php-mime-mail-parser -------------------------------------------------------------------


def _php_count(where: str | None, spec: dict[str, Any]) -> tuple[int, bool]:
    count = ws(where).count(ws(spec["substring"]))
    return count, count == spec["count"]


def compare_php(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """getHeader/getAddresses/getMessageBody/getAttachments. Bodies: "equals" is compared
    whitespace-normalised, "substring"+"count" as substr_count on normalised text. Its
    attachment list includes inline parts, as mxsmtp's does; a part without a filename is
    "noname<N>" there and unnamed here. Its htmlEmbedded body (cid: pictures as data: URIs)
    is mxsmtp's preview."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key in ("from_addresses", "to_addresses"):
            got = view.from_ if key.startswith("from") else view.to
            rec.addresses(key, _plain_pairs(expected, "name", "email"), got)
        elif key in ("from_header", "to_header"):
            got = view.from_ if key.startswith("from") else view.to
            rec.addresses(key, parse_addresses([expected]), got)
        elif key in ("text_body", "html_body"):
            body = view.text if key == "text_body" else view.html
            if "equals" in expected:
                rec.text_equals(f"{key}.equals", expected["equals"], body)
            else:
                count, ok = _php_count(body, expected)
                rec.check(f"{key}.count({expected['substring']!r})", expected["count"], count, ok)
        elif key == "embedded_data_uri_count":
            got = (view.preview or "").count("data:") if view.html is not None else 0
            rec.check(key, expected, got)
        elif key == "attachments_count":
            rec.check(key, expected, len(view.attachments))
        elif key in ("attachments", "attachments_first"):
            _php_attachments(key, expected, view, rec)
        elif key == "inline_text_parts":
            for index, part in enumerate(expected):
                rec.contains(f"{key}[{index}]", part, view.text)
        else:
            rec.unhandled(key)


def _php_attachments(key: str, expected: list[dict[str, Any]], view: View, rec: Recorder) -> None:
    if key == "attachments":  # the whole list: its length is expected too
        rec.check(f"{key} (count)", len(expected), len(view.attachments))
    used: set[int] = set()
    for index, part in enumerate(expected):
        field = f"{key}[{index}]"
        name = part["name"]
        unnamed = re.fullmatch(r"noname\d+", name) is not None
        found = None if unnamed else view.attachment_named(name, used)
        if (
            found is None
            and index < len(view.attachments)
            and view.attachments[index].id not in used
        ):
            candidate = view.attachments[index]
            found = candidate if unnamed or candidate.filename is None else found
        if found is not None:
            used.add(found.id)
        for prop, value in part.items():
            where = f"{field}.{prop}"
            if prop == "name":
                if "name_note" in part:
                    rec.skip(where, "a file name php-mime-mail-parser sanitised")
                elif unnamed:
                    rec.check(
                        where,
                        "(no filename)",
                        found.filename if found else "(missing)",
                        found is not None and found.filename is None,
                    )
                else:
                    rec.check(where, value, found.filename if found else None, found is not None)
            elif prop == "size":
                got = found.size if found else None
                rec.content(where, value, got, _same_size(found, value, rec))
            elif prop == "content_type":
                got = found.content_type if found else None
                rec.check(where, value, got, got == value.lower())
            elif prop == "disposition":
                got = found.disposition if found else None
                rec.check(where, value, got, got == value)
            elif prop == "contains":
                text = (
                    decode_attachment_text(found.data) if found and found.data is not None else ""
                )
                count, ok = _php_count(text, value)
                rec.check(f"{where}({value['substring']!r})", value["count"], count, ok)
            elif prop == "embedded_html_contains":
                rec.contains(where, value, view.preview)
            elif not _is_metadata(prop):
                rec.unhandled(where)


# PHP's pecl mailparse -------------------------------------------------------------------


def compare_pecl(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """mailparse's part list: byte offsets, line counts, charsets and the tree are not
    exposed; a leaf with a file name is an attachment of that name and type."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key != "parts":
            rec.unhandled(key)
            continue
        ids = [part["part"] for part in expected]
        for part in expected:
            leaf = not any(other.startswith(part["part"] + ".") for other in ids)
            name = part.get("disposition-filename") or part.get("content-name")
            field = f"parts[{part['part']}]"
            if not leaf or not name:
                rec.skip("parts", "offsets, line counts, charset and tree of a part (not exposed)")
                continue
            found = view.attachment_named(name)
            rec.check(
                f"{field}.filename", name, found.filename if found else None, found is not None
            )
            got = found.content_type if found else None
            rec.check(
                f"{field}.content-type",
                part["content-type"],
                got,
                got == part["content-type"].lower(),
            )


# SpamScope mail-parser (Python email underneath) ----------------------------------------


def _python_defect(name: str, view: View) -> list[str]:
    """mxsmtp's defects that report Python's email defect `name` (it words them by the
    defect's docstring or message)."""
    import email.errors

    cls = getattr(email.errors, name, None)
    words = [name]
    if cls is not None and cls.__doc__:
        words.append(" ".join(cls.__doc__.split()))
    return [d for d in view.defects if any(w in " ".join(d.split()) for w in words)]


def _python_defects_all(view: View) -> list[str]:
    import email.errors

    names = [n for n in dir(email.errors) if n.endswith("Defect") and n != "MessageDefect"]
    return [d for n in names for d in _python_defect(n, view)]


def compare_spamscope(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """mail-parser's fields. Its defects are Python email's defect classes: each must be
    among mxsmtp's defects (which also report things Python does not, so "exactly these"
    reads as "at least these"); "no defects" means none of Python's."""
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key in ("defects", "defects_include"):
            for name in expected:
                hit = _python_defect(name, view)
                rec.check(f"{key}[{name}]", name, hit[:1] or view.defects[:3], bool(hit))
        elif key == "has_defects":
            found = _python_defects_all(view)
            rec.check(key, expected, found[:3] or False, bool(found) == expected)
        elif key == "attachments_count":
            rec.check(key, expected, len(view.attachments))
        elif key == "html_parts_count":
            got = (view.html is not None) + sum(
                a.content_type == "text/html" for a in view.attachments
            )
            rec.check(key, expected, got)
        elif key == "attachment_names_include":
            for name in expected:
                found = view.attachment_named(name)
                rec.check(
                    f"{key}[{name}]",
                    name,
                    None if found is None else found.filename,
                    found is not None,
                )
        elif key == "attachments":
            _spamscope_attachments(expected, view, rec)
        elif key in ("subject",):
            rec.text_equals(key, expected, view.subject)
        elif key == "message_id":
            rec.check(
                key, expected, view.message_id, addr_spec(expected) == addr_spec(view.message_id)
            )
        elif key in ("from_", "to", "reply_to"):
            got = {
                "from_": view.from_,
                "to": view.to,
                "reply_to": view.header_addresses("Reply-To"),
            }[key]
            rec.addresses(key, _plain_pairs(expected), got)
        elif key == "from_email":
            rec.addresses(key, [(None, expected)], view.from_)
        elif key == "to_count":
            rec.check(key, expected, len(view.to))
        elif key == "to_first_email":
            got = view.to[0][1] if view.to else None
            rec.check(key, expected, got, addr_spec(expected) == addr_spec(got))
        elif key in ("date", "date_utc"):
            rec.date(key, expected, view.date)
        elif key == "headers":
            for name, value in expected.items():
                rec.header_equals(f"{key}.{name}", value, view.header(name))
        elif key == "headers_multi":
            for name, values in expected.items():
                got = view.header_all(name)
                rec.check(
                    f"{key}.{name}", values, got, [ws(v) for v in values] == [ws(g) for g in got]
                )
        elif key == "received_count":
            rec.check(key, expected, len(view.header_all("Received")))
        elif key == "text_not_managed":
            rec.skip(key, "mail-parser's bucket of parts it does not decode (no counterpart)")
        else:
            rec.unhandled(key)


def _spamscope_attachments(expected: list[dict[str, Any]], view: View, rec: Recorder) -> None:
    for index, wanted in enumerate(expected):
        found = view.attachment_named(wanted["name"]) if "name" in wanted else None
        if found is None and "name" not in wanted and index < len(view.attachments):
            found = view.attachments[index]
        for prop, value in wanted.items():
            where = f"attachments[{index}].{prop}"
            if prop == "name":
                rec.check(where, value, found.filename if found else None, found is not None)
            elif prop == "md5":
                got = found.md5 if found else None
                rec.content(where, value, got, got == value)
            elif prop == "disposition":
                got = found.disposition if found else None
                rec.check(where, value, got, got == value)
            elif prop in ("content_transfer_encoding", "charset"):
                rec.skip(where, "a part's transfer encoding and charset are not exposed")
            elif not _is_metadata(prop):
                rec.unhandled(where)


# zbateson/mail-mime-parser --------------------------------------------------------------

ZBATESON_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})


def compare_zbateson(entry: dict[str, Any], view: View, rec: Recorder) -> None:
    """Decoded headers (an address header's value is its first address), the first From
    and To person, text and HTML against the reference files (whitespace collapsed; HTML as
    its visible text), the attachment count and the reference attachments' bytes."""
    reference = rec.corpus / rec.source
    for key, expected in entry.items():
        if _is_metadata(key):
            continue
        if key == "subject":
            rec.text_equals(key, expected, view.subject)
        elif key in ("from", "to"):
            got = (view.from_ if key == "from" else view.to)[:1]
            name, address = got[0] if got else ("", "")
            if "email" in expected:
                rec.check(
                    f"{key}.email",
                    expected["email"],
                    address,
                    addr_spec(expected["email"]) == addr_spec(address),
                )
            if "name" in expected:
                rec.check(f"{key}.name", expected["name"], name, ws(expected["name"]) == ws(name))
        elif key == "from_addresses":
            rec.addresses(key, _plain_pairs(expected), view.from_)
        elif key == "message_id":
            rec.check(
                key, expected, view.message_id, addr_spec(expected) == addr_spec(view.message_id)
            )
        elif key == "date":
            rec.date(key, expected, view.date)
        elif key == "attachments_count":
            rec.check(key, expected, len(_zbateson_attachments(view)))
        elif key in ("text_equals_file", "html_equals_file"):
            wanted = ws((reference / expected).read_bytes().decode("latin-1"))
            got = ws(view.text) if key.startswith("text") else visible_text(view.html)
            rec.check(key, expected, _short(got), got == wanted)
        elif key == "text_contains":
            for phrase in expected:
                rec.contains(key, phrase, view.text)
        elif key == "html_text_contains":
            for phrase in expected:
                rec.contains(key, phrase, visible_text(view.html))
        elif key == "attachments":
            for index, wanted in enumerate(expected):
                found = next((a for a in view.attachments if a.sha256 == wanted["sha256"]), None)
                rec.content(
                    f"{key}[{index}].sha256",
                    wanted["sha256"],
                    None if found is None else found.sha256,
                    found is not None,
                )
        elif key == "content_ids":
            for content_id, wanted in expected.items():
                found = next(
                    (a for a in view.attachments if (a.content_id or "").strip("<>") == content_id),
                    None,
                )
                got = found.filename if found else None
                rec.check(
                    f"{key}[{content_id}].filename",
                    wanted["filename"],
                    got,
                    got == wanted["filename"],
                )
        elif key == "headers":
            for name, value in expected.items():
                _zbateson_header(f"{key}.{name}", name, value, view, rec)
        elif key == "header_person_names":
            for name, value in expected.items():
                pairs = view.header_addresses(name)
                got = pairs[0][0] if pairs else None
                rec.check(f"{key}.{name}", value, got, ws(value) == ws(got))
        elif key == "headers_absent":
            for name in expected:
                rec.check(f"{key}[{name}]", None, view.header(name), view.header(name) is None)
        elif key == "headers_nonempty":
            for name in expected:
                rec.check(
                    f"{key}[{name}]", "non-empty", view.header(name), bool(ws(view.header(name)))
                )
        elif key == "mime_tree":
            rec.skip(key, "the MIME tree is not exposed")
        elif key == "signed":
            rec.skip(key, "multipart/signed parameters and the signed part are not exposed")
        else:
            rec.unhandled(key)
    if entry.get("attachments_count"):  # the test compares the files only then
        _zbateson_reference_files(view, rec)


def _zbateson_attachments(view: View) -> list[Attachment]:
    """getAllAttachmentParts(): every non-multipart part except text parts with an inline
    disposition (src/Message.php) and, as its docstring says and m4002/m4004 show, the
    signature of a multipart/signed. (A text part without any disposition is inline there;
    mxsmtp does not say whether a part had one, so such parts still count here.)"""
    return [
        a
        for a in view.attachments
        if not (a.content_type in ("text/plain", "text/html") and a.disposition == "inline")
        and not a.content_type.endswith("-signature")
    ]


def _zbateson_header(field: str, name: str, value: str, view: View, rec: Recorder) -> None:
    if name.lower() in ZBATESON_ADDRESS_HEADERS:
        pairs = view.header_addresses(name)
        got = pairs[0][1] if pairs else None
        rec.check(field, value, got, addr_spec(value) == addr_spec(got))
    else:
        rec.header_equals(field, value, view.header(name))


def _zbateson_reference_files(view: View, rec: Recorder) -> None:
    """The test compares every attachment named like a reference file with that file:
    binary ones byte for byte, text ones as text (the file is ISO-8859-1)."""
    files = rec.meta.get("attachment_reference_files", {})
    for part in view.attachments:
        wanted = files.get(part.filename or "")
        if wanted is None:
            continue
        field = f"attachment_reference_files[{part.filename}]"
        if (part.filename or "").endswith(".txt") and part.data is not None:
            reference = rec.corpus / rec.source / "_reference" / "files" / part.filename
            text = ws(reference.read_bytes().decode("latin-1"))
            got = ws(decode_attachment_text(part.data))
            rec.check(field, "the reference text", _short(got), got == text)
        else:
            rec.content(field, wanted["sha256"], part.sha256, part.sha256 == wanted["sha256"])


COMPARATORS: dict[str, Callable[[dict[str, Any], View, Recorder], None]] = {
    "apache-james-mime4j": compare_mime4j,
    "inbucket": compare_inbucket,
    "jhillyerd-enmime": compare_enmime,
    "mikel-mail": compare_mikel,
    "mimekit": compare_mimekit,
    "nodemailer-mailparser": compare_nodemailer,
    "php-mime-mail-parser": compare_php,
    "php-pecl-mailparse": compare_pecl,
    "spamscope-mail-parser": compare_spamscope,
    "zbateson-mail-mime-parser": compare_zbateson,
}


def compare_all(corpus: Path, stored: Sequence[Stored]) -> tuple[list[Value], list[Skip]]:
    """Every stored message whose file has an expected entry, in both forms."""
    expected = {source: load_expected(corpus, source) for source in COMPARATORS}
    values: list[Value] = []
    skips: list[Skip] = []
    for item in stored:
        if item.delivery is None:
            continue
        message = item.delivery.message
        entries = expected.get(message.source, {})
        entry = entries.get(message.name)
        if entry is None:
            continue
        rec = Recorder(message.source, item, entries.get("_meta", {}), corpus)
        COMPARATORS[message.source](entry, View(item), rec)
        values += rec.values
        skips += rec.skips
    return values, skips


# --- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    """Everything measured against the instance, before any comparison."""

    deliveries: list[Delivery]
    stored: list[Stored]
    pages: list[PageCheck]
    timings: dict[str, float]


def collect(messages: Sequence[CorpusMessage], keep_sources: set[str], folder: Path) -> Collected:
    """Send, wait for the bodies, read every stored message and fetch its pages, all against
    one fresh `mxsmtp serve`; stopped again whatever happens."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    instance = start_instance(folder)
    try:
        web = Web(instance.base_url)
        web.login(USER, PASSWORD)
        timings["start"] = time.monotonic() - started
        began = time.monotonic()
        deliveries = send_all(instance.smtp_port, messages)
        timings["send"] = time.monotonic() - began
        print(f"  sent {len(deliveries)} deliveries in {timings['send']:.1f} s", flush=True)
        cli = Cli(folder)
        accepted = sum(d.accepted for d in deliveries)
        summaries, timings["parse wait"] = wait_parsed(cli, accepted)
        print(f"  all parsed {timings['parse wait']:.1f} s after the last 250", flush=True)
        began = time.monotonic()
        stored, pages = _read_and_fetch(cli, web, summaries, deliveries, keep_sources)
        timings["read and fetch"] = time.monotonic() - began
    finally:
        stop_instance(instance)
    return Collected(deliveries, stored, pages, timings)


def _read_and_fetch(
    cli: Cli,
    web: Web,
    summaries: list[dict[str, Any]],
    deliveries: list[Delivery],
    keep_sources: set[str],
) -> tuple[list[Stored], list[PageCheck]]:
    """The CLI reads run here, one after another (click's runner swaps sys.stdout); the pages
    of each message are fetched by a small pool meanwhile."""
    ids = sorted(summary["id"] for summary in summaries)
    with ThreadPoolExecutor(WEB_THREADS) as pool:
        futures = []
        for stored in read_stored(cli, ids, deliveries):
            keep = stored.delivery is not None and stored.delivery.message.source in keep_sources
            futures.append(pool.submit(check_message_pages, web, stored, keep))
        inbox = pool.submit(check_inbox, web, len(ids))
        results = [future.result() for future in futures]
        pages = [check for checks, _ in results for check in checks] + inbox.result()
    return [stored for _, stored in results], pages


# --- bounces and replies ------------------------------------------------------------------


@dataclass(frozen=True)
class BounceCounts:
    """sisimai's messages in one form: how many are read as bounces, how many of those with
    a recipient and a status; and the folder of non-bounces read as bounces."""

    bounces: int
    kind_bounce: int
    with_recipient_and_status: int
    not_bounces: int
    false_positives: tuple[str, ...]
    missed: tuple[str, ...]  # "name (kind)": what mxsmtp took them for
    incomplete: tuple[str, ...]


def count_bounces(stored: Sequence[Stored], form: str) -> BounceCounts:
    """maildir/not/ holds the collection's non-bounces (its README); everything else is one."""
    mine = [
        s
        for s in stored
        if s.delivery and s.delivery.form == form and s.delivery.message.source == SISIMAI
    ]
    real = [s for s in mine if not _name(s).startswith(SISIMAI_NOT_BOUNCES)]
    fake = [s for s in mine if _name(s).startswith(SISIMAI_NOT_BOUNCES)]
    kind = {s.id for s in real if s.data["kind"] == "bounce"}
    whole = {
        s.id
        for s in real
        if s.id in kind and s.data["bounce"].get("recipient") and s.data["bounce"].get("status")
    }
    return BounceCounts(
        bounces=len(real),
        kind_bounce=len(kind),
        with_recipient_and_status=len(whole),
        not_bounces=len(fake),
        false_positives=tuple(_name(s) for s in fake if s.data["kind"] == "bounce"),
        missed=tuple(f"{_name(s)} ({s.data['kind']})" for s in real if s.id not in kind),
        incomplete=tuple(_name(s) for s in real if s.id in kind and s.id not in whole),
    )


def _name(stored: Stored) -> str:
    return stored.delivery.message.name if stored.delivery else f"message {stored.id}"


@dataclass(frozen=True)
class Reply:
    """One talon sample: the reply text mxsmtp gave and the one expected of it."""

    name: str
    form: str
    got: str | None
    expected: str | None  # None: no comparable expectation
    ok: bool


# Signature lines as mxsmtp's README says it strips them: the "-- " delimiter and everything
# below it, and a "Sent from my …" / "Sent with …" line.
_SIGNATURE = re.compile(r"^(?:-- ?|Sent from my .*|Sent with .*)$", re.MULTILINE)


def talon_expected(corpus: Path, message: CorpusMessage) -> str | None:
    """EXPECTED_REPLY_TEXTS.md: `<name>_reply_text` (stripped) when it exists, else "Hello";
    none for reply-quotations-share-block.eml. talon keeps signatures and mxsmtp strips them,
    so what mxsmtp must give is that text cut at its first signature line."""
    if not message.name.startswith("standard_replies/"):
        return None
    reference = message.path.with_name(message.path.stem + "_reply_text")
    text = reference.read_text(encoding="utf-8").strip() if reference.is_file() else "Hello"
    cut = _SIGNATURE.search(text)
    return (text[: cut.start()] if cut else text).strip()


def talon_replies(corpus: Path, stored: Sequence[Stored]) -> list[Reply]:
    replies = []
    for item in stored:
        if item.delivery is None or item.delivery.message.source != TALON:
            continue
        expected = talon_expected(corpus, item.delivery.message)
        got = item.data["reply_text"]
        ok = expected is not None and ws(got) == ws(expected)
        replies.append(Reply(item.delivery.message.name, item.delivery.form, got, expected, ok))
    return sorted(replies, key=lambda r: (r.name, r.form))


# --- the report ---------------------------------------------------------------------------


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def fraction(part: int, whole: int) -> str:
    return f"{part:,}/{whole:,} ({percent(part, whole)})"


def by_form(items: Iterable[Any], form_of: Callable[[Any], str | None]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {form: [] for form in FORMS}
    for item in items:
        form = form_of(item)
        if form in grouped:
            grouped[form].append(item)
    return grouped


def page_form(check: PageCheck) -> str | None:
    for form, label in FORM_LABELS.items():
        if check.label.endswith(f"[{label}]"):
            return form
    return None


def print_mismatches(values: Sequence[Value], limit: int = 5) -> None:
    """The first few mismatches of each source (byte-for-byte form, where the expectations'
    bytes were sent), then the relayed-only ones; all of them are in --json."""
    wrong = [v for v in values if not v.ok]
    print("\nMismatches (first few per source; all in --json):")
    exact_keys = {(v.file, v.field, str(v.expected)) for v in wrong if v.form == "exact"}
    for source in sorted({v.source for v in wrong}):
        mine = [v for v in wrong if v.source == source and v.form == "exact"]
        relayed_only = [
            v
            for v in wrong
            if v.source == source
            and v.form == "relayed"
            and (v.file, v.field, str(v.expected)) not in exact_keys
        ]
        print(f"  {source}: {len(mine)} byte for byte, {len(relayed_only)} more as relayed")
        for value in (mine + relayed_only)[:limit]:
            form = "" if value.form == "exact" else " [as relayed]"
            print(
                f"    {value.file.split('/', 1)[1]}{form}: {value.field}: expected "
                f"{_brief(value.expected)}, got {_brief(value.got)}"
            )


def _brief(value: Any, limit: int = 110) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def print_skips(skips: Sequence[Skip]) -> None:
    counts = Counter(
        (s.source, s.field.split("[")[0], s.reason) for s in skips if s.form == "exact"
    )
    print("\nNot compared (byte-for-byte form; mxsmtp does not expose these, or they describe no")
    print("property of the message):")
    for (source, fieldname, reason), count in sorted(counts.items()):
        print(f"  {source}: {fieldname} ×{count}: {reason}")


def print_bounces(counts: dict[str, BounceCounts]) -> None:
    print("\nBounces (sisimai-set-of-emails):")
    for form, result in counts.items():
        whole = fraction(result.with_recipient_and_status, result.bounces)
        fakes = f" ({', '.join(result.false_positives)})" if result.false_positives else ""
        print(
            f"  {FORM_LABELS[form]}: kind bounce {fraction(result.kind_bounce, result.bounces)}, "
            f"with recipient and status {whole}; maildir/not/ read as bounces: "
            f"{len(result.false_positives)}/{result.not_bounces}{fakes}"
        )
        _print_names("not recognised", result.missed)
        _print_names("without recipient or status", result.incomplete)


def _print_names(label: str, names: Sequence[str], limit: int = 8) -> None:
    if names:
        more = " …" if len(names) > limit else ""
        print(f"    {label} ({len(names)}): {', '.join(names[:limit])}{more}")


def print_replies(replies: Sequence[Reply]) -> None:
    print("\nReply texts (mailgun-talon; expected: talon's text cut at its first signature line):")
    for reply in replies:
        if reply.form != "relayed":
            continue
        twin = next((r for r in replies if r.name == reply.name and r.form == "exact"), None)
        mark = "n/a" if reply.expected is None else ("ok " if reply.ok else "BAD")
        same = (
            ""
            if twin is None or twin.got == reply.got
            else f"   byte for byte: {_brief(twin.got, 60)}"
        )
        expected = (
            ""
            if reply.expected is None or reply.ok
            else f"   expected {_brief(reply.expected, 60)}"
        )
        print(f"  {mark} {reply.name}: {_brief(reply.got, 300)}{expected}{same}")


@dataclass(frozen=True)
class Report:
    """Every figure of one run, for the table and for --json."""

    collected: Collected
    values: list[Value]
    skips: list[Skip]
    bounces: dict[str, BounceCounts]
    replies: list[Reply]


def summary_rows(report: Report) -> list[tuple[str, dict[str, str]]]:
    """(label, {form: figure}) for the summary table."""
    collected = report.collected
    deliveries = by_form(collected.deliveries, lambda d: d.form)
    stored = by_form(collected.stored, lambda s: s.delivery.form if s.delivery else None)
    pages = by_form(collected.pages, page_form)
    values = by_form(report.values, lambda v: v.form)
    rows: list[tuple[str, dict[str, str]]] = []

    def row(label: str, figure: Callable[[str], str]) -> None:
        rows.append((label, {form: figure(form) for form in FORMS}))

    row(
        "accepted (250)",
        lambda f: fraction(sum(d.accepted for d in deliveries[f]), len(deliveries[f])),
    )
    row("raw exact", lambda f: fraction(len(stored[f]), len(deliveries[f])))
    row(
        "pages and downloads without error",
        lambda f: fraction(sum(p.ok for p in pages[f]), len(pages[f])),
    )
    inbox = [p for p in collected.pages if p.label == "inbox"]
    rows.append(
        (
            "inbox list pages without error",
            {"relayed": fraction(sum(p.ok for p in inbox), len(inbox)), "exact": "(both forms)"},
        )
    )
    for source in sorted({v.source for v in report.values}):
        row(
            f"expected values: {source}",
            lambda f, s=source: fraction(
                sum(v.ok for v in values[f] if v.source == s), sum(v.source == s for v in values[f])
            ),
        )
    row(
        "expected values: all sources",
        lambda f: fraction(sum(v.ok for v in values[f]), len(values[f])),
    )
    if report.bounces["relayed"].bounces:
        row(
            "sisimai bounces: kind bounce",
            lambda f: fraction(report.bounces[f].kind_bounce, report.bounces[f].bounces),
        )
        row(
            "  … with recipient and status",
            lambda f: fraction(
                report.bounces[f].with_recipient_and_status, report.bounces[f].bounces
            ),
        )
        row(
            "  maildir/not/ read as bounce",
            lambda f: f"{len(report.bounces[f].false_positives)}/{report.bounces[f].not_bounces}",
        )
    if report.replies:
        replies = by_form(report.replies, lambda r: r.form)
        row(
            "talon replies: the new text",
            lambda f: fraction(
                sum(r.ok for r in replies[f]), sum(r.expected is not None for r in replies[f])
            ),
        )
    return rows


def print_summary(report: Report, seconds: float) -> None:
    rows = summary_rows(report)
    width = max(len(label) for label, _ in rows) + 2
    columns = {
        form: max([len(FORM_LABELS[form])] + [len(r[form]) for _, r in rows]) + 3 for form in FORMS
    }
    print("\nSummary")
    print(" " * width + "".join(FORM_LABELS[f].ljust(columns[f]) for f in FORMS))
    for label, figures in rows:
        print(label.ljust(width) + "".join(figures[f].ljust(columns[f]) for f in FORMS))
    timings = report.collected.timings
    sent = len(report.collected.deliveries)
    print(
        f"\nTiming: start {timings['start']:.1f} s, send {timings['send']:.1f} s "
        f"({sent / max(timings['send'], 1e-9):,.0f} deliveries/s over {SMTP_THREADS} sessions), "
        f"bodies parsed {timings['parse wait']:.1f} s after the last 250, "
        f"show/raw + pages {timings['read and fetch']:.1f} s; total {seconds:.0f} s"
    )


def print_problems(collected: Collected) -> None:
    refused = [d for d in collected.deliveries if not d.accepted]
    if refused:
        print(f"\nNot accepted ({len(refused)}):")
        for delivery in refused[:20]:
            form = FORM_LABELS[delivery.form]
            print(f"  {delivery.message.file} [{form}]: {delivery.code} {delivery.reply}")
    unmatched = [s for s in collected.stored if s.delivery is None]
    if unmatched:
        print(
            f"\nStored messages whose raw bytes match no delivery ({len(unmatched)}): "
            + ", ".join(str(s.id) for s in unmatched[:20])
        )
    failed = [p for p in collected.pages if not p.ok]
    if failed:
        print(f"\nPages and downloads with errors ({len(failed)}):")
        for check in failed[:30]:
            print(f"  {check.label}: {check.url}: {check.problem}")


def write_json(path: Path, report: Report, seconds: float) -> None:
    collected = report.collected
    skipped = Counter((s.source, s.form, s.field.split("[")[0], s.reason) for s in report.skips)
    document = {
        "summary": {label: figures for label, figures in summary_rows(report)},
        "timings_seconds": {**collected.timings, "total": seconds},
        "mismatches": [
            {
                "source": v.source,
                "file": v.file,
                "form": v.form,
                "field": v.field,
                "expected": v.expected,
                "got": v.got,
            }
            for v in report.values
            if not v.ok
        ],
        "not_compared": [
            {"source": source, "form": form, "field": name, "reason": reason, "count": count}
            for (source, form, name, reason), count in sorted(skipped.items())
        ],
        "not_accepted": [
            {"file": d.message.file, "form": d.form, "code": d.code, "reply": d.reply}
            for d in collected.deliveries
            if not d.accepted
        ],
        "not_raw_exact": [s.id for s in collected.stored if s.delivery is None],
        "page_errors": [
            {"message": p.label, "url": p.url, "status": p.status, "problem": p.problem}
            for p in collected.pages
            if not p.ok
        ],
        "bounces": {
            form: {
                "bounces": c.bounces,
                "kind_bounce": c.kind_bounce,
                "with_recipient_and_status": c.with_recipient_and_status,
                "not_bounces": c.not_bounces,
                "false_positives": list(c.false_positives),
                "not_recognised": list(c.missed),
                "without_recipient_or_status": list(c.incomplete),
            }
            for form, c in report.bounces.items()
        },
        "replies": [
            {
                "file": r.name,
                "form": r.form,
                "reply_text": r.got,
                "expected": r.expected,
                "ok": r.ok,
            }
            for r in report.replies
        ],
    }
    path.write_text(
        json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )


# --- main ---------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the external/ folder")
    parser.add_argument(
        "--source", nargs="+", action="extend", default=[], help="only these source folders"
    )
    parser.add_argument("--json", type=Path, help="write every figure and mismatch here")
    parser.add_argument("--keep", action="store_true", help="keep the instance folder afterwards")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    corpus = args.corpus.resolve()
    if not (corpus / "MANIFEST.json").is_file():
        print(f"corpus not found: no MANIFEST.json in {corpus} (../shared/corpus/external)")
        return 2
    messages = load_manifest(corpus, set(args.source) or None)
    if not messages:
        print(f"no messages in {corpus} for --source {' '.join(args.source)}")
        return 2
    started = time.monotonic()
    sources = sorted({m.source for m in messages})
    print(f"{len(messages)} messages from {len(sources)} sources in {corpus}, two forms each")
    keep_sources = {s for s in sources if (corpus / s / "expected.json").is_file()}
    folder = Path(tempfile.mkdtemp(prefix="mxsmtp-corpus-"))
    try:
        collected = collect(messages, keep_sources, folder)
    finally:
        if args.keep:
            print(f"  the instance is kept in {folder} (MXSMTP_INSTANCE={folder})")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    values, skips = compare_all(corpus, collected.stored)
    report = Report(
        collected,
        values,
        skips,
        {form: count_bounces(collected.stored, form) for form in FORMS},
        talon_replies(corpus, collected.stored),
    )
    seconds = time.monotonic() - started
    print_problems(collected)
    print_mismatches(values)
    print_skips(skips)
    if report.bounces["relayed"].bounces:
        print_bounces(report.bounces)
    if report.replies:
        print_replies(report.replies)
    print_summary(report, seconds)
    if args.json:
        write_json(args.json, report, seconds)
        print(f"every figure and mismatch: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
