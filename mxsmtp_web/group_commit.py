"""Group commit for the listener, in a process of its own. The event loop's process keeps its
core for the SMTP dialogue; the writer process owns a write connection, and jobs that arrive
while a transaction is being written go together into the next one, so a burst of messages
costs one fsync instead of one each. Every job gets its own savepoint: one bad message does not
take the others down, and each sender is answered only once its message is committed.

A job is a picklable callable `job(connection)` (a `functools.partial` of a module-level
function): it travels to the writer process, and its return value or exception travels back.
The writer process ignores SIGINT and SIGTERM and stops when the listener closes the link (or
dies), after writing what it was sent, so a graceful shutdown can still store the messages
that were in DATA.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import multiprocessing
import pickle
import queue
import signal
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .database import engine_options
from .extensions import SQLITE_BUSY_TIMEOUT_MS, db  # and the connect event: WAL, synchronous
from .storage import StorageUnavailable, storage_error

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[Connection], Any]

# Messages per transaction at most; more wait for the next one.
MAX_BATCH = 200
CLOSE_TIMEOUT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 30.0
# The writer process's first frame: its signals are set aside, it takes jobs.
READY = "ready"
# Frames on the link: an 8-byte length, then a pickle.
HEADER = struct.Struct("!Q")
RECEIVE_BYTES = 1 << 20
# Socket buffers of the link (the kernel may give less), and the payload size from which the
# frame header and payload are written separately rather than joined first.
LINK_BUFFER_BYTES = 4 << 20
SEPARATE_WRITE_BYTES = 64 << 10
# Modules the fork server imports once, so that each writer and parser process starts in
# milliseconds and shares their pages with the others.
PRELOAD = ["mxsmtp_web.group_commit", "mxsmtp_web.processing"]


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


def frame(value: object) -> list[bytes]:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return [HEADER.pack(len(payload)), payload]


class FrameReader:
    """Collects bytes as they arrive and gives back each whole frame's value."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        values = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            with memoryview(self._buffer) as view, view[HEADER.size : end] as payload:
                values.append(pickle.loads(payload))
            del self._buffer[:end]
        return values


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
            ours, theirs = socket.socketpair()
            for end in (ours, theirs):  # a large message in one send, not in many
                end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_BUFFER_BYTES)
                end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER_BYTES)
            process = worker_context().Process(
                target=serve,
                args=(self._database, theirs),
                name="mxsmtp-writer",
            )
            try:
                await asyncio.to_thread(process.start)
            finally:
                theirs.close()
            loop = asyncio.get_running_loop()
            link = _Link(self._resolve, self._lost)
            await loop.create_connection(lambda: link, sock=ours)
            try:  # until it has set its signals aside: a stop signal would kill it before
                await asyncio.wait_for(asyncio.shield(link.ready), START_TIMEOUT_SECONDS)
            except (TimeoutError, StorageUnavailable):
                process.kill()
                raise StorageUnavailable("the writer process did not start") from None
            self._link, self._process = link, process
            atexit.register(link.close)

    @property
    def pid(self) -> int | None:
        """The writer process's id, while it runs."""
        return self._process.pid if self._link is not None and self._process else None

    async def submit(self, job: Callable[[Connection], T]) -> T:
        """Run `job` in the next transaction; returns its value once committed, or raises
        StorageFull / StorageUnavailable."""
        if self._link is None:
            await self.start()
        assert self._link is not None
        job_id = next(self._ids)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        parts = frame((job_id, job))  # a job that does not pickle raises here, to the caller
        self._pending[job_id] = future
        self._link.send(parts)
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


class _Link(asyncio.Protocol):
    """The listener's end of the socket to the writer process."""

    def __init__(
        self,
        on_results: Callable[[list[tuple[int, Any, BaseException | None]]], None],
        on_lost: Callable[[_Link], None],
    ) -> None:
        self._on_results = on_results
        self._on_lost = on_lost
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        for results in self._reader.feed(data):
            if results == READY:
                self.ready.set_result(None)
            else:
                self._on_results(results)

    def eof_received(self) -> bool:
        return False  # the writer process has gone: close our end too

    def connection_lost(self, error: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(StorageUnavailable("the writer process ended"))
        self._on_lost(self)

    def send(self, parts: list[bytes]) -> None:
        if self._transport is None or self._transport.is_closing():
            raise StorageUnavailable("the writer process is not running")
        header, payload = parts
        if len(payload) < SEPARATE_WRITE_BYTES:
            self._transport.writelines(parts)  # one send
        else:  # no joined copy of a large payload
            self._transport.write(header)
            self._transport.write(payload)

    def close(self) -> None:
        """No more jobs: the writer process sees the end of its input, writes and stops."""
        if self._transport is not None and self._transport.can_write_eof():
            self._transport.write_eof()


# The writer process.


def serve(database: Database, link: socket.socket) -> None:
    """The writer process's main function: read jobs, write them in batches, send back each
    job's value or exception; stop at the end of the input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    link.sendall(b"".join(frame(READY)))
    jobs: queue.SimpleQueue[tuple[int, Job] | None] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(link, jobs), daemon=True).start()
    batches = GroupCommit(database)
    try:
        for results in batches.run(jobs):
            link.sendall(b"".join(frame(results)))
    except OSError:
        pass  # the listener has gone; what was committed stays committed
    finally:
        batches.close()
        link.close()


def _receive(link: socket.socket, jobs: queue.SimpleQueue[tuple[int, Job] | None]) -> None:
    reader = FrameReader()
    try:
        while data := link.recv(RECEIVE_BYTES):
            for job in reader.feed(data):
                jobs.put(job)
    except OSError:
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
            connection = self._connect()
            with connection.begin():
                # Take the write lock first (waiting if need be): a transaction that reads
                # first and writes later can fail at once in WAL mode ("database is locked").
                if self._sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                for job_id, job in batch:
                    outcomes.append((job_id, *run_job(connection, job)))
        except (SQLAlchemyError, sqlite3.Error) as error:  # the commit failed: nobody is stored
            log.error("group commit of %d job(s) failed: %s", len(batch), error)
            self._reset()
            failure = storage_error(error)
            return [(job_id, None, failure) for job_id, _ in batch]
        return outcomes

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
        except (SQLAlchemyError, sqlite3.Error) as error:
            self._reset()
            raise storage_error(error) from error

    def read(self, query: Callable[[Connection, Any], T], *args: Any) -> T:
        """Run a read on the same connection, outside any write transaction."""
        connection = self._connect()
        try:
            with connection.begin():  # SQLite's driver is left in autocommit: no BEGIN
                return query(connection, *args)
        except (SQLAlchemyError, sqlite3.Error) as error:
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
        if isinstance(error, SQLAlchemyError | sqlite3.Error):
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
    except SQLAlchemyError as error:
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
