"""Boot configuration that every part may read without an app: where the instance folder is,
the names of its files, and a boot setting as `create_app` reads it (MXSMTP_<KEY>, else
instance/config.py). Standard library only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_ENV = "MXSMTP_INSTANCE"
DATABASE_NAME = "mxsmtp.sqlite3"
SECRET_KEY_NAME = "secret_key"
HOOKS_DIR_NAME = "hooks"


def instance_path_from_env() -> str | None:
    """`MXSMTP_INSTANCE` points the whole program (CLI, web, SMTP) at another instance folder."""
    value = os.environ.get(INSTANCE_ENV)
    return str(Path(value).expanduser().resolve()) if value else None


def boot_value(key: str, instance: Path) -> str | None:
    """A boot setting as `create_app` reads it, for code that runs without an app (reply
    addresses in a hook): MXSMTP_<KEY>, else <KEY> in instance/config.py."""
    value = os.environ.get(f"MXSMTP_{key}")
    if value:
        return value
    path = instance / "config.py"
    try:
        source = path.read_bytes()
    except OSError:
        return None
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # as Flask's from_pyfile does
    found = namespace.get(key)
    return str(found) if found else None


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def load_or_create_secret(path: Path) -> str:
    """The secret key lives in the instance folder, created once with owner-only permissions."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
