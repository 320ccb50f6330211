"""What happens to a received message once its bytes are in: parse, sanitise, store, run the
message hook, keep the outcome. Shared by the SMTP handler (after DATA) and by reprocessing
(the CLI and the web pages), so both follow the same rules."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection

from mxsmtp_web.hooks import Decision, HookMessage, HookRunner, SessionInfo
from mxsmtp_web.mail.parsing import ParsedMail, parse_headers
from mxsmtp_web.replies import ReplyReader
from mxsmtp_web.reply_codes import (
    ACCEPTED,
    REFUSED_MESSAGE,
    REFUSED_RECIPIENT,
    REFUSED_SENDER,
    STORAGE_FULL,
    STORAGE_UNAVAILABLE,
)
from mxsmtp_web.store import storage, webhooks
from mxsmtp_web.store.group_commit import (
    Database,
    GroupCommitWriter,
    worker_context,
)
from mxsmtp_web.store.mailboxes import route
from mxsmtp_web.store.models import Status
from mxsmtp_web.store.settings import Settings
from mxsmtp_web.store.settings import load as load_settings
from mxsmtp_web.verdicts import MailboxHook, Settlement, Verdict, message_hooks
from mxsmtp_web.worker.complete import (
    BODIES_PER_TRANSACTION,
    Parse,
    complete_bodies,
    parse_and_sanitise,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
# Tasks that feed stored messages to the parse pool; two keep one core busy while the other
# task waits on the database.
COMPLETERS = 2
FEED_BATCH = 100
MAX_PARSERS = 4
# Bodies wait while messages arrive less than QUIET_SECONDS apart, for DEFER_SECONDS at most.
QUIET_SECONDS = 0.05
DEFER_SECONDS = 10.0
# When a body could not be stored (the database was busy or the writer restarting).
RETRY_SECONDS = 1.0
# PostgreSQL: how soon the feed looks again below its cursor for late commits.
RESCAN_SECONDS = 1.0
# Body parsing yields the CPU to the SMTP dialogue and the writer: under a burst the backlog
# (ids only) grows and drains when the burst is over. The lowest priority, not the idle
# scheduling class: on a machine that is always busy, bodies must still get parsed.
PARSER_NICENESS = 19


@dataclass(frozen=True)
class Outcome:
    """The answer to give the sender, and what became of the message."""

    reply: str
    message_id: int | None = None
    status: Status | None = None
    deleted: bool = False


def log_entry(hook: str, spec: str, decision: Decision, subject: str = "") -> dict[str, Any]:
    """One line of a message's hook log: which hook ran, on what, and what it said."""
    outcome = "error" if decision.failed else ("accepted" if decision.accepted else "refused")
    return {
        "hook": hook,
        "spec": spec,
        "on": subject,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "outcome": outcome,
        "reply": decision.reply or "",
        "error": decision.error,
    }


class Processor:
    """Runs the message path: blocking work in threads inside the app, full parses in the parse
    pool (another core) when there is one, writes through the group-commit writer when there
    is one, and the hooks through the hook runner."""

    def __init__(
        self,
        app: Flask,
        runner: HookRunner,
        writer: GroupCommitWriter | None = None,
        parse_pool: Executor | None = None,
        *,
        completes_bodies: bool = True,
        receiving: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        # True while a sender is inside DATA: bodies wait for the transfer too (see BodyBacklog)
        self.receiving = receiving
        # False with `--workers 0`: separate `mxsmtp worker` processes parse the bodies.
        self.completes_bodies = completes_bodies
        self.runner = runner
        self.writer = writer
        self.parse_pool = parse_pool
        # Keys read once per process (and again when the key files change), not per message.
        self.replies = ReplyReader(app.instance_path)
        self.database = Database.of(app)
        self.backlog = BodyBacklog(self)

    async def in_app(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking work (the database, parsing) in a thread, inside an app context."""

        def call() -> T:
            with self.app.app_context():
                return function(*args)

        return await asyncio.to_thread(call)

    async def settings(self) -> Settings:
        return await self.in_app(load_settings)

    async def parse(self, raw: bytes, settings: Settings, reply_ref: str | None = None) -> Parse:
        """The full parse, the sanitised HTML and the conversation facts, off the event loop."""
        return await self._in_parser(parse_and_sanitise, raw, settings, reply_ref)

    async def _in_parser(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` in the parse pool (another core), or in a thread where there is no
        pool or it broke."""
        if self.parse_pool is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self.parse_pool, function, *args)
            except BrokenProcessPool:
                log.error("the parse pool broke; parsing in a thread instead")
                self.parse_pool = None
        return await asyncio.to_thread(function, *args)

    def reply_ref(self, envelope: storage.Envelope, settings: Settings) -> str | None:
        """The ref of the first valid reply address among the envelope recipients. Cheap:
        only recipients shaped like ``reply+TOKEN`` cost an HMAC."""
        return self.replies.first_ref(envelope.rcpt_tos, settings.reply_separator)

    async def write(
        self, job: Callable[[Connection], T], timeout: float | None = None, size: int | None = None
    ) -> T:
        """Run a write job in a transaction; committed when this returns. On PostgreSQL a
        server that does not answer within `timeout` seconds counts as unavailable: the sender
        gets 451 rather than a session that hangs (should the commit still land later, the
        sender's retry is a second copy, never a loss). An SQLite file's busy timeout bounds
        its own wait."""
        if self.writer is not None:
            pending = self.writer.submit(job, size)
        else:
            pending = self.in_app(storage.run_in_transaction, job)
        if self.database.is_sqlite:
            return await pending
        try:
            return await asyncio.wait_for(pending, timeout)
        except TimeoutError:
            raise storage.StorageUnavailable(
                f"no answer from the database in {timeout} s"
            ) from None

    async def deliver(
        self,
        envelope: storage.Envelope,
        session: SessionInfo,
        raw: bytes,
        settings: Settings,
        hook_log: list[dict[str, Any]],
    ) -> Outcome:
        """Store the message and, with a message hook, let it decide. Answers 250 only once the
        message (or its deletion after processing) is committed."""
        try:
            hooks = message_hooks(envelope, settings)
            if any(hook.spec for hook in hooks):
                return await self._deliver_to_hooks(
                    envelope, session, raw, settings, hook_log, hooks
                )
            reply_ref = self.reply_ref(envelope, settings)
            message_id = await self.write(
                partial(_store_headers_only, envelope, raw, hook_log, reply_ref),
                settings.hook_timeout,
                len(raw),
            )
        except storage.StorageFull as error:
            log.error("storage full, answered 452: %s", error)
            return Outcome(STORAGE_FULL)
        except storage.StorageUnavailable as error:
            log.error("storage unavailable, answered 451: %s", error)
            return Outcome(STORAGE_UNAVAILABLE)
        self.complete_later(message_id, settings)
        return Outcome(ACCEPTED, message_id, Status.RECEIVED)

    async def _deliver_to_hooks(
        self,
        envelope: storage.Envelope,
        session: SessionInfo,
        raw: bytes,
        settings: Settings,
        hook_log: list[dict[str, Any]],
        hooks: list[MailboxHook],
    ) -> Outcome:
        """The message hooks see the fully parsed message, stored, before we answer."""
        reply_ref = self.reply_ref(envelope, settings)
        parsed, html, facts = await self.parse(raw, settings, reply_ref)
        stored = await self.write(
            partial(
                _store_whole,
                envelope,
                parsed,
                raw,
                html,
                Status.RECEIVED,
                hook_log,
                reply_ref,
                facts,
            ),
            settings.hook_timeout,
            2 * len(raw),  # the raw bytes and what the parse took out of them
        )
        message = hook_message(
            stored.id, envelope, session, parsed, html, raw, thread=stored, facts=facts
        )
        verdicts = await self._ask_mailboxes(hooks, message, settings, hook_log)
        settlement = Settlement(verdicts, settings.delete_after_process)
        return await self._settle(envelope, parsed, stored.id, settlement, hook_log, settings)

    async def _ask_mailboxes(
        self,
        hooks: list[MailboxHook],
        message: HookMessage,
        settings: Settings,
        hook_log: list[dict[str, Any]],
    ) -> tuple[Verdict, ...]:
        """Every mailbox's message hook at once, each seeing its own mailbox and route; all of
        them within one hook_timeout."""
        asked = [hook for hook in hooks if hook.spec]
        decisions = await asyncio.gather(
            *(
                self.runner.run(
                    hook.spec,
                    (replace(message, mailbox=hook.placement.mailbox, route=hook.placement.route),),
                    settings.hook_timeout,
                )
                for hook in asked
            )
        )
        answers = iter(decisions)
        verdicts = []
        for hook in hooks:
            decision = next(answers) if hook.spec else None
            if decision is not None:
                # which mailbox's hook it was, once there is more than one
                on = hook.placement.mailbox if len(hooks) > 1 else ""
                hook_log.append(log_entry("message_hook", hook.spec, decision, on))
            verdicts.append(Verdict(hook, decision))
        return tuple(verdicts)

    def complete_later(self, message_id: int, settings: Settings) -> None:
        """Parse the body of a message stored with only its header block, soon."""
        if self.completes_bodies:
            self.backlog.notify(settings)

    async def complete(self, message_ids: list[int], settings: Settings) -> None:
        """Parse the bodies of messages stored with only their header block and store them:
        all of it in a parser process (reading, parsing, writing), so that none of it costs
        the listener's process anything but the ids."""
        await self._in_parser(complete_bodies, self.database, message_ids, settings)

    async def finish_pending(self, timeout: float) -> None:
        """Let body parses under way finish (up to `timeout` seconds); the rest of the backlog
        is taken up again at the next start."""
        await self.backlog.finish(timeout)

    async def _settle(
        self,
        envelope: storage.Envelope,
        parsed: ParsedMail,
        message_id: int,
        settlement: Settlement,
        hook_log: list[dict[str, Any]],
        settings: Settings,
        notify: bool = True,
    ) -> Outcome:
        """Keep what the message hooks decided (see `verdicts` for the rule) and answer; the
        mailboxes that keep it get their webhooks (not again when an admin reprocesses it)."""
        try:
            failed = settlement.failed
            if failed is not None and failed.decision is not None:
                decision = failed.decision
                await self.in_app(storage.set_outcome, message_id, Status.HOOK_ERROR, hook_log)
                await self._record(envelope, "message_hook", decision.reply, decision.error)
                return Outcome(decision.reply or "", message_id, Status.HOOK_ERROR)
            if not settlement.accepted:
                await self.in_app(storage.delete_messages, [message_id])
                await self._record(envelope, "message_hook", settlement.reply)
                return Outcome(settlement.reply, None, Status.REJECTED, deleted=True)
            await self._record_mailbox_refusals(envelope, settlement)
            await self._forget_failed_copies(parsed, envelope, message_id)
            status = Status.PROCESSED if settlement.any_hook_accepted else Status.RECEIVED
            placed = bool(envelope.placements)
            leaving = settlement.leaving()
            if await self.in_app(storage.leave_mailboxes, message_id, leaving, placed):
                return Outcome(settlement.reply, None, status, deleted=True)
            await self.in_app(storage.set_outcome, message_id, status, hook_log)
            if notify:
                await self.in_app(
                    storage.run_in_transaction, partial(_queue_webhooks, message_id, settings)
                )
            return Outcome(settlement.reply, message_id, status)
        except storage.StorageUnavailable as error:
            log.error("storage unavailable after the message hook, answered 451: %s", error)
            return Outcome(STORAGE_UNAVAILABLE, message_id)

    async def _record_mailbox_refusals(
        self, envelope: storage.Envelope, settlement: Settlement
    ) -> None:
        """A mailbox that refused what another accepted: the sender hears 250, so the refusal
        is kept where admins look (the Refusals page)."""
        kept = ", ".join(v.hook.mailbox.name for v in settlement.accepted)
        for verdict in settlement.refused:
            name = verdict.hook.mailbox.name
            reply = (verdict.decision.reply if verdict.decision else None) or REFUSED_MESSAGE
            detail = f"mailbox {name} refused it; kept for {kept}"
            await self.in_app(
                storage.record_refusal,
                envelope,
                verdict.hook.placement.address,
                f"message_hook ({name})",
                reply,
                detail,
            )

    async def _forget_failed_copies(
        self, parsed: ParsedMail, envelope: storage.Envelope, message_id: int
    ) -> None:
        await self.in_app(storage.remove_failed_copies, parsed.message_id, envelope, message_id)

    async def _record(
        self, envelope: storage.Envelope, check: str, reply: str | None, detail: str = ""
    ) -> None:
        recipients = ", ".join(envelope.rcpt_tos)
        await self.in_app(storage.record_refusal, envelope, recipients, check, reply or "", detail)

    async def reprocess(self, message_id: int) -> Outcome | None:
        """Run every hook again on a stored message, as if it had just arrived, and keep the
        new status. Returns None when there is no such message."""
        stored = await self.in_app(storage.get_message, message_id)
        raw = await self.in_app(storage.get_raw, message_id)
        if stored is None or raw is None:
            return None
        settings = await self.settings()
        envelope = storage.Envelope(
            mail_from=stored.summary.mail_from,
            rcpt_tos=stored.summary.rcpt_tos,
            peer_address=stored.peer_address,
            helo=stored.helo,
            tls=stored.tls,
            placements=stored.summary.placements,
        )
        session = SessionInfo(stored.peer_address, 0, stored.helo, stored.tls)
        hook_log: list[dict[str, Any]] = []
        refusal = await self._envelope_refusal(envelope, session, settings, hook_log)
        if refusal is not None:
            await self.in_app(storage.set_outcome, message_id, refusal, hook_log)
            return Outcome(hook_log[-1]["reply"], message_id, refusal)
        hooks = message_hooks(envelope, settings)
        if not any(hook.spec for hook in hooks):
            await self.in_app(storage.set_outcome, message_id, Status.RECEIVED, hook_log)
            return Outcome(ACCEPTED, message_id, Status.RECEIVED)
        parsed, html, facts = await self.parse(raw, settings, stored.summary.reply_ref)
        message = hook_message(
            message_id, envelope, session, parsed, html, raw, stored, stored.summary, facts
        )
        settlement = Settlement(
            await self._ask_mailboxes(hooks, message, settings, hook_log),
            settings.delete_after_process,
        )
        if not settlement.failed and not settlement.accepted:
            await self.in_app(storage.set_outcome, message_id, Status.REJECTED, hook_log)
            return Outcome(settlement.reply, message_id, Status.REJECTED)
        return await self._settle(
            envelope, parsed, message_id, settlement, hook_log, settings, notify=False
        )

    async def _envelope_refusal(
        self,
        envelope: storage.Envelope,
        session: SessionInfo,
        settings: Settings,
        hook_log: list[dict[str, Any]],
    ) -> Status | None:
        """Run the sender and recipient hooks for a reprocess; the status to keep if one says no."""
        checks: list[tuple[str, str, tuple[Any, ...], str]] = []
        if settings.sender_hook:
            checks.append(
                ("sender_hook", settings.sender_hook, (envelope.mail_from, session), REFUSED_SENDER)
            )
        for rcpt in envelope.rcpt_tos:
            mailbox, _ = route(rcpt, settings.mailboxes)
            spec = mailbox.own("recipient_hook", settings.recipient_hook)
            if spec:
                args = (rcpt, envelope.mail_from, session)
                checks.append(("recipient_hook", spec, args, REFUSED_RECIPIENT))
        for hook, spec, args, refused in checks:
            decision = await self.runner.run(spec, args, settings.hook_timeout)
            entry = log_entry(hook, spec, decision, str(args[0]))
            entry["reply"] = entry["reply"] or (ACCEPTED if decision.accepted else refused)
            hook_log.append(entry)
            if decision.failed:
                return Status.HOOK_ERROR
            if not decision.accepted:
                return Status.REJECTED
        return None


class BodyBacklog:
    """Messages stored with only their header block, waiting for their body to be parsed.
    The backlog is the database itself (rows with parsed = 0): it costs no memory however
    long a burst makes it, and survives a crash. A feeder reads ids in order, in batches, and
    hands them to COMPLETERS workers through a small queue.

    Under a burst the bodies wait, so that the CPU goes to answering senders: nothing is fed
    while messages keep arriving less than QUIET_SECONDS apart or a sender is inside DATA
    (large messages arrive further apart than that, each costing more), for at most
    DEFER_SECONDS; a load that never pauses gets its bodies parsed beside it after that."""

    def __init__(self, processor: Processor) -> None:
        self.processor = processor
        self._last_arrival = -QUIET_SECONDS
        self._busy_since: float | None = None
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[list[int]] = asyncio.Queue(maxsize=2 * COMPLETERS)
        self._cursor = 0  # ids up to here were handed out; new messages have higher ids
        self._settings = Settings()
        self._tasks: list[asyncio.Task[None]] = []

    def notify(self, settings: Settings, arrival: bool = True) -> None:
        """A message was stored with only its header block (or, not an arrival, the listener
        started and looks for what a crash left)."""
        self._settings = settings
        if arrival:
            self._last_arrival = asyncio.get_running_loop().time()
        self._wake.set()
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._feed())] + [
                asyncio.create_task(self._work()) for _ in range(COMPLETERS)
            ]

    async def _feed(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._feed_waiting()
            except Exception as error:  # the database is down: look again a little later
                log.warning("could not read the messages waiting for their body: %s", error)
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)

    async def _feed_waiting(self) -> None:
        while ids := await self.processor.in_app(
            storage.unparsed_messages, FEED_BATCH, self._cursor
        ):
            self._cursor = ids[-1]
            for start in range(0, len(ids), BODIES_PER_TRANSACTION):
                await self._wait_for_quiet()
                # waits while the workers are busy
                await self._queue.put(ids[start : start + BODIES_PER_TRANSACTION])
        if self._cursor and not self.processor.database.is_sqlite:
            # PostgreSQL commits messages from many connections at once: an id below the
            # cursor may become visible after it moved on. Look again from the start a moment
            # later (ids parsed meanwhile are not read again; claims skip those in hand).
            self._cursor = 0
            asyncio.get_running_loop().call_later(RESCAN_SECONDS, self._wake.set)

    async def _wait_for_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        while (
            now := loop.time()
        ) - self._last_arrival < QUIET_SECONDS or self.processor.receiving():
            if self._busy_since is None:
                self._busy_since = now
            if now - self._busy_since >= DEFER_SECONDS:
                return  # a load that never pauses: parse beside it
            await asyncio.sleep(QUIET_SECONDS)
        self._busy_since = None

    async def _work(self) -> None:
        while True:
            message_ids = await self._queue.get()
            try:
                await self.processor.complete(message_ids, self._settings)
            except storage.StorageUnavailable as error:
                log.warning("could not store message bodies, will retry: %s", error)
                self._retry_from(message_ids[0])
            except Exception:
                log.exception("parsing messages %s failed; they stay as received", message_ids)
            finally:
                self._queue.task_done()

    def _retry_from(self, message_id: int) -> None:
        """Feed again from `message_id` a little later (ids already parsed are skipped)."""
        self._cursor = min(self._cursor, message_id - 1)
        asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)

    async def finish(self, timeout: float) -> None:
        if not self._tasks:
            return
        self._tasks[0].cancel()  # no more feeding
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("some message bodies are left to parse at the next start")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_shared_pool: Executor | None = None
_shared_pool_lock = threading.Lock()


def shared_parse_pool(workers: int | None = None) -> Executor | None:
    """One pool of parser processes per process: `workers` of them, or by default one per
    core beside the event loop's (None on a single core, and for `workers=0`). From the fork
    server, not forked from here: the parent runs threads."""
    global _shared_pool
    cores = os.cpu_count() or 1
    size = min(cores - 1, MAX_PARSERS) if workers is None else workers
    if size < 1:
        return None
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = ProcessPoolExecutor(
                max_workers=size,
                mp_context=worker_context(),
                initializer=start_parser,
                initargs=(os.getpid(),),
            )
            atexit.register(_shared_pool.shutdown, wait=False, cancel_futures=True)
    return _shared_pool


def start_parser(owner: int) -> None:
    """A parser process runs at the lowest priority, and ends with the process that owns the
    pool: its pool cannot tell it when that process is killed, and it would linger. Ctrl-C
    and stop signals sent to the whole process group are for the owner, which shuts the
    pool down in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(PARSER_NICENESS)
    threading.Thread(target=_exit_with, args=(owner,), daemon=True).start()


def _exit_with(owner: int) -> None:
    try:
        watched = os.pidfd_open(owner)  # readable once the process has ended
    except (AttributeError, OSError):
        while owner_alive(owner):
            time.sleep(1)
    else:
        select.select([watched], [], [])
    os._exit(0)


def owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # alive (PermissionError too: it exists, as another user's)


def _store_headers_only(
    envelope: storage.Envelope,
    raw: bytes,
    hook_log: list[dict[str, Any]],
    reply_ref: str | None,
    connection: Connection,
) -> int:
    """The fast path's write job: the header block is all a 250 needs; the body follows."""
    summary = parse_headers(raw)
    return storage.insert_message(
        connection,
        envelope,
        summary,
        raw,
        None,
        Status.RECEIVED,
        hook_log,
        body_parsed=False,
        reply_ref=reply_ref,
        replacing_failed=True,
    )


def _store_whole(
    envelope: storage.Envelope,
    parsed: ParsedMail,
    raw: bytes,
    html: str | None,
    status: Status,
    hook_log: list[dict[str, Any]],
    reply_ref: str | None,
    facts: storage.ConversationFacts,
    connection: Connection,
) -> storage.ThreadLink:
    message_id = storage.insert_message(
        connection,
        envelope,
        parsed,
        raw,
        html,
        status,
        hook_log,
        reply_ref=reply_ref,
        conversation=facts,
    )
    return storage.thread_link(connection, message_id)


def _queue_webhooks(message_id: int, settings: Settings, connection: Connection) -> int:
    """A message a message hook accepted: the webhooks of the mailboxes that keep it."""
    targets = webhooks.targets_for(connection, message_id, settings)
    return webhooks.queue_deliveries(connection, message_id, targets)


def hook_message(
    message_id: int | None,
    envelope: storage.Envelope,
    session: SessionInfo,
    parsed: ParsedMail,
    html: str | None,
    raw: bytes,
    stored: storage.StoredMessage | None = None,
    thread: storage.ThreadLink | storage.MessageSummary | None = None,
    facts: storage.ConversationFacts | None = None,
) -> HookMessage:
    facts = facts or storage.ConversationFacts()
    return HookMessage(
        id=message_id,
        received_at=stored.summary.received_at.replace(tzinfo=UTC) if stored else datetime.now(UTC),
        sender=envelope.mail_from,
        recipients=envelope.rcpt_tos,
        session=session,
        headers=parsed.headers,
        subject=parsed.subject,
        from_=parsed.from_,
        to=parsed.to,
        cc=parsed.cc,
        date=parsed.date,
        message_id=parsed.message_id,
        text=parsed.text,
        html=html,
        attachments=parsed.attachments,
        raw=raw,
        defects=parsed.defects,
        reply_ref=thread.reply_ref if thread else None,
        reply_text=facts.reply_text,
        kind=facts.kind,
        parent_id=thread.parent_id if thread else None,
        thread_id=thread.thread_id if thread else message_id,
        bounce=facts.bounce,
    )
