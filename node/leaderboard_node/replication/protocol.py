"""Conversions between domain changes and BinaryLog messages, and the wire framing.

Decoding is strict: a message that names an unknown kind, a missing part or an id that is
not a valid string is a ``ProtocolError`` (the peer endpoint answers 400 and counts it),
never a change applied with a default value.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard
from google.protobuf.message import DecodeError

from ..domain.changes import (
    AttemptsGrant,
    Change,
    DeliveryProgress,
    EventPut,
    LeaderboardKill,
    LeaderboardPut,
    OwnerErase,
    RecordSlotPut,
    RecordsImported,
    Setting,
    SettingPut,
    TournamentJoin,
)
from ..domain.clock import MAX_HLC, MAX_MS
from ..domain.errors import InvalidArgument
from ..domain.events import MAX_TOP, Event, EventKind, Standing, check_webhook_url
from ..domain.leaderboards import Leaderboard, TournamentSettings, validate_definition
from ..domain.lives import life_epoch
from ..domain.record_codec import adopt_framed, origin_table, pack_lengths
from ..domain.records import FOLDS, Base, Operator, Slot, SlotKind, SortOrder
from . import binarylog_pb2 as pb

# Not Content-Encoding: HTTP servers and proxies decode that on their own, without our limits.
COMPRESSION_HEADER = "X-Leaderboard-Compression"
ZSTD_ENCODING = "zstd"
MAX_FRAME_BYTES = 64 * 1024 * 1024
_FRAME = struct.Struct(">I")
_compressor = zstandard.ZstdCompressor(level=1)
_decompressor = zstandard.ZstdDecompressor()

_OPERATORS = {Operator.BEST: pb.OPERATOR_BEST, Operator.SET: pb.OPERATOR_SET,
              Operator.INCR: pb.OPERATOR_INCR, Operator.DECR: pb.OPERATOR_DECR}
_OPERATORS_BACK = {v: k for k, v in _OPERATORS.items()}
_SLOT_KINDS = {SlotKind.SET: pb.SLOT_KIND_SET, SlotKind.DELETE: pb.SLOT_KIND_DELETE,
               SlotKind.BEST: pb.SLOT_KIND_BEST, SlotKind.INCR: pb.SLOT_KIND_INCR,
               SlotKind.FOLD_BEST: pb.SLOT_KIND_FOLD_BEST, SlotKind.FOLD_INCR: pb.SLOT_KIND_FOLD_INCR}
_SLOT_KINDS_BACK = {v: k for k, v in _SLOT_KINDS.items()}


class ProtocolError(ValueError):
    """A peer message that does not decode to valid changes."""


class FormatTooNew(ProtocolError):
    """A sync stream or snapshot in a format a newer build wrote: sound, but not ours to read."""


# ------------------------------------------------------------------------ compression


def compress(data: bytes) -> bytes:
    return _compressor.compress(data)


def decompress(data: bytes, *, max_size: int = MAX_FRAME_BYTES) -> bytes:
    try:
        params = zstandard.get_frame_parameters(data)
        if params.content_size > max_size:
            raise ProtocolError(f"a compressed message expands to {params.content_size} bytes")
        return _decompressor.decompress(data, max_output_size=max_size)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"not a valid zstd frame: {exc}") from None


def parse(message_type: type, data: bytes):  # type: ignore[no-untyped-def]
    message = message_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ProtocolError(f"not a valid {message_type.__name__}: {exc}") from None
    return message


def frame(message: bytes) -> bytes:
    return _FRAME.pack(len(message)) + message


def read_frames(buffer: bytearray) -> Iterator[bytes]:
    """Pop every complete length-prefixed frame from the front of ``buffer``."""
    offset = 0
    while len(buffer) - offset >= _FRAME.size:
        (size,) = _FRAME.unpack_from(buffer, offset)
        if size > MAX_FRAME_BYTES:
            raise ProtocolError(f"a frame of {size} bytes is larger than {MAX_FRAME_BYTES}")
        if len(buffer) - offset - _FRAME.size < size:
            break
        start = offset + _FRAME.size
        yield bytes(buffer[start:start + size])
        offset = start + size
    del buffer[:offset]


# ------------------------------------------------------------------------------ slots


MAX_COUNT = 1 << 62  # a num_score beyond this is no count any client could have made


def checked_hlc(value: int, *, what: str) -> int:
    """A clock reading from a peer: within what the format can hold (the year 2106)."""
    if value > MAX_HLC:
        raise ProtocolError(f"{what} {value} is beyond any time this product can name (2106)")
    return value


def _checked_counts(num_score: int, create_ms: int, *, what: str) -> None:
    if num_score > MAX_COUNT or create_ms > MAX_MS:
        raise ProtocolError(f"{what} has a num_score or create_ms out of range")


def checked_text(value: str, *, what: str) -> str:
    """A non-empty id or name without NUL (ids end at 0x00 in the rank cache's packed records)."""
    if not value:
        raise ProtocolError(f"{what} is empty")
    if "\x00" in value:
        raise ProtocolError(f"{what} holds a NUL character")
    return value


def slot_to_pb(slot: Slot, out: pb.Slot) -> None:
    out.origin = slot.origin
    out.kind = _SLOT_KINDS[slot.kind]
    out.hlc = slot.hlc
    out.score = slot.score
    out.subscore = slot.subscore
    out.num_score = slot.num_score
    out.create_ms = slot.create_ms
    if slot.username is not None:
        out.username = slot.username
    if slot.metadata is not None:
        out.metadata = slot.metadata
    if slot.cover:
        out.cover = slot.cover
    base = slot.base
    if base is not None:
        b = out.base
        b.hlc, b.origin, b.present = base.hlc, base.origin, base.present
        b.score, b.subscore, b.num_score, b.create_ms = base.score, base.subscore, base.num_score, base.create_ms
        if base.username is not None:
            b.username = base.username
        if base.metadata is not None:
            b.metadata = base.metadata


def slot_from_pb(message: pb.Slot, *, folds: bool = False) -> Slot:
    """A slot as a peer sent it, checked: a batch carries only slots a life writes (``folds``
    False); a full sync may carry fold slots too."""
    kind = _SLOT_KINDS_BACK.get(message.kind)
    if kind is None or (kind in FOLDS and not folds):
        raise ProtocolError(f"unknown slot kind {message.kind}")
    origin = checked_text(message.origin, what="slot origin")
    checked_hlc(message.hlc, what="slot hlc")
    _checked_counts(message.num_score, message.create_ms, what="a slot")
    cover = message.cover
    if kind in FOLDS:
        if cover <= life_epoch(origin):
            raise ProtocolError("a fold slot must cover the life it is named after")
    elif cover and (kind < SlotKind.BEST or cover != life_epoch(origin) + 1):
        raise ProtocolError("only a contribution covers earlier lives, up to and including its own")
    base = None
    if message.HasField("base"):
        if kind in (SlotKind.SET, SlotKind.DELETE):
            raise ProtocolError("a set or delete slot has no base")
        b = message.base
        checked_hlc(b.hlc, what="base hlc")
        _checked_counts(b.num_score, b.create_ms, what="a base")
        base = Base(b.hlc, checked_text(b.origin, what="base origin"), b.present, b.score, b.subscore, b.num_score,
                    b.create_ms, b.username if b.HasField("username") else None,
                    b.metadata if b.HasField("metadata") else None)
    return Slot(
        origin, kind, message.hlc, message.score, message.subscore,
        message.num_score, message.create_ms, message.username if message.HasField("username") else None,
        message.metadata if message.HasField("metadata") else None, base, cover,
    )


# ------------------------------------------------------------------------ definitions


def definition_to_pb(leaderboard: Leaderboard, out: pb.LeaderboardDefinition) -> None:
    out.id = leaderboard.id
    out.sort_order = pb.SORT_ORDER_ASC if leaderboard.sort_order is SortOrder.ASC else pb.SORT_ORDER_DESC
    out.operator = _OPERATORS[leaderboard.operator]
    if leaderboard.reset_schedule is not None:
        out.reset_schedule = leaderboard.reset_schedule
    out.metadata = leaderboard.metadata
    out.authoritative = leaderboard.authoritative
    out.enable_ranks = leaderboard.enable_ranks
    out.generation = leaderboard.generation
    out.create_hlc = leaderboard.create_hlc
    out.origin = leaderboard.origin
    t = leaderboard.tournament
    if t is not None:
        o = out.tournament
        o.title, o.description, o.category = t.title, t.description, t.category
        o.start_time, o.end_time, o.duration = t.start_time, t.end_time, t.duration
        o.max_size, o.max_num_score, o.join_required = t.max_size, t.max_num_score, t.join_required


def definition_from_pb(message: pb.LeaderboardDefinition) -> Leaderboard:
    operator = _OPERATORS_BACK.get(message.operator)
    if operator is None or message.sort_order not in (pb.SORT_ORDER_ASC, pb.SORT_ORDER_DESC):
        raise ProtocolError("unknown operator or sort order")
    tournament = None
    if message.HasField("tournament"):
        t = message.tournament
        tournament = TournamentSettings(t.title, t.description, t.category, t.start_time, t.end_time, t.duration,
                                        t.max_size, t.max_num_score, t.join_required)
    leaderboard = Leaderboard(
        id=checked_text(message.id, what="leaderboard id"),
        sort_order=SortOrder.ASC if message.sort_order == pb.SORT_ORDER_ASC else SortOrder.DESC,
        operator=operator,
        reset_schedule=message.reset_schedule if message.HasField("reset_schedule") else None,
        metadata=message.metadata or "{}", authoritative=message.authoritative, enable_ranks=message.enable_ranks,
        tournament=tournament, generation=message.generation,
        create_hlc=checked_hlc(message.create_hlc, what="leaderboard create_hlc"),
        origin=checked_text(message.origin, what="leaderboard origin"),
    )
    try:  # the same checks as the client API: a peer cannot store what no client could
        validate_definition(leaderboard, now=int(time.time()))
    except InvalidArgument as exc:
        raise ProtocolError(f"leaderboard {leaderboard.id!r}: {exc.message}") from None
    return leaderboard


def kill_to_pb(change: LeaderboardKill, out: pb.LeaderboardDelete) -> None:
    out.leaderboard_id = change.leaderboard_id
    out.incarnations.extend(change.incarnations)
    out.generation = change.generation


def kill_from_pb(message: pb.LeaderboardDelete) -> LeaderboardKill:
    return LeaderboardKill(checked_text(message.leaderboard_id, what="leaderboard id"), tuple(message.incarnations),
                           message.generation)


def join_to_pb(change: TournamentJoin, out: pb.TournamentJoin) -> None:
    out.leaderboard_id, out.incarnation = change.leaderboard_id, change.incarnation
    out.expiry, out.owner_id, out.hlc = change.expiry, change.owner, change.hlc


def join_from_pb(message: pb.TournamentJoin) -> TournamentJoin:
    return TournamentJoin(checked_text(message.leaderboard_id, what="leaderboard id"),
                          checked_text(message.incarnation, what="incarnation"), message.expiry,
                          checked_text(message.owner_id, what="owner id"), checked_hlc(message.hlc, what="join hlc"))


def erase_to_pb(change: OwnerErase, out: pb.OwnerErase) -> None:
    out.owner_id, out.hlc, out.origin = change.owner, change.hlc, change.origin


def erase_from_pb(message: pb.OwnerErase) -> OwnerErase:
    return OwnerErase(checked_text(message.owner_id, what="owner id"), checked_hlc(message.hlc, what="erasure hlc"),
                      checked_text(message.origin, what="erasure origin"))


def grant_to_pb(change: AttemptsGrant, out: pb.AttemptsGrant) -> None:
    out.leaderboard_id, out.incarnation, out.expiry = change.leaderboard_id, change.incarnation, change.expiry
    out.owner_id, out.origin, out.hlc, out.total = change.owner, change.origin, change.hlc, change.total


def grant_from_pb(message: pb.AttemptsGrant) -> AttemptsGrant:
    if message.total > MAX_COUNT:
        raise ProtocolError("an attempts grant's total is out of range")
    return AttemptsGrant(checked_text(message.leaderboard_id, what="leaderboard id"),
                         checked_text(message.incarnation, what="incarnation"), message.expiry,
                         checked_text(message.owner_id, what="owner id"),
                         checked_text(message.origin, what="grant origin"),
                         checked_hlc(message.hlc, what="grant hlc"), message.total)


_SETTINGS = {Setting.ENABLE_RANKS: pb.SETTING_NAME_ENABLE_RANKS, Setting.EVENT_TOP: pb.SETTING_NAME_EVENT_TOP,
             Setting.WEBHOOK_URL: pb.SETTING_NAME_WEBHOOK_URL}
_SETTINGS_BACK = {v: k for k, v in _SETTINGS.items()}
_SETTING_VALUES = {Setting.ENABLE_RANKS: "flag", Setting.EVENT_TOP: "number", Setting.WEBHOOK_URL: "text"}


def setting_to_pb(change: SettingPut, out: pb.SettingUpdate) -> None:
    out.leaderboard_id, out.incarnation = change.leaderboard_id, change.incarnation
    out.name, out.hlc, out.origin = _SETTINGS[change.name], change.hlc, change.origin
    if change.value is not None:
        setattr(out, _SETTING_VALUES[change.name], change.value)


def setting_from_pb(message: pb.SettingUpdate) -> SettingPut:
    name = _SETTINGS_BACK.get(message.name)
    if name is None:
        raise ProtocolError(f"unknown setting {message.name}")
    kind = message.WhichOneof("value")
    if kind is not None and kind != _SETTING_VALUES[name]:
        raise ProtocolError(f"setting {name.value} holds a {kind}")
    if name is Setting.ENABLE_RANKS and kind is None:
        raise ProtocolError("enable_ranks needs a value")
    value: bool | int | str | None = None if kind is None else getattr(message, kind)
    try:
        if name is Setting.EVENT_TOP and value is not None and not 1 <= int(value) <= MAX_TOP:
            raise InvalidArgument(f"event_top must be between 1 and {MAX_TOP}", field="event_top")
        if name is Setting.WEBHOOK_URL and value is not None:
            value = check_webhook_url(str(value))
    except InvalidArgument as exc:
        raise ProtocolError(exc.message) from None
    return SettingPut(checked_text(message.leaderboard_id, what="leaderboard id"),
                      checked_text(message.incarnation, what="incarnation"), name, value,
                      checked_hlc(message.hlc, what="setting hlc"), checked_text(message.origin, what="setting origin"))


_EVENT_KINDS = {EventKind.LEADERBOARD_RESET: pb.EVENT_KIND_LEADERBOARD_RESET,
                EventKind.TOURNAMENT_RESET: pb.EVENT_KIND_TOURNAMENT_RESET,
                EventKind.TOURNAMENT_END: pb.EVENT_KIND_TOURNAMENT_END}
_EVENT_KINDS_BACK = {v: k for k, v in _EVENT_KINDS.items()}
_MAX_TIME = MAX_MS // 1000


def event_to_pb(event: Event, out: pb.Event) -> None:
    out.leaderboard_id, out.incarnation, out.kind = event.leaderboard_id, event.incarnation, _EVENT_KINDS[event.kind]
    out.period_start, out.period_end = event.period_start, event.period_end
    out.active_start, out.active_end = event.active_start, event.active_end
    out.rank_count, out.top_limit = event.rank_count, event.top_limit
    out.hlc, out.origin, out.number = event.hlc, event.origin, event.number
    for standing in event.standings:
        s = out.standings.add()
        s.rank, s.owner_id, s.score, s.subscore = standing.rank, standing.owner_id, standing.score, standing.subscore
        s.num_score, s.max_num_score = standing.num_score, standing.max_num_score
        s.create_ms, s.update_ms = standing.create_ms, standing.update_ms
        if standing.username is not None:
            s.username = standing.username
        if standing.metadata is not None:
            s.metadata = standing.metadata


def event_from_pb(message: pb.Event) -> Event:
    kind = _EVENT_KINDS_BACK.get(message.kind)
    if kind is None:
        raise ProtocolError(f"unknown event kind {message.kind}")
    times = (message.period_start, message.period_end, message.active_start, message.active_end)
    if any(t > _MAX_TIME for t in times) or not message.period_end:
        raise ProtocolError("an event's times are out of range")
    if not 1 <= message.top_limit <= MAX_TOP or len(message.standings) > message.top_limit:
        raise ProtocolError("an event holds more standings than its top_limit, or a top_limit out of range")
    if message.number < 1 or message.rank_count > MAX_COUNT or message.rank_count < len(message.standings):
        raise ProtocolError("an event's number or rank_count is out of range")
    standings = []
    for s in message.standings:
        _checked_counts(s.num_score, s.create_ms, what="a standing")
        if s.update_ms > MAX_MS or s.max_num_score > MAX_COUNT or s.rank > MAX_COUNT:
            raise ProtocolError("a standing has a time or count out of range")
        standings.append(Standing(s.rank, checked_text(s.owner_id, what="owner id"),
                                  s.username if s.HasField("username") else None, s.score, s.subscore, s.num_score,
                                  s.max_num_score, s.metadata if s.HasField("metadata") else None, s.create_ms,
                                  s.update_ms))
    return Event(checked_text(message.leaderboard_id, what="leaderboard id"),
                 checked_text(message.incarnation, what="incarnation"), kind, message.period_start, message.period_end,
                 message.active_start, message.active_end, message.rank_count, message.top_limit, tuple(standings),
                 checked_hlc(message.hlc, what="event hlc"), checked_text(message.origin, what="event origin"),
                 message.number)


def progress_to_pb(change: DeliveryProgress, out: pb.DeliveryProgress) -> None:
    out.target, out.origin, out.number = change.target, change.origin, change.number


def progress_from_pb(message: pb.DeliveryProgress) -> DeliveryProgress:
    if message.number < 1:
        raise ProtocolError("delivery progress names no event")
    return DeliveryProgress(checked_text(message.target, what="delivery target"),
                            checked_text(message.origin, what="delivery origin"), message.number)


# ---------------------------------------------------------------------------- entries


def entry_to_pb(seq: int, change: Change, out: pb.Entry) -> None:
    out.seq = seq
    if isinstance(change, RecordSlotPut):
        if change.slot.kind is SlotKind.DELETE:
            target = out.record_delete
            target.origin, target.hlc = change.slot.origin, change.slot.hlc
        else:
            target = out.record_update
            slot_to_pb(change.slot, target.slot)
        key = target.key
        key.leaderboard_id, key.incarnation, key.expiry = change.leaderboard_id, change.incarnation, change.expiry
        key.owner_id, key.ascending = change.owner, not change.descending
    elif isinstance(change, LeaderboardPut):
        definition_to_pb(change.leaderboard, out.leaderboard_create.leaderboard)
    elif isinstance(change, LeaderboardKill):
        kill_to_pb(change, out.leaderboard_delete)
    elif isinstance(change, TournamentJoin):
        join_to_pb(change, out.tournament_join)
    elif isinstance(change, RecordsImported):
        target = out.records_import
        target.leaderboard_id, target.incarnation, target.expiry = change.leaderboard_id, change.incarnation, change.expiry
        target.ascending = not change.descending
        target.elements = b"".join(change.elements)
        target.lengths = pack_lengths(change.elements)
        target.origins.extend(origin_table())
        target.digest = change.digest.to_bytes(16, "big")
    elif isinstance(change, OwnerErase):
        erase_to_pb(change, out.owner_erase)
    elif isinstance(change, AttemptsGrant):
        grant_to_pb(change, out.attempts_grant)
    elif isinstance(change, SettingPut):
        setting_to_pb(change, out.setting_update)
    elif isinstance(change, EventPut):
        event_to_pb(change.event, out.event)
    elif isinstance(change, DeliveryProgress):
        progress_to_pb(change, out.delivery_progress)
    else:  # pragma: no cover
        raise TypeError(f"not a change: {change!r}")


def entry_from_pb(entry: pb.Entry) -> Change:
    kind = entry.WhichOneof("change")
    if kind == "record_update":
        key = entry.record_update.key
        return RecordSlotPut(checked_text(key.leaderboard_id, what="leaderboard id"),
                             checked_text(key.incarnation, what="incarnation"), key.expiry,
                             checked_text(key.owner_id, what="owner id"), slot_from_pb(entry.record_update.slot),
                             not key.ascending)
    if kind == "record_delete":
        d = entry.record_delete
        key = d.key
        slot = Slot(checked_text(d.origin, what="origin"), SlotKind.DELETE, checked_hlc(d.hlc, what="delete hlc"),
                    0, 0, 0, 0, None, None)
        return RecordSlotPut(checked_text(key.leaderboard_id, what="leaderboard id"),
                             checked_text(key.incarnation, what="incarnation"), key.expiry,
                             checked_text(key.owner_id, what="owner id"), slot, not key.ascending)
    if kind == "leaderboard_create":
        return LeaderboardPut(definition_from_pb(entry.leaderboard_create.leaderboard))
    if kind == "leaderboard_delete":
        return kill_from_pb(entry.leaderboard_delete)
    if kind == "tournament_join":
        return join_from_pb(entry.tournament_join)
    if kind == "records_import":
        return import_from_pb(entry.records_import)
    if kind == "owner_erase":
        return erase_from_pb(entry.owner_erase)
    if kind == "attempts_grant":
        return grant_from_pb(entry.attempts_grant)
    if kind == "setting_update":
        return setting_from_pb(entry.setting_update)
    if kind == "event":
        return EventPut(event_from_pb(entry.event))
    if kind == "delivery_progress":
        return progress_from_pb(entry.delivery_progress)
    raise ProtocolError(f"entry {entry.seq} carries no known change")


def import_from_pb(message: pb.RecordsImport) -> RecordsImported:
    """Imported first writes, checked record by record and pointed at this process's node-name
    table (``record_codec.adopt``), as a full sync's records are."""
    descending = not message.ascending
    if len(message.digest) != 16:
        raise ProtocolError("an import's digest is 16 bytes")
    try:
        elements = adopt_framed(message.elements, message.lengths, list(message.origins), descending=descending)
    except ValueError as exc:
        raise ProtocolError(f"imported records of {message.leaderboard_id!r}: {exc}") from None
    return RecordsImported(checked_text(message.leaderboard_id, what="leaderboard id"),
                           checked_text(message.incarnation, what="incarnation"), message.expiry, descending,
                           elements, int.from_bytes(message.digest, "big"))


def record_key(change: Change) -> int:
    """A hash of the record a change is about, for coalescing (0: never coalesces). Equal
    hashes are confirmed with ``same_record`` before an entry is dropped."""
    if isinstance(change, RecordSlotPut):
        return hash((change.leaderboard_id, change.incarnation, change.expiry, change.owner)) or 1
    return 0


def same_record(entry: bytes, other: bytes) -> bool:
    """Whether two serialized entries update the same record."""
    keys = []
    for data in (entry, other):
        message = pb.Entry.FromString(data)
        kind = message.WhichOneof("change")
        if kind not in ("record_update", "record_delete"):
            return False
        key = getattr(message, kind).key
        keys.append((key.leaderboard_id, key.incarnation, key.expiry, key.owner_id))
    return keys[0] == keys[1]


def encode_entry(seq: int, change: Change) -> bytes:
    entry = pb.Entry()
    entry_to_pb(seq, change, entry)
    return entry.SerializeToString()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_ENTRIES_TAG = b"\x22"  # Batch.entries: field 4, length-delimited
_BATCH_TAG = b"\x12"  # CatchUpResponse.batch: field 2, length-delimited


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A serialized ``Batch``, built by concatenating entries already serialized once."""

    origin: tuple[str, int]
    first_seq: int
    last_seq: int
    entries: int
    data: bytes


def encode_batch(origin: tuple[str, int], *, sender: str, hlc: int, first_seq: int, last_seq: int,
                 entries: list[bytes]) -> EncodedBatch:
    header = pb.Batch(first_seq=first_seq, last_seq=last_seq, sender=sender, sent_hlc=hlc)
    header.origin.node, header.origin.epoch = origin
    # Concatenated protobuf messages merge, and repeated fields append: this is a Batch.
    data = header.SerializeToString() + b"".join(_ENTRIES_TAG + varint(len(e)) + e for e in entries)
    return EncodedBatch(origin, first_seq, last_seq, len(entries), data)


def catch_up_response(batch: EncodedBatch | None) -> bytes:
    if batch is None:
        return pb.CatchUpResponse(available=False).SerializeToString()
    return b"\x08\x01" + _BATCH_TAG + varint(len(batch.data)) + batch.data
