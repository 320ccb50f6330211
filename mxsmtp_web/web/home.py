"""The start page: the listener's state and the mail at a glance."""

from __future__ import annotations

from typing import Any

from flask_admin import AdminIndexView, expose

from .access import ViewerAccess


class HomeView(ViewerAccess, AdminIndexView):
    @expose("/")
    def index(self) -> Any:
        return self.render("mxsmtp/home.html")
