"""Group commit for the listener: one thread owns a write connection; jobs that arrive while a
transaction is being written go together into the next one, so a burst of messages costs one
fsync instead of one each. Every job gets its own savepoint: one bad message does not take the
others down, and each sender is answered only once its message is committed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .storage import storage_error

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[Connection], Any]

# Messages per transaction at most; more wait for the next one.
MAX_BATCH = 200


class GroupCommitWriter:
    """Runs write jobs `job(connection)` in batches on its own thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs: queue.SimpleQueue[tuple[Job, concurrent.futures.Future] | None] = (
            queue.SimpleQueue()
        )
        self._connection: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="mxsmtp-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue `job`; the awaitable resolves once its transaction is committed, or raises
        StorageFull / StorageUnavailable."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        return asyncio.wrap_future(future)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._jobs.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            if stop:
                break
        if self._connection is not None:
            self._connection.close()

    def _next_batch(self) -> tuple[list[tuple[Job, concurrent.futures.Future]], bool]:
        first = self._jobs.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[tuple[Job, concurrent.futures.Future]]) -> None:
        outcomes: list[tuple[concurrent.futures.Future, Any, BaseException | None]] = []
        try:
            connection = self._connect()
            with connection.begin():
                # Take the write lock first (waiting if need be): a transaction that reads
                # first and writes later can fail at once in WAL mode ("database is locked").
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                for job, future in batch:
                    outcomes.append((future, *self._run_job(connection, job)))
        except (SQLAlchemyError, sqlite3.Error) as error:  # the commit failed: nobody is stored
            log.error("group commit of %d job(s) failed: %s", len(batch), error)
            self._reset()
            for _, future in batch:
                future.set_exception(storage_error(error))
            return
        for future, value, error in outcomes:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    @staticmethod
    def _run_job(connection: Connection, job: Job) -> tuple[Any, BaseException | None]:
        """Run `job` in a savepoint of its own: a failure undoes only this job."""
        driver = connection.connection.driver_connection
        driver.execute("SAVEPOINT job")
        try:
            value = job(connection)
        except Exception as error:
            driver.execute("ROLLBACK TO job")
            driver.execute("RELEASE job")
            if isinstance(error, SQLAlchemyError | sqlite3.Error):
                return None, storage_error(error)
            log.exception("write job failed")  # a bug in one job must not stop the writer
            return None, error
        driver.execute("RELEASE job")
        return value, None

    def _connect(self) -> Connection:
        """A connection whose driver leaves transactions to us (pysqlite would otherwise
        begin them itself, deferred, and mishandle savepoints)."""
        if self._connection is None:
            self._connection = self._engine.connect()
            self._connection.connection.driver_connection.isolation_level = None
        return self._connection

    def _reset(self) -> None:
        """After a failed commit start from a fresh connection (the old one may be unusable)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except SQLAlchemyError:
                pass
        self._connection = None
