"""Request bodies: a key given twice is refused wherever it hides, whichever parse finds it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leaderboard_node.domain.errors import InvalidArgument
from leaderboard_node.transport.json_body import refuse_duplicate_keys


@pytest.mark.parametrize(("body", "field"), [
    (b'{"a":1,"a":2}', "a"),
    (b'{"m":{"x":1,"x":2}}', "m.x"),
    (b'[{"k":1,"k":1}]', "[0].k"),
    (b'{"t":"a:b","a":1,"a":2}', "a"),  # a colon in a text hides no repeat
    (b'{"n":123456789012345678901234567890,"n":1}', "n"),  # beyond what orjson reads
])
def test_a_key_given_twice_is_refused_by_name(body, field):
    with pytest.raises(InvalidArgument) as caught:
        refuse_duplicate_keys(body)
    assert caught.value.field == field


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=4), max_leaves=12))
def test_a_body_without_repeats_passes_and_one_with_a_repeat_does_not(value):
    raw = json.dumps(value, ensure_ascii=False).encode()
    refuse_duplicate_keys(raw)
    if isinstance(value, dict) and value:
        key = next(iter(value))
        repeated = raw[:-1] + b"," + json.dumps(key, ensure_ascii=False).encode() + b":0}"
        with pytest.raises(InvalidArgument):
            refuse_duplicate_keys(repeated)
