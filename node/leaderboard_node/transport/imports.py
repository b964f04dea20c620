"""Bulk import bodies: JSON lines or CSV, one record a line, every line checked before any is
written.

``POST /v1/leaderboards/{id}/records/import`` takes ``Content-Type: application/x-ndjson``
(one JSON object a line: ``owner_id``, ``score``, and optionally ``subscore``, ``username``,
``metadata``, ``operator``, the fields of a write) or ``text/csv`` (a header line naming those columns, then
one record a line; ``metadata`` a JSON object in its cell). The rules are the batch API's: ids,
64-bit integers, username length, metadata size and depth, unknown fields and repeated keys
refused. A body with a bad line changes nothing; the answer names the first lines that are
wrong (``lines[12].score``) and what is wrong with each.

A line is parsed by orjson and checked by hand rather than by a pydantic model: at a few
hundred thousand lines a second, a model per line would cost more than the import itself.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import partial
from typing import Any, NoReturn

import orjson

from ..domain.errors import InvalidArgument
from ..domain.records import INT64_MAX, INT64_MIN, Operator
from ..domain.store import RecordWrite
from .json_body import count_keys
from .schemas import ID_PATTERN, ID_RULE, Limits

JSON_LINES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq")
CSV = ("text/csv",)
FIELDS = frozenset({"owner_id", "score", "subscore", "username", "metadata", "operator"})
MAX_USERNAME = 128
MAX_REPORTED = 20  # line errors in one answer
_KEY = re.compile(rb'"\s*:')


class ImportErrors(InvalidArgument):
    """Several lines are wrong: ``problems`` holds each as an error object naming its field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        field, message = problems[0]
        super().__init__(message, field=field)
        self.problems = [{"code": self.code, "message": m, "field": f} for f, m in problems]


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_import(raw: bytes, content_type: str, limits: Limits, *, max_records: int
                 ) -> tuple[list[RecordWrite], list[int]]:
    """The writes of an import body and the line of each; ``ImportErrors`` naming every wrong
    line (up to 20), ``InvalidArgument`` for a body that is wrong as a whole."""
    kind = media_type(content_type)
    if kind in JSON_LINES:
        rows = _json_lines(raw)
    elif kind in CSV:
        rows = _csv_lines(raw)
    else:
        raise InvalidArgument(f"an import is {JSON_LINES[0]} (JSON lines) or text/csv, not {kind or 'untyped'}",
                              field="content-type")
    writes: list[RecordWrite] = []
    lines: list[int] = []
    problems: list[tuple[str, str]] = []
    for number, row in rows:
        if len(writes) + len(problems) >= max_records:
            raise InvalidArgument(f"an import holds at most {max_records} records; send the rest in another",
                                  field="body")
        try:
            if isinstance(row, InvalidArgument):
                raise row
            writes.append(_write(row, limits))
            lines.append(number)
        except InvalidArgument as exc:
            problems.append((f"lines[{number}]" + (f".{exc.field}" if exc.field else ""), f"line {number}: {exc.message}"))
            if len(problems) >= MAX_REPORTED:
                break
    if problems:
        raise ImportErrors(problems)
    if not writes:
        raise InvalidArgument("the import holds no record", field="body")
    return writes, lines


def _json_lines(raw: bytes) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    keys = 0
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            if line.strip():
                rows.append((number, InvalidArgument("not a JSON object", field=None)))
            continue
        if type(value) is not dict:
            rows.append((number, InvalidArgument("not a JSON object", field=None)))
            continue
        metadata = value.get("metadata")  # the one field that holds keys of its own
        keys += len(value) + count_keys(metadata)
        rows.append((number, value))
    # orjson keeps the last of a repeated key. Every key is followed by a colon, so a body with
    # no more colons than the objects have keys repeats none; otherwise (colons in texts or ids,
    # keys in fields other than metadata, which are refused anyway) each line is looked at
    if raw.count(b":") != keys:
        rows = [(number, _unrepeated(row, raw_line)) for (number, row), raw_line in _with_lines(rows, raw)]
    return rows


def _with_lines(rows: list[tuple[int, Any]], raw: bytes) -> Any:
    lines = raw.split(b"\n")
    for number, row in rows:
        yield (number, row), lines[number - 1]


def _unrepeated(row: Any, line: bytes) -> Any:
    """``row``, or the error naming a key its line gives twice."""
    if isinstance(row, dict) and len(_KEY.findall(line)) != count_keys(row):  # maybe a key given twice
        repeated = _repeated_key(line)
        if repeated is not None:
            return InvalidArgument(f"the key {repeated!r} is given twice", field=repeated)
    return row


def _repeated_key(line: bytes) -> str | None:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(line, object_pairs_hook=pairs)
    return found[0] if found else None


def _csv_lines(raw: bytes) -> Any:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InvalidArgument("a CSV import is UTF-8 text", field="body") from None
    reader = csv.reader(io.StringIO(text))
    header = _next_row(reader)
    if header is None:
        raise InvalidArgument("a CSV import starts with a header line naming its columns", field="body")
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in FIELDS]
    if unknown or "owner_id" not in columns or "score" not in columns or len(set(columns)) != len(columns):
        raise InvalidArgument(f"the CSV header names the columns owner_id, score and any of subscore, username, "
                              f"metadata, operator, each once (got {', '.join(columns)})", field="lines[1]")
    while (cells := _next_row(reader)) is not None:
        number = reader.line_num
        if not cells or cells == [""]:
            continue
        if len(cells) != len(columns):
            yield number, InvalidArgument(f"{len(cells)} cells where the header names {len(columns)}", field=None)
            continue
        row: dict[str, Any] = {}
        try:
            for name, cell in zip(columns, cells):
                if name in ("score", "subscore"):
                    row[name] = _csv_integer(cell, name)
                elif name == "metadata":
                    if cell:
                        try:
                            row[name] = orjson.loads(cell)
                        except orjson.JSONDecodeError:
                            raise InvalidArgument("metadata is a JSON object", field="metadata") from None
                elif cell or name == "owner_id":
                    row[name] = cell
        except InvalidArgument as exc:
            yield number, exc
            continue
        yield number, row


def _next_row(reader: Any) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:  # a stray carriage return or NUL, an unclosed quote: where it stops
        raise InvalidArgument(f"line {reader.line_num or 1}: not CSV: {exc}", field=f"lines[{reader.line_num or 1}]") from None


def _csv_integer(cell: str, field: str) -> int:
    text = cell.strip()
    if not text or not text.lstrip("-").isdigit() or len(text.lstrip("-")) > 19:
        raise InvalidArgument(f"{field} must be an integer between {INT64_MIN} and {INT64_MAX}", field=field)
    return int(text)


def _write(row: dict[str, Any], limits: Limits) -> RecordWrite:
    if not FIELDS.issuperset(row):
        name = sorted(row.keys() - FIELDS)[0]
        raise InvalidArgument(f"{name} is not a field of a record (owner_id, score, subscore, username, metadata, "
                              "operator)", field=name)
    owner = row.get("owner_id")
    if type(owner) is not str:
        raise InvalidArgument("owner_id is a string", field="owner_id")
    if not owner or len(owner) > limits.settings.max_id_length or not ID_PATTERN.fullmatch(owner):
        limits.identifier(owner, field="owner_id")  # the batch API's words for what is wrong
        raise InvalidArgument(f"owner_id may hold only {ID_RULE}", field="owner_id")  # pragma: no cover
    score = row.get("score")
    if type(score) is not int or not INT64_MIN <= score <= INT64_MAX:
        _refuse_integer(score, "score", required=True)
    subscore = row.get("subscore", 0)
    if type(subscore) is not int or not INT64_MIN <= subscore <= INT64_MAX:
        _refuse_integer(subscore, "subscore", required=False)
    username = row.get("username")
    if username is not None and (type(username) is not str or len(username) > MAX_USERNAME):
        raise InvalidArgument(f"username is a string of at most {MAX_USERNAME} characters", field="username")
    metadata = row.get("metadata")
    if metadata is not None:
        if type(metadata) is not dict:
            raise InvalidArgument("metadata is a JSON object", field="metadata")
        metadata = limits.metadata(metadata)
    operator = row.get("operator")
    if operator is not None:
        try:
            operator = Operator(operator)
        except ValueError:
            raise InvalidArgument("operator is one of best, set, incr, decr", field="operator") from None
    return _new_write((owner, score, subscore, username, metadata, operator))


# A RecordWrite from a tuple of its fields, without NamedTuple's Python-level __new__ (one per line)
_new_write = partial(tuple.__new__, RecordWrite)


def _refuse_integer(value: Any, field: str, *, required: bool) -> NoReturn:
    if value is None and required:
        raise InvalidArgument(f"{field} is required", field=field)
    raise InvalidArgument(f"{field} must be an integer between {INT64_MIN} and {INT64_MAX}", field=field)
