"""Records packed into one bytes string each: what the rank cache stores.

A Python object per field would cost about 600 bytes per record; one ``bytes`` string costs
its length plus 33. An element of the rank cache is::

    sort prefix (16 bytes: score and subscore, offset and inverted for descending boards)
    owner key  0x00  slots

The owner key is the owner id in UTF-8, or, for an id in the canonical lowercase UUID form
(what Nakama's owner ids are), 0x00 and the UUID's 16 bytes: 17 bytes instead of 36, which
puts a record with a short username in the next smaller allocation size. Ordering elements
orders records: a text id ends at 0x00, below every character an id may hold, so a shorter
id sorts first exactly as in string order; UUID keys start with 0x00 (a text id never does)
and have a fixed length, and the bytes of a UUID order like its lowercase hex text, so among
UUIDs, and among text ids, ties on score fall to the lower id; a UUID sorts before any text
id. The slots after the key never decide.

The slots are packed behind. A record written by a single node with ``set`` (by far the
most common) is *compact*: 12 bytes when it was written once (its ``num_score`` is 1 and it
was created when written, so neither is stored), 28 otherwise, plus its username and
metadata. A UUID-owned record written once is then 79 bytes, in Python's 80-byte size class
(96 with the counts). Any other record stores every slot in full.

Node names in slots are interned into a small per-process table and stored as 2-byte
indexes: a cluster has a handful of nodes.
"""

from __future__ import annotations

import re
import struct
from array import array
from functools import lru_cache

from .lives import Horizons, life_epoch, split_life
from .records import FOLDS, Base, Slot, Slots, SlotKind, Value, merge

PREFIX = struct.Struct(">QQ")
PREFIX_SIZE = PREFIX.size
UUID_KEY_END = PREFIX_SIZE + 17  # 0x00 and 16 bytes
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OFFSET = 1 << 63
_MASK = (1 << 64) - 1
_COMPACT = struct.Struct(">BBHQ")  # marker 0, flags, origin, hlc; then num_score, create_ms unless _FRESH
_COUNTS = struct.Struct(">QQ")  # num_score, create_ms
_SLOT = struct.Struct(">BHQqqQQB")  # kind, origin, hlc, score, subscore, num_score, create_ms, flags
_BASE = struct.Struct(">QHBqqQQB")  # hlc, origin, present, score, subscore, num_score, create_ms, flags
_LEN = struct.Struct(">I")
_COMPACT_UNPACK, _COMPACT_SIZE, _COUNTS_UNPACK = _COMPACT.unpack_from, _COMPACT.size, _COUNTS.unpack_from
_HAS_USERNAME, _HAS_METADATA, _HAS_BASE = 1, 2, 4
# Full slots only: the slot accounts for more lives than its own (records.Slot.cover). A fold
# slot's cover follows its texts (8 bytes); a life's slot that took in its name's earlier lives
# covers its own epoch + 1, read off its origin, so the flag alone says it.
_HAS_COVER = 16
_COVER = struct.Struct(">Q")
_FOLD_KIND_VALUES = (int(SlotKind.FOLD_BEST), int(SlotKind.FOLD_INCR))
_TEXTS = _HAS_USERNAME | _HAS_METADATA
_LONE_CONTRIBUTIONS = frozenset({int(SlotKind.BEST), int(SlotKind.INCR)})  # check_slots' fast path
_FRESH = 8  # compact only: num_score 1 and create_ms the hlc's milliseconds (a first write), both left out

_BIG_ENDIAN = struct.pack("=H", 1) == b"\x00\x01"

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


@lru_cache(maxsize=4096)  # a write looks its owner up, then stores it: the second call is free
def owner_key(owner: str) -> bytes:
    """The bytes that stand for ``owner`` in an element."""
    if len(owner) == 36 and _UUID.fullmatch(owner):
        return b"\x00" + bytes.fromhex(owner.replace("-", ""))
    return owner.encode()


def key_end(element: bytes) -> int:
    """Where the owner key of an element ends (the 0x00 between key and slots)."""
    return UUID_KEY_END if element[PREFIX_SIZE] == 0 else element.index(0, PREFIX_SIZE)


def sort_key(element: bytes) -> bytes:
    """The sort prefix and owner key of an element: its position, which cursors carry."""
    return element[:key_end(element)]


def owner_of(element: bytes, end: int) -> str:
    if element[PREFIX_SIZE] == 0:
        h = element[PREFIX_SIZE + 1:UUID_KEY_END].hex()
        return "-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))
    return element[PREFIX_SIZE:end].decode()


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
            if slot.num_score == 1 and slot.create_ms == slot.hlc >> 16:
                head = _COMPACT.pack(0, flags | _FRESH, _intern(slot.origin), slot.hlc)
            else:
                head = (_COMPACT.pack(0, flags, _intern(slot.origin), slot.hlc)
                        + _COUNTS.pack(slot.num_score, slot.create_ms))
            return head + _texts(flags, slot.username, slot.metadata) if flags else head
    parts = [bytes([len(slots)])]
    for slot in slots:
        flags = (_flags(slot.username, slot.metadata) | (_HAS_BASE if slot.base is not None else 0)
                 | (_HAS_COVER if slot.cover else 0))
        parts.append(_SLOT.pack(int(slot.kind), _intern(slot.origin), slot.hlc, slot.score, slot.subscore,
                                slot.num_score, slot.create_ms, flags))
        parts.append(_texts(flags, slot.username, slot.metadata))
        if slot.cover and slot.kind in FOLDS:
            parts.append(_COVER.pack(slot.cover))
        base = slot.base
        if base is not None:
            base_flags = _flags(base.username, base.metadata)
            parts.append(_BASE.pack(base.hlc, _intern(base.origin), int(base.present), base.score, base.subscore,
                                    base.num_score, base.create_ms, base_flags))
            parts.append(_texts(base_flags, base.username, base.metadata))
    return b"".join(parts)


def _compact(data: bytes, offset: int) -> tuple[int, int, int, int, int, int]:
    """origin, hlc, num_score, create_ms, flags, and where the texts start, of a compact slot."""
    _, flags, origin, hlc = _COMPACT.unpack_from(data, offset)
    offset += _COMPACT.size
    if flags & _FRESH:
        return origin, hlc, 1, hlc >> 16, flags, offset
    num_score, create_ms = _COUNTS.unpack_from(data, offset)
    return origin, hlc, num_score, create_ms, flags, offset + _COUNTS.size


def compact_fields(data: bytes, offset: int) -> tuple[int, int, int, str | None, str | None] | None:
    """num_score, create_ms, update_ms, username and metadata of a one-slot ``set`` record
    (a compact slot at ``offset``), without building its slot; None for any other record.

    Every page read comes through here once per record: it unpacks the slot in one pass and
    returns a plain tuple, which costs less to make than a ``Value``.
    """
    if data[offset] != 0:
        return None
    _, flags, _, hlc = _COMPACT_UNPACK(data, offset)
    update_ms = hlc >> 16
    if flags & _FRESH:
        num_score, create_ms, texts = 1, update_ms, offset + _COMPACT_SIZE
    else:
        num_score, create_ms = _COUNTS_UNPACK(data, offset + _COMPACT_SIZE)
        texts = offset + _COMPACT_SIZE + _COUNTS.size
    if flags & _TEXTS:
        username, metadata, _ = _read_texts(flags, data, texts)
        return num_score, create_ms, update_ms, username, metadata
    return num_score, create_ms, update_ms, None, None


def compact_value(data: bytes, offset: int, *, score: int, subscore: int) -> Value | None:
    """The visible value of a one-slot ``set`` record without building its slot; None otherwise."""
    fields = compact_fields(data, offset)
    return None if fields is None else Value(score, subscore, *fields)


def decode_slots(data: bytes, offset: int, *, score: int, subscore: int,
                 origins: list[str] | tuple[str, ...] = _origins) -> Slots:
    if data[offset] == 0:
        origin, hlc, num_score, create_ms, flags, texts = _compact(data, offset)
        username, metadata, _ = _read_texts(flags, data, texts)
        return (Slot(origins[origin], SlotKind.SET, hlc, score, subscore, num_score, create_ms, username, metadata),)
    count = data[offset]
    offset += 1
    slots = []
    for _ in range(count):
        kind, origin, hlc, slot_score, slot_subscore, num_score, create_ms, flags = _SLOT.unpack_from(data, offset)
        username, metadata, offset = _read_texts(flags, data, offset + _SLOT.size)
        cover = 0
        if flags & _HAS_COVER:
            if kind in _FOLD_KIND_VALUES:
                (cover,) = _COVER.unpack_from(data, offset)
                offset += _COVER.size
            else:
                cover = life_epoch(origins[origin]) + 1
        base = None
        if flags & _HAS_BASE:
            b_hlc, b_origin, present, b_score, b_subscore, b_num, b_create, b_flags = _BASE.unpack_from(data, offset)
            b_username, b_metadata, offset = _read_texts(b_flags, data, offset + _BASE.size)
            base = Base(b_hlc, origins[b_origin], bool(present), b_score, b_subscore, b_num, b_create,
                        b_username, b_metadata)
        slots.append(Slot(origins[origin], SlotKind(kind), hlc, slot_score, slot_subscore, num_score, create_ms,
                          username, metadata, base, cover))
    return tuple(slots)


# ---------------------------------------------------------------------- bulk imports


def first_write_elements(writes: list[tuple[bytes, int, int, str | None, str | None]], *, origin: str, hlc: int,
                         kind: SlotKind, descending: bool) -> list[bytes]:
    """The packed records that first writes make, for owners that have no record: what
    ``records.write`` gives an empty record, packed, without building a ``Slot`` each.

    ``writes`` are (owner key, score, subscore, username, metadata) with every check done, and the
    score a first write leaves (for ``decr``, 0); ``kind`` is the leaderboard's slot kind:
    ``SET`` makes one life's compact set, ``BEST`` and ``INCR`` a contribution on the empty
    record. Elements come back in the order of ``writes``.
    """
    index = _intern(origin)
    ms = hlc >> 16
    compact = kind is SlotKind.SET
    fresh = _COMPACT.pack(0, _FRESH, index, hlc)
    out = []
    pack = PREFIX.pack
    for key, score, subscore, username, metadata in writes:
        high, low = score + _OFFSET, subscore + _OFFSET
        prefix = (pack(_MASK - high, _MASK - low) if descending else pack(high, low)) + key + b"\x00"
        flags = (_HAS_USERNAME if username is not None else 0) | (_HAS_METADATA if metadata is not None else 0)
        if compact:
            head = fresh if not flags else _COMPACT.pack(0, flags | _FRESH, index, hlc)
        else:
            head = b"\x01" + _SLOT.pack(int(kind), index, hlc, score, subscore, 1, ms, flags)
        out.append(prefix + head + _texts(flags, username, metadata) if flags else prefix + head)
    return out


# -------------------------------------------------------------------- retired lives

_masks: dict[int, tuple[int, int, bytearray]] = {}  # id(horizons) -> (version, origins seen, mask)


def retired_mask(horizons: Horizons) -> bytearray:
    """Per node-name index of this process's table: 1 when that life is retired in ``horizons``."""
    cached = _masks.get(id(horizons))
    if cached is not None and cached[0] == horizons.version and cached[1] == len(_origins):
        return cached[2]
    mask = bytearray(len(_origins))
    for index, origin in enumerate(_origins):
        name, epoch = split_life(origin)
        mask[index] = epoch < horizons.get(name)
    _masks.clear()  # one store per process (tests make more, one at a time)
    _masks[id(horizons)] = (horizons.version, len(_origins), mask)
    return mask


_FOLD_KINDS = frozenset(int(kind) for kind in FOLDS)


def writes_of_retired_lives(data: bytes, offset: int, mask: bytearray) -> bool:
    """Whether the slots packed at ``offset`` hold one that a life in ``mask`` wrote (fold slots
    aside): what ``records.settle`` would fold. Walks the slot headers without building slots."""
    if data[offset] == 0:  # compact: one life's set, a base, which settling keeps
        return False
    count = data[offset]
    offset += 1
    for _ in range(count):
        kind, origin, *_, flags = _SLOT.unpack_from(data, offset)
        if kind not in _FOLD_KINDS and origin < len(mask) and mask[origin]:
            return True
        offset += _SLOT.size
        for flag in (_HAS_USERNAME, _HAS_METADATA):
            if flags & flag:
                offset += 4 + _LEN.unpack_from(data, offset)[0]
        if flags & _HAS_COVER and kind in _FOLD_KINDS:
            offset += _COVER.size
        if flags & _HAS_BASE:
            b_flags = data[offset + _BASE.size - 1]
            offset += _BASE.size
            for flag in (_HAS_USERNAME, _HAS_METADATA):
                if b_flags & flag:
                    offset += 4 + _LEN.unpack_from(data, offset)[0]
    return False


# ----------------------------------------------------------------- elements from elsewhere

_ORIGIN = struct.Struct(">H")
_LENGTHS_TYPE = "I"


def origin_table() -> tuple[str, ...]:
    """This process's node-name table: element origin indexes point into it."""
    return tuple(_origins)


def pack_lengths(elements: list[bytes]) -> bytes:
    """The byte length of each element, as little-endian uint32s (a full sync's framing)."""
    lengths = array(_LENGTHS_TYPE, map(len, elements))
    if lengths.itemsize != 4:  # pragma: no cover - every platform we run on has 4-byte "I"
        raise RuntimeError("array('I') is not 32-bit here")
    if _BIG_ENDIAN:  # pragma: no cover
        lengths.byteswap()
    return lengths.tobytes()


def split_elements(blob: bytes, lengths: bytes) -> list[bytes]:
    """The elements ``pack_lengths`` framed; ValueError when the framing does not add up."""
    if len(lengths) % 4:
        raise ValueError("element lengths are not a whole number of uint32s")
    sizes = array(_LENGTHS_TYPE)
    sizes.frombytes(lengths)
    if _BIG_ENDIAN:  # pragma: no cover
        sizes.byteswap()
    if sum(sizes) != len(blob):
        raise ValueError("element lengths do not add up to the elements' bytes")
    view = memoryview(blob)
    out = []
    start = 0
    for size in sizes:
        stop = start + size
        out.append(view[start:stop].tobytes())
        start = stop
    return out


def origin_mapping(origins: list[str] | tuple[str, ...]) -> list[int] | None:
    """How another process's node indexes (its table is ``origins``) map onto this one's;
    None when they agree (a fresh node interns the sender's names in the sender's order)."""
    mapping = [_intern(origin) for origin in origins]
    return None if all(index == mine for index, mine in enumerate(mapping)) else mapping


def check_slots(element: bytes, end: int, *, origins: list[str] | tuple[str, ...], descending: bool) -> None:
    """Check the slots of an element packed elsewhere (``end``: where its owner key ends);
    ValueError when they do not decode to exactly the record its sort prefix claims."""
    size = len(element)
    offset = end + 1
    if end >= size - 1 or element[end] != 0:
        raise ValueError("a packed record has no slots")
    if element[offset] == 0:  # one node's set: the score is the prefix's
        try:
            origin, _, _, _, flags, texts = _compact(element, offset)
            if origin >= len(origins) or flags & ~(_TEXTS | _FRESH):
                raise ValueError("a packed record is malformed")
            _, _, stop = _read_texts(flags, element, texts)
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"a packed record is malformed: {exc}") from None
        if stop != size:
            raise ValueError("a packed record's length does not match its content")
        return
    if element[offset] == 1 and size > offset + 1 and element[offset + 1] in _LONE_CONTRIBUTIONS:
        # one node's best or incr on nothing (no base, no cover): its value is its own pair, so
        # checking it needs no merge (the general path below costs about 20 us a record)
        try:
            _, origin, _, score, subscore, _, _, flags = _SLOT.unpack_from(element, offset + 1)
            if origin < len(origins) and not flags & ~_TEXTS:
                _, _, stop = _read_texts(flags, element, offset + 1 + _SLOT.size)
                if stop != size:
                    raise ValueError("a packed record's length does not match its content")
                if sort_prefix(score, subscore, descending=descending) != element[:PREFIX_SIZE]:
                    raise ValueError("a packed record does not match its content")
                return
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"a packed record is malformed: {exc}") from None
    try:
        slots = decode_slots(element, offset, score=0, subscore=0, origins=origins)
    except (IndexError, struct.error, ValueError) as exc:
        raise ValueError(f"a packed record is malformed: {exc}") from None
    value = merge(slots, descending=descending)
    if value is None or (len(slots) == 1 and slots[0].kind is SlotKind.SET):
        raise ValueError("a packed record is malformed: no value, or a lone set not packed compact")
    packed = encode_slots(slots, score=value.score, subscore=value.subscore)
    if len(packed) != size - offset or sort_prefix(value.score, value.subscore, descending=descending) != element[:PREFIX_SIZE]:
        raise ValueError("a packed record does not match its content")


FIRST_WRITE_SIZE = UUID_KEY_END + 1 + _COMPACT.size  # a UUID owner's first set: no texts, no counts
_FIRST_WRITE_LENGTH = array(_LENGTHS_TYPE, [FIRST_WRITE_SIZE]).tobytes() if not _BIG_ENDIAN else b""


def first_writes_only(blob: bytes, count: int) -> bool:
    """Whether ``blob`` is ``count`` elements of ``FIRST_WRITE_SIZE`` bytes joined, each a UUID
    owner's first set without texts: checked column by column, each check one C-level pass of
    ``bytes.count`` over a strided slice (the origin is the caller's to check)."""
    size = FIRST_WRITE_SIZE
    return (len(blob) == size * count
            and blob[PREFIX_SIZE::size].count(0) == count  # a UUID owner
            and blob[UUID_KEY_END::size].count(0) == count  # the separator
            and blob[UUID_KEY_END + 1::size].count(0) == count  # a compact slot
            and blob[UUID_KEY_END + 2::size].count(_FRESH) == count)  # a first write, no texts


def adopt_framed(blob: bytes, lengths: bytes, origins: list[str] | tuple[str, ...], *,
                 descending: bool) -> list[bytes]:
    """``adopt`` of the elements ``pack_lengths`` framed (a full sync's chunk, an import).

    A chunk of nothing but UUID owners' first sets (what a board loaded by first writes or
    imports holds) is checked column by column over the whole blob (``first_writes_only``, then
    the origins) and cut at fixed offsets; any other chunk is split and checked element by
    element. Both check the same things.
    """
    size, count = FIRST_WRITE_SIZE, len(lengths) // 4
    if (count and len(origins) <= 256 and lengths == _FIRST_WRITE_LENGTH * count and first_writes_only(blob, count)
            and blob[UUID_KEY_END + 3::size].count(0) == count  # the origin's high byte
            and max(blob[UUID_KEY_END + 4::size]) < len(origins)):  # and its low byte
        elements = list(map(blob.__getitem__, map(slice, range(0, len(blob), size), range(size, len(blob) + 1, size))))
        return _pointed_here(elements, origins, descending=descending)
    return adopt(split_elements(blob, lengths), origins, descending=descending)


def adopt(elements: list[bytes], origins: list[str] | tuple[str, ...], *, descending: bool) -> list[bytes]:
    """Elements packed by another process (whose node-name table is ``origins``), checked and
    pointed at this process's table; ValueError when one does not decode.

    The common shape (a UUID or text owner, one node's set without username or metadata) is
    checked inline; anything else by ``check_slots``.
    """
    known = len(origins)
    fresh_end = 1 + _COMPACT.size  # separator, then a first write's compact slot
    for element in elements:
        if len(element) <= PREFIX_SIZE:
            raise ValueError("a packed record is too short")
        if element[PREFIX_SIZE] == 0:  # key_end, inlined (once per record of a full sync) and checked
            end = UUID_KEY_END
        else:
            end = element.find(0, PREFIX_SIZE)
            if end < 0:
                raise ValueError("a packed record has no end to its owner id")
            element[PREFIX_SIZE:end].decode()  # UnicodeDecodeError is a ValueError
        if not (len(element) == end + fresh_end and element[end] == 0 and element[end + 1] == 0
                and element[end + 2] == _FRESH and (element[end + 3] << 8 | element[end + 4]) < known):
            check_slots(element, end, origins=origins, descending=descending)
    return _pointed_here(elements, origins, descending=descending)


def _pointed_here(elements: list[bytes], origins: list[str] | tuple[str, ...], *, descending: bool) -> list[bytes]:
    """Checked elements packed against ``origins``, pointed at this process's node-name table."""
    mapping = origin_mapping(origins)
    if mapping is None:
        return elements
    out = []
    for element in elements:
        end = key_end(element)
        offset = end + 1
        if element[offset] == 0:
            (origin,) = _ORIGIN.unpack_from(element, offset + 2)
            out.append(element[:offset + 2] + _ORIGIN.pack(mapping[origin]) + element[offset + 4:])
            continue
        score, subscore = score_of(element, descending=descending)
        slots = decode_slots(element, offset, score=score, subscore=subscore, origins=origins)
        out.append(element[:offset] + encode_slots(slots, score=score, subscore=subscore))
    return out
