"""Outlook's winmail.dat (TNEF, MS-OXTNEF): the files and the body it carries.

Pure functions of the TNEF bytes, for `parsing`: :func:`read_winmail` never raises. The body
comes back undecoded (with the codepage TNEF declares), so the caller decodes it as it
decodes every other body; RTF is unpacked (compressed_rtf) and read as text (striprtf).
"""

from __future__ import annotations

import mimetypes
import re
import struct
from dataclasses import dataclass

import compressed_rtf
import tnefparse
from striprtf.striprtf import rtf_to_text
from tnefparse.codepage import Codepage

#: The RTF body is unpacked in pure Python (about 1.5 MB/s): a larger one is left out.
MAX_RTF_BYTES = 2_000_000
_CONTROL = re.compile("[\x00-\x1f\x7f]")  # out of file names (they reach terminals too)


@dataclass(frozen=True)
class WinmailFile:
    """One attachment inside winmail.dat: its name (never empty) and exact bytes."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Winmail:
    """What winmail.dat carried. `text` and `html` may be bytes in `codepage` (or already
    text); `rtf` is the RTF body, given only when there is no text or HTML body, and
    `rtf_text` what it reads as. `defects` say what could not be read; when nothing could
    (`empty`), the caller keeps winmail.dat as it is."""

    files: tuple[WinmailFile, ...] = ()
    text: str | bytes | None = None
    html: str | bytes | None = None
    rtf: bytes | None = None
    rtf_text: str | None = None
    codepage: str | None = None
    defects: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.files and self.text is None and self.html is None and self.rtf is None


def read_winmail(data: bytes) -> Winmail:
    """The content of the TNEF stream `data`; an empty Winmail with a defect when it is
    malformed, too large to decode safely, or holds nothing."""
    if not _tnef_is_tractable(data):
        return Winmail(defects=("winmail.dat (TNEF) is malformed or too large to decode",))
    try:
        tnef = tnefparse.TNEF(data)
        files = tuple(_file(a, n, tnef.codepage) for n, a in enumerate(tnef.attachments, 1))
        winmail = _bodies(tnef, files)
    except Exception as exc:  # tnefparse raises many kinds on bad input
        return Winmail(defects=(f"winmail.dat (TNEF) could not be decoded ({type(exc).__name__})",))
    if winmail.empty:
        nothing = "winmail.dat (TNEF) held nothing that could be extracted"
        return Winmail(defects=(*winmail.defects, nothing))
    return winmail


def _file(attachment: tnefparse.TNEFAttachment, number: int, codepage: str | None) -> WinmailFile:
    name = _filename(attachment, codepage) or f"attachment-{number}"
    ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    return WinmailFile(name, ctype, bytes(attachment.data or b""))


def _filename(attachment: tnefparse.TNEFAttachment, codepage: str | None) -> str:
    try:
        name = attachment.long_filename()
    except UnicodeDecodeError:  # tnefparse decodes attAttachTitle as UTF-8 only
        raw = getattr(attachment, "_name", b"")
        name = raw.decode(codepage or "cp1252", "replace") if isinstance(raw, bytes) else ""
    if isinstance(name, bytes):
        name = name.decode(codepage or "cp1252", "replace")
    text = str(name).encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    return _CONTROL.sub("_", text.strip("\x00").strip())


def _bodies(tnef: tnefparse.TNEF, files: tuple[WinmailFile, ...]) -> Winmail:
    text, html = _present(tnef.body), _present(tnef.htmlbody)
    rtf, defects = None, []
    packed = getattr(tnef, "_rtfbody", None)  # tnefparse's rtfbody property logs and guesses
    if text is None and html is None and packed:
        rtf, defect = _plain_rtf(packed)
        defects += [defect] if defect else []
    rtf_text, defect = _rtf_text(rtf) if rtf is not None else (None, None)
    defects += [defect] if defect else []
    return Winmail(files, text, html, rtf, rtf_text, tnef.codepage, tuple(defects))


def _present(value: str | bytes | None) -> str | bytes | None:
    if value is None:
        return None
    stripped = value.rstrip(b"\x00" if isinstance(value, bytes) else "\x00")
    return stripped if stripped.strip() else None


def _plain_rtf(data: bytes) -> tuple[bytes | None, str | None]:
    """The RTF of a TNEF body: compressed_rtf unwraps both stored forms (MS-OXRTFCP 2.1.3.1,
    "MELA" plain and "LZFu" compressed)."""
    if data.startswith(b"{\\rtf"):
        return data, None
    if len(data) >= 8 and struct.unpack_from("<I", data, 4)[0] > MAX_RTF_BYTES:
        return None, f"winmail.dat RTF body is larger than {MAX_RTF_BYTES} bytes; left out"
    try:
        return bytes(compressed_rtf.decompress(data)), None
    except Exception as exc:  # compressed_rtf raises plain Exception on bad input
        return None, f"winmail.dat RTF body could not be unpacked ({exc}); it was left out"


def _rtf_text(rtf: bytes) -> tuple[str | None, str | None]:
    """Readable text of an RTF body (striprtf also skips the HTML that Outlook wraps in
    ``\\*\\htmltag`` groups, keeping its text)."""
    try:
        text = rtf_to_text(rtf.decode("latin-1"), errors="ignore")
    except Exception as exc:  # striprtf is lenient, but the contract is "never raises"
        return None, f"winmail.dat RTF body could not be read ({type(exc).__name__})"
    if not text.strip():
        return None, None
    return text.replace("\r\n", "\n").strip("\n") + "\n", None


# tnefparse trusts the counts in its input: a forged count makes it spin or allocate for
# minutes, and it copies the rest of the data for every record. So before handing bytes
# over, walk the same structure (MS-OXTNEF 2.1.3) the same way it does, and refuse any data
# where it would read out of bounds, fail to decode, or obey a count larger than the data.
# Accepted data therefore takes tnefparse down exactly the path checked here.

_TNEF_SIGNATURE = 0x223E9F78
_TNEF_MAX_DEPTH = 4  # embedded messages inside embedded messages
_TNEF_COPY_BUDGET = 2_000_000_000  # records x bytes that tnefparse copies (well under 1 s)
_TNEF_LEVEL_ATTACHMENT = 2
_TNEF_MAPI_PROPS, _TNEF_RECIPIENTS, _TNEF_ATTACHMENT, _TNEF_OEM_CODEPAGE = (
    0x9003,
    0x9004,
    0x9005,
    0x9007,
)
_MAPI_FIXED_SIZES = {2: 2, 11: 2, 3: 4, 4: 4, 10: 4, 5: 8, 6: 8, 7: 8, 20: 8, 64: 8, 72: 16}
_MAPI_VARIABLE = frozenset({0x0000, 0x000D, 0x001E, 0x001F, 0x0102})
_MAPI_STRING, _MAPI_UNICODE, _MAPI_SHORT, _MAPI_BOOLEAN = 0x001E, 0x001F, 0x0002, 0x000B
_IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"


class _Untrusted(Exception):
    """The TNEF data would take tnefparse off the checked path."""


def _tnef_is_tractable(data: bytes) -> bool:
    try:
        _check_tnef(data, depth=0)
    except (_Untrusted, struct.error, ValueError, LookupError, TypeError):
        return False
    return True


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _check_tnef(data: bytes, depth: int) -> None:
    if depth > _TNEF_MAX_DEPTH or len(data) < 6 or _u32(data, 0) != _TNEF_SIGNATURE:
        raise _Untrusted
    codepage: str | None = None
    offset, records = 6, 0
    while offset + 12 < len(data):  # the same loop as tnefparse.TNEF.__init__
        level, name = data[offset], struct.unpack_from("<H", data, offset + 1)[0]
        length = min(len(data) - offset, _u32(data, offset + 5) + 11)
        body = data[offset + 9 : offset + length - 2]
        records += 1
        if records * len(data) > _TNEF_COPY_BUDGET:
            raise _Untrusted
        if level == _TNEF_LEVEL_ATTACHMENT:
            if name == _TNEF_ATTACHMENT:
                _check_mapi(body, 0, codepage, depth)
        elif name == _TNEF_MAPI_PROPS:
            _check_mapi(body, 0, codepage, depth)
        elif name == _TNEF_OEM_CODEPAGE:
            codepage = Codepage(_u32(body, 0)).codepage()
        elif name == _TNEF_RECIPIENTS:
            _check_recipients(body, codepage, depth)
        offset += length


def _check_recipients(data: bytes, codepage: str | None, depth: int) -> None:
    rows, offset = _u32(data, 0), 4
    if rows > len(data) // 4:
        raise _Untrusted
    for _ in range(rows):
        offset = _check_mapi(data, offset, codepage, depth)


def _check_mapi(data: bytes, offset: int, codepage: str | None, depth: int) -> int:
    """Offset after a MAPI property list (MS-OXTNEF 2.1.3.4), checked like decode_mapi reads it."""
    count, offset = _u32(data, offset), offset + 4
    if count > (len(data) - offset) // 4:
        raise _Untrusted
    for _ in range(count):
        offset = _check_property(data, offset, codepage, depth)
    return offset


def _check_property(data: bytes, offset: int, codepage: str | None, depth: int) -> int:
    kind, ident = struct.unpack_from("<HH", data, offset)
    offset += 4
    if ident >= 0x8000:  # named property: GUID, kind, then an id or a padded UTF-16 name
        offset += 16
        named, offset = _u32(data, offset), offset + 4
        size, offset = _u32(data, offset), offset + 4
        if named:
            _take(data, offset, size).decode("utf-16")
            offset += _padded(size)
    multi = kind & 0x1000
    kind ^= multi
    values = 1
    if multi:
        values, offset = _u32(data, offset), offset + 4
    fixed = _MAPI_FIXED_SIZES.get(kind)
    if fixed is None and kind not in _MAPI_VARIABLE:
        raise _Untrusted
    if fixed:
        _take(data, offset, (values or 1) * fixed)
        offset += (values or 1) * fixed
    else:
        offset = _check_values(data, offset, kind, values or 1, bool(multi), codepage, depth)
    if (values or 1) % 2 and kind in (_MAPI_SHORT, _MAPI_BOOLEAN):
        offset += 2
    return offset


def _check_values(
    data: bytes,
    offset: int,
    kind: int,
    values: int,
    multi: bool,
    codepage: str | None,
    depth: int,
) -> int:
    chunks = []
    for _ in range(values):
        items = 1
        if not multi:
            items, offset = _u32(data, offset), offset + 4
        if items > (len(data) - offset) // 4:  # each item needs a length word
            raise _Untrusted
        for _ in range(items):
            size, offset = _u32(data, offset), offset + 4
            chunk = _take(data, offset, _padded(size))
            if kind == _MAPI_UNICODE:
                chunk.decode("utf-16")
            elif kind == _MAPI_STRING:
                chunk.decode(codepage)  # codepage None raises TypeError, as in tnefparse
            chunks.append(chunk.rstrip(b"\x00"))
            offset += _padded(size)
    embedded = b"".join(chunks)
    if kind not in (_MAPI_STRING, _MAPI_UNICODE) and embedded.startswith(_IMESSAGE_SIG):
        _check_tnef(embedded[len(_IMESSAGE_SIG) :], depth + 1)
    return offset


def _padded(size: int) -> int:
    return (size + 3) // 4 * 4


def _take(data: bytes, offset: int, size: int) -> bytes:
    if offset + size > len(data):
        raise _Untrusted
    return data[offset : offset + size]
