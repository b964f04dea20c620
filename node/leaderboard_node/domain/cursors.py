"""Opaque keyset cursors.

A cursor names a position between two records (the sort key of the record it continues
from), the direction to go, and the bucket it belongs to. Writes between pages move records
but not positions, so paging stays correct; a cursor of a bucket that has ended is refused.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from .errors import CursorInvalid

_VERSION = 1
_HEADER = struct.Struct(">BBqH")  # version, forward, expiry, incarnation length
FIELD = "cursor"


@dataclass(frozen=True, slots=True)
class Cursor:
    incarnation: str
    expiry: int
    forward: bool
    key: bytes

    def encode(self) -> str:
        incarnation = self.incarnation.encode()
        raw = _HEADER.pack(_VERSION, int(self.forward), self.expiry, len(incarnation)) + incarnation + self.key
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, forward, expiry, length = _HEADER.unpack_from(raw)
    except (binascii.Error, ValueError, struct.error):
        raise CursorInvalid("the cursor is not one this service issued", field=FIELD) from None
    start = _HEADER.size
    if version != _VERSION or forward not in (0, 1) or len(raw) < start + length + 16:
        raise CursorInvalid("the cursor is not one this service issued", field=FIELD)
    try:
        incarnation = raw[start:start + length].decode()
    except UnicodeDecodeError:
        raise CursorInvalid("the cursor is not one this service issued", field=FIELD) from None
    return Cursor(incarnation=incarnation, expiry=expiry, forward=bool(forward), key=raw[start + length:])
