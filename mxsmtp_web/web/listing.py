"""What the list pages share: the day bounds of a date filter, the page number, the query
string that links keep, and where a form may send the user back to (never off this site)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import request, url_for


def day_start(day: Any, days_after: int = 0) -> datetime | None:
    if day is None:
        return None
    return datetime.combine(day, time()) + timedelta(days=days_after)


def page_number() -> int:
    return max(request.args.get("page", 1, type=int) or 1, 1)


def listing_args() -> dict[str, str]:
    """The query string of the current list, without the page: for links that keep it."""
    return {key: value for key, value in request.args.items() if key != "page" and value}


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL."""
    fallback = url_for("admin.index")
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return fallback
    return target
