"""The inbox (search, filters, sorting, pages, bulk actions), the message page with its
sandboxed preview, and the downloads of parts, raw source and `.eml`."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    request,
    url_for,
)
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import AnyOf, Length, NumberRange, Optional, ValidationError

from mxsmtp_web.hooks import HookRunner
from mxsmtp_web.processing import Processor
from mxsmtp_web.store import mailboxes, search, settings, storage
from mxsmtp_web.store.models import Status
from mxsmtp_web.store.webhooks import deliveries_of
from mxsmtp_web.web import access, downloads, preview
from mxsmtp_web.web.listing import day_start, listing_args, page_number, safe_next

PAGE_SIZE = 50
#: How much of the raw source the message page shows inline; /raw has all of it.
RAW_INLINE_LIMIT = 256 * 1024
TABS = ("preview", "text", "headers", "raw")
SORT_CHOICES = [
    SelectChoice("received", "Received"),
    SelectChoice("size", "Size"),
    SelectChoice("subject", "Subject"),
    SelectChoice("from", "From"),
]
ORDER_CHOICES = [
    SelectChoice("desc", "Descending"),
    SelectChoice("asc", "Ascending"),
]
STATUS_CHOICES = [SelectChoice("", "Any status")] + [
    SelectChoice(status.value) for status in Status
]
ATTACHMENT_CHOICES = [
    SelectChoice("", "With or without"),
    SelectChoice("yes", "With attachments"),
    SelectChoice("no", "Without"),
]
KIND_CHOICES = [
    SelectChoice("", "Any kind"),
    SelectChoice("reply", "Replies"),
    SelectChoice("auto_reply", "Auto-replies"),
    SelectChoice("bounce", "Bounces"),
    SelectChoice("message", "Other messages"),
]
KIND_LABELS = {"reply": "reply", "auto_reply": "auto-reply", "bounce": "bounce"}
BULK_ACTIONS = ("read", "unread", "delete")


def _searchable(form: FlaskForm, field: StringField) -> None:
    """Words of punctuation only ("%", "*", a lone quote) cannot match anything; without this
    they would leave no search at all, and the page would list every message as if it had
    matched."""
    if (field.data or "").strip() and search.fts_query(field.data) is None:
        raise ValidationError("Search for words with at least one letter or digit.")


class InboxFilterForm(FlaskForm):
    """The search and filter bar; read from the query string, so no CSRF token."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Optional(), Length(max=200), _searchable])
    since = DateField("Received from", validators=[Optional()])
    until = DateField("Received until", validators=[Optional()])
    status = SelectField("Status", choices=STATUS_CHOICES, validators=[Optional()])
    attachments = SelectField("Attachments", choices=ATTACHMENT_CHOICES, validators=[Optional()])
    kind = SelectField("Kind", choices=KIND_CHOICES, validators=[Optional()])
    thread = IntegerField("Thread", validators=[Optional(), NumberRange(min=1)])
    mailbox = StringField("Mailbox", validators=[Optional(), Length(max=64)])
    sort = SelectField("Sort by", choices=SORT_CHOICES, default="received")
    order = SelectField("Order", choices=ORDER_CHOICES, default="desc")


class BulkForm(FlaskForm):
    """The checkboxes of the list and the button that was pressed."""

    ids = SelectMultipleField(coerce=int, validate_choice=False)
    action = StringField(validators=[AnyOf(BULK_ACTIONS)])


class ReprocessForm(FlaskForm):
    """Only the CSRF token: the message id is in the URL."""


def message_filter(form: InboxFilterForm) -> search.MessageFilter:
    """The storage filter for a validated form; date fields are whole days in UTC."""
    attachments = {"yes": True, "no": False}.get(form.attachments.data or "")
    return search.MessageFilter(
        text=form.q.data or "",
        since=day_start(form.since.data),
        before=day_start(form.until.data, days_after=1),
        status=form.status.data or None,
        has_attachments=attachments,
        kind=form.kind.data or None,
        thread_id=form.thread.data,
        mailbox=form.mailbox.data or None,
        readable=access.visible_mailboxes(),
    )


def mailbox_counts() -> list[tuple[str, int]]:
    """The inbox's mailbox filter: each mailbox the user may read with its number of messages,
    in matching order (`default` last), then any removed mailbox that still holds mail."""
    readable = access.visible_mailboxes()
    found = mailboxes.counts(readable)
    order = [m.name for m in settings.load().mailboxes]
    names = [name for name in order if readable is None or name in readable]
    names += sorted(name for name in found if name not in names)
    return [(name, found.get(name, 0)) for name in names]


class InboxView(access.ViewerAccess, BaseView):
    @expose("/")
    def index(self) -> Any:
        form = InboxFilterForm(formdata=request.args)
        valid = form.validate()
        sort = form.sort.data if valid and form.sort.data else "received"
        # A thread reads as a conversation: oldest first, unless another order was chosen.
        thread = form.thread.data if valid else None
        default_order = "asc" if thread else "desc"
        descending = (request.args.get("order") or default_order) != "asc" or not valid
        page = page_number()
        if valid:
            where = message_filter(form)
            offset = (page - 1) * PAGE_SIZE
            result = search.find_messages(where, sort, descending, offset, PAGE_SIZE)
            total = search.count_messages(where)
        else:  # a filter that cannot be applied matches nothing, never everything
            result, total = search.ResultPage((), False), 0
        args = listing_args()
        if thread and "order" not in args:
            args["order"] = "asc"
        return self.render(
            "mxsmtp/inbox.html",
            form=form,
            thread=thread,
            thread_sizes=search.thread_sizes(
                [row.thread_id for row in result.rows], access.visible_mailboxes()
            ),
            mailbox_counts=mailbox_counts(),
            readable_total=search.count_messages(
                search.MessageFilter(readable=access.visible_mailboxes())
            ),
            mailbox=form.mailbox.data if valid else None,
            kind_labels=KIND_LABELS,
            bulk=BulkForm(formdata=None),
            rows=result.rows,
            has_more=result.has_more,
            total=total,
            page=page,
            page_size=PAGE_SIZE,
            sort=sort,
            descending=descending,
            link=lambda **changes: url_for(".index", **{**args, **changes}),
            sort_link=lambda key: url_for(
                ".index",
                **{
                    **args,
                    "sort": key,
                    "order": "asc" if key == sort and descending else "desc",
                },
            ),
            is_admin=access.is_admin(),
        )

    @expose("/bulk", methods=["POST"])
    def bulk(self) -> Any:
        form = BulkForm()
        if not form.validate():
            abort(400, "Tick messages, then press one of the buttons above the list.")
        back = safe_next(request.form.get("next") or url_for(".index"))
        ids = form.ids.data or []
        if not ids:
            flash("No messages were selected.", "warning")
            return redirect(back)
        if form.action.data == "delete":
            if not access.is_admin():
                abort(403)
            flash(f"Deleted {storage.delete_messages(ids)} message(s).", "success")
        else:
            ids = [i for i in ids if access.can_read(i)]
            search.set_seen(ids, form.action.data == "read")
            flash(f"Marked {len(ids)} message(s) as {form.action.data}.", "success")
        return redirect(back)

    @expose("/message/<int:message_id>")
    def message(self, message_id: int) -> Any:
        access.readable_or_404(message_id)
        stored = storage.get_message(message_id) or abort(404)
        search.set_seen([message_id], True)
        tab = request.args.get("tab") or ("preview" if stored.html is not None else "text")
        if tab not in TABS:
            abort(404)
        raw = storage.get_raw(message_id) if tab == "raw" else None
        thread_id = stored.summary.thread_id or message_id
        return self.render(
            "mxsmtp/message.html",
            message=stored,
            summary=stored.summary,
            quoted=quoted_rest(stored.text, stored.summary.reply_text),
            thread_size=search.thread_sizes([thread_id], access.visible_mailboxes()).get(
                thread_id, 1
            ),
            kind_labels=KIND_LABELS,
            tab=tab,
            remote=request.args.get("remote") == "1",
            raw_text=_raw_text(raw),
            raw_truncated=raw is not None and len(raw) > RAW_INLINE_LIMIT,
            bulk=BulkForm(formdata=None),
            reprocess_form=ReprocessForm(formdata=None),
            webhook_deliveries=deliveries_of(message_id),
            part_name=downloads.part_name,
            is_admin=access.is_admin(),
        )

    @expose("/message/<int:message_id>/preview")
    def preview(self, message_id: int) -> Response:
        access.readable_or_404(message_id)
        stored = storage.get_message(message_id) or abort(404)
        if stored.html is None:
            document = preview.text_document(stored.text or "")
        else:
            images = {
                content_id: preview.data_uri(part.info.content_type.lower(), part.data)
                for content_id, part in search.inline_images(message_id).items()
            }
            document = preview.html_document(preview.inline_cid_images(stored.html, images))
        response = make_response(document)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Content-Security-Policy"] = preview.preview_csp(
            request.args.get("remote") == "1"
        )
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["X-DNS-Prefetch-Control"] = "off"
        response.headers["Cache-Control"] = "no-store"
        return response

    @expose("/message/<int:message_id>/cid/<path:content_id>")
    def cid(self, message_id: int, content_id: str) -> Response:
        """An inline picture of the message by its Content-ID; raster images only."""
        access.readable_or_404(message_id)
        part = search.inline_images(message_id).get(preview.cid_key(content_id)) or abort(404)
        return downloads.inert(part.data, part.info.content_type.lower())

    @expose("/message/<int:message_id>.eml")
    def eml(self, message_id: int) -> Response:
        access.readable_or_404(message_id)
        stored = storage.get_message(message_id) or abort(404)
        raw = storage.get_raw(message_id) or abort(404)
        name = downloads.safe_filename(stored.summary.subject, f"message-{message_id}")
        return downloads.download(raw, f"{name}.eml", "message/rfc822")

    @expose("/message/<int:message_id>/raw")
    def raw(self, message_id: int) -> Response:
        """The stored bytes as text in the browser, never as a page."""
        access.readable_or_404(message_id)
        raw = storage.get_raw(message_id)
        if raw is None:
            abort(404)
        return downloads.inert(raw, "text/plain; charset=utf-8")

    @expose("/attachment/<int:attachment_id>")
    def attachment(self, attachment_id: int) -> Response:
        part = search.get_attachment(attachment_id) or abort(404)
        access.readable_or_404(part.message_id)
        name = downloads.part_name(part.info.filename, part.info.content_type, part.position + 1)
        return downloads.download(part.data, name, part.info.content_type)

    @expose("/message/<int:message_id>/reprocess", methods=["POST"])
    def reprocess(self, message_id: int) -> Any:
        if not access.is_admin():
            abort(403)
        if not ReprocessForm().validate():
            abort(400)
        outcome = run_reprocess(message_id)
        if outcome is None:
            abort(404)
        if outcome.deleted:
            flash(
                f"Reprocessed: {outcome.status} ({outcome.reply}); the message was deleted "
                "after processing, as the settings say.",
                "info",
            )
            return redirect(url_for(".index"))
        flash(f"Reprocessed: status {outcome.status}, reply {outcome.reply}", "success")
        return redirect(url_for(".message", message_id=message_id))


def run_reprocess(message_id: int) -> Any:
    """Run the hooks again, as `mxsmtp messages reprocess` does; the Outcome or None.

    The event loop gets a thread of its own: the serving thread may already run one (an
    async server, or Playwright's in the tests), and asyncio.run refuses to nest."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    runner = HookRunner(Path(app.config["HOOKS_DIR"]), context=app.app_context)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            work = Processor(app, runner).reprocess(message_id)
            return pool.submit(asyncio.run, work).result()
    finally:
        runner.close()


def quoted_rest(text: str | None, reply_text: str | None) -> bool:
    """Whether the message has more than its reply text (quoted history, a signature), so
    the page offers to show it."""
    if reply_text is None or text is None:
        return False
    return " ".join(text.split()) != " ".join(reply_text.split())


def _raw_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return raw[:RAW_INLINE_LIMIT].decode("utf-8", "replace")


def register(admin: Admin) -> None:
    admin.add_view(InboxView(name="Inbox", endpoint="inbox", url="/inbox/"))
