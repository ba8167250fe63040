"""Unit tests of the pure parts: amount validation, request fingerprint, cursor encoding, ids."""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from wallet._ids import uuid7
from wallet.api.schemas import MovementRequest
from wallet.idempotency import KeyInvalid, KeyMissing, canonical_json, check_key, fingerprint
from wallet.ledger.history import CURSOR_LENGTH_MAX, CursorInvalid, Position, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "amount",
    [10.5, 10.0, "10", True, False, None, 0, -5, 1e30, 10**15 + 1, 10**40, [], {}],
    ids=repr,
)
def test_amount_forms_are_rejected(amount: Any) -> None:
    with pytest.raises(ValidationError):
        MovementRequest.model_validate({"amount": amount})


@pytest.mark.parametrize("amount", [1, 2, 10**15])
def test_amount_bounds_are_accepted(amount: int) -> None:
    assert MovementRequest.model_validate({"amount": amount}).amount == amount


def test_metadata_over_four_kib_is_rejected() -> None:
    with pytest.raises(ValidationError, match="4096"):
        MovementRequest.model_validate({"amount": 1, "metadata": {"note": "x" * 4100}})


def test_metadata_nested_nine_levels_is_rejected() -> None:
    nested: dict[str, Any] = {}
    for _ in range(9):
        nested = {"a": nested}
    with pytest.raises(ValidationError, match="nest"):
        MovementRequest.model_validate({"amount": 1, "metadata": nested})


def test_fingerprint_ignores_key_order_and_whitespace() -> None:
    first = fingerprint("POST", "/v1/transfers", canonical_json({"amount": 5, "to": "b", "from": "a"}))
    second = fingerprint("POST", "/v1/transfers", canonical_json({"from": "a", "to": "b", "amount": 5}))
    assert first == second
    assert len(first) == 32


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/wallets/x/spend", {"amount": 5}),
        ("POST", "/v1/wallets/y/topup", {"amount": 5}),
        ("POST", "/v1/wallets/x/topup", {"amount": 6}),
        ("POST", "/v1/wallets/x/topup", {"amount": 5, "reference": "r"}),
    ],
)
def test_fingerprint_differs_for_a_different_request(method: str, path: str, body: Any) -> None:
    original = fingerprint("POST", "/v1/wallets/x/topup", canonical_json({"amount": 5}))
    assert fingerprint(method, path, canonical_json(body)) != original


def test_canonical_json_is_compact_and_sorted() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == '{"a":[1,{"c":"é","d":2}],"b":1}'.encode()
    )


@pytest.mark.parametrize("key", ["a", "x" * 255, "order-17:retry", "~!", "a b"])
def test_printable_keys_are_accepted(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("sent", "key"),
    [(" a", "a"), ("a ", "a"), ("\ta \t ", "a"), (" a b  ", "a b"), ("x" * 255 + "  ", "x" * 255)],
)
def test_surrounding_spaces_and_tabs_are_not_part_of_the_key(sent: str, key: str) -> None:
    assert check_key(sent) == key


@pytest.mark.parametrize("key", ["", " ", "\t \t", "x" * 256, "tab\there", "é", "del\x7f"])
def test_other_keys_are_invalid(key: str) -> None:
    with pytest.raises(KeyInvalid):
        check_key(key)


def test_absent_key_is_missing() -> None:
    with pytest.raises(KeyMissing):
        check_key(None)


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


def test_uuid7_is_time_ordered_version_seven() -> None:
    first = uuid7()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000


def test_uuid7_is_strictly_increasing_within_a_millisecond() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert all(made.version == 7 and made.variant == uuid.RFC_4122 for made in ids)
    milliseconds = [made.int >> 80 for made in ids]
    assert len(set(milliseconds)) < len(ids)  # many shared a millisecond, still ordered


def test_uuid7_stays_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    before = uuid7()
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000_000_000)  # 2001
    after = [uuid7() for _ in range(100)]
    assert before < after[0]
    assert all(earlier < later for earlier, later in itertools.pairwise(after))
