"""What both clients share: paths, queries and answers (pure)."""

from __future__ import annotations

import pytest

from leaderboard_client import ApiError
from leaderboard_client.operations import decode, encode, segment, target


def test_integers_beyond_64_bits_are_read_exactly_and_int64_ones_too():
    assert decode(200, b'{"metadata": {"huge": 123456789012345678901}}') == {
        "metadata": {"huge": 123456789012345678901}}
    assert decode(200, b'{"score": 9223372036854775807, "low": -9223372036854775808}') == {
        "score": 9223372036854775807, "low": -9223372036854775808}


def test_negative_integers_beyond_64_bits_are_read_exactly():
    assert decode(200, b'{"m": -9999999999999999999, "n": -9223372036854775809}') == {
        "m": -9999999999999999999, "n": -9223372036854775809}


def test_a_nan_in_a_body_is_sent_as_nan_for_the_node_to_refuse_not_as_null():
    assert encode({"metadata": {"x": float("nan")}}) == b'{"metadata": {"x": NaN}}'
    assert encode({"owner_id": "p1", "username": None}) == b'{"owner_id": "p1", "username": null}'
    assert encode({"owner_id": "p1", "score": 5}) == b'{"owner_id":"p1","score":5}'


def test_twenty_digits_anywhere_take_the_exact_parser_and_read_the_same():
    body = b'{"id": "12345678901234567890", "n": 1.5}'
    assert decode(200, body) == {"id": "12345678901234567890", "n": 1.5}


def test_an_error_status_raises_with_the_field_and_a_body_that_is_not_json_stays_text():
    with pytest.raises(ApiError) as raised:
        decode(400, b'{"error": {"code": "invalid_argument", "field": "score", "message": "bad"}}')
    assert (raised.value.status, raised.value.code, raised.value.field) == (400, "invalid_argument", "score")
    with pytest.raises(ApiError) as raised:
        decode(502, b"<html>bad gateway</html>")
    assert raised.value.body == "<html>bad gateway</html>"
    assert decode(204, b"") is None


def test_query_values_are_encoded_unless_they_are_integers_and_unset_ones_are_left_out():
    assert target("/p", {"limit": 10, "cursor": "a b/c", "expiry": None}) == "/p?limit=10&cursor=a+b%2Fc"
    assert target("/p", {"expiry": None}) == "/p"
    assert target("/p", None) == "/p"


def test_a_path_segment_is_percent_encoded_only_where_it_must_be():
    assert segment("player-1.x_y~z") == "player-1.x_y~z"
    assert segment("a/b c") == "a%2Fb%20c"
