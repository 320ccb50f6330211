"""The HTML preview of a message: the stored HTML as a document of its own, to be shown in an
`<iframe sandbox>` under a strict Content-Security-Policy.

The CSP is what keeps remote content (tracking pixels, remote styles and fonts) quiet until the
user asks for it, and what keeps scripts from running even when the XSS filter was off at
ingest. Inline `cid:` images become `data:` URIs: a sandboxed frame has an opaque origin, so
the browser sends it no SameSite session cookie and could not fetch them from a logged-in URL.
"""

from __future__ import annotations

import base64
import html as html_escape
import re
from collections.abc import Mapping
from urllib.parse import unquote

_COMMON = "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
#: Nothing from elsewhere, no scripts, no plugins, no forms: pictures from the mail only.
BLOCKED_CSP = (
    f"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src 'none'; "
    f"{_COMMON}"
)
#: After "Load remote content": remote pictures, styles and fonts too, still no scripts.
REMOTE_CSP = (
    "default-src 'none'; img-src 'self' data: https: http:; "
    f"style-src 'unsafe-inline' https: http:; font-src https: http:; {_COMMON}"
)

# `src=`/`background=` attributes (any quoting) and CSS `url()` that point at a cid: URL.
_CID_ATTRIBUTE = re.compile(
    r"""(?P<lead>\b(?:src|background)\s*=\s*)(?P<quote>["']?)\s*cid:(?P<cid>[^"'\s>]+)\s*(?P=quote)""",
    re.IGNORECASE,
)
_CID_CSS_URL = re.compile(
    r"""url\(\s*(?P<quote>(?:["']|&quot;|&#39;)?)\s*cid:(?P<cid>[^"'\s)&]+)\s*(?P=quote)\s*\)""",
    re.IGNORECASE,
)
# Things that fetch or navigate without being a fetch that CSP governs.
_REFRESH = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*[\"']?\s*refresh[^>]*>", re.IGNORECASE)
_HINT_LINK = re.compile(
    r"<link\b[^>]*\brel\s*=\s*[\"']?[^\"'>]*(?:prefetch|preconnect|prerender|preload)[^>]*>",
    re.IGNORECASE,
)


def preview_csp(remote: bool) -> str:
    return REMOTE_CSP if remote else BLOCKED_CSP


def cid_key(reference: str) -> str:
    """The Content-ID a `cid:` URL names (RFC 2392: URL-encoded, without angle brackets)."""
    return unquote(html_escape.unescape(reference)).strip().strip("<>")


def data_uri(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def inline_cid_images(html: str, images: Mapping[str, str]) -> str:
    """Replace each `cid:` reference whose Content-ID is a key of `images` by that value (a
    `data:` URI or a URL); references to anything else stay as they are, and the CSP keeps
    them from loading."""

    def attribute(match: re.Match[str]) -> str:
        target = images.get(cid_key(match["cid"]))
        if target is None:
            return match[0]
        return f'{match["lead"]}"{target}"'

    def css_url(match: re.Match[str]) -> str:
        target = images.get(cid_key(match["cid"]))
        return match[0] if target is None else f"url('{target}')"

    return _CID_CSS_URL.sub(css_url, _CID_ATTRIBUTE.sub(attribute, html))


def quieten(html: str) -> str:
    """Drop meta refreshes and resource hints: they navigate or open connections outside
    what the CSP's fetch rules cover."""
    return _HINT_LINK.sub("", _REFRESH.sub("", html))


def html_document(html: str) -> str:
    """The mail's HTML as a standalone document in UTF-8 (the browser merges a second
    `<html>`/`<body>` from the mail into this one)."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"></head>\n'
        f"<body>{quieten(html)}</body></html>\n"
    )


def text_document(text: str) -> str:
    """A plain-text body as a preview document, for messages without HTML."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        '<body><pre style="white-space: pre-wrap; font-family: monospace">'
        f"{html_escape.escape(text)}</pre></body></html>\n"
    )
