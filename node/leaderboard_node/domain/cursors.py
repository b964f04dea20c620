"""Opaque keyset cursors.

A cursor names a position between two records (the sort key of the record it continues
from), the direction to go, and the bucket it belongs to. Writes between pages move records
but not positions, so paging stays correct; a cursor of a bucket that has ended is refused.

A cursor ends with a CRC-32 of everything before it, so a cursor that was altered (a
character changed, cut short, pasted from two) is refused as invalid rather than read as a
position of some other leaderboard or bucket. The checksum is not a signature: anyone can
make a cursor that passes it, and gains nothing by it (a cursor only names a position to
read from, and every read checks the caller's key). Cursors of the format before the
checksum (version 1) are still read, so paging goes on across a rolling upgrade.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

from .errors import CursorInvalid

_VERSION = 2
_UNCHECKED_VERSION = 1  # no checksum: issued by builds before version 2
_HEADER = struct.Struct(">BBqH")  # version, forward, expiry, incarnation length
_CHECKSUM = struct.Struct(">I")
_MIN_KEY = 16
FIELD = "cursor"
INVALID = "the cursor is invalid: it was not issued by this service, or it was altered"


@dataclass(frozen=True, slots=True)
class Cursor:
    incarnation: str
    expiry: int
    forward: bool
    key: bytes

    def encode(self) -> str:
        incarnation = self.incarnation.encode()
        raw = _HEADER.pack(_VERSION, int(self.forward), self.expiry, len(incarnation)) + incarnation + self.key
        raw += _CHECKSUM.pack(zlib.crc32(raw))
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, forward, expiry, length = _HEADER.unpack_from(raw)
    except (binascii.Error, ValueError, struct.error):
        raise CursorInvalid(INVALID, field=FIELD) from None
    if version == _VERSION:
        body, checksum = raw[:-_CHECKSUM.size], raw[-_CHECKSUM.size:]
        if len(raw) < _CHECKSUM.size or _CHECKSUM.pack(zlib.crc32(body)) != checksum:
            raise CursorInvalid(INVALID, field=FIELD)
        raw = body
    elif version != _UNCHECKED_VERSION:
        raise CursorInvalid(INVALID, field=FIELD)
    start = _HEADER.size
    if forward not in (0, 1) or len(raw) < start + length + _MIN_KEY:
        raise CursorInvalid(INVALID, field=FIELD)
    try:
        incarnation = raw[start:start + length].decode()
    except UnicodeDecodeError:
        raise CursorInvalid(INVALID, field=FIELD) from None
    return Cursor(incarnation=incarnation, expiry=expiry, forward=bool(forward), key=raw[start + length:])
