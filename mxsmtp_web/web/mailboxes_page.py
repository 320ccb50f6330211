"""The Mailboxes page (admins): every mailbox in matching order with its rule and handling,
and a form to add or change one, validated like `mxsmtp mailboxes set` (each problem shown
next to its field; nothing is saved until every field is right)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import Length

from mxsmtp_web import hooks
from mxsmtp_web.store import mailbox_edits, mailboxes
from mxsmtp_web.store.extensions import db
from mxsmtp_web.web.access import AdminAccess

INHERIT = [
    SelectChoice("", "As the global setting"),
    SelectChoice("true", "Yes"),
    SelectChoice("false", "No"),
]


class MailboxForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=64)])
    match = TextAreaField("Recipients (one pattern per line)", render_kw={"rows": 3})
    position = StringField("Position (lower is matched first)")
    recipient_hook = StringField("Recipient hook")
    message_hook = StringField("Message hook")
    webhook_url = StringField("Webhook URL")
    retention_days = StringField("Keep mail for (days)")
    delete_after_process = SelectField(
        "Delete once its message hook accepted it", choices=INHERIT, validate_choice=False
    )
    viewers = StringField("Viewers (user names, comma-separated; * for everyone)")


class RemoveForm(FlaskForm):
    """Only the CSRF token: the mailbox is in the URL."""


class MailboxesView(AdminAccess, BaseView):
    @expose("/")
    def index(self) -> Any:
        return self.render(
            "mxsmtp/mailboxes.html",
            mailboxes=mailboxes.read_all(),
            counts=mailboxes.counts(),
            remove_form=RemoveForm(formdata=None),
        )

    @expose("/new", methods=["GET", "POST"])
    def new(self) -> Any:
        form = MailboxForm()
        if request.method == "POST" and form.validate() and self._save(form, None):
            flash(f"Mailbox {form.name.data.strip()} added.", "success")
            return redirect(url_for(".index"))
        return self.render("mxsmtp/mailbox_edit.html", form=form, mailbox=None, help=_HELP)

    @expose("/<mailbox_name>", methods=["GET", "POST"])
    def edit(self, mailbox_name: str) -> Any:
        current = _find(mailbox_name)
        form = MailboxForm() if request.method == "POST" else _form_of(current)
        if request.method == "POST" and form.validate() and self._save(form, current):
            flash(f"Mailbox {current.name} saved.", "success")
            return redirect(url_for(".index"))
        return self.render("mxsmtp/mailbox_edit.html", form=form, mailbox=current, help=_HELP)

    @expose("/<mailbox_name>/remove", methods=["POST"])
    def remove(self, mailbox_name: str) -> Any:
        if not RemoveForm().validate():
            abort(400)
        try:
            mailbox_edits.remove(mailbox_name)
        except mailbox_edits.MailboxError as error:
            flash(str(error), "danger")
        else:
            flash(f"Mailbox {mailbox_name} removed; its messages stay.", "success")
        return redirect(url_for(".index"))

    def _save(self, form: MailboxForm, current: mailboxes.MailboxConfig | None) -> bool:
        """Check every field, put each problem next to its own, and save only when none."""
        name = current.name if current else (form.name.data or "").strip()
        keys = mailbox_edits.DEFAULT_KEYS if name == mailboxes.DEFAULT else mailbox_edits.KEYS
        values = {key: form[key].data or "" for key in keys}
        problems = {**_hook_problems(values), **mailbox_edits.problems(name, values)}
        try:
            if problems:
                raise mailbox_edits.MailboxError(next(iter(problems.values())))
            if current is None:
                mailbox_edits.add(name, values.pop("match").splitlines(), values)
            else:
                mailbox_edits.update(name, values)
        except mailbox_edits.MailboxError as error:
            db.session.rollback()
            problems = problems or {error.key or "name": str(error)}
            for key, problem in problems.items():
                form[key].errors = [*form[key].errors, problem]
            return False
        return True


def _hook_problems(values: dict[str, str]) -> dict[str, str]:
    """A hook must exist as it does for the Settings page: the script and its function, or a
    well-formed URL; checked without running anything."""
    found = {}
    for key in ("recipient_hook", "message_hook"):
        spec = values.get(key, "").strip()
        if spec and spec != mailboxes.NONE:
            try:
                hooks.validate(spec, Path(current_app.config["HOOKS_DIR"]))
            except hooks.HookSpecError as error:
                found[key] = f"{key}: {error}"
    return found


def _find(name: str) -> mailboxes.MailboxConfig:
    found = mailboxes.by_name(mailboxes.read_all(), name)
    if found is None:
        abort(404)
    return found


def _form_of(mailbox: mailboxes.MailboxConfig) -> MailboxForm:
    dap = mailbox.delete_after_process
    return MailboxForm(
        formdata=None,
        name=mailbox.name,
        match="\n".join(mailbox.patterns),
        position=str(mailbox.position),
        recipient_hook=mailbox.recipient_hook,
        message_hook=mailbox.message_hook,
        webhook_url=mailbox.webhook_url,
        retention_days="" if mailbox.retention_days is None else str(mailbox.retention_days),
        delete_after_process="" if dap is None else ("true" if dap else "false"),
        viewers=", ".join(mailbox.viewers),
    )


_HELP = mailbox_edits.KEY_HELP


def register(admin: Admin) -> None:
    admin.add_view(MailboxesView(name="Mailboxes", endpoint="mailboxes", url="/mailboxes/"))
