"""The refusals page: every refused or deferred SMTP command that was recorded, so an admin
can answer "why did my mail bounce?"."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm
from wtforms import DateField, SelectChoice, SelectField, StringField
from wtforms.validators import Length, Optional

from mxsmtp_web.store import search
from mxsmtp_web.web.access import ViewerAccess
from mxsmtp_web.web.listing import day_start, listing_args, page_number

PAGE_SIZE = 50


class RefusalFilterForm(FlaskForm):
    """The filter bar; read from the query string, so no CSRF token."""

    class Meta:
        csrf = False

    q = StringField("Sender, recipient or peer", validators=[Optional(), Length(max=200)])
    check = SelectField("Check", choices=[SelectChoice("", "Any check")], validators=[Optional()])
    since = DateField("From", validators=[Optional()])
    until = DateField("Until", validators=[Optional()])


def refusal_filter(form: RefusalFilterForm) -> search.RefusalFilter:
    return search.RefusalFilter(
        text=form.q.data or "",
        check=form.check.data or None,
        since=day_start(form.since.data),
        before=day_start(form.until.data, days_after=1),
    )


class RefusalsView(ViewerAccess, BaseView):
    @expose("/")
    def index(self) -> Any:
        form = RefusalFilterForm(formdata=request.args)
        form.check.choices = [SelectChoice("", "Any check")] + [
            SelectChoice(check) for check in search.refusal_checks()
        ]
        where = refusal_filter(form) if form.validate() else search.RefusalFilter()
        page = page_number()
        result = search.find_refusals(where, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        args = listing_args()
        return self.render(
            "mxsmtp/refusals.html",
            form=form,
            rows=result.rows,
            has_more=result.has_more,
            page=page,
            link=lambda **changes: url_for(".index", **{**args, **changes}),
        )


def register(admin: Admin) -> None:
    admin.add_view(RefusalsView(name="Refusals", endpoint="refusals", url="/refusals/"))
