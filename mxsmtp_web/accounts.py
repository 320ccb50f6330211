"""People who may log in to the web admin: creating them and checking their passwords."""

from __future__ import annotations

import re

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .models import User

ROLES = ("admin", "viewer")
MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,150}$")


class AccountError(ValueError):
    """A user that cannot be created or changed as asked; the message says why."""


def create_user(username: str, password: str, *, admin: bool = False) -> User:
    if not _USERNAME.match(username):
        raise AccountError("username: 1 to 150 letters, digits or . _ @ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if db.session.execute(select(User.id).where(User.username == username)).first():
        raise AccountError(f"username: {username!r} exists already")
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        role="admin" if admin else "viewer",
    )
    db.session.add(user)
    db.session.commit()
    return user


def check_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)
