"""Purge old mails (admins): preview what an age (and a status) selects, then delete it after
confirmation. The same rules as `mxsmtp purge`: storage.purge_older_than decides."""

from __future__ import annotations

import math
from typing import Any

from flask import request
from flask_admin import Admin, BaseView, expose
from flask_wtf import FlaskForm
from wtforms import FloatField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange, ValidationError

from mxsmtp_web.store import settings, storage
from mxsmtp_web.store.models import Status
from mxsmtp_web.web.access import AdminAccess

STATUS_CHOICES = [SelectChoice("", "any status")] + [SelectChoice(s.value) for s in Status]
_UNITS = ("KiB", "MiB", "GiB", "TiB")
MAX_DAYS = 36500  # a hundred years; further back than any mail and than datetime allows


def _finite(form: FlaskForm, field: FloatField) -> None:
    if field.data is not None and not math.isfinite(field.data):
        raise ValidationError(f"An age from 0 to {MAX_DAYS} days.")


class PurgeForm(FlaskForm):
    days = FloatField(
        "Older than (days)",
        validators=[
            InputRequired("Give an age in days, e.g. 30 or 0.5."),
            NumberRange(min=0, max=MAX_DAYS, message=f"An age from 0 to {MAX_DAYS} days."),
            _finite,
        ],
        render_kw={"inputmode": "decimal"},
    )
    status = SelectField("Status", choices=STATUS_CHOICES, default="")


class PurgeView(AdminAccess, BaseView):
    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        form = PurgeForm()
        action = request.form.get("action")
        if request.method == "GET" or not form.validate_on_submit():
            return self._page(form)
        status = form.status.data or None
        if action == "delete":
            removed = storage.purge_older_than(form.days.data, status)
            return self._page(form, removed=removed)
        selected = storage.purge_older_than(form.days.data, status, dry_run=True)
        return self._page(form, selected=selected)

    def _page(self, form: PurgeForm, **outcome: Any) -> str:
        return self.render(
            "mxsmtp/purge.html",
            form=form,
            retention_days=settings.load().retention_days,
            human_bytes=human_bytes,
            **{"selected": None, "removed": None, **outcome},
        )


def register(admin: Admin) -> None:
    admin.add_view(PurgeView(name="Purge old mails", endpoint="purge", url="/purge/"))


def human_bytes(size: int) -> str:
    """1536 -> "1.5 KiB"; whole bytes below 1 KiB."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"
