"""Group commit for the listener, in a process of its own. The event loop's process keeps its
core for the SMTP dialogue; the writer process owns a write connection, and jobs that arrive
while a transaction is being written go together into the next one, so a burst of messages
costs one fsync instead of one each. Every job gets its own savepoint: one bad message does not
take the others down, and each sender is answered only once its message is committed.

A job is a picklable callable `job(connection)` (a `functools.partial` of a module-level
function): it travels to the writer process, and its return value or exception travels back.
The writer process ignores SIGINT and SIGTERM and stops when the listener closes the link (or
dies), after writing what it was sent, so a graceful shutdown can still store the messages
that were in DATA. The link is a `multiprocessing.Pipe`: the standard library frames and
pickles; on the listener's side a thread sends (pickling large messages off the event loop)
and a thread receives, handing results to the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection as Connection_
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from mxsmtp_web.store.database import engine_options
from mxsmtp_web.store.extensions import (  # and the connect event: WAL, synchronous
    SQLITE_BUSY_TIMEOUT_MS,
    db,
)
from mxsmtp_web.store.storage import StorageUnavailable, database_errors, storage_error

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[Connection], Any]

# Messages per transaction at most; more wait for the next one.
MAX_BATCH = 200
CLOSE_TIMEOUT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 30.0
# Jobs up to this size are sent from the event loop when the pipe has room (see _Link.send);
# the pipe's send buffer is asked to be SEND_BUFFER_BYTES (the kernel may double it).
DIRECT_SEND_BYTES = 64 * 1024
SEND_BUFFER_BYTES = 1024 * 1024
# The writer process's first message: its signals are set aside, it takes jobs.
READY = "ready"
# What the listener sends when no more jobs follow.
END = None
# Modules the fork server imports once, so that each writer and parser process starts in
# milliseconds and shares their pages with the others.
PRELOAD = ["mxsmtp_web.store.group_commit", "mxsmtp_web.worker.complete"]


def worker_context() -> multiprocessing.context.BaseContext:
    """Where the writer and the parsers come from: a fork server, started once per process
    from a fresh interpreter (forking the listener itself is unsafe: it runs threads)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@dataclass(frozen=True)
class Database:
    """Where the writer and the parsers store, as a process of their own can be told it."""

    url: str
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS

    @classmethod
    def of(cls, app: Flask) -> Database:
        with app.app_context():
            url = db.engine.url.render_as_string(hide_password=False)
        return cls(url, app.config.get("SQLITE_BUSY_TIMEOUT_MS", SQLITE_BUSY_TIMEOUT_MS))

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


class GroupCommitWriter:
    """The listener's side: `submit(job)` sends a job to the writer process and resolves once
    its transaction is committed. A writer process that died is started again for the next
    job; the jobs it had are answered StorageUnavailable (the senders get 451 and retry)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._link: _Link | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Start the writer process (if it is not running) and connect to it."""
        async with self._starting:
            if self._link is not None:
                return
            ours, theirs = multiprocessing.Pipe()
            process = worker_context().Process(
                target=serve, args=(self._database, theirs), name="mxsmtp-writer"
            )
            try:
                await asyncio.to_thread(process.start)
            finally:
                theirs.close()
            # until it has set its signals aside: a stop signal would kill it before
            if await asyncio.to_thread(_first_message, ours, START_TIMEOUT_SECONDS) != READY:
                process.kill()
                ours.close()
                raise StorageUnavailable("the writer process did not start")
            link = _Link(ours, asyncio.get_running_loop(), self._resolve, self._lost)
            self._link, self._process = link, process
            atexit.register(link.close)

    @property
    def pid(self) -> int | None:
        """The writer process's id, while it runs."""
        return self._process.pid if self._link is not None and self._process else None

    async def submit(self, job: Callable[[Connection], T], size: int | None = None) -> T:
        """Run `job` in the next transaction; returns its value once committed, or raises
        StorageFull / StorageUnavailable. `size`: about how many bytes the job carries (a
        small job is sent from the event loop itself, a large or unknown one by a thread)."""
        if self._link is None:
            await self.start()
        assert self._link is not None
        job_id = next(self._ids)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[job_id] = future
        self._link.send(job_id, job, size)  # a job that does not pickle fails its own future
        return await future

    async def close(self) -> None:
        """Let the writer process write what it was sent, then wait for it to stop."""
        link, process = self._link, self._process
        if link is None or process is None:
            return
        link.close()
        try:
            await asyncio.wait_for(asyncio.shield(link.closed), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            log.error("the writer process did not finish in time; stopping it")
            process.kill()
        await asyncio.to_thread(process.join, CLOSE_TIMEOUT_SECONDS)

    def _resolve(self, results: list[tuple[int, Any, BaseException | None]]) -> None:
        for job_id, value, error in results:
            future = self._pending.pop(job_id, None)
            if future is None or future.done():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def _lost(self, link: _Link) -> None:
        atexit.unregister(link.close)
        if link is self._link:
            self._link = None
        pending, self._pending = self._pending, {}
        if pending:
            log.error("the writer process stopped with %d job(s) unanswered", len(pending))
        for future in pending.values():
            if not future.done():
                future.set_exception(StorageUnavailable("the writer process stopped"))
        if self._process is not None:
            threading.Thread(target=self._process.join, daemon=True).start()  # reap it


def _enlarge_send_buffer(connection: Connection_) -> None:
    """A pipe buffer that holds many small jobs (see _Link._send_now)."""
    with socket.socket(fileno=os.dup(connection.fileno())) as end:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def _first_message(connection: Connection_, timeout: float) -> Any:
    try:
        return connection.recv() if connection.poll(timeout) else None
    except (EOFError, OSError):
        return None


class _Link:
    """The listener's end of the pipe to the writer process: a thread sends jobs (in the order
    they were submitted), a thread receives results and hands them to the event loop."""

    def __init__(
        self,
        connection: Connection_,
        loop: asyncio.AbstractEventLoop,
        on_results: Callable[[list[tuple[int, Any, BaseException | None]]], None],
        on_lost: Callable[[_Link], None],
    ) -> None:
        self._connection = connection
        self._loop = loop
        self._on_results = on_results
        self._on_lost = on_lost
        self._outbox: queue.SimpleQueue[tuple[int, Job] | None] = queue.SimpleQueue()
        self._sending = threading.Lock()  # one writer of the pipe at a time
        _enlarge_send_buffer(connection)
        self._writable = select.poll()
        self._writable.register(connection.fileno(), select.POLLOUT)
        self._closing = False
        self.closed: asyncio.Future[None] = loop.create_future()
        threading.Thread(target=self._send_all, name="mxsmtp-writer-link", daemon=True).start()
        threading.Thread(target=self._receive_all, name="mxsmtp-writer-link", daemon=True).start()

    def send(self, job_id: int, job: Job, size: int | None = None) -> None:
        """Small jobs go straight into the pipe when that cannot block (handing each to the
        sending thread cost the listener a tenth of its CPU per message); others queue."""
        if self._closing:
            raise StorageUnavailable("the writer process is not running")
        small = size is not None and size <= DIRECT_SEND_BYTES
        if not (small and self._outbox.empty() and self._send_now(job_id, job)):
            self._outbox.put((job_id, job))

    def _send_now(self, job_id: int, job: Job) -> bool:
        # The pipe is writable when at most a quarter of its buffer is taken (Linux, AF_UNIX):
        # a payload below DIRECT_SEND_BYTES then fits without waiting for the writer.
        if not self._writable.poll(0) or not self._sending.acquire(blocking=False):
            return False
        try:
            payload = ForkingPickler.dumps((job_id, job))
        except Exception as error:  # this job cannot travel: only its sender is told
            self._call_soon(self._on_results, [(job_id, None, _sendable(error))])
            return True
        else:
            try:
                self._connection.send_bytes(payload)
            except (OSError, ValueError):
                pass  # the writer has gone: the receiving thread tells the loop
            return True
        finally:
            self._sending.release()

    def close(self) -> None:
        """No more jobs: the writer process writes what it was sent and stops."""
        if not self._closing:
            self._closing = True
            self._outbox.put(END)

    def _send_all(self) -> None:
        while (item := self._outbox.get()) is not END:
            try:
                payload = ForkingPickler.dumps(item)
            except Exception as error:  # this job cannot travel: only its sender is told
                self._call_soon(self._on_results, [(item[0], None, _sendable(error))])
                continue
            try:
                with self._sending:
                    self._connection.send_bytes(payload)
            except (OSError, ValueError):
                return  # the writer has gone: the receiving thread tells the loop
        try:
            with self._sending:
                self._connection.send(END)
        except (OSError, ValueError):
            pass

    def _receive_all(self) -> None:
        try:
            while True:
                self._call_soon(self._on_results, self._connection.recv())
        except (EOFError, OSError):
            pass
        finally:
            self._connection.close()
            self._call_soon(self._lost)

    def _lost(self) -> None:
        if not self._closing:
            self._closing = True
            self._outbox.put(END)  # the sending thread ends too
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_lost(self)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass


# The writer process.


def serve(database: Database, link: Connection_) -> None:
    """The writer process's main function: read jobs, write them in batches, send back each
    job's value or exception; stop at the end of the input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    link.send(READY)
    jobs: queue.SimpleQueue[tuple[int, Job] | None] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(link, jobs), daemon=True).start()
    batches = GroupCommit(database)
    try:
        for results in batches.run(jobs):
            link.send(results)
    except OSError:
        pass  # the listener has gone; what was committed stays committed
    finally:
        batches.close()
        link.close()


def _receive(link: Connection_, jobs: queue.SimpleQueue[tuple[int, Job] | None]) -> None:
    try:
        while (job := link.recv()) is not END:
            jobs.put(job)
    except (EOFError, OSError):
        pass
    finally:
        jobs.put(None)


class GroupCommit:
    """Writes jobs in batches on one connection whose driver leaves transactions to us."""

    def __init__(self, database: Database) -> None:
        url = make_url(database.url)
        options = {**engine_options(url), "pool_size": 1, "max_overflow": 0}
        self._engine = create_engine(url, **(options if not database.is_sqlite else {}))
        self._sqlite = database.is_sqlite
        self._busy_timeout_ms = database.busy_timeout_ms
        self._connection: Connection | None = None

    def run(
        self, jobs: queue.SimpleQueue[tuple[int, Job] | None]
    ) -> Iterator[list[tuple[int, Any, BaseException | None]]]:
        """Per batch, the outcome of each job, until the queue gives None."""
        while True:
            batch, stop = _next_batch(jobs)
            if batch:
                yield self.write(batch)
            if stop:
                return

    def write(self, batch: list[tuple[int, Job]]) -> list[tuple[int, Any, BaseException | None]]:
        outcomes: list[tuple[int, Any, BaseException | None]] = []
        try:
            if not self._sqlite and (written := self._write_without_savepoints(batch)):
                return written
            connection = self._connect()
            with connection.begin():
                # Take the write lock first (waiting if need be): a transaction that reads
                # first and writes later can fail at once in WAL mode ("database is locked").
                if self._sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                for job_id, job in batch:
                    outcomes.append((job_id, *run_job(connection, job)))
        except database_errors() as error:  # the commit failed: nobody is stored
            log.error("group commit of %d job(s) failed: %s", len(batch), error)
            self._reset()
            failure = storage_error(error)
            return [(job_id, None, failure) for job_id, _ in batch]
        return outcomes

    def _write_without_savepoints(
        self, batch: list[tuple[int, Job]]
    ) -> list[tuple[int, Any, BaseException | None]] | None:
        """PostgreSQL: the batch in one transaction without a savepoint per job (each costs
        two round trips, as much as the job itself). None when a job failed: the transaction
        is rolled back and the caller writes the batch again, each job in its savepoint, so
        that only the failing job fails. A lost connection fails the whole batch."""
        connection = self._connect()
        transaction = connection.begin()
        try:
            values = [job(connection) for _, job in batch]
        except Exception as error:
            transaction.rollback()
            import psycopg  # loaded already: batches are written this way on PostgreSQL only

            if isinstance(error, psycopg.OperationalError) or (
                isinstance(error, DBAPIError) and error.connection_invalidated
            ):
                raise  # the connection is lost: so is the batch
            return None
        transaction.commit()
        return [(job_id, value, None) for (job_id, _), value in zip(batch, values, strict=True)]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the writer's connection, for work that reads and writes in it
        (PostgreSQL's claims); storage errors come out as StorageUnavailable."""
        try:
            connection = self._connect()
            with connection.begin():
                if self._sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        except database_errors() as error:
            self._reset()
            raise storage_error(error) from error

    def read(self, query: Callable[[Connection, Any], T], *args: Any) -> T:
        """Run a read on the same connection, outside any write transaction."""
        connection = self._connect()
        try:
            with connection.begin():  # SQLite's driver is left in autocommit: no BEGIN
                return query(connection, *args)
        except database_errors() as error:
            self._reset()
            raise storage_error(error) from error

    def close(self) -> None:
        self._reset()
        self._engine.dispose()

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
            if not self._sqlite:
                return self._connection
            driver = self._connection.connection.driver_connection
            driver.isolation_level = None
            driver.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return self._connection

    def _reset(self) -> None:
        """After a failed commit start from a fresh connection (the old one may be unusable)."""
        if self._connection is not None:
            try:
                self._connection.close()
            except SQLAlchemyError:
                pass
        self._connection = None


def _next_batch(
    jobs: queue.SimpleQueue[tuple[int, Job] | None],
) -> tuple[list[tuple[int, Job]], bool]:
    first = jobs.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < MAX_BATCH:
        try:
            item = jobs.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


def run_job(connection: Connection, job: Job) -> tuple[Any, BaseException | None]:
    """Run `job` in a savepoint of its own: a failure undoes only this job."""
    if connection.dialect.name != "sqlite":
        return _run_job_in_savepoint(connection, job)
    driver = connection.connection.driver_connection
    driver.execute("SAVEPOINT job")
    try:
        value = job(connection)
    except Exception as error:
        driver.execute("ROLLBACK TO job")
        driver.execute("RELEASE job")
        if isinstance(error, database_errors()):
            return None, storage_error(error)
        log.exception("write job failed")  # a bug in one job must not stop the writer
        return None, _sendable(error)
    driver.execute("RELEASE job")
    return value, None


def _run_job_in_savepoint(connection: Connection, job: Job) -> tuple[Any, BaseException | None]:
    """_run_job through SQLAlchemy's savepoints (PostgreSQL)."""
    try:
        with connection.begin_nested():
            value = job(connection)
    except database_errors() as error:
        return None, storage_error(error)
    except Exception as error:
        log.exception("write job failed")
        return None, _sendable(error)
    return value, None


def _sendable(error: Exception) -> BaseException:
    """The exception itself if it pickles, else one that says what it was."""
    try:
        pickle.dumps(error)
    except Exception:
        return RuntimeError(f"write job failed: {error!r}")
    return error
