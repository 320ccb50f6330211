"""Charset labels as mail clients write them, and the codecs that read what they meant.

Senders declare a charset by name, and the name is often narrower than what they wrote:
Windows clients label cp1252 text ISO-8859-1, Chinese clients label GBK text GB2312, Japanese
clients put NEC's and IBM's extensions (①, №, ㈱) into ISO-2022-JP. The WHATWG Encoding
Standard's label table (https://encoding.spec.whatwg.org/#names-and-labels) records what
browsers learned from the web; mail is the same text from the same programs, so it is the
reference here. :func:`codecs_for` gives the codecs to try, widest first.
"""

from __future__ import annotations

import codecs
import re

#: WHATWG label -> Python codec, where Python's own name lookup would read the label
#: narrower than the Encoding Standard does (or not know it at all).
WHATWG_LABELS: dict[str, str] = {
    # windows-1252: the standard reads Latin-1 and ASCII labels as cp1252.
    **dict.fromkeys(
        ("cp819", "csisolatin1", "ibm819", "iso-8859-1", "iso-ir-100",
         "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
         "x-cp1252", "windows-1252", "cp1252"),
        "cp1252",
    ),
    **dict.fromkeys(
        ("csisolatin5", "iso-8859-9", "iso-ir-148", "iso8859-9", "iso88599", "iso_8859-9",
         "iso_8859-9:1989", "l5", "latin5", "x-cp1254", "windows-1254"),
        "cp1254",
    ),
    **dict.fromkeys(
        ("dos-874", "iso-8859-11", "iso8859-11", "iso885911", "tis-620", "windows-874"),
        "cp874",
    ),
    # gbk and gb18030: the GBK decoder of the standard is the GB18030 one.
    **dict.fromkeys(
        ("chinese", "csgb2312", "csiso58gb231280", "gb2312", "gb_2312", "gb_2312-80", "gbk",
         "iso-ir-58", "x-gbk", "gb18030", "euc-cn", "cp936", "windows-936"),
        "gb18030",
    ),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    # euc-kr: read as windows-949 (Unified Hangul Code), a superset.
    **dict.fromkeys(
        ("cseuckr", "csksc56011987", "euc-kr", "iso-ir-149", "korean", "ks_c_5601-1987",
         "ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949", "cp949", "uhc"),
        "cp949",
    ),
    # shift_jis: read as windows-31j (cp932), which has NEC's and IBM's rows.
    **dict.fromkeys(
        ("csshiftjis", "ms932", "ms_kanji", "shift-jis", "shift_jis", "sjis", "windows-31j",
         "x-sjis", "cp932"),
        "cp932",
    ),
    **dict.fromkeys(("cseucpkdfmtjapanese", "euc-jp", "x-euc-jp"), "euc_jp"),
    **dict.fromkeys(("csiso2022jp", "iso-2022-jp"), "iso-2022-jp"),
    **dict.fromkeys(
        ("csisolatinhebrew", "iso-8859-8", "iso-8859-8-i", "csiso88598i", "iso-8859-8-e",
         "logical", "visual", "iso-ir-138", "iso8859-8", "iso88598", "iso_8859-8"),
        "iso-8859-8",
    ),
    **dict.fromkeys(("cskoi8r", "koi", "koi8", "koi8-r", "koi8_r"), "koi8-r"),
    **dict.fromkeys(("koi8-ru", "koi8-u"), "koi8-u"),
    **dict.fromkeys(("csmacintosh", "mac", "macintosh", "x-mac-roman"), "mac-roman"),
    **dict.fromkeys(("x-mac-cyrillic", "x-mac-ukrainian"), "mac-cyrillic"),
    **dict.fromkeys(("unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf8",
                     "x-unicode20utf8"), "utf-8"),
    **dict.fromkeys(("csunicode", "iso-10646-ucs-2", "ucs-2", "unicode", "unicodefeff",
                     "utf-16"), "utf-16"),
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
}  # fmt: skip

#: Undeclared 8-bit text ("us-ascii" by default) is nearly always UTF-8; then cp1252.
_UNDECLARED = ("us-ascii", "ascii", "us", "iso646-us", "csascii", "ansi_x3.4-1968", "cp367")

#: Tried after the label's own codec: a last resort that still means what the label says.
_NARROWER = {"cp1252": "latin-1", "cp1254": "iso-8859-9", "cp874": "tis-620"}


def codecs_for(label: str | None) -> list[str]:
    """Python codecs to try for a declared `label`, best first; [] when none is declared.
    The label is matched as the standard says: case-insensitive, surrounding blanks and
    quotes ignored; an unknown label is passed through for Python's own lookup."""
    name = (label or "").strip().strip("\"'").strip().lower()
    if not name:
        return []
    if name in _UNDECLARED:
        return ["utf-8", "cp1252"]
    codec = WHATWG_LABELS.get(name, name)
    return [codec, *([_NARROWER[codec]] if codec in _NARROWER else [])]


def decode(data: bytes, codec: str) -> str:
    """`data.decode(codec)`, with ISO-2022-JP read with the vendor rows of cp932. Raises
    UnicodeDecodeError, LookupError or ValueError as ``bytes.decode`` does."""
    if codec == "iso-2022-jp":
        try:
            return data.decode("iso-2022-jp")
        except UnicodeDecodeError:
            return _iso2022jp_as_cp932(data)
    return data.decode(codec)


# ISO-2022-JP (RFC 1468) switches with escape sequences between ASCII, JIS X 0201 Roman and
# JIS X 0208; mailers put the NEC special characters (row 13: ①, №, ㈱) and NEC-selected IBM
# extensions (rows 89-92) into the JIS X 0208 plane, which Python's codec rejects. Each
# JIS X 0208 byte pair maps to Shift_JIS arithmetically (JIS X 0208 annex 1), and cp932
# decodes those rows, so the text is re-encoded as Shift_JIS and read as cp932.
_ISO2022JP_ESCAPE = re.compile(rb"\x1b(\$@|\$B|\(B|\(J|\(I)")
_TWO_BYTE = (b"$@", b"$B")


def _iso2022jp_as_cp932(data: bytes) -> str:
    if max(data, default=0) >= 0x80:  # not 7-bit: no ISO-2022-JP (often UTF-8 so labelled)
        raise UnicodeDecodeError("iso-2022-jp", data, 0, len(data), "8-bit byte")
    out = bytearray()
    mode = b"(B"
    pos = 0
    for match in _ISO2022JP_ESCAPE.finditer(data):
        out += _shift_jis(data[pos : match.start()], mode)
        mode, pos = match.group(1), match.end()
    out += _shift_jis(data[pos:], mode)
    return codecs.decode(bytes(out), "cp932")


def _shift_jis(chunk: bytes, mode: bytes) -> bytes:
    if mode == b"(I":  # JIS X 0201 katakana: 0x21-0x5f -> 0xa1-0xdf
        return bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in chunk)
    if mode not in _TWO_BYTE:
        return chunk
    out = bytearray()
    for index in range(0, len(chunk) - 1, 2):
        out += _jis_pair_to_sjis(chunk[index], chunk[index + 1])
    if len(chunk) % 2:
        raise UnicodeDecodeError("iso-2022-jp", chunk, len(chunk) - 1, len(chunk), "odd byte")
    return bytes(out)


def _jis_pair_to_sjis(first: int, second: int) -> bytes:
    if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
        raise UnicodeDecodeError("iso-2022-jp", bytes((first, second)), 0, 2, "not JIS X 0208")
    lead = (first + 1) // 2 + (0x70 if first <= 0x5E else 0xB0)
    if first % 2:
        trail = second + (0x1F if second <= 0x5F else 0x20)
    else:
        trail = second + 0x7E
    return bytes((lead, trail))
