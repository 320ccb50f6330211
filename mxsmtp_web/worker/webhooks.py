"""The webhook sender: every node that runs workers runs one (`mxsmtp worker`, and the
listener's process unless it runs with `--workers 0`). A thread looks for due deliveries
every POLL_SECONDS and leases them one at a time; a pool of SENDERS threads POSTs them, at
most PER_URL at once to one URL, so a slow or dead receiver never holds up another.

Each attempt is a POST with the standard library (no redirects followed, TIMEOUT_SECONDS per
read), signed per Standard Webhooks with every secret that signs now. 2xx delivers, 410 Gone
fails the delivery for good, anything else (another status, a timeout, a refused connection,
a TLS error) is tried again after a pause that doubles from RETRY_BASE_SECONDS up to an hour
(with jitter, so failed deliveries do not return together) until `webhook_retry_hours` after
the delivery was queued; then it is failed."""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

from flask import Flask

from mxsmtp_web.store import links, storage, webhook_secrets
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import utcnow
from mxsmtp_web.store.settings import Settings, current_revision
from mxsmtp_web.store.settings import load as load_settings
from mxsmtp_web.store.shapes import iso, message_json
from mxsmtp_web.store.webhooks import (
    AttemptOutcome,
    Claim,
    DeliveryStatus,
    claim_due,
    has_due,
    record_attempt,
    save_payload,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SENDERS = 16
PER_URL = 4
TIMEOUT_SECONDS = 10.0
#: The pause before the first retry is between half of this and all of it; each failure
#: doubles it, up to MAX_SPACING_SECONDS. Boot config WEBHOOK_RETRY_BASE_SECONDS changes it
#: (tests use a fraction of a second).
RETRY_BASE_SECONDS = 30.0
MAX_SPACING_SECONDS = 3600.0
#: How much of a receiver's answer is read and kept.
EXCERPT_BYTES = 1000
EVENT_TYPE = "message.received"
GONE = 410


def _user_agent() -> str:
    try:
        return f"mxsmtp/{version('mxsmtp')}"
    except PackageNotFoundError:
        return "mxsmtp"


USER_AGENT = _user_agent()


@dataclass(frozen=True)
class HttpResult:
    """What one POST got: the status (None when there was no answer) and an excerpt of the
    answer, or what went wrong, in words."""

    status: int | None
    text: str


# --- one attempt ---------------------------------------------------------------------------


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpResult:
    """POST `body` to `url`; never raises for what the network or the receiver does."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection = _connection(parts.scheme, parts.hostname or "", parts.port, timeout)
    except ValueError as error:
        return HttpResult(None, f"not a URL that can be reached: {error}")
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        excerpt = response.read(EXCERPT_BYTES).decode("utf-8", "replace")
        return HttpResult(response.status, _described(response, excerpt))
    except TimeoutError:
        return HttpResult(None, f"no answer within {timeout:g} s")
    except ssl.SSLError as error:
        return HttpResult(None, f"TLS error: {error}")
    except ConnectionRefusedError:
        return HttpResult(None, f"connection refused by {parts.netloc}")
    except OSError as error:
        return HttpResult(None, f"cannot reach {parts.netloc}: {error}")
    except (http.client.HTTPException, ValueError) as error:
        return HttpResult(None, f"not an HTTP answer: {type(error).__name__} {error}".strip())
    finally:
        connection.close()


def _connection(
    scheme: str, host: str, port: int | None, timeout: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _described(response: http.client.HTTPResponse, excerpt: str) -> str:
    location = response.getheader("Location")
    if 300 <= response.status < 400 and location:
        return f"redirected to {location} (redirects are not followed) {excerpt}".strip()
    return excerpt


def retry_delay(failures: int, base: float, rng: random.Random) -> float:
    """Seconds before the next attempt after `failures` failed ones: the spacing doubles
    from `base` to at most an hour, and each pause is a random part (half to all) of it."""
    spacing = min(MAX_SPACING_SECONDS, base * 2 ** min(max(failures, 1) - 1, 32))
    return spacing * (0.5 + rng.random() / 2)


def outcome_of(
    result: HttpResult,
    claim: Claim,
    now: datetime,
    retry_hours: int,
    base: float,
    rng: random.Random,
) -> AttemptOutcome:
    """What follows from an answer: delivered, failed for good (410, or the retry time is
    over), or another attempt (never later than the end of the retry time)."""
    if result.status is not None and 200 <= result.status < 300:
        return AttemptOutcome(DeliveryStatus.DELIVERED, result.status, result.text)
    if result.status == GONE:
        return AttemptOutcome(DeliveryStatus.FAILED, result.status, result.text)
    deadline = claim.created_at + timedelta(hours=retry_hours)
    if now >= deadline:
        return AttemptOutcome(DeliveryStatus.FAILED, result.status, result.text)
    pause = timedelta(seconds=retry_delay(claim.attempt, base, rng))
    return AttemptOutcome(
        DeliveryStatus.PENDING, result.status, result.text, min(now + pause, deadline)
    )


def build_payload(
    message_id: int, settings: Settings, secret_key: str, now: datetime
) -> str | None:
    """The JSON body: what `mxsmtp messages show ID --json` prints, plus signed download
    links for the raw message and each attachment. None when the message is gone (needs an
    app context)."""
    stored = storage.get_message(message_id)
    if stored is None:
        return None
    base = links.base_url(settings)
    expires_at = int(time.time()) + settings.webhook_link_ttl

    def link(kind: str, target_id: int) -> str:
        token = links.make_token(secret_key, links.LinkTarget(kind, target_id), expires_at)
        return links.link_url(base, token)

    data = message_json(stored)
    data["raw_url"] = link(links.RAW, message_id)
    for attachment in data["attachments"]:
        attachment["download_url"] = link(links.ATTACHMENT, attachment["id"])
    payload = {"type": EVENT_TYPE, "timestamp": iso(now), "data": data}
    return json.dumps(payload, separators=(",", ":"))


# --- the sender ----------------------------------------------------------------------------


class WebhookSender:
    """The poll thread and the pool of one process; `start`, then `stop` with the process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.timeout = float(app.config.get("WEBHOOK_TIMEOUT_SECONDS", TIMEOUT_SECONDS))
        self.base = float(app.config.get("WEBHOOK_RETRY_BASE_SECONDS", RETRY_BASE_SECONDS))
        self._rng = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._open: Counter[str] = Counter()  # requests under way, per URL
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="mxsmtp-webhook")
        self._thread = threading.Thread(target=self._run, name="mxsmtp-webhooks", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """No new attempts. With `wait`, also let those under way end (each within its
        timeout); without, they end on their own (the interpreter waits for them at exit),
        and an attempt cut short is leased to whichever sender comes next."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception as error:  # the database is down: keep polling, say so once
                if self._error is None:
                    log.warning("webhooks: cannot read the deliveries, retrying: %s", error)
                self._error = str(error)
            else:
                if self._error is not None:
                    log.info("webhooks: the database is back")
                self._error = None
            self._stop.wait(POLL_SECONDS)

    def _poll(self) -> None:
        """Lease due deliveries one at a time while threads are free, skipping URLs that
        have PER_URL requests open."""
        with self.app.app_context():
            with db.engine.connect() as connection:
                if not has_due(connection, utcnow()):
                    return
            settings = self._current_settings()
            while not self._stop.is_set() and self._free() > 0:
                claim = self._claim_one()
                if claim is None:
                    return
                self._submit(claim, settings)

    def _free(self) -> int:
        with self._lock:
            return SENDERS - self._open.total()

    def _claim_one(self) -> Claim | None:
        with self._lock:
            busy = [url for url, count in self._open.items() if count >= PER_URL]
        with db.engine.begin() as connection:
            claimed = claim_due(connection, utcnow(), 1, busy)
        return claimed[0] if claimed else None

    def _current_settings(self) -> Settings:
        """The settings, read again when their revision moved (a change made anywhere)."""
        if self._settings is None or current_revision() != self._settings.revision:
            self._settings = load_settings()
        return self._settings

    def _submit(self, claim: Claim, settings: Settings) -> None:
        assert self._pool is not None
        with self._lock:
            self._open[claim.url] += 1
        try:
            future = self._pool.submit(self._attempt, claim, settings)
        except RuntimeError:  # shutting down: the lease runs out and another sender takes it
            self._done(claim.url)
            return
        future.add_done_callback(lambda _future: self._done(claim.url, _future))

    def _done(self, url: str, future: Future[None] | None = None) -> None:
        with self._lock:
            self._open[url] -= 1
            if self._open[url] <= 0:
                del self._open[url]
        if future is not None and not future.cancelled() and future.exception() is not None:
            log.error("webhooks: an attempt failed", exc_info=future.exception())

    def _attempt(self, claim: Claim, settings: Settings) -> None:
        """One POST and its record. The database is not held during the POST."""
        body = self._body(claim, settings)
        if body is None:
            outcome = AttemptOutcome(
                DeliveryStatus.FAILED, None, "the message was deleted before it could be sent"
            )
        else:
            result = post(claim.url, body, self._headers(claim, body), self.timeout)
            retry_hours = settings.webhook_retry_hours
            outcome = outcome_of(result, claim, utcnow(), retry_hours, self.base, self._rng)
        with self.app.app_context():
            with db.engine.begin() as connection:
                kept = record_attempt(connection, claim, outcome)
        if kept:
            self._log(claim, outcome)

    def _body(self, claim: Claim, settings: Settings) -> bytes | None:
        if claim.payload is not None:
            return claim.payload.encode()
        if claim.message_id is None:
            return None
        with self.app.app_context():
            secret_key = self.app.config["SECRET_KEY"]
            payload = build_payload(claim.message_id, settings, secret_key, utcnow())
            if payload is None:
                return None
            with db.engine.begin() as connection:
                kept = save_payload(connection, claim, payload)
        return kept.encode()

    def _headers(self, claim: Claim, body: bytes) -> dict[str, str]:
        with self.app.app_context():
            signing = webhook_secrets.signing_secrets()
        signed = webhook_secrets.sign_headers(signing, claim.webhook_id, int(time.time()), body)
        return {"content-type": "application/json", "user-agent": USER_AGENT, **signed}

    def _log(self, claim: Claim, outcome: AttemptOutcome) -> None:
        where = urlsplit(claim.url).netloc  # never the path or query: they may hold a token
        answer = f"HTTP {outcome.http_status}" if outcome.http_status else outcome.response
        if outcome.status == DeliveryStatus.DELIVERED:
            log.info("webhook %s to %s delivered (%s)", claim.id, where, answer)
        elif outcome.status == DeliveryStatus.FAILED:
            log.warning("webhook %s to %s failed for good: %s", claim.id, where, answer)
        else:
            log.info(
                "webhook %s to %s: attempt %s failed (%s), next at %s UTC",
                claim.id,
                where,
                claim.attempt,
                answer,
                f"{outcome.next_attempt_at:%H:%M:%S}",
            )
