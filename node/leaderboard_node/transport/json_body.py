"""JSON bodies in and out.

Out: response bodies serialized by orjson: a page of records is a tenth of what
``json.dumps`` takes, and half of pydantic-core's ``to_json`` (which a read used to spend a
tenth of its time in). Scores and counters are int64 or uint64 (the domain clamps them),
which orjson writes exactly; only metadata can hold a wider integer, and such a body goes
through the standard library instead. Errors are ``{"error": FIRST, "errors": [ALL]}``:
``error`` is the first problem (what clients read since the beginning), ``errors`` every
problem found in the request, each ``{"code", "message", "field"}``.

In: pydantic parses request bodies, and like every JSON parser it keeps the last value of a
key an object repeats. ``refuse_duplicate_keys`` refuses them instead: orjson's parse and a
count of keys against colons clear the common body (1-2.5 us for a single write, where a
second parse by the standard library took 6-9); only a body that fails that count is parsed
once more with the standard library, which hands each object over as its list of pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ..domain.errors import DomainError, InvalidArgument


def dumps(value: Any) -> bytes:
    """JSON of ``value``; integers wider than 64 bits (only metadata holds them), which orjson
    refuses, go through the standard library."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_text_response(dumps(body), status=status, headers=headers)


def json_text_response(data: bytes, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """An answer whose JSON body is already rendered (``page_json``)."""
    return web.Response(body=data, status=status, headers=headers, content_type="application/json")


def error_body(problems: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of an error answer: the first problem as ``error``, all of them as ``errors``."""
    return {"error": problems[0], "errors": problems}


def error_json(error: DomainError) -> dict[str, Any]:
    return error_body([error.to_json()["error"]])


class _Repeats(dict[str, Any]):
    """An object of the body that repeats ``key``."""

    key: str


def _first_repeat(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no key repeats")  # pragma: no cover


def _path_to(value: Any, target: Any, path: str = "") -> str | None:
    """Where ``target`` sits in ``value``, as a field name (``records[3].metadata``)."""
    if value is target:
        return path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if isinstance(child, (dict, list)):
            found = _path_to(child, target, f"{path}[{key}]" if isinstance(key, int) else
                             f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    return None


def count_keys(value: Any) -> int:
    """The keys of every object in a parsed JSON value (0 for a scalar)."""
    kind = type(value)
    if kind is dict:
        count, items = len(value), value.values()
    elif kind is list:
        count, items = 0, value
    else:
        return 0
    for item in items:
        if type(item) is dict or type(item) is list:
            count += count_keys(item)
    return count


def refuse_duplicate_keys(raw: bytes) -> None:
    """``InvalidArgument`` naming the first key that an object of the JSON body repeats.

    Every key is followed by a colon, so a body whose objects, parsed, hold as many keys as it
    has colons repeats none: orjson's parse and a count settle the common body in a few
    microseconds. Otherwise (a colon in a text, a repeated key, or what orjson does not read)
    the standard library parses it once more and hands over each object's pairs.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if count_keys(value) == raw.count(b":"):
            return
    repeats: list[_Repeats] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        marked = _Repeats(obj)
        marked.key = _first_repeat(pairs)
        repeats.append(marked)
        return marked

    try:
        value = json.loads(raw, object_pairs_hook=pairs_hook)
    except ValueError:  # not JSON: the model's parser has said so already
        return
    if repeats:
        first = repeats[0]
        where = _path_to(value, first) or ""
        field = f"{where}.{first.key}" if where else first.key
        raise InvalidArgument(f"{field} appears more than once in the JSON body; send each key once", field=field)
