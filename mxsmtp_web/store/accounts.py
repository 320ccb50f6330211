"""People who may log in to the web admin: creating them, checking and changing passwords,
and the session token that makes a logout or a password change end old sessions for good."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import LoginFailure, User, utcnow

ROLES = ("admin", "viewer")
MIN_PASSWORD_LENGTH = 8
FIRST_ADMIN = "admin"
# Login throttling: this many failures from one address within the window lock it out.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,150}$")


class AccountError(ValueError):
    """A user that cannot be created or changed as asked; `field` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("password", f"at least {MIN_PASSWORD_LENGTH} characters")


def create_user(
    username: str, password: str, *, admin: bool = False, must_change_password: bool = False
) -> User:
    if not _USERNAME.match(username):
        raise AccountError("username", "1 to 150 letters, digits or . _ @ -")
    check_new_password(password)
    if find_user(username) is not None:
        raise AccountError("username", f"{username!r} exists already")
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        role="admin" if admin else "viewer",
        must_change_password=must_change_password,
        session_token=secrets.token_hex(16),
    )
    db.session.add(user)
    db.session.commit()
    return user


def find_user(username: str) -> User | None:
    return db.session.execute(select(User).where(User.username == username)).scalar()


def user_from_session(session_id: str) -> User | None:
    """The user whose `get_id()` is `session_id`, if that session is still valid."""
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit() or not token:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or not secrets.compare_digest(user.session_token, token):
        return None
    return user


def authenticate(username: str, password: str) -> User | None:
    user = find_user(username)
    if user is None:
        check_password_hash(_dummy_hash(), password)  # same time whether or not the name exists
        return None
    if not user.active or not check_password_hash(user.password_hash, password):
        return None
    return user


def set_password(user: User, password: str, *, must_change: bool = False) -> None:
    """Change the password and end every other session of this user."""
    check_new_password(password)
    user.password_hash = generate_password_hash(password)
    user.must_change_password = must_change
    user.session_token = secrets.token_hex(16)
    db.session.commit()


def end_sessions(user: User) -> None:
    """Logout: the token in every copy of this user's cookies stops matching."""
    user.session_token = secrets.token_hex(16)
    db.session.commit()


def ensure_first_admin(announce: Callable[[str], None]) -> None:
    """With no user at all, create `admin` with a random password, shown once, to be changed at
    the first login."""
    if db.session.execute(select(func.count(User.id))).scalar():
        return
    password = secrets.token_urlsafe(12)
    try:
        create_user(FIRST_ADMIN, password, admin=True, must_change_password=True)
    except (IntegrityError, AccountError):  # another worker created it first
        db.session.rollback()
        return
    announce(
        f"Created the first web admin user {FIRST_ADMIN!r} with password {password!r}; "
        "you will be asked to choose a new one at the first login."
    )


def record_failure(address: str) -> None:
    db.session.add(LoginFailure(address=address))
    db.session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - FAILURE_WINDOW))
    db.session.commit()


def locked_out(address: str) -> bool:
    """Too many recent failures from this address."""
    since = utcnow() - FAILURE_WINDOW
    count = db.session.execute(
        select(func.count(LoginFailure.id)).where(
            LoginFailure.address == address, LoginFailure.at >= since
        )
    ).scalar()
    return (count or 0) >= MAX_FAILURES


def clear_failures(address: str) -> None:
    db.session.execute(delete(LoginFailure).where(LoginFailure.address == address))
    db.session.commit()


@cache
def _dummy_hash() -> str:
    return generate_password_hash("timing equaliser")


def check_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


# --- managing users (the Users page) --------------------------------------------------------


def list_users() -> list[User]:
    return list(db.session.execute(select(User).order_by(User.username)).scalars())


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def generate_password() -> str:
    """A random password to hand over once; the user is asked to replace it."""
    return secrets.token_urlsafe(12)


def _is_last_active_admin(user: User) -> bool:
    if not (user.active and user.is_admin):
        return False
    others = db.session.execute(
        select(func.count(User.id)).where(
            User.role == "admin", User.active.is_(True), User.id != user.id
        )
    ).scalar()
    return not others


def set_active(user: User, active: bool, *, acting: User) -> None:
    """Enable or disable a login. Disabling ends the user's sessions for good (a re-enabled
    user logs in afresh). Raises AccountError for oneself and for the last active admin."""
    if not active:
        if user.id == acting.id:
            raise AccountError("active", "you cannot disable yourself; ask another admin")
        if _is_last_active_admin(user):
            raise AccountError("active", "this is the last active admin; one must remain")
        user.session_token = secrets.token_hex(16)
    user.active = active
    db.session.commit()


def set_role(user: User, role: str, *, acting: User) -> None:
    """Make `user` an admin or a viewer. Raises AccountError for an unknown role, for demoting
    oneself and for demoting the last active admin."""
    if role not in ROLES:
        raise AccountError("role", f"one of {', '.join(ROLES)}")
    if role != "admin" and user.is_admin:
        if user.id == acting.id:
            raise AccountError("role", "you cannot demote yourself; ask another admin")
        if _is_last_active_admin(user):
            raise AccountError("role", "this is the last active admin; one must remain")
    user.role = role
    db.session.commit()


def reset_password(user: User, password: str, *, acting: User) -> None:
    """An admin sets a new password; the user must choose their own at the next login, and
    their sessions end. One's own password is changed with the current one instead."""
    if user.id == acting.id:
        raise AccountError("password", "change your own password on the Password page")
    set_password(user, password, must_change=True)


def delete_user(user: User, *, acting: User) -> None:
    """Remove a login for good. Raises AccountError for oneself and the last active admin."""
    if user.id == acting.id:
        raise AccountError("user", "you cannot delete yourself; ask another admin")
    if _is_last_active_admin(user):
        raise AccountError("user", "this is the last active admin; one must remain")
    db.session.delete(user)
    db.session.commit()
