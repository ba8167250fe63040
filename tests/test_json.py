"""wallet._json: strict JSON at any depth. It must accept and refuse exactly what the standard
library's parser does (with NaN, Infinity and repeated keys refused), at any depth, without the
recursion that makes the standard library fail on deep documents."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet import _json

# Deep enough to cross many segment boundaries, shallow enough for the standard library's
# parser as the reference once the recursion limit is raised.
REFERENCE_DEPTH_MAX = 400


@contextmanager
def recursion_limit(limit: int) -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def reference_loads(text: str) -> Any:
    """The standard library with the same refusals, as the oracle."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(name)

    def refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("repeated key")
        return dict(pairs)

    with recursion_limit(REFERENCE_DEPTH_MAX * 3 + 1000):
        return json.loads(text, parse_constant=refuse_constant, object_pairs_hook=refuse_repeated_keys)


def outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text)
    except ValueError:
        return "refused", None


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab"\\[]{}NI:, \u00e9\U0001f600'), max_size=6),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A JSON text, often wrapped in many levels, sometimes with one character changed."""
    value = draw(values)
    for _ in range(draw(st.integers(0, 150))):
        value = draw(st.sampled_from([[value], {"k": value}, [1, value, "x"]]))
    text = json.dumps(value, indent=draw(st.sampled_from([None, 0, 1])), ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()) and text:
        position = draw(st.integers(0, len(text) - 1))
        replacement = draw(st.sampled_from(["", "[", "]", "{", "}", '"', ",", ":", "NaN", "1", " ", "\\"]))
        text = text[:position] + replacement + text[position + 1 :]
    return text


@settings(max_examples=300, deadline=None)
@given(documents())
def test_loads_accepts_and_refuses_what_the_standard_library_does(text: str) -> None:
    assert outcome(_json.loads, text) == outcome(reference_loads, text)


@pytest.mark.parametrize(
    "text",
    [
        '{"amount": 1, "amount": 1000}',
        '{"a": {"b": 1, "b": 1}}',
        "[" * 100 + '{"k": 1, "k": 2}' + "]" * 100,
        "[NaN]",
        '{"a": Infinity}',
        "[" * 100 + "-Infinity" + "]" * 100,
        "[" * 100 + '"unterminated' + "]" * 100,
        "[" * 100 + "]" * 99,
        "[" * 100 + "}" + "]" * 99,
    ],
)
def test_repeated_keys_constants_and_broken_nesting_are_refused(text: str) -> None:
    with pytest.raises(_json.JsonInvalid):
        _json.loads(text)


@pytest.mark.parametrize("shape", ["lists", "dicts"])
def test_any_depth_parses_without_recursion(shape: str) -> None:
    """64 KiB of nesting: far past the standard library's limit, which raises RecursionError."""
    levels = 32_000 if shape == "lists" else 12_000
    text = "[" * levels + "]" * levels if shape == "lists" else '{"a":' * levels + "1" + "}" * levels
    with pytest.raises(RecursionError):
        json.loads(text)
    value = _json.loads(text)
    assert _json.depth(value) == levels


def test_depth_and_strings_walk_without_recursion() -> None:
    value: Any = "leaf"
    for level in range(50_000):
        value = [value] if level % 2 else {f"k{level}": value}
    assert _json.depth(value) == 50_000
    found = list(_json.strings(value))
    assert len(found) == 25_001 and "leaf" in found and "k0" in found


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("x", 0),
        ([], 1),
        ({}, 1),
        ({"a": 1}, 1),
        ([[]], 2),
        ({"a": [1, {"b": {}}]}, 4),
        ([1, [2], []], 2),
    ],
)
def test_depth_counts_levels_of_containers(value: Any, depth: int) -> None:
    assert _json.depth(value) == depth
