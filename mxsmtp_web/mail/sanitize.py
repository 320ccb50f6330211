"""HTML from mail -> HTML that is safe to embed, at a named level of strictness.

The only module that imports bleach. The HTML is parsed once, with bleach's own html5lib
parser, into a real tree; elements that must never be shown (script, style, svg, iframe...)
are dropped with everything inside them, and the rest goes through bleach's sanitising
filter and serializer. Parsing once means there is no second parser whose idea of the
document could differ from the one that was checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape, unescape
from typing import Any

import tinycss2
from bleach import html5lib_shim
from bleach.css_sanitizer import CSSSanitizer
from bleach.sanitizer import BleachSanitizerFilter

LEVELS: dict[str, str] = {
    "strict": "Text only: every tag is removed and only the readable text is shown.",
    "basic": "Simple formatting and links (http, https, mailto); no images, tables or styles.",
    "standard": (
        "Fit for real newsletter HTML: tables, fonts, images from http, https and cid, "
        "and inline styles limited to layout and typography."
    ),
    "relaxed": (
        "Standard plus CSS classes, definition lists, captions, figures, embedded data: "
        "images and more CSS properties."
    ),
}
DEFAULT_LEVEL = "standard"

#: Dropped with their content at every level: they run code, load documents, restyle the
#: page or hold text that is not meant to be read (HTML 4.3 "metadata content" and friends).
DROPPED_ELEMENTS = frozenset(
    {
        "script",
        "style",
        "title",
        "head",
        "template",
        "noscript",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "svg",
        "math",
        "form",
        "meta",
        "base",
        "link",
        "noembed",
        "noframes",
        "textarea",
        "select",
        "button",
    }
)

LINK_REL = "noopener noreferrer nofollow"

#: A stripped element that ends a line in a browser becomes a newline in the text.
_LINE_BREAKING = html5lib_shim.HTML_TAGS_BLOCK_LEVEL | {"br", "tr"}
_HTML_NAMESPACE = html5lib_shim.namespaces["html"]
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]*\Z")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n\s*")
_LONE_SURROGATES = re.compile("[\ud800-\udfff]")
_CSS_SAFE_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})

_BASIC_TAGS = frozenset(
    {"p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "blockquote", "pre", "code", "a"}
)
_STANDARD_TAGS = _BASIC_TAGS | {
    *("h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "font", "center", "hr", "sup", "sub"),
    *("table", "thead", "tbody", "tfoot", "tr", "td", "th", "img"),
}
_RELAXED_TAGS = _STANDARD_TAGS | {
    *("dl", "dt", "dd", "caption", "colgroup", "col", "abbr", "s", "strike", "small", "big"),
    *("figure", "figcaption"),
}

_CELL = [
    *("width", "height", "align", "valign", "bgcolor", "colspan", "rowspan", "nowrap"),
    "background",
]
_BASIC_ATTRIBUTES = {"a": ["href", "title"]}
_STANDARD_ATTRIBUTES = {
    "*": ["style", "align", "dir", "lang", "title"],
    "a": ["href"],
    "table": [
        *("width", "height", "align", "bgcolor", "border", "cellpadding", "cellspacing"),
        "background",
    ],
    "thead": ["align", "valign"],
    "tbody": ["align", "valign"],
    "tfoot": ["align", "valign"],
    "tr": ["height", "align", "valign", "bgcolor", "background"],
    "td": _CELL,
    "th": _CELL,
    "img": ["src", "alt", "width", "height", "border"],
    "font": ["face", "color", "size"],
    "hr": ["width", "size", "noshade"],
}
_RELAXED_ATTRIBUTES = {
    **_STANDARD_ATTRIBUTES,
    "*": [*_STANDARD_ATTRIBUTES["*"], "class"],
    "col": ["span", "width", "align", "valign"],
    "colgroup": ["span", "width", "align", "valign"],
}

_STANDARD_CSS = frozenset(
    {
        *("color", "background", "background-color", "direction", "display", "float", "clear"),
        "background-image",
        *("font", "font-family", "font-size", "font-style", "font-variant", "font-weight"),
        *("line-height", "letter-spacing", "word-spacing", "white-space", "vertical-align"),
        *("text-align", "text-decoration", "text-indent", "text-transform"),
        *("width", "height", "min-width", "max-width", "min-height", "max-height"),
        *("margin", "margin-top", "margin-right", "margin-bottom", "margin-left"),
        *("padding", "padding-top", "padding-right", "padding-bottom", "padding-left"),
        *("border", "border-color", "border-style", "border-width", "border-radius"),
        *("border-top", "border-right", "border-bottom", "border-left"),
        *(
            f"border-{side}-{what}"
            for side in ("top", "right", "bottom", "left")
            for what in ("color", "style", "width")
        ),
        *("border-collapse", "border-spacing", "table-layout", "list-style-type"),
    }
)
_RELAXED_CSS = _STANDARD_CSS | {
    *("overflow", "overflow-wrap", "word-wrap", "word-break", "text-overflow", "hyphens"),
    *("text-shadow", "box-shadow", "opacity", "visibility", "box-sizing", "outline"),
    *("list-style", "list-style-position", "caption-side", "empty-cells", "font-stretch"),
}


class MailCSSSanitizer(CSSSanitizer):
    """bleach's CSSSanitizer checks property names only; this also refuses values that load
    something or compute (url(), image-set(), expression()...), keeping plain values. The one
    url() kept is a ``cid:`` one: it names a part of the message itself (RFC 2392), which
    the preview inlines, so it loads nothing."""

    def sanitize_css(self, style: str) -> str:
        kept = []
        for item in tinycss2.parse_declaration_list(
            style, skip_comments=True, skip_whitespace=True
        ):
            if item.type != "declaration" or item.lower_name not in self.allowed_css_properties:
                continue
            if not _plain_css(item.value):
                continue
            value = tinycss2.serialize(item.value).strip()
            kept.append(f"{item.lower_name}: {value}{' !important' if item.important else ''}")
        return "; ".join(kept)


def _plain_css(tokens: list) -> bool:
    for token in tokens:
        if _cid_url(token):
            continue
        if token.type in ("url", "error", "{} block", "[] block", "at-keyword"):
            return False
        if token.type == "function" and (
            token.lower_name not in _CSS_SAFE_FUNCTIONS or not _plain_css(token.arguments)
        ):
            return False
        if token.type == "() block" and not _plain_css(token.content):
            return False
    return True


def _cid_url(token: Any) -> bool:
    """``url(cid:…)`` or ``url("cid:…")``, and nothing else inside it. bleach hands style
    values over with character references unresolved, so ``url(&quot;cid:…&quot;)``
    arrives as an unquoted URL token."""
    if token.type == "url":
        value = unescape(str(token.value)).strip().strip("\"'").strip()
        return value.lower().startswith("cid:") and not re.search(r"[\s\"'()\\]", value)
    if token.type != "function" or token.lower_name != "url":
        return False
    arguments = [t for t in token.arguments if t.type != "whitespace"]
    return (
        len(arguments) == 1
        and arguments[0].type == "string"
        and arguments[0].value.strip().lower().startswith("cid:")
    )


@dataclass(frozen=True)
class _Policy:
    tags: frozenset[str]
    attributes: dict[str, list[str]]
    link_protocols: frozenset[str]
    image_protocols: frozenset[str]
    data_images: bool
    css: MailCSSSanitizer


_LINKS = frozenset({"http", "https", "mailto"})
_IMAGES = frozenset({"http", "https", "cid"})
#: Elements whose URL attributes load a picture: `src` of img, `background` of the others.
_IMAGE_TAGS = frozenset({"img", "table", "tr", "td", "th"})
_POLICIES = {
    "strict": _Policy(frozenset(), {}, _LINKS, _IMAGES, False, MailCSSSanitizer(frozenset())),
    "basic": _Policy(
        _BASIC_TAGS, _BASIC_ATTRIBUTES, _LINKS, _IMAGES, False, MailCSSSanitizer(frozenset())
    ),
    "standard": _Policy(
        _STANDARD_TAGS,
        _STANDARD_ATTRIBUTES,
        _LINKS,
        _IMAGES,
        False,
        MailCSSSanitizer(_STANDARD_CSS),
    ),
    # data: is allowed for <img src> only, and only for raster types (see _MailFilter).
    "relaxed": _Policy(
        _RELAXED_TAGS, _RELAXED_ATTRIBUTES, _LINKS, _IMAGES, True, MailCSSSanitizer(_RELAXED_CSS)
    ),
}


# Deeper than any real mail (newsletters nest tables 10 to 30 levels); beyond it html5lib
# would take seconds to minutes of CPU on a crafted message.
MAX_NESTING = 400
_TAG = re.compile(r"<(/)?([a-zA-Z][^\s/>]*)[^>]*?(/)?>")
_ANY_TAG = re.compile(r"<[^>]*>")


def sanitize_html(html: str, level: str) -> str:
    """Return ``html`` made safe to embed at ``level`` (a key of ``LEVELS``).

    Raises ValueError for an unknown level. The result is a balanced HTML fragment.
    """
    policy = _POLICIES.get(level)
    if policy is None:
        known = ", ".join(LEVELS)
        raise ValueError(f"unknown HTML sanitising level {level!r}; choose one of: {known}")
    if not html:
        return ""
    if _nesting_depth(html) > MAX_NESTING:
        return _as_text(html)
    # A parser per call: html5lib parsers keep state and mail is parsed in worker threads.
    parser = html5lib_shim.BleachHTMLParser(
        tags=None, strip=True, consume_entities=False, namespaceHTMLElements=False
    )
    tree = parser.parseFragment(_LONE_SURROGATES.sub("\ufffd", html))
    result = _serializer().render(_MailFilter(_DropElements(_TreeWalker(tree)), policy)).strip()
    return result if policy.tags else _BLANK_LINES.sub("\n\n", result)


def _nesting_depth(html: str) -> int:
    """The deepest element nesting, roughly (void elements and sloppy closing tags make it
    an over-estimate): a cheap linear look before html5lib, whose tree building takes time
    that grows with the square of the depth."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        if match.group(1):
            depth = max(depth - 1, 0)
        elif not match.group(3):
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def _as_text(html: str) -> str:
    """Crafted, absurdly nested HTML is not parsed at all: its text, escaped, in a <pre>."""
    text = _BLANK_LINES.sub("\n\n", _ANY_TAG.sub(" ", html))
    return "<pre>" + escape(text, quote=True) + "</pre>"


def _serializer() -> html5lib_shim.BleachHTMLSerializer:
    """The same settings as bleach.Cleaner: quote every attribute, keep entities as given."""
    return html5lib_shim.BleachHTMLSerializer(
        quote_attr_values="always",
        omit_optional_tags=False,
        escape_lt_in_attrs=True,
        resolve_entities=False,
        sanitize=False,
        alphabetical_attributes=False,
    )


class _TreeWalker(html5lib_shim.getTreeWalker("etree")):
    """html5lib's etree walker, minus its quadratic step: to climb back to a parent it
    searches the grandparent's children (list.index) every time, so a table of 20,000 rows
    (2 MB) took 16 s instead of 3 s. Here each element's index is computed once per tree."""

    def __init__(self, tree: object) -> None:
        super().__init__(tree)
        self.positions = {id(child): n for parent in tree.iter() for n, child in enumerate(parent)}

    def getParentNode(self, node: object) -> object:  # html5lib's name and contract
        if not isinstance(node, tuple):
            return None
        element, key, parents, flag = node
        if flag == "text":
            return (element, key, parents, None) if parents else element
        parent = parents.pop()
        return (parent, self.positions[id(parent)], parents, None) if parents else parent


class _DropElements(html5lib_shim.Filter):
    """Skip DROPPED_ELEMENTS and all foreign (SVG, MathML) elements with their content.

    Tokens come from a tree walker, so start and end tags are balanced and void elements are
    single EmptyTag tokens: counting depth is enough to find where an element ends.
    """

    def __iter__(self) -> Iterator[dict]:
        depth = 0
        for token in super().__iter__():
            kind = token["type"]
            if depth:
                depth += {"StartTag": 1, "EndTag": -1}.get(kind, 0)
            elif kind in ("StartTag", "EmptyTag") and _is_dropped(token):
                depth = 1 if kind == "StartTag" else 0
            else:
                yield token


def _is_dropped(token: dict) -> bool:
    foreign = token.get("namespace") not in (None, _HTML_NAMESPACE)
    return foreign or token["name"].lower() in DROPPED_ELEMENTS


class _MailFilter(BleachSanitizerFilter):
    """bleach's filter plus: per-tag URL schemes, rel on links, newlines for stripped blocks."""

    def __init__(self, source: html5lib_shim.Filter, policy: _Policy) -> None:
        super().__init__(
            source,
            allowed_tags=policy.tags,
            attributes=policy.attributes,
            allowed_protocols=policy.link_protocols,
            strip_disallowed_tags=True,
            strip_html_comments=True,
            css_sanitizer=policy.css,
        )
        self.policy = policy

    def sanitize_token(self, token: dict) -> dict | list | None:
        kind = token["type"]
        stripped = kind in ("StartTag", "EmptyTag") and token["name"] not in self.allowed_tags
        if stripped and token["name"] in _LINE_BREAKING:
            return {"type": "Characters", "data": "\n"}
        return super().sanitize_token(token)

    def allow_token(self, token: dict) -> dict:
        if token["name"] in _IMAGE_TAGS:
            token = self._allow_image(token)
        else:
            token = super().allow_token(token)
        attributes = token.get("data")
        if attributes is None:  # an end tag
            return token
        if attributes.get((None, "style")) == "":
            del attributes[(None, "style")]
        if token["name"] == "a":
            attributes[(None, "rel")] = LINK_REL
        return token

    def _allow_image(self, token: dict) -> dict:
        """Images (``<img src>``, and ``background`` on tables and cells) get their own
        schemes: cid:, and data: for raster types in ``src`` when allowed."""
        protocols = self.policy.image_protocols
        src = token.get("data", {}).get((None, "src"), "")
        if self.policy.data_images and _DATA_IMAGE.match(src.strip()):
            protocols = protocols | {"data"}
        links, self.allowed_protocols = self.allowed_protocols, protocols
        try:
            return super().allow_token(token)
        finally:
            self.allowed_protocols = links
