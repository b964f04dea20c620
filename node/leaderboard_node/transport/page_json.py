"""Pages of records rendered to JSON from the packed records themselves.

A page of 100 records used to spend four fifths of a top-100 request decoding each packed
record into a view, turning the views into dicts and serializing them. Here a record's JSON
object, up to the value of its rank, is rendered straight from its packed bytes (the
element) and what its page shares (``_record_json``): the leaderboard id, the tournament's
``max_num_score`` and the period's expiry; a page joins the objects with their ranks.

The top of a board (ranks up to ``CACHED_RANKS``) is what every client reads, again and
again: those renderings are kept in a bounded least-recently-used cache (``functools.
lru_cache``, ``CACHED_RECORDS`` records in all, about 470 bytes each), keyed by the element
and what the page shares. A write makes a new element, so a kept rendering is never stale:
the old one stops being asked for and ages out. Records further down (around-owner pages of
players anywhere, cursor walks) are rendered afresh: keeping them would only churn the cache
(measured: an around-owner page of random owners cost 20-30 us more with every record kept).
An owner granted attempts has a limit of its own, which the element does not show: such a
record is rendered for its page alone.

In process, a top-100 page costs 25 us to render from kept renderings (290 before, as views);
a page rendered afresh about what it did before.

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
from ..domain.record_codec import key_end, owner_of
from ..domain.store import PageRows, RecordPage, RecordView
from .json_body import dumps

CACHED_RECORDS = 4096
CACHED_RANKS = 1000

log = logging.getLogger("leaderboard_node.client_api")


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
    return "{}" if not text else dumps(metadata_object(text)).decode()


def _record_json(element: bytes, descending: bool, head: str, limit: int, expiry: int) -> str:
    """A packed record's JSON object up to the value of ``rank``."""
    owner, score, subscore, num_score, create_ms, update_ms, username, metadata = visible(element, descending)
    return (f'{head}"owner_id":{_text(owner)},"username":{_text(username)},"score":{score},'
            f'"subscore":{subscore},"num_score":{num_score},"max_num_score":{limit},'
            f'"metadata":{_metadata_json(metadata)},"create_time":{create_ms // 1000},'
            f'"update_time":{update_ms // 1000},"expiry_time":{expiry},"rank":')


_kept_record_json = lru_cache(maxsize=CACHED_RECORDS)(_record_json)


def _rendered(rows: PageRows) -> str:
    """The records of ``rows``, rendered, joined by commas."""
    head, descending, limit, expiry = f'{{"leaderboard_id":{_text(rows.leaderboard_id)},', rows.descending, \
        rows.max_num_score, rows.expiry
    elements = rows.elements
    kept = max(0, min(len(elements), CACHED_RANKS + 1 - rows.first_rank))  # those near the top
    rendered = [_kept_record_json(element, descending, head, limit, expiry) for element in elements[:kept]]
    rendered += [_record_json(element, descending, head, limit, expiry) for element in elements[kept:]]
    if rows.granted:  # an owner granted attempts has a limit of its own: rendered for this page alone
        for index, element in enumerate(elements):
            owner = owner_of(element, key_end(element))
            if owner in rows.granted:
                rendered[index] = _record_json(element, descending, head, rows.max_num_score_of(owner), expiry)
    if rows.ranked:
        return ",".join([f"{text}{rank}}}" for text, rank in zip(rendered, count(rows.first_rank))])
    return "0},".join(rendered) + "0}"


def page_body(page: RecordPage) -> bytes:
    """The JSON body of a page of records."""
    records = "" if page.rows is None else _rendered(page.rows)
    owners = ",".join([_rendered(rows) for rows in page.owners])
    return (f'{{"records":[{records}],"owner_records":[{owners}],"next_cursor":{_text(page.next_cursor)},'
            f'"prev_cursor":{_text(page.prev_cursor)},"rank_count":{page.rank_count},'
            f'"expiry_time":{page.expiry}}}').encode()


def cache_info() -> Any:
    """Hits, misses and size of the kept renderings (``functools`` ``CacheInfo``)."""
    return _kept_record_json.cache_info()
