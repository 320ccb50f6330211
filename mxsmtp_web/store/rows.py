"""The rows of a message's parts, as both engines write them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the light CLI commands must not load the parser
    from mxsmtp_web.mail.parsing import ParsedPart

ATTACHMENT_COLUMNS = (
    "message_id",
    "position",
    "filename",
    "content_type",
    "content_id",
    "disposition",
    "size",
    "sha256",
    "data",
    "defects",
)


def part_rows(message_id: int, parts: Sequence[ParsedPart]) -> list[tuple]:
    """The values of each part's row, in ATTACHMENT_COLUMNS order."""
    return [
        (
            message_id,
            position,
            part.filename,
            part.content_type,
            part.content_id,
            part.disposition,
            len(part.data),
            hashlib.sha256(part.data).hexdigest(),
            part.data,
            json.dumps(list(part.defects)),
        )
        for position, part in enumerate(parts)
    ]
