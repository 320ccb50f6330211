"""Parts of a mail leaving as downloads: file names made safe for a header, the
Content-Disposition with an RFC 6266 `filename*`, and types a browser will not render as
active content from our origin."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

from flask import Response

#: Stored types served as they are; everything else (HTML, SVG, XML, scripts…) goes out as
#: application/octet-stream so that no browser treats it as a page of ours.
PLAIN_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "text/plain",
        "text/csv",
        "text/calendar",
        "message/rfc822",
    }
)
PLAIN_PREFIXES = ("audio/", "video/")
OCTET_STREAM = "application/octet-stream"
MAX_NAME_LENGTH = 150

# Control characters, quotes, backslashes and path separators: neither a header nor a file
# system should see them from a mail.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\/]')
# RFC 5987 attr-char: what may stay unencoded in `filename*`.
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


def safe_filename(name: str | None, fallback: str) -> str:
    """`name` with unsafe characters replaced by `_`, leading dots and outer spaces removed,
    at most MAX_NAME_LENGTH characters; `fallback` when nothing is left."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", name or "")).strip().lstrip(".")
    cleaned = cleaned.strip()[:MAX_NAME_LENGTH].strip()
    return cleaned or fallback


def ascii_fallback(name: str) -> str:
    """The name for clients that ignore `filename*`: accents dropped, other non-ASCII and
    `%` (which some browsers decode) replaced by `_`."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    if not plain.strip(" ._"):
        plain = re.sub(r"[^\x20-\x7e]", "_", name)
    return re.sub(r"[^\x20-\x7e]|%", "_", plain) or "download"


def content_disposition(name: str) -> str:
    """`attachment` with both forms of the name (RFC 6266 section 4.3); `name` must already
    be a `safe_filename`."""
    encoded = quote(name, safe=_ATTR_CHAR_SAFE)
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def download_type(content_type: str) -> str:
    """The stored type when a browser only ever shows or saves it, else octet-stream."""
    value = (content_type or "").strip().lower()
    if not _MIME_TYPE.match(value):
        return OCTET_STREAM
    if value in PLAIN_TYPES or value.startswith(PLAIN_PREFIXES):
        return value
    return OCTET_STREAM


def part_name(filename: str | None, content_type: str, number: int) -> str:
    """The stored name made safe, or `part-<number>` with an extension for the type."""
    extension = mimetypes.guess_extension((content_type or "").lower(), strict=False) or ".bin"
    return safe_filename(filename, f"part-{number}{extension}")


def inert(data: bytes, content_type: str) -> Response:
    """`data` from our origin that a browser will neither sniff nor run: nosniff, and a CSP
    that forbids everything and sandboxes it even if it is opened as a page."""
    response = Response(data, content_type=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def download(data: bytes, name: str, content_type: str) -> Response:
    """Exactly `data`, as a file to save under `name` (already a `safe_filename`)."""
    response = inert(data, download_type(content_type))
    response.headers["Content-Disposition"] = content_disposition(name)
    return response
