"""The `mxsmtp` command. Scripts call it in loops, so start-up stays light: heavy modules
(aiosmtpd, waitress, parsing) are imported inside the commands that need them."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import click
from flask import Flask

from mxsmtp_web.app import create_app

# How long `messages list/show` wait for bodies that the listener is parsing.
BODY_WAIT_SECONDS = 5.0


def _app(**options: Any) -> Flask:
    return create_app(web=False, **options)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs every command at INFO; our own log says what was accepted or refused.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Alembic says which migrations it runs (worth a line each), and much else at INFO.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class _Commands(click.Group):
    """A database that cannot be used, or a bad boot setting, ends any command with one line
    that names the setting, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from mxsmtp_web.store.database import DatabaseError
        from mxsmtp_web.store.settings import SettingError

        try:
            return super().invoke(ctx)
        except (DatabaseError, SettingError) as error:
            _fail(str(error))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mxsmtp: an inbound mail server inside a Flask application.

    The instance folder (database, secret key, hooks/) is ./instance, or the folder named by
    the MXSMTP_INSTANCE environment variable; the database is the instance's SQLite file,
    or the one MXSMTP_DATABASE_URL names (sqlite:///PATH or postgresql://...).
    """


# --- running -----------------------------------------------------------------------------

WORKERS_HELP = (
    "Worker processes this node runs to parse stored bodies (default: one per core beside "
    "the listener's; 0: leave it to separate `mxsmtp worker` processes)."
)
LISTEN_HELP = (
    "ADDRESS:PORT this node listens on, instead of the shared listen_address and port "
    "settings (also MXSMTP_LISTEN)."
)


def _node_options(app: Flask, workers: int | None, listen: str | None) -> None:
    """Boot config of this node from its command line: worker count and own listen address
    (checked here, so a typo ends the command with one line)."""
    from mxsmtp_web.store.settings import parse_listen

    if workers is not None:
        app.config["WORKERS"] = workers
    if listen:
        app.config["LISTEN"] = listen
    if app.config.get("LISTEN"):
        parse_listen(str(app.config["LISTEN"]))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Web address to bind.")
@click.option("--port", default=8025, show_default=True, type=int, help="Web port to bind.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
@click.option("--listen", default=None, metavar="ADDRESS:PORT", help=LISTEN_HELP)
def serve(host: str, port: int, workers: int | None, listen: str | None) -> None:
    """Run the web app (waitress), the SMTP listener and its workers in one process."""
    from waitress.server import create_server

    from mxsmtp_web.smtp.listener import start_listener

    _configure_logging()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # before anything can be stopped
    app = create_app()
    _node_options(app, workers, listen)
    _warn_on_other_secret(app)
    listener = start_listener(app)
    server = None
    try:
        click.echo(f"SMTP: {listener.state.describe()}")
        server = create_server(app, host=host, port=port, threads=8)
        _record_web_address(app, host, server.effective_port)
        click.echo(f"Web: http://{host}:{server.effective_port}/  (Ctrl-C to stop)")
        server.run()
    except KeyboardInterrupt:
        click.echo("stopping: finishing messages in DATA…")
    finally:
        if server is not None:
            server.close()
        listener.stop()


def _record_web_address(app: Flask, host: str, port: int) -> None:
    """Where webhook download links point while `public_url` is empty."""
    from mxsmtp_web.store import links

    with app.app_context():
        links.record_web_address(links.web_address(host, port))


def _raise_keyboard_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _warn_on_other_secret(app: Flask) -> None:
    from mxsmtp_web.store import nodes

    with app.app_context():
        problem = nodes.check_secret_key(app.config["SECRET_KEY"])
    if problem:
        logging.getLogger(__name__).warning(problem)
        click.echo(f"warning: {problem}", err=True)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@main.command()
@click.option("--workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
@click.option("--listen", default=None, metavar="ADDRESS:PORT", help=LISTEN_HELP)
def smtp(workers: int | None, listen: str | None) -> None:
    """Run the SMTP listener (and its workers) alone, in the foreground."""
    from mxsmtp_web.smtp.listener import start_listener

    _configure_logging()
    stop = _stop_event()
    app = _app()
    _node_options(app, workers, listen)
    _warn_on_other_secret(app)
    listener = start_listener(app)
    click.echo(f"SMTP: {listener.state.describe()}  (Ctrl-C to stop)")
    while not stop.wait(0.5):
        if not listener.state.running:
            _fail("the SMTP listener stopped; see the log above")
    click.echo("stopping: finishing messages in DATA…")
    listener.stop()


@main.command()
def worker() -> None:
    """Parse, sanitise and index stored messages (the queue's other end), in the foreground.
    Run as many as you like, on any machine that reaches the database."""
    from mxsmtp_web.worker.run import run_worker

    _configure_logging()
    stop = _stop_event()
    app = _app()
    _warn_on_other_secret(app)
    click.echo("worker: taking messages from the queue  (Ctrl-C to stop)")
    completed = run_worker(app, stop)
    click.echo(f"worker: stopped after {completed} message(s)")


# --- the database --------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """The database schema: its revision and migrations."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration this release has (also done at the start of serve, smtp and
    worker); prints the revision the database is at."""
    from mxsmtp_web.store import database
    from mxsmtp_web.store.extensions import db

    app = _app(upgrade=False)
    with app.app_context():
        before = _revision(db.engine)
        database.prepare(db.engine, db.engine.url)
        after = _revision(db.engine)
    if before == after:
        click.echo(f"already at {after} (head)")
    elif before is None:  # a new database, or one made by release 0.1 (adopted)
        click.echo(f"upgraded to {after} (head)")
    else:
        click.echo(f"upgraded {before} -> {after} (head)")


@db_group.command("current")
def db_current() -> None:
    """Print the revision the database is at, and whether it is this release's head."""
    from mxsmtp_web.store import database
    from mxsmtp_web.store.extensions import db

    app = _app(upgrade=False)
    with app.app_context():
        revision = _revision(db.engine)
    if revision is None:
        click.echo("none (not yet migrated: `mxsmtp db upgrade`)")
    elif revision == database.HEAD:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (this release's head is {database.HEAD}: `mxsmtp db upgrade`)")


def _revision(engine: Any) -> str | None:
    from mxsmtp_web.store import database

    try:
        with engine.connect() as connection:
            return database.current_revision(connection)
    except Exception as error:
        raise database.unreachable(engine.url, error) from error


# --- settings ----------------------------------------------------------------------------


@main.group()
def settings() -> None:
    """Show or change the runtime settings of the mail path."""


@settings.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def settings_show(as_json: bool) -> None:
    """Print every setting with its current value."""
    from mxsmtp_web.store import settings as settings_module

    with _app().app_context():
        values = settings_module.as_dict(settings_module.load())
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    width = max(map(len, values))
    for key, value in values.items():
        click.echo(f"{key.ljust(width)}  {settings_module.to_text(value)}")


# A VALUE may start with "-" ("-5"): it is then a value to validate, not an unknown option.
@settings.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
def settings_set(key: str, value: str) -> None:
    """Set KEY to VALUE; a bad value changes nothing and says what is accepted."""
    from mxsmtp_web.store import settings as settings_module

    app = _app()
    with app.app_context():
        try:
            typed = settings_module.parse_value(key, value)
            if key in settings_module.HOOK_KEYS and typed:
                _validate_hook(app, key, typed)
            settings_module.save({key: value})
        except settings_module.SettingError as error:
            _fail(str(error))
    click.echo(f"{key} = {settings_module.to_text(typed)}")


def _validate_hook(app: Flask, key: str, spec: str) -> None:
    from pathlib import Path

    from mxsmtp_web import hooks
    from mxsmtp_web.store.settings import SettingError

    try:
        hooks.validate(spec, Path(app.config["HOOKS_DIR"]))
    except hooks.HookSpecError as error:
        raise SettingError(key, str(error)) from None


# --- mailboxes ---------------------------------------------------------------------------


@main.group()
def mailboxes() -> None:
    """Named rules for recipients, each with its own hooks, webhook, retention and viewers."""


@mailboxes.command("add")
@click.argument("name")
@click.option(
    "--match",
    "patterns",
    multiple=True,
    required=True,
    metavar="PATTERN",
    help="An address, a glob with * or re:REGEX; repeat for more.",
)
def mailboxes_add(name: str, patterns: tuple[str, ...]) -> None:
    """Add mailbox NAME, matched after the existing ones."""
    from mxsmtp_web.store import mailbox_edits

    with _app().app_context():
        try:
            mailbox_edits.add(name, patterns)
        except mailbox_edits.MailboxError as error:
            _fail(str(error))
    click.echo(f"mailbox {name.strip()} added: " + " ".join(patterns))


@mailboxes.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
def mailboxes_set(name: str, key: str, values: tuple[str, ...]) -> None:
    """Set KEY of mailbox NAME to VALUE (for match: one or more patterns; "" for the global
    setting)."""
    from mxsmtp_web.store import mailbox_edits
    from mxsmtp_web.store.settings import SettingError

    app = _app()
    value = "\n".join(values) if key == "match" else " ".join(values)
    with app.app_context():
        try:
            checked = name.strip() != "default" and value.strip() not in ("", "none")
            if key in ("recipient_hook", "message_hook") and checked:
                _validate_hook(app, key, value.strip())
            mailbox_edits.update(name, {key: value})
        except (mailbox_edits.MailboxError, SettingError) as error:
            _fail(str(error) if not isinstance(error, SettingError) else f"mailbox {name}: {error}")
    click.echo(f"{name}.{key} = {value}")


@mailboxes.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def mailboxes_list(as_json: bool) -> None:
    """Every mailbox in matching order (first match wins), `default` last."""
    from mxsmtp_web.store.mailboxes import read_all

    with _app().app_context():
        found = [_mailbox_json(mailbox) for mailbox in read_all()]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for item in found:
        patterns = " ".join(item["match"]) or "(every other recipient)"
        click.echo(f"{item['position']:>10}  {item['name']}  {patterns}")
        for key in (
            "recipient_hook",
            "message_hook",
            "webhook_url",
            "retention_days",
            "delete_after_process",
        ):
            if item[key] not in ("", None):
                click.echo(f"{'':>12}{key} = {item[key]}")
        click.echo(f"{'':>12}viewers = {', '.join(item['viewers']) or '(admins only)'}")


def _mailbox_json(mailbox: Any) -> dict[str, Any]:
    return {
        "name": mailbox.name,
        "position": mailbox.position,
        "match": list(mailbox.patterns),
        "recipient_hook": mailbox.recipient_hook,
        "message_hook": mailbox.message_hook,
        "webhook_url": mailbox.webhook_url,
        "retention_days": mailbox.retention_days,
        "delete_after_process": mailbox.delete_after_process,
        "viewers": list(mailbox.viewers),
    }


@mailboxes.command("remove")
@click.argument("name")
def mailboxes_remove(name: str) -> None:
    """Remove mailbox NAME; its messages stay, its recipients go to the next match."""
    from mxsmtp_web.store import mailbox_edits

    with _app().app_context():
        try:
            mailbox_edits.remove(name)
        except mailbox_edits.MailboxError as error:
            _fail(str(error))
    click.echo(f"mailbox {name.strip()} removed")


# --- users -------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """Manage the people who may log in to the web admin."""


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Give the admin role (default: viewer).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(name: str, admin: bool, password_stdin: bool) -> None:
    """Create a user NAME; the password comes from a prompt or standard input."""
    from mxsmtp_web.store import accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _app().app_context():
        try:
            accounts.create_user(name, password, admin=admin)
        except accounts.AccountError as error:
            _fail(str(error))
    click.echo(f"created {'admin' if admin else 'viewer'} {name}")


# --- messages ----------------------------------------------------------------------------


@main.group()
def messages() -> None:
    """List, show and reprocess stored messages."""


@messages.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N messages.")
def messages_list(as_json: bool, limit: int | None) -> None:
    """Stored messages, newest first."""
    from mxsmtp_web.store import storage
    from mxsmtp_web.store.shapes import summary_json

    with _app().app_context():
        summaries = storage.list_messages(limit)
        if _wait_for_bodies([summary.id for summary in summaries]):
            summaries = storage.list_messages(limit)
    if as_json:
        click.echo(json.dumps([summary_json(summary) for summary in summaries], indent=2))
        return
    for summary in summaries:
        names = ", ".join(a.filename or "(unnamed)" for a in summary.attachments)
        click.echo(
            f"{summary.id:>6}  {summary.received_at:%Y-%m-%d %H:%M:%S}  {summary.status:<10}  "
            f"{summary.mail_from or '<>'} -> {', '.join(summary.rcpt_tos)}  "
            f"{summary.subject!r}" + (f"  [{names}]" if names else "")
        )


def _wait_for_bodies(message_ids: list[int]) -> bool:
    """The listener parses a body moments after its 250: a script that lists or shows mail
    right after sending it gets the whole message, waiting up to BODY_WAIT_SECONDS while a
    listener is running. Returns whether there was anything to wait for."""
    from mxsmtp_web.store import status, storage

    if not storage.unparsed_among(message_ids) or not status.reports():
        return False
    deadline = time.monotonic() + BODY_WAIT_SECONDS
    while storage.unparsed_among(message_ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


@messages.command("show")
@click.argument("message_id", type=int)
@click.option("--raw", is_flag=True, help="Write exactly the stored raw bytes, nothing else.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def messages_show(message_id: int, raw: bool, as_json: bool) -> None:
    """One stored message."""
    from mxsmtp_web.store import storage
    from mxsmtp_web.store.shapes import message_json

    with _app().app_context():
        if raw:
            data = storage.get_raw(message_id)
            if data is None:
                _fail(f"no message {message_id}")
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        _wait_for_bodies([message_id])
        stored = storage.get_message(message_id)
    if stored is None:
        _fail(f"no message {message_id}")
    if as_json:
        click.echo(json.dumps(message_json(stored), indent=2))
        return
    _print_message(stored)


@messages.command("reprocess")
@click.argument("message_id", type=int)
def messages_reprocess(message_id: int) -> None:
    """Run the hooks again on a stored message and keep the new status."""
    import asyncio
    from pathlib import Path

    from mxsmtp_web.hooks import HookRunner
    from mxsmtp_web.processing import Processor

    app = _app()
    runner = HookRunner(Path(app.config["HOOKS_DIR"]), context=app.app_context)
    try:
        outcome = asyncio.run(Processor(app, runner).reprocess(message_id))
    finally:
        runner.close()
    if outcome is None:
        _fail(f"no message {message_id}")
    status = outcome.status.value if outcome.status else "unchanged"
    deleted = " (deleted: delete_after_process is on)" if outcome.deleted else ""
    click.echo(f"message {message_id}: {status}{deleted}: {outcome.reply}")


# --- webhooks ----------------------------------------------------------------------------


@main.group()
def webhooks() -> None:
    """Signed webhooks: the signing secret, the deliveries and their retries."""


@webhooks.command("secret")
@click.option("--rotate", is_flag=True, help="Replace it; the old one signs too for 24 hours.")
def webhooks_secret(rotate: bool) -> None:
    """Print the whsec_ secret that receivers check the webhook-signature header with."""
    from mxsmtp_web.store import webhook_secrets

    with _app().app_context():
        if rotate:
            secret = webhook_secrets.rotate()
            click.echo(secret.secret)
            click.echo(
                "the previous secret keeps signing beside this one until "
                f"{secret.created_at + webhook_secrets.ROTATION_OVERLAP:%Y-%m-%d %H:%M} UTC",
                err=True,
            )
            return
        click.echo(webhook_secrets.current_secret().secret)


@webhooks.command("list")
@click.option("--status", type=click.Choice(["pending", "failed", "delivered"]), help="Only these.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def webhooks_list(status: str | None, as_json: bool) -> None:
    """Webhook deliveries, newest first: state, attempts, the last answer."""
    from mxsmtp_web.store import webhooks as deliveries

    with _app().app_context():
        found = deliveries.list_deliveries(status)
    if as_json:
        click.echo(json.dumps([delivery.as_json() for delivery in found], indent=2))
        return
    for delivery in found:
        answer = f"HTTP {delivery.last_status}" if delivery.last_status else "no answer"
        if not delivery.attempts:
            answer = "not tried yet"
        excerpt = " ".join(delivery.last_response.split())[:60]
        click.echo(
            f"{delivery.id:>6}  {delivery.created_at:%Y-%m-%d %H:%M:%S}  {delivery.status:<9}  "
            f"message {delivery.message_id or '-'}  {delivery.url}  "
            f"{delivery.attempts} attempt(s), {answer}" + (f": {excerpt}" if excerpt else "")
        )


@webhooks.command("retry")
@click.argument("delivery_id", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed delivery.")
def webhooks_retry(delivery_id: int | None, all_failed: bool) -> None:
    """Send delivery ID (or, with --failed, every failed one) again now."""
    from mxsmtp_web.store import webhooks as deliveries

    if (delivery_id is None) == (not all_failed):
        _fail("give a delivery ID or --failed (one of them)")
    with _app().app_context():
        if all_failed:
            click.echo(f"{deliveries.retry_failed()} failed delivery(ies) will be sent again now")
            return
        if not deliveries.retry(delivery_id):
            _fail(f"no webhook delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} will be sent again now")


# --- ingest ------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--sender", required=True, help="The envelope sender (empty or <> for bounces).")
@click.option("--recipient", "recipients", multiple=True, help="An envelope recipient.")
@click.option("--peer", default="127.0.0.1", show_default=True, help="The client's address.")
@click.option("--helo", default="localhost", show_default=True, help="The client's HELO name.")
@click.argument("more_recipients", nargs=-1)
def ingest(
    sender: str, recipients: tuple[str, ...], peer: str, helo: str, more_recipients: tuple[str, ...]
) -> None:
    """Receive one message from standard input, as an MTA's pipe gives it, through the SMTP
    path's checks and storage. Recipients after the options count too (Postfix expands
    ${recipient} into one argument per recipient). Exit status per sysexits.h: 0 stored,
    67 every recipient refused, 77 sender or message refused, 65 too large or malformed,
    75 try again later; standard error carries the SMTP-style reply."""
    from mxsmtp_web.smtp.ingest import EX_TEMPFAIL, UNAVAILABLE, Delivery
    from mxsmtp_web.smtp.ingest import ingest as ingest_message
    from mxsmtp_web.store.database import DatabaseError
    from mxsmtp_web.store.settings import SettingError

    # The reply comes first on standard error (the MTA quotes it); log lines follow it, one
    # line each (a hook's traceback is kept with its refusal, on the Refusals page).
    notes: list[str] = []
    logging.basicConfig(level=logging.WARNING, handlers=[_OneLineNotes(notes)], force=True)
    everyone = [*recipients, *more_recipients]
    if not everyone:
        click.echo("554 5.5.1 No recipients given (--recipient ADDRESS)", err=True)
        sys.exit(64)  # EX_USAGE
    message = sys.stdin.buffer.read()
    try:
        delivery = ingest_message(_app(), message, sender, everyone, peer, helo)
    except (DatabaseError, SettingError) as error:  # the MTA keeps the message and retries
        delivery = Delivery(EX_TEMPFAIL, (*UNAVAILABLE.replies, f"error: {error}"))
    except Exception as error:  # a bug: the same, with the traceback for the log
        logging.getLogger(__name__).error("ingest failed", exc_info=error)
        delivery = Delivery(EX_TEMPFAIL, UNAVAILABLE.replies)
    for line in [*delivery.replies, *notes]:
        click.echo(line, err=True)
    sys.exit(delivery.status)


class _OneLineNotes(logging.Handler):
    """Log records as one line each, kept for after the reply."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        first = record.getMessage().splitlines()[0] if record.getMessage() else ""
        self.lines.append(f"mxsmtp: {record.levelname.lower()}: {first}")


# --- purge -------------------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than",
    "days",
    required=True,
    type=click.FloatRange(min=0),
    help="Age in days; 0 selects everything received until now.",
)
@click.option("--status", help="Only messages with this status (e.g. processed, 'hook error').")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(days: float, status: str | None, yes: bool) -> None:
    """Delete messages received more than DAYS days ago, with their attachments."""
    from mxsmtp_web.store import storage
    from mxsmtp_web.store.models import Status

    if status is not None:
        status = status.replace("_", " ")
        if status not in {s.value for s in Status}:
            _fail(f"--status: one of {', '.join(s.value for s in Status)}; got {status!r}")
    with _app().app_context():
        selected = storage.purge_older_than(days, status, dry_run=True)
        click.echo(_describe_purge("Selected", selected))
        if selected.messages == 0:
            return
        if not yes:
            click.confirm("Delete them?", abort=True)
        removed = storage.purge_older_than(days, status)
    click.echo(_describe_purge("Deleted", removed))


def _describe_purge(verb: str, result: Any) -> str:
    return (
        f"{verb} {result.messages} message(s), {result.attachments} attachment(s), "
        f"{result.bytes} byte(s)"
    )


# --- output shapes -----------------------------------------------------------------------


def _print_message(stored: Any) -> None:
    summary = stored.summary
    fields = {
        "Id": summary.id,
        "Received": f"{summary.received_at:%Y-%m-%d %H:%M:%S} UTC from {stored.peer_address} "
        f"(HELO {stored.helo})",
        "Status": summary.status,
        "Envelope": f"{summary.mail_from or '<>'} -> {', '.join(summary.rcpt_tos)}",
        "From": summary.from_header,
        "To": ", ".join(stored.to),
        "Subject": summary.subject,
        "Size": f"{summary.size} bytes",
        "Kind": summary.kind,
    }
    if summary.reply_ref is not None:
        fields["Reply ref"] = summary.reply_ref
    if summary.parent_id is not None or summary.thread_id != summary.id:
        fields["Thread"] = (
            f"{summary.thread_id} (answers {summary.parent_id or 'a deleted message'})"
        )
    if summary.bounce is not None:
        bounce = summary.bounce
        fields["Bounce"] = f"{bounce.recipient} {bounce.status or ''} {bounce.diagnostic or ''}"
    for label, value in fields.items():
        click.echo(f"{label + ':':<10} {value}")
    for attachment in summary.attachments:
        click.echo(
            f"Attachment: {attachment.filename} ({attachment.content_type}, "
            f"{attachment.size} bytes, sha256 {attachment.sha256})"
        )
    for entry in stored.hook_log:
        click.echo(f"Hook:      {entry['hook']} {entry['outcome']} {entry['reply']}".rstrip())
    click.echo("")
    click.echo(stored.text if stored.text is not None else "(no plain-text body)")
