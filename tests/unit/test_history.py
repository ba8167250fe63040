"""History cursors (wallet.ledger.history)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from wallet.ledger.history import CURSOR_LENGTH_MAX, CursorInvalid, Position, decode_cursor, encode_cursor

POSITIONS = [
    Position(datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC), 1),
    Position(datetime(1970, 1, 1, tzinfo=UTC), 42),
    Position(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**63 - 1),
]


@pytest.mark.parametrize("position", POSITIONS)
def test_cursor_round_trips(position: Position) -> None:
    cursor = encode_cursor(position)
    assert cursor.isascii() and "=" not in cursor and len(cursor) <= CURSOR_LENGTH_MAX
    assert decode_cursor(cursor) == position


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "abc",
        "!!!!",
        encode_cursor(POSITIONS[0])[:-1] + "*",
        "x" * 65,
        _encoded("e1:5"),  # a cursor of the v1 format
        _encoded("e2:5"),
        _encoded("e2:5:0"),
        _encoded("e2:-5:1"),
        _encoded("e2:5:-1"),
        _encoded("e2:99999999999999999999:1"),
        _encoded("e2:4611686018427387903:1"),  # past the year 9999
    ],
)
def test_foreign_cursors_are_invalid(cursor: str) -> None:
    with pytest.raises(CursorInvalid):
        decode_cursor(cursor)
