"""The Webhooks page (admins): every delivery with its state, attempts and the receiver's last
answer, "Retry now" for one and "Retry all failed". The sender on any node picks a retried
delivery up within a second."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm

from mxsmtp_web.store import webhooks
from mxsmtp_web.web.access import AdminAccess
from mxsmtp_web.web.listing import listing_args, page_number, safe_next

PAGE_SIZE = 50
STATUSES = tuple(status.value for status in webhooks.DeliveryStatus)


class RetryForm(FlaskForm):
    """Only the CSRF token: what to retry is in the URL."""


class WebhooksView(AdminAccess, BaseView):
    @expose("/")
    def index(self) -> Any:
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            abort(404)
        page = page_number()
        rows = webhooks.list_deliveries(status, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        args = listing_args()
        return self.render(
            "mxsmtp/webhooks.html",
            rows=rows[:PAGE_SIZE],
            has_more=len(rows) > PAGE_SIZE,
            page=page,
            status=status,
            statuses=STATUSES,
            counts=webhooks.count_by_status(),
            form=RetryForm(formdata=None),
            link=lambda **changes: url_for(".index", **{**args, **changes}),
        )

    @expose("/<int:delivery_id>/retry", methods=["POST"])
    def retry(self, delivery_id: int) -> Any:
        if not RetryForm().validate():
            abort(400)
        if not webhooks.retry(delivery_id):
            abort(404)
        flash(f"Delivery {delivery_id} is sent again within a second.", "success")
        return redirect(_back())

    @expose("/retry-failed", methods=["POST"])
    def retry_failed(self) -> Any:
        if not RetryForm().validate():
            abort(400)
        count = webhooks.retry_failed()
        if count:
            flash(f"{count} failed delivery(ies) are sent again within a second.", "success")
        else:
            flash("No delivery has failed.", "info")
        return redirect(_back())


def _back() -> str:
    return safe_next(request.form.get("next") or url_for(".index"))


def register(admin: Admin) -> None:
    admin.add_view(WebhooksView(name="Webhooks", endpoint="webhooks", url="/webhooks/"))
