"""Strict JSON for request bodies, safe at any nesting depth.

`loads` parses like the standard library, with three refusals (NaN and Infinity, duplicate
object keys) and one difference: nesting is limited only by the text's size. The standard
library's parser recurses once per level of nesting, so a deep enough document ends in a
RecursionError (or, with the recursion limit raised, a crashed process). Here it never sees more
than SEGMENT_DEPTH levels: a document deeper than that is cut into segments at every
SEGMENT_DEPTH-th level, the innermost are parsed first, and each segment is parsed with its
already-parsed children standing in for them (written as `NaN`, whose callback hands back the
child). Every byte is still checked by the standard library's parser, so what is valid is the same.

`depth` measures a parsed value's nesting without recursion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

# The standard library's parser sees at most this many levels at once: far below Python's
# recursion limit, whatever the caller's own stack depth.
SEGMENT_DEPTH = 32

# Outside strings, the scan needs only brackets; a lone quote is an unterminated string, and N
# or I can only begin NaN or Infinity, which JSON does not have.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}"NI]', re.DOTALL)
_CLOSING = {"[": "]", "{": "}"}
_NO_CHILD = object()


class JsonInvalid(ValueError):
    """The text is not one strict JSON document; the message says why."""


def loads(text: str) -> Any:
    """The JSON value of `text`. Raises JsonInvalid (a ValueError) for anything that is not one
    valid document, for NaN and Infinity, and for an object with a repeated key."""
    if text.count("[") + text.count("{") <= SEGMENT_DEPTH:  # cannot nest deeper than that
        return _parse(text, iter(()))
    return _loads_deep(text)


def depth(value: Any) -> int:
    """Levels of nesting: 0 for a scalar, 1 for `[]` or `{"a": 1}`, 2 for `[[]]`, and so on."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    assert deepest >= 0
    return deepest


def strings(value: Any) -> Iterator[str]:
    """Every string in `value`, object keys included, without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from item.keys()
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise JsonInvalid(f"the key {repeated[:64]!r} appears more than once in an object")
    return value


def _parse(text: str, children: Iterator[Any]) -> Any:
    """The standard library's strict parse; each NaN in `text` stands for the next child."""

    def child(name: str) -> Any:
        value = next(children, _NO_CHILD)
        if value is _NO_CHILD:
            raise JsonInvalid(f"{name} is not valid JSON")
        return value

    try:
        value = json.loads(text, parse_constant=child, object_pairs_hook=_object)
    except JsonInvalid:
        raise
    except ValueError as error:  # json.JSONDecodeError
        raise JsonInvalid(str(error)) from None
    assert next(children, _NO_CHILD) is _NO_CHILD, "a segment's child was not used"
    return value


def _loads_deep(text: str) -> Any:
    """`loads` for text with more than SEGMENT_DEPTH brackets: segments parsed innermost first."""
    opened: list[tuple[int, str]] = []  # the position and bracket of each open container
    parsed: list[tuple[int, int, Any]] = []  # segments parsed, not yet used by a parent: start, end, value
    for match in _TOKEN.finditer(text):
        token = match.group()
        if len(token) > 1:  # a string
            continue
        if token in _CLOSING:
            opened.append((match.start(), token))
        elif token in "]}":
            if not opened or _CLOSING[opened[-1][1]] != token:
                raise JsonInvalid(f"unbalanced {token!r} at position {match.start()}")
            start, _ = opened.pop()
            level = len(opened) + 1
            if level > 1 and level % SEGMENT_DEPTH == 1:
                parsed.append((start, match.end(), _segment(text, start, match.end(), parsed)))
        elif token == '"':
            raise JsonInvalid(f"unterminated string at position {match.start()}")
        else:
            raise JsonInvalid("NaN and Infinity are not valid JSON")
    if opened:
        raise JsonInvalid(f"unclosed {opened[-1][1]!r} at position {opened[-1][0]}")
    return _segment(text, 0, len(text), parsed)


def _segment(text: str, start: int, end: int, parsed: list[tuple[int, int, Any]]) -> Any:
    """Parse text[start:end] with its child segments (the entries of `parsed` that begin inside
    it, all already parsed) written as NaN; removes them from `parsed`."""
    first = len(parsed)
    while first > 0 and parsed[first - 1][0] >= start:
        first -= 1
    children = parsed[first:]
    del parsed[first:]
    pieces: list[str] = []
    position = start
    for child_start, child_end, _ in children:
        assert position <= child_start < child_end <= end
        pieces.append(text[position:child_start])
        pieces.append("NaN")
        position = child_end
    pieces.append(text[position:end])
    return _parse("".join(pieces), iter([value for _, _, value in children]))
