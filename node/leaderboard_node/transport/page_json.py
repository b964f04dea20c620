"""Pages of records rendered to JSON from the packed records themselves.

A page of 100 records used to spend four fifths of a top-100 request decoding each packed
record into a view, turning the views into dicts and serializing them. A record's JSON
object, up to the value of its rank, depends only on its packed bytes (the element), the
sort order, and three things its page shares: the leaderboard id, the tournament's
``max_num_score`` and the period's expiry. It is rendered once (``_record_json``) and kept in
a bounded least-recently-used cache (``functools.lru_cache``) under those five; a page joins
the kept objects with their ranks. A write makes a new element, so a kept rendering is never
stale: the old one stops being asked for and ages out. An owner granted attempts has a limit
of its own, which the element does not show: such a record is rendered for its page alone.

The pages read again and again (a board's top, the neighbourhood of active players) cost a
cache lookup per record (25 us a top-100 page in process, against 290 before); a page of
records nobody read lately costs about what it did before. ``CACHED_RECORDS`` bounds the
cache: about 470 bytes a kept record, 2 MiB in all, plus the elements writes have replaced
(80 bytes each) until they age out.

The bytes are the same as serializing the page's views with ``render_record`` (tested), key
order included.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from itertools import count
from typing import Any

import orjson

from ..domain.rank_cache import visible
from ..domain.store import RecordPage, RecordView

CACHED_RECORDS = 4096

log = logging.getLogger(__name__)


def dumps(value: Any) -> str:
    """JSON text of ``value``; integers wider than 64 bits (only metadata holds them) go through
    the standard library, which orjson refuses."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def metadata_object(text: str | None) -> dict[str, Any]:
    """Stored metadata as an object; ``{}`` for anything else.

    What this node stores went through ``Limits.metadata``, but a peer's changes are not
    checked that way (see the replication decoder): one bad record or definition must not
    turn every read of its leaderboard into a 500.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        if not _warned_metadata:  # once per process: a bad record is read again and again
            _warned_metadata.append(True)
            log.warning("stored_metadata_not_an_object", extra={"length": len(text)})
        return {}
    return value


_warned_metadata: list[bool] = []


def render_record(view: RecordView) -> dict[str, Any]:
    return {
        "leaderboard_id": view.leaderboard_id,
        "owner_id": view.owner_id,
        "username": view.username,
        "score": view.score,
        "subscore": view.subscore,
        "num_score": view.num_score,
        "max_num_score": view.max_num_score,
        "metadata": metadata_object(view.metadata),
        "create_time": view.create_ms // 1000,
        "update_time": view.update_ms // 1000,
        "expiry_time": view.expiry,
        "rank": view.rank,
    }


def _text(value: str | None) -> str:
    return "null" if value is None else orjson.dumps(value).decode()


def _metadata_json(text: str | None) -> str:
    return "{}" if not text else dumps(metadata_object(text))


def _record_json(element: bytes, descending: bool, head: str, limit: int, expiry: int) -> str:
    """A packed record's JSON object up to the value of ``rank``."""
    owner, score, subscore, num_score, create_ms, update_ms, username, metadata = visible(element, descending)
    return (f'{head}"owner_id":{_text(owner)},"username":{_text(username)},"score":{score},'
            f'"subscore":{subscore},"num_score":{num_score},"max_num_score":{limit},'
            f'"metadata":{_metadata_json(metadata)},"create_time":{create_ms // 1000},'
            f'"update_time":{update_ms // 1000},"expiry_time":{expiry},"rank":')


_kept_record_json = lru_cache(maxsize=CACHED_RECORDS)(_record_json)


def page_body(page: RecordPage) -> bytes:
    """The JSON body of a page of records."""
    records = ""
    rows = page.rows
    if rows is not None:
        head, descending, limit, expiry = f'{{"leaderboard_id":{_text(rows.leaderboard_id)},', rows.descending, \
            rows.max_num_score, rows.expiry
        rendered = [_kept_record_json(element, descending, head, limit, expiry) for element in rows.elements]
        if rows.granted:  # an owner granted attempts has a limit of its own: rendered for this page alone
            for index, element in enumerate(rows.elements):
                owner = visible(element, descending)[0]
                if owner in rows.granted:
                    rendered[index] = _record_json(element, descending, head, rows.max_num_score_of(owner), expiry)
        if rows.first_rank:
            records = ",".join([f"{text}{rank}}}" for text, rank in zip(rendered, count(rows.first_rank))])
        else:
            records = "0},".join(rendered) + "0}"
    owner_records = dumps([render_record(view) for view in page.owner_records])
    return (f'{{"records":[{records}],"owner_records":{owner_records},"next_cursor":{_text(page.next_cursor)},'
            f'"prev_cursor":{_text(page.prev_cursor)},"rank_count":{page.rank_count},'
            f'"expiry_time":{page.expiry}}}').encode()


def cache_info() -> Any:
    """Hits, misses and size of the kept renderings (``functools`` ``CacheInfo``)."""
    return _kept_record_json.cache_info()
