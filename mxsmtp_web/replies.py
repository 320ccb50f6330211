"""Signed reply addresses: ``reply+TOKEN@domain`` carries a short ref back to the application.

The application sends mail whose Reply-To is ``reply_address("ticket:42")``; when the answer
comes back, ``read_reply_address(recipient)`` gives ``"ticket:42"`` again, or ``None`` when the
token was forged, altered, expired or mangled. Both work in any process that can see the
instance folder (``MXSMTP_INSTANCE``, else ``<project>/instance``): no Flask app context needed.

The token is one lower-case base-36 number (``[0-9a-z]``), so a mail system that lower-cases
or upper-cases local parts changes nothing. It packs, from the top: the ref (bijective base 66
over ``REF_ALPHABET``, which keeps its letter case), the expiry (seconds since 2024-01-01, 0
for none) and a 64-bit truncated HMAC-SHA256 of both. The ref is signed, not encrypted:
whoever holds the address can decode it, but nobody can change it without the key.

Limits: a ref is 1 to ``MAX_REF_LENGTH`` (32) characters from ``REF_ALPHABET`` (letters,
digits and ``: - _ .``); anything else raises ``ValueError``. The longest ref with an expiry
gives a 62-octet local part (RFC 5321 4.5.3.1.1 allows 64); ``ticket:42`` gives 35 or 36.

Rotating the secret
-------------------
Tokens are signed with the instance's ``secret_key`` file (the same file that signs web
sessions; it is created owner-only on first use). To rotate it::

    cd INSTANCE && mv secret_key secret_key.previous   # then restart mxsmtp and the app

A new key is created at the next start (or the next ``reply_address`` call). New addresses
use it; addresses signed with ``secret_key.previous`` are still read, so replies to mail
sent before the rotation keep working. Delete ``secret_key.previous`` once the longest
reply window you care about has passed (or at once, after a leak): from then on every old
address reads as ``None``. Web sessions signed with the old key end at the restart.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable
from pathlib import Path

from mxsmtp_web.config import (
    PROJECT_ROOT,
    SECRET_KEY_NAME,
    boot_value,
    instance_path_from_env,
    load_or_create_secret,
    make_private_dir,
)
from mxsmtp_web.store.direct import stored_settings
from mxsmtp_web.store.settings import machine_fqdn

#: What a ref may contain; its size sets how densely refs pack into the token.
REF_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_."  # 66 symbols
MAX_REF_LENGTH = 32
#: The fixed word before the separator: ``reply+TOKEN``.
LOCAL_PREFIX = "reply"
DEFAULT_SEPARATOR = "+"
#: Separators that are plain atext (RFC 5322 3.2.3) and can never occur in a token.
SEPARATORS = frozenset("+-_.=")
PREVIOUS_KEY_NAME = "secret_key.previous"

_MAC_BITS = 64  # forging one address takes 2**64 tries on average; each try is a mail
_EXPIRY_BITS = 32  # seconds after _EPOCH: good until the year 2160
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
_MAC_CONTEXT = b"mxsmtp reply address v1\x00"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_TOKEN_LENGTH = 60
_TOKEN = re.compile(r"[0-9a-z]{1,60}")
_REF_INDEX = {char: index for index, char in enumerate(REF_ALPHABET)}


def reply_address(ref: str, domain: str | None = None, expires_in: int | None = None) -> str:
    """``reply+TOKEN@domain`` whose token carries `ref`, signed with the instance secret.

    `domain` defaults to the `reply_domain` setting, else `host_name`, else the machine's
    FQDN. `expires_in` (seconds) makes the address read as ``None`` after that time. Raises
    ValueError for a ref that is empty, too long or has characters outside REF_ALPHABET,
    and for an `expires_in` that is not positive.
    """
    instance = instance_folder()
    stored = stored_settings(instance)
    key = _current_key(instance)
    token = make_token(ref, key, expires_in=expires_in)
    separator = _separator(stored)
    return f"{LOCAL_PREFIX}{separator}{token}@{domain or _domain(stored)}"


def read_reply_address(address: str) -> str | None:
    """The ref of a reply address, or ``None`` if it is not one of ours, or forged, altered,
    expired or malformed. Accepts any letter case, angle brackets and any domain. Never
    raises."""
    try:
        instance = instance_folder()
        token = _token_of(address, _separator(stored_settings(instance)))
        if token is None:
            return None
        return read_token(token, _known_keys(instance))
    except Exception:  # the contract is "never raises": an unreadable key is not our address
        return None


def looks_like_reply_address(address: str) -> bool:
    """Whether `address` has the ``reply+`` shape, valid or not: with `read_reply_address`
    a recipient hook tells a forged or expired reply address (refuse it) from any other
    recipient. Never raises."""
    try:
        return _token_of(address, _separator(stored_settings(instance_folder()))) is not None
    except Exception:
        return False


class ReplyReader:
    """`read_reply_address` for a process that reads many addresses (the listener): the keys
    of one instance folder are read once and again only when their files change, and the
    separator comes from the caller's settings instead of the database. Thread-safe enough:
    a refresh replaces the key list in one assignment."""

    def __init__(self, instance: Path | str) -> None:
        self.instance = Path(instance)
        self._stamp: tuple[int, ...] | None = None
        self._keys: list[bytes] = []

    def read(self, address: str, separator: str = DEFAULT_SEPARATOR) -> str | None:
        """The ref of `address`, or None (not a reply address, forged, altered, expired,
        malformed). Never raises."""
        try:
            token = _token_of(address, separator if separator in SEPARATORS else DEFAULT_SEPARATOR)
            if token is None:
                return None
            return read_token(token, self._current_keys())
        except Exception:
            return None

    def first_ref(self, addresses: Iterable[str], separator: str = DEFAULT_SEPARATOR) -> str | None:
        """The ref of the first valid reply address among `addresses`, or None."""
        for address in addresses:
            ref = self.read(address, separator)
            if ref is not None:
                return ref
        return None

    def _current_keys(self) -> list[bytes]:
        stamp = tuple(
            _mtime_ns(self.instance / name) for name in (SECRET_KEY_NAME, PREVIOUS_KEY_NAME)
        )
        if stamp != self._stamp:
            self._keys = _known_keys(self.instance)
            self._stamp = stamp
        return self._keys


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def instance_folder() -> Path:
    """The same folder `create_app` uses: MXSMTP_INSTANCE, else ``<project>/instance``."""
    return Path(instance_path_from_env() or PROJECT_ROOT / "instance")


# --- the token --------------------------------------------------------------------------


def make_token(
    ref: str, key: bytes, *, expires_in: float | None = None, now: float | None = None
) -> str:
    """The token alone (no prefix, no domain). `now` is for tests. Raises ValueError."""
    ref_number = _ref_to_number(ref)
    expiry = 0
    if expires_in is not None:
        if not expires_in > 0:
            raise ValueError(f"expires_in must be a positive number of seconds, not {expires_in}")
        expiry = math.ceil((time.time() if now is None else now) + expires_in) - _EPOCH
        if expiry >= 1 << _EXPIRY_BITS:
            raise ValueError(f"expires_in={expires_in} reaches past the year 2160")
    mac = int.from_bytes(_mac(key, ref, expiry), "big")
    number = (ref_number << _EXPIRY_BITS | expiry) << _MAC_BITS | mac
    return _to_base36(number)


def read_token(token: str, keys: list[bytes], *, now: float | None = None) -> str | None:
    """The ref in `token` if one of `keys` signed it and it has not expired; else None."""
    token = token.lower()
    if not _TOKEN.fullmatch(token) or token.startswith("0"):
        return None  # a leading zero would be a second spelling of the same number
    number = int(token, 36)
    mac = (number & ((1 << _MAC_BITS) - 1)).to_bytes(_MAC_BITS // 8, "big")
    rest = number >> _MAC_BITS
    expiry = rest & ((1 << _EXPIRY_BITS) - 1)
    ref = _number_to_ref(rest >> _EXPIRY_BITS)
    if ref is None or not any(hmac.compare_digest(_mac(k, ref, expiry), mac) for k in keys):
        return None
    if expiry and (time.time() if now is None else now) >= _EPOCH + expiry:
        return None
    return ref


def _mac(key: bytes, ref: str, expiry: int) -> bytes:
    message = _MAC_CONTEXT + ref.encode("ascii") + b"\x00" + expiry.to_bytes(8, "big")
    return hmac.new(key, message, hashlib.sha256).digest()[: _MAC_BITS // 8]


def _ref_to_number(ref: str) -> int:
    """Bijective base-66: every string maps to its own number, so the length needs no field."""
    if not isinstance(ref, str) or not 1 <= len(ref) <= MAX_REF_LENGTH:
        raise ValueError(
            f"a reply ref is 1 to {MAX_REF_LENGTH} characters so that the address stays under "
            f"64 octets; got {ref!r}"
        )
    bad = sorted({char for char in ref if char not in _REF_INDEX})
    if bad:
        raise ValueError(
            f"a reply ref may hold letters, digits and : - _ . only; {ref!r} has {''.join(bad)!r}"
        )
    number = 0
    for char in ref:
        number = number * len(REF_ALPHABET) + _REF_INDEX[char] + 1
    return number


def _number_to_ref(number: int) -> str | None:
    chars: list[str] = []
    while number:
        number, digit = divmod(number - 1, len(REF_ALPHABET))
        chars.append(REF_ALPHABET[digit])
    if not 1 <= len(chars) <= MAX_REF_LENGTH:
        return None
    return "".join(reversed(chars))


def _to_base36(number: int) -> str:
    digits: list[str] = []
    while number:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits)) or "0"


# --- addresses, keys and settings -------------------------------------------------------


def _token_of(address: str, separator: str) -> str | None:
    """The token part of ``reply+TOKEN@domain`` (also ``<...>`` and ``"..."@domain``)."""
    address = address.strip().strip("<>").strip()
    local, at, _domain = address.rpartition("@")
    local = (local if at else address).strip('"').lower()
    prefix = LOCAL_PREFIX + separator
    if not local.startswith(prefix):
        return None
    token = local[len(prefix) :]
    return token if len(token) <= _MAX_TOKEN_LENGTH else None


def _current_key(instance: Path) -> bytes:
    """The instance secret (MXSMTP_SECRET_KEY or SECRET_KEY in config.py, else the file),
    created as `create_app` would create it when it is missing."""
    configured = boot_value("SECRET_KEY", instance)
    if configured:
        return configured.encode()
    make_private_dir(instance)
    return load_or_create_secret(instance / SECRET_KEY_NAME).encode()


def _known_keys(instance: Path) -> list[bytes]:
    """The current key and, during a rotation, the previous one. Read, never created."""
    configured = boot_value("SECRET_KEY", instance)
    keys = [configured.encode()] if configured else []
    for name in (PREVIOUS_KEY_NAME,) if configured else (SECRET_KEY_NAME, PREVIOUS_KEY_NAME):
        try:
            text = (instance / name).read_text().strip()
        except FileNotFoundError:
            continue
        if text:
            keys.append(text.encode())
    return keys


def _domain(stored: dict[str, str]) -> str:
    return stored.get("reply_domain") or stored.get("host_name") or machine_fqdn()


def _separator(stored: dict[str, str]) -> str:
    value = stored.get("reply_separator", "")
    return value if value in SEPARATORS else DEFAULT_SEPARATOR
