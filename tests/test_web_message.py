"""The message page, its sandboxed preview, inline pictures, downloads and reprocessing,
through the Flask test client against a real database."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from conftest import csrf_token, simple_message
from mxsmtp_web import create_app
from mxsmtp_web.mail.parsing import parse_message
from mxsmtp_web.store import search, settings, storage
from mxsmtp_web.store.extensions import db
from mxsmtp_web.store.models import Status

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
HTML_WITH_PARTS = (
    b"From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: Parts\r\n"
    b"Message-ID: <parts@sender.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b'--outer\r\nContent-Type: multipart/related; boundary="rel"\r\n\r\n'
    b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p>Logo: <img src="cid:logo@x" alt="logo"> <img src=\'cid:evil@x\'>'
    b' <img src="https://tracker.example/pixel.gif"></p>\r\n'
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(PNG) + b"\r\n"
    b"--rel\r\nContent-Type: image/svg+xml\r\nContent-ID: <evil@x>\r\n\r\n"
    b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>\r\n"
    b"--rel--\r\n"
    b"--outer\r\nContent-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''na%C3%AFve%20%22report%22%202024.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF-1.4 \x00\xff") + b"\r\n"
    b"--outer\r\nContent-Type: text/html\r\n"
    b'Content-Disposition: attachment; filename="page.html"\r\n\r\n'
    b"<script>alert(1)</script>\r\n"
    b"--outer\r\nContent-Type: application/octet-stream\r\n\r\nno name\r\n"
    b"--outer--\r\n"
)


def store(app: Flask, raw: bytes, html: str | None = None, status: Status = Status.RECEIVED) -> int:
    """Store `raw` as the listener would; `html` overrides the stored HTML body."""
    parsed = parse_message(raw)
    envelope = storage.Envelope("alice@sender.example", ("bob@example.com",), "192.0.2.7", "helo.x")
    with app.app_context():
        return storage.save_message(envelope, parsed, raw, html or parsed.html, status)


def parts_of(app: Flask, message_id: int) -> dict[str, int]:
    with app.app_context():
        stored = storage.get_message(message_id)
    return {part.filename or part.content_type: part.id for part in stored.summary.attachments}


def test_logged_out_users_are_sent_to_login_everywhere(app: Flask, client: FlaskClient) -> None:
    message_id = store(app, HTML_WITH_PARTS)
    attachment_id = next(iter(parts_of(app, message_id).values()))
    for path in (
        f"/inbox/message/{message_id}",
        f"/inbox/message/{message_id}/preview",
        f"/inbox/message/{message_id}/preview?remote=1",
        f"/inbox/message/{message_id}/cid/logo@x",
        f"/inbox/message/{message_id}/raw",
        f"/inbox/message/{message_id}.eml",
        f"/inbox/attachment/{attachment_id}",
    ):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location, path
    assert client.post(f"/inbox/message/{message_id}/reprocess").status_code in (302, 400)


def test_message_page_shows_envelope_hooks_and_parts(
    app: Flask, viewer_client: FlaskClient
) -> None:
    raw = simple_message(subject="Envelope <b>facts</b>")
    message_id = store(app, raw)
    with app.app_context():
        storage.set_outcome(
            message_id,
            Status.HOOK_ERROR,
            [
                {
                    "hook": "message_hook",
                    "spec": "x.py:process_message",
                    "outcome": "error",
                    "reply": "451 4.3.0 try later",
                    "error": "Traceback: ZeroDivisionError",
                }
            ],
        )
    page = viewer_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    for fact in ("192.0.2.7", "helo.x", "alice@sender.example", "bob@example.com", "hook error"):
        assert fact in page
    assert "x.py:process_message" in page and "451 4.3.0 try later" in page
    assert "<details><summary>Traceback</summary>" in page and "ZeroDivisionError" in page
    assert "Envelope &lt;b&gt;facts&lt;/b&gt;" in page  # escaped, not markup
    assert "Hi Bob." in page  # no HTML part: the text is shown, no iframe
    assert "<iframe" not in page
    assert "Reprocess" not in page  # viewers do not get the button
    with app.app_context():
        assert search.find_messages(search.MessageFilter()).rows[0].seen  # opened: read


def test_tabs_show_headers_text_and_escaped_raw_source(
    app: Flask, viewer_client: FlaskClient
) -> None:
    message_id = store(app, simple_message(body="<script>alert(1)</script>\r\n"))
    headers = viewer_client.get(f"/inbox/message/{message_id}?tab=headers").get_data(as_text=True)
    assert "Message-ID" in headers and "&lt;m1@sender.example&gt;" in headers
    raw = viewer_client.get(f"/inbox/message/{message_id}?tab=raw").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw and "<script>alert(1)" not in raw
    assert viewer_client.get(f"/inbox/message/{message_id}?tab=nope").status_code == 404
    plain = viewer_client.get(f"/inbox/message/{message_id}/raw")
    assert plain.data == simple_message(body="<script>alert(1)</script>\r\n")
    assert plain.mimetype == "text/plain" and plain.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in plain.headers["Content-Security-Policy"]


def test_preview_is_sandboxed_with_a_strict_policy(app: Flask, viewer_client: FlaskClient) -> None:
    message_id = store(app, HTML_WITH_PARTS, html="<p>Hi<script>parent.pwned=1</script></p>")
    page = viewer_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    assert '<iframe sandbox="" id="preview-frame"' in page and "allow-" not in page
    response = viewer_client.get(f"/inbox/message/{message_id}/preview")
    policy = response.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy and "img-src 'self' data:;" in policy
    assert "https:" not in policy
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.mimetype == "text/html"
    remote = viewer_client.get(f"/inbox/message/{message_id}/preview?remote=1")
    policy = remote.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https: http:" in policy and "script-src" not in policy
    assert "font-src https: http:" in policy and policy.endswith("sandbox")
    page = viewer_client.get(f"/inbox/message/{message_id}?remote=1").get_data(as_text=True)
    assert f"/inbox/message/{message_id}/preview?remote=1" in page


def test_cid_pictures_show_inline_but_never_svg(app: Flask, viewer_client: FlaskClient) -> None:
    message_id = store(app, HTML_WITH_PARTS)
    document = viewer_client.get(f"/inbox/message/{message_id}/preview").get_data(as_text=True)
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in document
    assert "src='cid:evil@x'" in document  # left alone: the CSP blocks it
    picture = viewer_client.get(f"/inbox/message/{message_id}/cid/logo@x")
    assert picture.data == PNG and picture.mimetype == "image/png"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    assert viewer_client.get(f"/inbox/message/{message_id}/cid/evil@x").status_code == 404
    assert viewer_client.get(f"/inbox/message/{message_id}/cid/none@x").status_code == 404


def test_attachments_download_byte_exact_under_their_names(
    app: Flask, viewer_client: FlaskClient
) -> None:
    message_id = store(app, HTML_WITH_PARTS)
    parts = parts_of(app, message_id)
    report = parts['naïve "report" 2024.pdf']
    response = viewer_client.get(f"/inbox/attachment/{report}")
    assert response.data == b"%PDF-1.4 \x00\xff"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="naive _report_ 2024.pdf"; '
        "filename*=UTF-8''na%C3%AFve%20_report_%202024.pdf"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.mimetype == "application/pdf"
    page = viewer_client.get(f"/inbox/attachment/{parts['page.html']}")
    assert page.mimetype == "application/octet-stream"  # never rendered as our page
    unnamed = viewer_client.get(f"/inbox/attachment/{parts['application/octet-stream']}")
    assert (
        unnamed.data == b"no name"
        and 'filename="part-5.bin"' in unnamed.headers["Content-Disposition"]
    )
    listing = viewer_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    assert "naïve _report_ 2024.pdf" in listing and "application/pdf" in listing
    assert viewer_client.get("/inbox/attachment/999999").status_code == 404


def test_a_crlf_in_a_file_name_cannot_add_a_header(app: Flask, viewer_client: FlaskClient) -> None:
    raw = (
        b"Subject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; "
        b"filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3D1%0D%0A%2F..%5Cb.txt\r\n\r\ndata\r\n--b--\r\n"
    )
    message_id = store(app, raw)
    (attachment_id,) = parts_of(app, message_id).values()
    response = viewer_client.get(f"/inbox/attachment/{attachment_id}")
    assert "Set-Cookie" not in response.headers
    disposition = response.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert "%0D" not in disposition and "%2F" not in disposition and "%5C" not in disposition
    assert response.data == b"data"


def test_eml_download_is_the_raw_message(app: Flask, viewer_client: FlaskClient) -> None:
    raw = simple_message(subject='Quarterly "numbers" / Q3')
    message_id = store(app, raw)
    response = viewer_client.get(f"/inbox/message/{message_id}.eml")
    assert response.data == raw and response.mimetype == "message/rfc822"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="Quarterly _numbers_ _ Q3.eml"; '
        "filename*=UTF-8''Quarterly%20_numbers_%20_%20Q3.eml"
    )
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    untitled = store(app, b"To: bob@example.com\r\n\r\nno subject\r\n")
    response = viewer_client.get(f"/inbox/message/{untitled}.eml")
    assert f'filename="message-{untitled}.eml"' in response.headers["Content-Disposition"]
    assert viewer_client.get("/inbox/message/999999.eml").status_code == 404


def configure_hook(app: Flask, source: str, **values: str) -> None:
    (Path(app.config["HOOKS_DIR"]) / "web.py").write_text(source)
    with app.app_context():
        settings.save({"message_hook": "web.py:process_message", **values})


def test_reprocess_runs_the_hooks_again(
    app: Flask, admin_client: FlaskClient, viewer_client: FlaskClient
) -> None:
    message_id = store(app, simple_message(), status=Status.HOOK_ERROR)
    path = f"/inbox/message/{message_id}/reprocess"
    token = csrf_token(viewer_client, f"/inbox/message/{message_id}")
    assert viewer_client.post(path, data={"csrf_token": token}).status_code == 403
    assert admin_client.get(path).status_code == 405
    configure_hook(app, "def process_message(message):\n    return '250 2.0.0 thanks'\n")
    token = csrf_token(admin_client, f"/inbox/message/{message_id}")
    response = admin_client.post(path, data={"csrf_token": token}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Reprocessed: status processed" in page and "250 2.0.0 thanks" in page
    with app.app_context():
        assert storage.get_message(message_id).summary.status == "processed"
    assert (
        admin_client.post("/inbox/message/999999/reprocess", data={"csrf_token": token}).status_code
        == 404
    )


def test_reprocess_that_deletes_returns_to_the_inbox(app: Flask, admin_client: FlaskClient) -> None:
    message_id = store(app, simple_message())
    configure_hook(
        app, "def process_message(message):\n    return True\n", delete_after_process="true"
    )
    token = csrf_token(admin_client, f"/inbox/message/{message_id}")
    response = admin_client.post(
        f"/inbox/message/{message_id}/reprocess", data={"csrf_token": token}
    )
    assert response.status_code == 302 and response.location.endswith("/inbox/")
    page = admin_client.get("/inbox/").get_data(as_text=True)
    assert "deleted after processing" in page
    assert admin_client.get(f"/inbox/message/{message_id}").status_code == 404


@pytest.mark.parametrize("path", ["/inbox/message/999999", "/inbox/message/999999/preview"])
def test_missing_messages_are_404(viewer_client: FlaskClient, path: str) -> None:
    assert viewer_client.get(path).status_code == 404


DAMAGED = (Path(__file__).parent / "data" / "tolerant" / "base64_bad_length.eml").read_bytes()


def test_a_damaged_part_is_flagged_on_the_page_and_in_the_json(
    app: Flask, viewer_client: FlaskClient
) -> None:
    from test_cli import run

    message_id = store(app, DAMAGED)
    page = viewer_client.get(f"/inbox/message/{message_id}").get_data(as_text=True)
    assert "damaged" in page
    assert "base64 had an impossible length; its last character was dropped" in page
    assert "unknown transfer encoding &#39;x-rot13&#39;; kept undecoded" in page
    code, output, _ = run("messages", "show", str(message_id), "--json")
    data = json.loads(output)
    assert code == 0
    assert [a["defects"] for a in data["attachments"]] == [
        ["base64 had an impossible length; its last character was dropped"],
        ["base64 held padding before its end; the pieces were joined"],
        ["unknown transfer encoding 'x-rot13'; kept undecoded"],
    ]
    assert (
        "application/x-unknown part: unknown transfer encoding 'x-rot13'; kept undecoded"
        in (data["defects"])
    )


@pytest.mark.sqlite_only("databases made before migrations were SQLite files")
def test_a_database_without_part_defects_is_brought_up_to_date(app: Flask) -> None:
    """A database made before migrations and before parts had defects gets the column, and
    its parts read as sound."""
    message_id = store(app, HTML_WITH_PARTS)
    with app.app_context():
        db.session.execute(text("DROP TABLE alembic_version"))
        db.session.execute(text("ALTER TABLE attachment DROP COLUMN defects"))
        db.session.commit()
        db.engine.dispose()
    upgraded = create_app({"TESTING": True})
    with upgraded.app_context():
        stored = storage.get_message(message_id)
        assert stored is not None
        assert [part.defects for part in stored.summary.attachments] == [()] * 5
    with upgraded.app_context():
        damaged = storage.get_message(store(upgraded, DAMAGED))
        assert damaged is not None and damaged.summary.attachments[0].defects


def test_cid_pictures_as_table_and_css_backgrounds_show_inline(
    app: Flask, viewer_client: FlaskClient
) -> None:
    from mxsmtp_web.mail.sanitize import sanitize_html

    raw = (
        b"From: a@sender.example\r\nTo: bob@example.com\r\nSubject: Backgrounds\r\n"
        b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
        b"--rel\r\nContent-Type: text/html\r\n\r\n"
        b'<table background="cid:bg@x"><tr>'
        b'<td style="background-image: url(&quot;cid:bg@x&quot;)">cell</td></tr></table>\r\n'
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <bg@x>\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(PNG) + b"\r\n--rel--\r\n"
    )
    message_id = store(app, raw, html=sanitize_html(parse_message(raw).html or "", "standard"))
    document = viewer_client.get(f"/inbox/message/{message_id}/preview").get_data(as_text=True)
    data_uri = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    assert f'background="{data_uri}"' in document
    assert f"url('{data_uri}')" in document
    assert "cid:bg@x" not in document
