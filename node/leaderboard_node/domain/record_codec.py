"""Records packed into one bytes string each: what the rank cache stores.

A Python object per field would cost about 600 bytes per record; one ``bytes`` string costs
its length plus 33. An element of the rank cache is::

    sort prefix (16 bytes: score and subscore, offset and inverted for descending boards)
    owner id (UTF-8)  0x00  slots

Ordering elements orders records (the owner id ends at 0x00, below every character an id
may hold, so a shorter id sorts first exactly as in string order, and the slots after it
never decide). The slots are packed behind: a record written by a single node with ``set``
(by far the most common) takes 27 bytes plus its username and metadata; any other record
stores every slot in full.

Node names in slots are interned into a small per-process table and stored as 2-byte
indexes: a cluster has a handful of nodes.
"""

from __future__ import annotations

import struct

from .records import Base, Slot, Slots, SlotKind, Value

PREFIX = struct.Struct(">QQ")
_OFFSET = 1 << 63
_MASK = (1 << 64) - 1
_COMPACT = struct.Struct(">BHQQQB")  # marker 0, origin, hlc, num_score, create_ms, flags
_SLOT = struct.Struct(">BHQqqQQB")  # kind, origin, hlc, score, subscore, num_score, create_ms, flags
_BASE = struct.Struct(">QHBqqQQB")  # hlc, origin, present, score, subscore, num_score, create_ms, flags
_LEN = struct.Struct(">I")
_HAS_USERNAME, _HAS_METADATA, _HAS_BASE = 1, 2, 4

_origins: list[str] = []
_origin_index: dict[str, int] = {}


def _intern(origin: str) -> int:
    index = _origin_index.get(origin)
    if index is None:
        if len(_origins) >= 0xFFFF:
            raise ValueError("more than 65535 distinct node names in one process")
        index = _origin_index[origin] = len(_origins)
        _origins.append(origin)
    return index


def sort_prefix(score: int, subscore: int, *, descending: bool) -> bytes:
    high, low = score + _OFFSET, subscore + _OFFSET
    if descending:
        high, low = _MASK - high, _MASK - low
    return PREFIX.pack(high, low)


def score_of(element: bytes, *, descending: bool) -> tuple[int, int]:
    high, low = PREFIX.unpack_from(element)
    if descending:
        high, low = _MASK - high, _MASK - low
    return high - _OFFSET, low - _OFFSET


def _texts(flags: int, username: str | None, metadata: str | None) -> bytes:
    out = b""
    if flags & _HAS_USERNAME:
        data = username.encode()  # type: ignore[union-attr]
        out += _LEN.pack(len(data)) + data
    if flags & _HAS_METADATA:
        data = metadata.encode()  # type: ignore[union-attr]
        out += _LEN.pack(len(data)) + data
    return out


def _read_texts(flags: int, data: bytes, offset: int) -> tuple[str | None, str | None, int]:
    username = metadata = None
    if flags & _HAS_USERNAME:
        (size,) = _LEN.unpack_from(data, offset)
        offset += 4
        username = data[offset:offset + size].decode()
        offset += size
    if flags & _HAS_METADATA:
        (size,) = _LEN.unpack_from(data, offset)
        offset += 4
        metadata = data[offset:offset + size].decode()
        offset += size
    return username, metadata, offset


def _flags(username: str | None, metadata: str | None) -> int:
    return (_HAS_USERNAME if username is not None else 0) | (_HAS_METADATA if metadata is not None else 0)


def encode_slots(slots: Slots, *, score: int, subscore: int) -> bytes:
    """Pack slots; ``score``/``subscore`` are the record's visible value (kept in the prefix)."""
    if len(slots) == 1:
        slot = slots[0]
        if slot.kind is SlotKind.SET and slot.score == score and slot.subscore == subscore:
            flags = _flags(slot.username, slot.metadata)
            return (_COMPACT.pack(0, _intern(slot.origin), slot.hlc, slot.num_score, slot.create_ms, flags)
                    + _texts(flags, slot.username, slot.metadata))
    parts = [bytes([len(slots)])]
    for slot in slots:
        flags = _flags(slot.username, slot.metadata) | (_HAS_BASE if slot.base is not None else 0)
        parts.append(_SLOT.pack(int(slot.kind), _intern(slot.origin), slot.hlc, slot.score, slot.subscore,
                                slot.num_score, slot.create_ms, flags))
        parts.append(_texts(flags, slot.username, slot.metadata))
        base = slot.base
        if base is not None:
            base_flags = _flags(base.username, base.metadata)
            parts.append(_BASE.pack(base.hlc, _intern(base.origin), int(base.present), base.score, base.subscore,
                                    base.num_score, base.create_ms, base_flags))
            parts.append(_texts(base_flags, base.username, base.metadata))
    return b"".join(parts)


def compact_value(data: bytes, offset: int, *, score: int, subscore: int) -> Value | None:
    """The visible value of a one-slot ``set`` record without building its slot; None otherwise."""
    if data[offset] != 0:
        return None
    _, _origin, hlc, num_score, create_ms, flags = _COMPACT.unpack_from(data, offset)
    username, metadata, _ = _read_texts(flags, data, offset + _COMPACT.size) if flags else (None, None, 0)
    return Value(score, subscore, num_score, create_ms, hlc >> 16, username, metadata)


def decode_slots(data: bytes, offset: int, *, score: int, subscore: int) -> Slots:
    if data[offset] == 0:
        _, origin, hlc, num_score, create_ms, flags = _COMPACT.unpack_from(data, offset)
        username, metadata, _ = _read_texts(flags, data, offset + _COMPACT.size)
        return (Slot(_origins[origin], SlotKind.SET, hlc, score, subscore, num_score, create_ms, username, metadata),)
    count = data[offset]
    offset += 1
    slots = []
    for _ in range(count):
        kind, origin, hlc, slot_score, slot_subscore, num_score, create_ms, flags = _SLOT.unpack_from(data, offset)
        username, metadata, offset = _read_texts(flags, data, offset + _SLOT.size)
        base = None
        if flags & _HAS_BASE:
            b_hlc, b_origin, present, b_score, b_subscore, b_num, b_create, b_flags = _BASE.unpack_from(data, offset)
            b_username, b_metadata, offset = _read_texts(b_flags, data, offset + _BASE.size)
            base = Base(b_hlc, _origins[b_origin], bool(present), b_score, b_subscore, b_num, b_create,
                        b_username, b_metadata)
        slots.append(Slot(_origins[origin], SlotKind(kind), hlc, slot_score, slot_subscore, num_score, create_ms,
                          username, metadata, base))
    return tuple(slots)
