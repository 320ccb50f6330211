"""The web admin: login, inbox, message pages, refusals, settings, purge, users and status,
built on Flask-Admin views behind Flask-Login."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from mxsmtp_web.store import accounts
from mxsmtp_web.web import auth, security, signed_downloads


def init_app(app: Flask) -> None:
    security.init_app(app)
    auth.init_app(app)
    signed_downloads.init_app(app)
    admin = Admin(
        app,
        name="mxsmtp",
        url="/",
        index_view=_home_view(),
        theme=Bootstrap4Theme(base_template="mxsmtp/admin_base.html", fluid=True),
        csp_nonce_generator=security.csp_nonce,
    )
    _add_views(admin)
    with app.app_context():
        accounts.ensure_first_admin(lambda text: print(text, flush=True))


def _home_view() -> object:
    from mxsmtp_web.web.home import HomeView

    return HomeView(name="Status", url="/", endpoint="admin")


def _add_views(admin: Admin) -> None:
    from mxsmtp_web.web import (
        inbox,
        mailboxes_page,
        purge,
        refusals,
        settings_page,
        users,
        webhooks_page,
    )

    for module in (inbox, refusals, settings_page, mailboxes_page, webhooks_page, purge, users):
        module.register(admin)
