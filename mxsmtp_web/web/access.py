"""Who may see what: every page needs a logged-in user; some need the admin role.

Flask-Admin views get it from `ViewerAccess` / `AdminAccess`; plain routes from the
`login_required` and `admin_required` decorators. One place decides, so no page is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, redirect, request, url_for
from flask_login import current_user

from mxsmtp_web.store import mailboxes, settings

F = TypeVar("F", bound=Callable[..., Any])


def is_admin() -> bool:
    return bool(current_user.is_authenticated and current_user.is_admin)


def visible_mailboxes() -> frozenset[str] | None:
    """The mailboxes the user may read; None for an admin, who reads every one (also the
    mailboxes removed since their mail arrived)."""
    if is_admin():
        return None
    names = mailboxes.visible_names(settings.load().mailboxes, current_user.username)
    return frozenset(names)


def can_read(message_id: int) -> bool:
    """Whether the user may see this message (its page, parts, source, `.eml`)."""
    visible = visible_mailboxes()
    return visible is None or mailboxes.message_visible(message_id, visible)


def readable_or_404(message_id: int) -> None:
    """A message in a mailbox the user may not read does not exist for them: 404, as for a
    message that was never stored (a 403 would tell that it exists)."""
    if not can_read(message_id):
        abort(404)


def to_login() -> Any:
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def admin_required(view: F) -> F:
    """For plain routes: logged-out users go to the login page, viewers get 403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return to_login()
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ViewerAccess:
    """Flask-Admin mixin: any logged-in user (viewer or admin)."""

    def is_accessible(self) -> bool:
        return bool(current_user.is_authenticated)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return to_login()
        abort(403)


class AdminAccess(ViewerAccess):
    """Flask-Admin mixin: admins only; hidden from viewers' menus."""

    def is_accessible(self) -> bool:
        return is_admin()
