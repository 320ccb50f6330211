"""The settings page (admins): one form for every runtime setting of the mail path, the
listener's state with Stop and Start, and a form that sends a test message to the listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from mxsmtp_web import hooks
from mxsmtp_web.mail.sanitize import LEVELS
from mxsmtp_web.store import settings, status, storage
from mxsmtp_web.web import compose
from mxsmtp_web.web.access import AdminAccess

HOOK_CHOICES_ID = "hook-choices"
TEST_FORM_PREFIX = "test"  # the test-message form shares the page with the settings form
_HOOK_INPUT = {"list": HOOK_CHOICES_ID, "autocomplete": "off", "spellcheck": "false"}
_NUMBER_INPUT = {"inputmode": "numeric"}

# (title, introduction, keys): the order of the form. Every key of settings.SPECS is here once.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Listener",
        "Where the SMTP listener accepts mail. A new address or port applies within a second; "
        "connections already open finish on the old one.",
        ("listener_enabled", "listen_address", "port", "host_name", "double_bounce_address"),
    ),
    (
        "Limits",
        "Senders above a limit get a clear refusal instead of a stored message.",
        (
            "max_message_size",
            "max_recipients",
            "max_sessions",
            "max_sessions_per_peer",
            "idle_timeout",
            "session_timeout",
            "max_errors",
            "max_header_size",
            "max_mime_parts",
            "max_mime_depth",
        ),
    ),
    (
        "TLS",
        "STARTTLS encrypts mail on its way in. Give a PEM certificate and key readable by this "
        "process; the certificate's name should be the host name above.",
        ("tls_cert_file", "tls_key_file", "require_tls"),
    ),
    (
        "Hooks",
        "Hook scripts decide what is accepted. Write SCRIPT.py:FUNCTION: a script in the "
        "instance's hooks/ folder (or an absolute path) and a function in it; leave empty for "
        "none. A hook returns True to accept, False to refuse with the usual 550 reply, or a full "
        'reply line such as "550 5.1.1 No such user". A hook that raises or runs too long '
        "answers 451, so the sender tries again later. A hook may also be an http:// or "
        "https:// URL: mxsmtp POSTs the same arguments as signed JSON and the endpoint answers "
        '200 {"accept": true} or {"accept": false} (see the README, HTTP hooks); an error, '
        "another status or no answer in time is a 451 too.",
        ("sender_hook", "recipient_hook", "message_hook", "hook_timeout"),
    ),
    (
        "Replies",
        "Mail the application sends can carry a signed reply address (reply_address() in "
        "mxsmtp_web.replies): answers to it come back with the record's ref in "
        "message.reply_ref. Addresses already sent keep working when these change only if "
        "the old domain still reaches this listener and the separator stays the same.",
        ("reply_domain", "reply_separator"),
    ),
    (
        "Webhooks",
        "Every stored message is POSTed as signed JSON to the webhook URL, once it is parsed, "
        "and retried while the receiver fails (see the Webhooks page). The JSON carries "
        "download links for the raw message and each attachment that work without a login.",
        ("webhook_url", "public_url", "webhook_link_ttl", "webhook_retry_hours"),
    ),
    (
        "HTML filter",
        "HTML bodies are always shown in a sandboxed frame that runs no script; the filter "
        "also removes what the chosen level does not keep, when the message is stored.",
        ("xss_filter", "xss_filter_level"),
    ),
    (
        "Retention",
        "What is kept, and for how long.",
        ("retention_days", "delete_after_process"),
    ),
)

HELP = {
    "listener_enabled": "Off: the listener closes its port (Stop below does the same).",
    "listen_address": "127.0.0.1 for this machine only; 0.0.0.0 (IPv4) or :: (IPv6) for every "
    "interface, so other machines can deliver.",
    "port": "25 is the standard SMTP port but needs root; above 1024 any user may bind, e.g. "
    "2525 behind the system MTA.",
    "host_name": "Announced in the greeting and EHLO reply and written into Received headers. "
    "Empty means this machine's name: {effective}.",
    "double_bounce_address": "Some relays check that a sender address exists by sending a "
    "probe from a special address (Postfix: double-bounce@their.host) before they hand over a "
    "mail. Mail from this address skips the sender hook, gets true answers for its "
    "recipients and is never stored. Empty: no special treatment.",
    "max_message_size": "In bytes (10485760 is 10 MiB); advertised to senders with SIZE.",
    "max_recipients": "Recipients past this number get 452 4.5.3 and are sent again by the "
    "sender in another message.",
    "max_sessions": "Sessions past this number are told 421 4.7.0 and try again later.",
    "max_sessions_per_peer": "Keeps one sender from taking every session; 421 4.7.0 past it.",
    "idle_timeout": "Seconds of silence before a session is closed (RFC 5321: 5 minutes).",
    "session_timeout": "A session is closed after this many seconds, however busy.",
    "max_errors": "After this many refused recipients or bad commands the session is closed "
    "(421), so guessing addresses gets nowhere.",
    "max_header_size": "Bytes of header block at most; a crafted header cannot take memory.",
    "max_mime_parts": "MIME parts at most; more are refused with 554 5.6.0.",
    "max_mime_depth": "MIME nesting at most; deeper is refused with 554 5.6.0.",
    "tls_cert_file": "Absolute path of the PEM certificate (with its chain).",
    "tls_key_file": "Absolute path of the PEM private key.",
    "require_tls": "Refuse MAIL FROM with 530 5.7.0 until the client has used STARTTLS.",
    "sender_hook": "check_sender(sender, session) — runs at MAIL FROM with the envelope "
    'sender ("" for bounces) and the session (peer address, HELO name, TLS).',
    "recipient_hook": "check_recipient(recipient, sender, session) — runs at each RCPT TO; "
    "refusing one recipient keeps the others.",
    "message_hook": "process_message(message) — runs after the message is stored, with the "
    "envelope, headers, bodies, attachments and raw bytes. True marks it processed; False "
    "refuses it (550) and it is not kept.",
    "hook_timeout": "Seconds a hook may run before the sender is told 451 4.3.0 (try later).",
    "xss_filter": "Off keeps the HTML as sent; the sandboxed frame still stops scripts.",
    "xss_filter_level": "What the filter keeps; see the levels below.",
    "retention_days": "Messages older than this are purged automatically once an hour by the "
    "listener; 0 keeps them until you purge them yourself.",
    "reply_domain": "The domain after the @ of new reply addresses; its MX must point here. "
    "Empty means the host name above.",
    "reply_separator": "The character between 'reply' and the token (reply+TOKEN@…): one of "
    "+ - _ . = ; choose the one your mail routing passes through (Postfix: "
    "recipient_delimiter).",
    "delete_after_process": "Remove a message as soon as the message hook accepted it: for "
    "applications that only need the hook.",
    "webhook_url": "http:// or https://; answered 2xx it is delivered, 410 stops, anything "
    "else is tried again. Signed per Standard Webhooks with the secret that "
    "`mxsmtp webhooks secret` shows. Empty: no webhook.",
    "public_url": "The web app's address as the receiver reaches it, e.g. "
    "https://mail.example.com, for the download links. Empty: the address `mxsmtp serve` "
    "listens on.",
    "webhook_link_ttl": "Seconds the download links work (604800 is 7 days).",
    "webhook_retry_hours": "Hours a failing delivery is retried, with growing pauses (the "
    "first within a minute, then at most an hour apart), before it is marked failed.",
}


class SettingsForm(FlaskForm):
    """Every setting as text (booleans as checkboxes, the level as a choice); the values are
    checked by settings.parse_value so the page and the CLI accept the same things."""

    listener_enabled = BooleanField("Listener enabled (accepts connections)")
    listen_address = StringField("Listen address")
    port = StringField("Port", render_kw=_NUMBER_INPUT)
    host_name = StringField("Host name")
    double_bounce_address = StringField("Double-bounce address")
    max_message_size = StringField("Largest message (bytes)", render_kw=_NUMBER_INPUT)
    max_recipients = StringField("Most recipients per message", render_kw=_NUMBER_INPUT)
    max_sessions = StringField("Most sessions at once", render_kw=_NUMBER_INPUT)
    max_sessions_per_peer = StringField(
        "Most sessions at once from one address", render_kw=_NUMBER_INPUT
    )
    idle_timeout = StringField("Idle timeout (seconds)", render_kw=_NUMBER_INPUT)
    session_timeout = StringField("Longest session (seconds)", render_kw=_NUMBER_INPUT)
    max_errors = StringField("Errors before a session is closed", render_kw=_NUMBER_INPUT)
    max_header_size = StringField("Largest header block (bytes)", render_kw=_NUMBER_INPUT)
    max_mime_parts = StringField("Most MIME parts", render_kw=_NUMBER_INPUT)
    max_mime_depth = StringField("Deepest MIME nesting", render_kw=_NUMBER_INPUT)
    tls_cert_file = StringField("Certificate file (PEM)")
    tls_key_file = StringField("Key file (PEM)")
    require_tls = BooleanField("Require STARTTLS before MAIL FROM")
    sender_hook = StringField("Sender hook", render_kw=_HOOK_INPUT)
    recipient_hook = StringField("Recipient hook", render_kw=_HOOK_INPUT)
    message_hook = StringField("Message hook", render_kw=_HOOK_INPUT)
    hook_timeout = StringField("Hook timeout (seconds)", render_kw={"inputmode": "decimal"})
    xss_filter = BooleanField("Filter HTML bodies (XSS filter)")
    xss_filter_level = SelectField(
        "Filter level", choices=[SelectChoice(level) for level in settings.XSS_LEVELS]
    )
    retention_days = StringField("Keep mail for (days)", render_kw=_NUMBER_INPUT)
    delete_after_process = BooleanField("Delete messages once the message hook accepted them")
    reply_domain = StringField("Reply domain")
    reply_separator = StringField(
        "Reply separator", render_kw={"maxlength": 1, "size": 2, "spellcheck": "false"}
    )
    webhook_url = StringField("Webhook URL", render_kw={"spellcheck": "false"})
    public_url = StringField("Public URL of the web app", render_kw={"spellcheck": "false"})
    webhook_link_ttl = StringField("Download links work for (seconds)", render_kw=_NUMBER_INPUT)
    webhook_retry_hours = StringField("Retry for (hours)", render_kw=_NUMBER_INPUT)


class TestMessageForm(FlaskForm):
    mail_from = StringField("From", validators=[DataRequired(), Length(max=320)])
    rcpt_to = StringField(
        "To",
        validators=[DataRequired()],
        description="One or more addresses, separated by commas.",
    )
    subject = StringField("Subject", default="Test message from mxsmtp")
    body = TextAreaField("Body", default="This is a test message sent from the settings page.")
    attachment = FileField("Attachment (optional)")


class SettingsView(AdminAccess, BaseView):
    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        current = settings.load()
        if request.method == "GET":
            return self._page(current, _filled_form(current))
        form = SettingsForm()
        if not form.validate_on_submit():
            return self._page(current, form)
        changes = _changes(form, current)
        if changes is None:
            flash("Nothing was saved: correct the fields marked below.", "danger")
            return self._page(current, form)
        if not changes:
            flash("Nothing changed.", "info")
            return redirect(url_for(".index"))
        saved = settings.save(changes)
        flash(_saved_message(changes, saved), "success")
        return redirect(url_for(".index"))

    @expose("/listener", methods=("POST",))
    def listener(self) -> Any:
        """Stop or Start: saves listener_enabled, which every listener follows within a second."""
        action = request.form.get("action")
        if action not in ("stop", "start"):
            flash("Choose Stop or Start.", "danger")
            return redirect(url_for(".index"))
        settings.save({"listener_enabled": "true" if action == "start" else "false"})
        verb = "starts listening" if action == "start" else "stops accepting connections"
        flash(f"Saved: the listener {verb} within a second.", "success")
        return redirect(url_for(".index"))

    @expose("/test-message", methods=("POST",))
    def test_message(self) -> Any:
        current = settings.load()
        form = TestMessageForm(prefix=TEST_FORM_PREFIX)
        if not form.validate_on_submit():
            return self._page(current, _filled_form(current), form)
        recipients = _addresses(form.rcpt_to.data)
        if not recipients:
            form.rcpt_to.errors.append("Give at least one address.")
            return self._page(current, _filled_form(current), form)
        delivery = _send(form, recipients, current)
        stored_id = storage.find_by_message_id(delivery.message_id) if delivery.accepted else None
        return self._page(
            current, _filled_form(current), form, delivery=delivery, stored_id=stored_id
        )

    def _page(
        self,
        current: settings.Settings,
        form: SettingsForm,
        test_form: TestMessageForm | None = None,
        **extra: Any,
    ) -> str:
        if test_form is None:
            test_form = _blank_test_form(current)
        return self.render(
            "mxsmtp/settings.html",
            form=form,
            groups=GROUPS,
            help=_help(current),
            levels=LEVELS,
            hook_choices=hook_choices(Path(current_app.config["HOOKS_DIR"])),
            reports=status.reports("smtp"),
            current=current,
            test_form=test_form,
            **{"delivery": None, "stored_id": None, **extra},
        )


def register(admin: Admin) -> None:
    admin.add_view(SettingsView(name="Settings", endpoint="settings", url="/settings/"))


def hook_choices(hooks_dir: Path) -> list[str]:
    """`SCRIPT.py:FUNCTION` for each public function of each script under `hooks_dir`."""
    if not hooks_dir.is_dir():
        return []
    choices = []
    for script in sorted(hooks_dir.rglob("*.py")):
        relative = script.relative_to(hooks_dir)
        if any(part.startswith((".", "__")) for part in relative.parts[:-1]):
            continue
        choices.extend(f"{relative.as_posix()}:{name}" for name in hooks.functions_in(script))
    return choices


def _filled_form(current: settings.Settings) -> SettingsForm:
    data = {
        key: value if isinstance(value, bool) else settings.to_text(value)
        for key in settings.SPECS
        for value in [getattr(current, key)]
    }
    return SettingsForm(formdata=None, data=data)


def _changes(form: SettingsForm, current: settings.Settings) -> dict[str, str] | None:
    """The settings whose submitted value differs from the stored one, as text; None when a
    value is refused (the reason is added to that field's errors)."""
    changes: dict[str, str] = {}
    valid = True
    for key in settings.SPECS:
        field = form[key]
        text = settings.to_text(field.data) if isinstance(field.data, bool) else field.data or ""
        try:
            value = _checked(key, text, current)
        except settings.SettingError as error:
            field.errors.append(error.problem[:1].upper() + error.problem[1:])
            valid = False
            continue
        except hooks.HookSpecError as error:
            field.errors.append(str(error))
            valid = False
            continue
        if value != getattr(current, key):
            changes[key] = text
    return changes if valid else None


def _checked(key: str, text: str, current: settings.Settings) -> Any:
    """The typed value; a hook that changed must name a function that exists. An unchanged
    hook is not checked again, so a script removed since does not block other changes (the
    page warns about it instead, see `_help`)."""
    value = settings.parse_value(key, text)
    if key in settings.HOOK_KEYS and value and value != getattr(current, key):
        hooks.validate(value, Path(current_app.config["HOOKS_DIR"]))
    return value


def _saved_message(changes: dict[str, str], saved: settings.Settings) -> str:
    names = ", ".join(changes)
    message = f"Saved: {names}."
    if {"port", "listen_address"} & changes.keys() and saved.listener_enabled:
        where = f"{saved.listen_address}:{saved.port}"
        message += f" The listener moves to {where} within a second."
    return message


def _help(current: settings.Settings) -> dict[str, str]:
    """The help texts, with the effective host name and a warning for each saved hook that
    does not work (its script was removed or changed since)."""
    texts = {**HELP, "host_name": HELP["host_name"].format(effective=current.effective_host_name)}
    hooks_dir = Path(current_app.config["HOOKS_DIR"])
    for key in settings.HOOK_KEYS:
        spec = getattr(current, key)
        if not spec:
            continue
        try:
            hooks.validate(spec, hooks_dir)
        except hooks.HookSpecError as error:
            texts[key] = f"Warning: the saved hook does not work now: {error}. {texts[key]}"
    return texts


def _blank_test_form(current: settings.Settings) -> TestMessageForm:
    domain = current.effective_host_name
    return TestMessageForm(
        formdata=None,
        prefix=TEST_FORM_PREFIX,
        data={"mail_from": f"mxsmtp-test@{domain}", "rcpt_to": f"test@{domain}"},
    )


def _addresses(text: str) -> list[str]:
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _send(
    form: TestMessageForm, recipients: list[str], current: settings.Settings
) -> compose.Delivery:
    upload = form.attachment.data
    attachment = None
    if upload and upload.filename:
        attachment = compose.Attachment(upload.filename, upload.mimetype or "", upload.read())
    message = compose.compose(
        form.mail_from.data.strip(),
        recipients,
        form.subject.data or "",
        form.body.data or "",
        attachment,
        current.effective_host_name,
    )
    host = compose.listener_host(current.listen_address)
    return compose.deliver(message, form.mail_from.data.strip(), recipients, host, current.port)
