"""Request schemas (wallet.api.schemas): amounts and metadata."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from wallet.api.schemas import MovementRequest


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
