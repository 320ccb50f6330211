"""The listener: one per process, in a background thread with its own event loop. It follows
the settings in the database, whoever changed them: a new address or port rebinds within a
second and the old socket closes; new hooks and limits apply from the next session."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from mxsmtp_web.hooks import HookRunner
from mxsmtp_web.processing import Processor, shared_parse_pool
from mxsmtp_web.smtp.handler import MailHandler, MailSMTP
from mxsmtp_web.smtp.limits import SessionTracker
from mxsmtp_web.store import status, storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.group_commit import Database, GroupCommitWriter
from mxsmtp_web.store.settings import RevisionReader, Settings, parse_listen
from mxsmtp_web.store.settings import load as load_settings
from mxsmtp_web.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
DEFAULT_GRACE_SECONDS = 30.0
START_TIMEOUT_SECONDS = 15.0
PURGE_EVERY_SECONDS = 3600.0
PURGE_CHECK_SECONDS = 60.0
# A database that does not answer the settings read in this time is treated as down.
SETTINGS_TIMEOUT_SECONDS = 5.0
HEARTBEAT_SECONDS = status.HEARTBEAT_SECONDS


@dataclass(frozen=True)
class ListenerState:
    """What the listener is doing, in words an admin can act on."""

    running: bool
    address: str | None = None
    port: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if not self.running:
            return "stopped"
        where = f"listening on {self.address}:{self.port}" if self.port else "not listening"
        return f"{where} ({self.error})" if self.error else where


def listen_override(app: Flask) -> tuple[str, int] | None:
    """This node's own ADDRESS:PORT (`--listen`, MXSMTP_LISTEN), instead of the shared
    listen_address and port settings."""
    value = app.config.get("LISTEN")
    return parse_listen(str(value)) if value else None


def describe_bind_error(error: OSError, address: str, port: int) -> str:
    """A bind failure as advice, not an errno."""
    if isinstance(error, socket.gaierror):
        return f"cannot bind {address}:{port}: {address!r} is not a known address of this machine"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot bind {address}:{port}: the port is in use by another program; "
            "stop it or choose another port"
        )
    if error.errno == errno.EACCES and port < 1024:
        return (
            f"cannot bind {address}:{port}: ports below 1024 need root; choose a port above "
            "1024 or run behind the system MTA"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {address}:{port}: {address} is not an address of this machine"
    return f"cannot bind {address}:{port}: {error.strerror or error}"


class Listener:
    """Owns the thread, the loop, the server socket and the open sessions."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.state = ListenerState(running=False)
        self._settings = Settings()
        self._settings_loaded = False  # the first session reads them whatever the revision
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None
        self._last_error: tuple[str, int, str] | None = None
        self._tracker = SessionTracker()
        self._grace = DEFAULT_GRACE_SECONDS
        self._reported: ListenerState | None = None
        self._reported_at = 0.0
        self._next_purge_at = 0.0
        self._revisions: RevisionReader | None = None
        self._tls: tuple[tuple, ssl.SSLContext] | None = None
        self._tls_problem = ""
        self.processor: Processor | None = None
        self._webhooks: WebhookSender | None = None

    def start(self) -> ListenerState:
        """Start the thread and wait until the first bind was tried, however long a busy
        machine takes (saying so every START_TIMEOUT_SECONDS): a slow start is not a stop."""
        if self._thread is not None and self._thread.is_alive():
            return self.state
        if self._webhooks is None and self.app.config.get("WORKERS") != 0:
            self._webhooks = WebhookSender(self.app)  # `--workers 0`: the workers send them
            self._webhooks.start()
        self._started.clear()
        self._thread = threading.Thread(target=self._run, name="mxsmtp-listener", daemon=True)
        self._thread.start()
        while not self._started.wait(START_TIMEOUT_SECONDS):
            if not self._thread.is_alive():
                break
            log.warning("the SMTP listener is still starting (the machine is busy)")
        return self.state

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop accepting, let messages already in DATA finish (up to `grace` seconds), tell
        the other sessions 421 and end the thread."""
        webhooks, self._webhooks = self._webhooks, None
        if webhooks is not None:
            webhooks.stop(wait=False)  # POSTs under way end within their timeout
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        self._grace = grace
        loop.call_soon_threadsafe(stop.set)
        thread.join(grace + 5)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("the SMTP listener stopped on an unexpected error")
        finally:
            self.state = ListenerState(running=False)
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = HookRunner(Path(self.app.config["HOOKS_DIR"]), context=self.app.app_context)
        database = Database.of(self.app)
        # One writer process commits in groups, on both engines: a burst costs one fsync per
        # transaction instead of one per message (measured on PostgreSQL: 0.32x noop against
        # 0.17x for one commit per message from a pool of threads), and the statements' CPU
        # leaves the event loop's process.
        writer = GroupCommitWriter(database)
        await writer.start()
        workers = self.app.config.get("WORKERS")
        self.processor = Processor(
            self.app,
            runner,
            writer,
            shared_parse_pool(workers),
            completes_bodies=workers != 0,
            receiving=self._tracker.receiving,
        )
        try:
            await self._follow_settings()
            self._started.set()
            if self.processor.completes_bodies:  # what a crash left
                self.processor.backlog.notify(self._settings, arrival=False)
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), POLL_SECONDS)
                except TimeoutError:
                    await self._follow_settings()
            await self._shut_down()
            await self.processor.finish_pending(self._grace)
        finally:
            runner.close()
            if self._revisions is not None:
                self._revisions.close()
            await writer.close()
            await self._withdraw()

    async def _withdraw(self) -> None:
        assert self.processor is not None
        try:
            await self.processor.in_app(status.withdraw)
        except Exception as error:
            log.warning("could not clear the listener state: %s", error)

    async def current_settings(self) -> Settings:
        """The settings for a new session: re-read when their revision moved, so a change made
        anywhere applies from the next session."""
        assert self.processor is not None
        try:
            revision = await self._read_revision()
            if revision != self._settings.revision or not self._settings_loaded:
                self._settings = await asyncio.wait_for(
                    self.processor.in_app(load_settings), SETTINGS_TIMEOUT_SECONDS
                )
                self._settings_loaded = True
        except Exception as error:  # the database is down: keep serving with what we know
            log.warning("could not re-read settings, keeping the previous ones: %s", error)
        return self._settings

    async def _read_revision(self) -> int:
        if self._revisions is None:
            with self.app.app_context():
                self._revisions = RevisionReader(db.engine)
        if not self._revisions.blocking:
            return self._revisions.read()
        return await asyncio.wait_for(
            asyncio.to_thread(self._revisions.read), SETTINGS_TIMEOUT_SECONDS
        )

    async def _follow_settings(self) -> None:
        settings = await self.current_settings()
        if not self._settings_loaded or (self._stop is not None and self._stop.is_set()):
            # never the defaults' port for want of the database, nor a bind on the way out
            self.state = ListenerState(True, None, None, "waiting for the database")
            await self._report_if_due()
            return
        if not settings.listener_enabled:
            self._close_server("stopped: listener_enabled is off")
        else:
            wanted = listen_override(self.app) or (settings.listen_address, settings.port)
            if self._server is None or self._bound != wanted:
                await self._bind(*wanted)
        await self._report_if_due()
        await self._purge_if_due(settings)

    def _close_server(self, why: str) -> None:
        if self._server is not None:
            self._server.close()  # sessions already open carry on
            log.info("SMTP listener %s", why)
        self._server, self._bound = None, None
        self.state = ListenerState(True, None, None, why)

    async def _report_if_due(self) -> None:
        """Write the state for other processes when it changed, and as a heartbeat."""
        assert self._loop is not None and self.processor is not None
        now = self._loop.time()
        if self.state == self._reported and now - self._reported_at < HEARTBEAT_SECONDS:
            return
        state = self.state
        try:
            await self.processor.in_app(
                status.report,
                state.describe(),
                state.port is not None,
                state.address,
                state.port,
                state.error,
            )
        except Exception as error:  # the database is down; the next poll tries again
            log.warning("could not record the listener state: %s", error)
            return
        self._reported, self._reported_at = state, now

    async def _purge_if_due(self, settings: Settings) -> None:
        """Automatic retention: once an hour for the whole cluster when retention_days is set
        (each node looks every minute whether the cluster's turn is due and takes it)."""
        assert self._loop is not None and self.processor is not None
        now = self._loop.time()
        keeps_forever = not settings.retention_days and not any(
            mailbox.retention_days for mailbox in settings.mailboxes
        )
        if keeps_forever or now < self._next_purge_at:
            return
        self._next_purge_at = now + PURGE_CHECK_SECONDS
        try:
            if not await self.processor.in_app(storage.take_purge_turn, PURGE_EVERY_SECONDS):
                return
            result = await self.processor.in_app(storage.purge_by_retention, settings)
        except Exception as error:
            log.warning("automatic purge failed, will try again: %s", error)
            return
        if result.messages:
            log.info(
                "automatic purge (retention_days=%s): removed %s message(s)",
                settings.retention_days,
                result.messages,
            )

    async def _bind(self, address: str, port: int) -> None:
        assert self._loop is not None
        try:
            server = await self._loop.create_server(
                self._new_session, host=address, port=port, reuse_address=True
            )
        except OSError as error:
            message = describe_bind_error(error, address, port)
            if self._last_error != (address, port, message):
                log.error(message)
                self._last_error = (address, port, message)
            bound = self._bound or (None, None)
            self.state = ListenerState(True, bound[0], bound[1], message)
            return
        old, self._server, self._bound = self._server, server, (address, port)
        self._last_error = None
        self.state = ListenerState(True, address, port)
        log.info("SMTP listening on %s:%s", address, port)
        if old is not None:
            old.close()  # sessions already open on the old socket carry on

    def _new_session(self) -> MailSMTP:
        assert self.processor is not None
        handler = MailHandler(self.processor, self._settings)
        return MailSMTP(
            handler,
            self._tracker,
            self.current_settings,
            self.tls_context,
            hostname=self._settings.effective_host_name,
            loop=self._loop,
        )

    def tls_context(self, settings: Settings) -> ssl.SSLContext | None:
        """The STARTTLS context for the configured certificate and key, loaded again when
        either setting or file changes; None (no STARTTLS offered) when unset or unusable."""
        if not (settings.tls_cert_file and settings.tls_key_file):
            return None
        try:
            key = tuple(
                (path, os.stat(path).st_mtime_ns)
                for path in (settings.tls_cert_file, settings.tls_key_file)
            )
        except OSError as error:
            return self._tls_failed(f"cannot read the TLS files: {error}")
        if self._tls is None or self._tls[0] != key:
            try:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
            except (OSError, ssl.SSLError) as error:
                return self._tls_failed(f"cannot load the TLS certificate or key: {error}")
            self._tls = (key, context)
            log.info("STARTTLS offered with %s", settings.tls_cert_file)
        return self._tls[1]

    def _tls_failed(self, problem: str) -> None:
        if self._tls_problem != problem:
            log.error("%s; STARTTLS is not offered", problem)
            self._tls_problem = problem
        self._tls = None
        return None

    async def _shut_down(self) -> None:
        if self._server is not None:
            self._server.close()
        for protocol in list(self._tracker.open):
            if not protocol.in_data:
                protocol.close_for_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace
        while self._tracker.busy() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for protocol in list(self._tracker.open):
            protocol.close_for_shutdown()
        await asyncio.sleep(0)  # let the transports flush the 421 lines
        self._server = None
        self._bound = None
        log.info("SMTP listener stopped")


_process_listener: Listener | None = None
_process_lock = threading.Lock()


def start_listener(app: Flask) -> Listener:
    """Exactly one listener per process: a second call returns the running one."""
    global _process_listener
    with _process_lock:
        if _process_listener is None:
            _process_listener = Listener(app)
        _process_listener.start()
        return _process_listener


def running_listener() -> Listener | None:
    return _process_listener
