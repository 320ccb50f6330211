"""`mxsmtp worker`: the queue's other end. The SMTP side commits the raw message with its
header facts and answers; a worker claims messages still waiting for their body, parses,
sanitises and indexes them, and stores the result. On PostgreSQL any number of workers on
any number of machines share the queue (each claim locks its rows and skips those another
worker holds); on SQLite one worker per database is the design (a second one only repeats
work, never a result). Beside it runs the webhook sender (worker/webhooks.py)."""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from mxsmtp_web.store import status
from mxsmtp_web.store.group_commit import Database
from mxsmtp_web.store.settings import Settings, current_revision
from mxsmtp_web.store.settings import load as load_settings
from mxsmtp_web.store.storage import StorageUnavailable
from mxsmtp_web.worker.complete import complete_bodies
from mxsmtp_web.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)

#: How often an idle worker looks at the queue again.
POLL_SECONDS = 0.2
#: After a database error, before trying again.
RETRY_SECONDS = 1.0


class Worker:
    """One worker process: claim, complete, report; until `stop` is set."""

    def __init__(self, app: Flask, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop
        self.database = Database.of(app)
        self.completed = 0
        self._reported_at = 0.0
        self._error: str | None = None
        self._cached: Settings | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                taken = self._take_batch()
                self._report_if_due()
                if not taken:
                    self.stop.wait(POLL_SECONDS if self._error is None else RETRY_SECONDS)
        finally:
            self._withdraw()

    def _take_batch(self) -> int:
        try:
            taken = complete_bodies(self.database, None, self._settings())
        except (StorageUnavailable, SQLAlchemyError) as error:
            if self._error is None:
                log.warning("the database is unavailable, retrying: %s", error)
            self._error = f"database unavailable: {error}".splitlines()[0]
            return 0
        except Exception:
            log.exception("completing a batch failed; its messages stay as received")
            return 0
        if self._error is not None:
            log.info("the database is back")
            self._error = None
        self.completed += taken
        return taken

    def _settings(self) -> Settings:
        """The settings, read again when their revision moved (a change made anywhere)."""
        with self.app.app_context():
            if self._cached is None or current_revision() != self._cached.revision:
                self._cached = load_settings()
        return self._cached

    def _report_if_due(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < status.HEARTBEAT_SECONDS:
            return
        state = f"worker: {self.completed} message(s) completed"
        try:
            with self.app.app_context():
                status.report(state, False, None, None, self._error, role="worker")
        except Exception as error:
            log.warning("could not record the worker state: %s", error)
            return
        self._reported_at = now

    def _withdraw(self) -> None:
        try:
            with self.app.app_context():
                status.withdraw()
        except Exception as error:
            log.warning("could not clear the worker state: %s", error)


def run_worker(app: Flask, stop: threading.Event) -> int:
    """Run a worker, and the webhook sender beside it, in this process until `stop` is set;
    returns how many messages it completed."""
    worker = Worker(app, stop)
    sender = WebhookSender(app)
    sender.start()
    try:
        worker.run()
    finally:
        sender.stop()
    return worker.completed
