"""Idempotency keys and request fingerprints (wallet.idempotency)."""

from __future__ import annotations

from typing import Any

import pytest

from wallet.idempotency import KeyInvalid, KeyMissing, canonical_json, check_key, fingerprint


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
