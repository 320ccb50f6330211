"""The download links in webhooks: the raw message and its attachments for a receiver that
has no login, only a signed link (store/links.py). The only files served without a login;
they leave as downloads, exactly as the logged-in pages serve them (as_attachment, nosniff).
A link we did not make is Not Found, an expired one Forbidden (saying so)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, current_app

from mxsmtp_web.store import links, search, storage
from mxsmtp_web.web import downloads

blueprint = Blueprint("signed_downloads", __name__)
EXPIRED = (
    "This download link has expired (webhook links work for webhook_link_ttl seconds). "
    "Log in to download the file from the message page.\n"
)


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)


@blueprint.route(links.FILES_PATH + "<token>")
def download(token: str) -> Response:
    try:
        target = links.read_token(current_app.config["SECRET_KEY"], token)
    except links.BadLink:
        abort(404)
    except links.LinkExpired:
        return Response(EXPIRED, 403, mimetype="text/plain")
    if target.kind == links.RAW:
        return _raw(target.id)
    return _attachment(target.id)


def _raw(message_id: int) -> Response:
    stored = storage.get_message(message_id) or abort(404)
    raw = storage.get_raw(message_id) or abort(404)
    name = downloads.safe_filename(stored.summary.subject, f"message-{message_id}")
    return downloads.download(raw, f"{name}.eml", "message/rfc822")


def _attachment(attachment_id: int) -> Response:
    part = search.get_attachment(attachment_id) or abort(404)
    name = downloads.part_name(part.info.filename, part.info.content_type, part.position + 1)
    return downloads.download(part.data, name, part.info.content_type)
