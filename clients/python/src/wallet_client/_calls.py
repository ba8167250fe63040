"""Every operation of the API as a `Call`: the request to send (built once, so every attempt
sends the same bytes and the same idempotency key) and how to read its answer. Both clients run
the same calls; only their I/O differs."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import httpx

from wallet_client.errors import error_from_response
from wallet_client.inputs import (
    BatchItem,
    Posting,
    check_amount,
    journal_fields,
    movement_fields,
    rfc3339,
)
from wallet_client.models import (
    Asset,
    BalanceAt,
    BatchResult,
    Event,
    EventPage,
    Hold,
    Lot,
    Page,
    Statement,
    Transaction,
    Verification,
    Wallet,
)

T = TypeVar("T")
HoldStatus = Literal["pending", "captured", "voided", "expired"]
JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One logical call. `idempotency_key` is sent as the `Idempotency-Key` header on every
    attempt (None: the call has none)."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    idempotency_key: str | None = None
    accept: str = JSON_MEDIA_TYPE

    def headers(self) -> dict[str, str]:
        headers = {"Accept": self.accept}
        if self.body is not None:
            headers["Content-Type"] = JSON_MEDIA_TYPE
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers

    def result(self, response: httpx.Response) -> T:
        """The call's result from its final answer; the error it stands for when it is one."""
        if response.status_code >= 400:
            raise error_from_response(response, self.idempotency_key)
        return self.read(response)


def new_key() -> str:
    return str(uuid.uuid4())


def _key(given: str | None) -> str:
    """The caller's key, or a new one (a random UUID) for this call and all its attempts."""
    return new_key() if given is None else given


def _segment(value: str) -> str:
    """An id as one path segment, whatever it holds."""
    return urllib.parse.quote(str(value), safe="")


def _body(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _document(response: httpx.Response) -> dict[str, Any]:
    document = response.json()
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object from {response.request.url}, got {type(document).__name__}")
    return document


def _replayed(response: httpx.Response) -> bool:
    value: str | None = response.headers.get("Idempotent-Replayed")
    return value == "true"


def _transaction(response: httpx.Response) -> Transaction:
    return Transaction.from_document(_document(response), _replayed(response))


def _hold(response: httpx.Response) -> Hold:
    return Hold.from_document(_document(response), _replayed(response))


def _wallet(response: httpx.Response) -> Wallet:
    return Wallet.from_document(_document(response))


def _limit_params(limit: int | None, cursor: str | None, cursor_name: str = "cursor") -> dict[str, str]:
    params: dict[str, str] = {}
    if limit is not None:
        params["limit"] = str(check_amount(limit, "limit"))
    if cursor is not None:
        params[cursor_name] = cursor
    return params


# --- assets and wallets ---------------------------------------------------------------------


def list_assets() -> Call[list[Asset]]:
    return Call("GET", "/v1/assets", lambda r: [Asset.from_document(item) for item in _document(r)["data"]])


def create_asset(code: str, name: str) -> Call[Asset]:
    body = _body({"code": code, "name": name})
    return Call("POST", "/v1/assets", lambda r: Asset.from_document(_document(r)), body=body)


def create_wallet(owner_id: str, asset: str) -> Call[Wallet]:
    return Call("POST", "/v1/wallets", _wallet, body=_body({"owner_id": owner_id, "asset": asset}))


def get_wallet(wallet_id: str) -> Call[Wallet]:
    return Call("GET", f"/v1/wallets/{_segment(wallet_id)}", _wallet)


def list_wallets(owner_id: str) -> Call[list[Wallet]]:
    def read(response: httpx.Response) -> list[Wallet]:
        return [Wallet.from_document(item) for item in _document(response)["data"]]

    return Call("GET", "/v1/wallets", read, params={"owner_id": owner_id})


def list_lots(wallet_id: str, limit: int | None) -> Call[list[Lot]]:
    def read(response: httpx.Response) -> list[Lot]:
        return [Lot.from_document(item) for item in _document(response)["data"]]

    return Call("GET", f"/v1/wallets/{_segment(wallet_id)}/lots", read, params=_limit_params(limit, None))


# --- money movements --------------------------------------------------------------------------


def credit(
    kind: Literal["topup", "bonus"],
    wallet_id: str,
    amount: int,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    expires_at: datetime | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body = _body(movement_fields(check_amount(amount), reference, metadata, expires_at))
    path = f"/v1/wallets/{_segment(wallet_id)}/{kind}"
    return Call("POST", path, _transaction, body=body, idempotency_key=_key(idempotency_key))


def spend(
    wallet_id: str,
    amount: int,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body = _body(movement_fields(check_amount(amount), reference, metadata))
    path = f"/v1/wallets/{_segment(wallet_id)}/spend"
    return Call("POST", path, _transaction, body=body, idempotency_key=_key(idempotency_key))


def transfer(
    from_wallet_id: str,
    to_wallet_id: str,
    amount: int,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    document = {
        "from_wallet_id": from_wallet_id,
        "to_wallet_id": to_wallet_id,
        **movement_fields(check_amount(amount), reference, metadata),
    }
    key = _key(idempotency_key)
    return Call("POST", "/v1/transfers", _transaction, body=_body(document), idempotency_key=key)


def journal(
    asset: str,
    postings: Sequence[Posting],
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body = _body(journal_fields(asset, postings, reference, metadata))
    return Call("POST", "/v1/journal", _transaction, body=body, idempotency_key=_key(idempotency_key))


def batch(items: Sequence[BatchItem]) -> Call[list[BatchResult]]:
    """Each item's key is its own or one made now, and the body is built once: a retried batch
    sends every item with the key it had, so applied items replay and the rest apply."""
    keys = [_key(item.idempotency_key) for item in items]
    body = _body({"items": [item.document(key) for item, key in zip(items, keys, strict=True)]})

    def read(response: httpx.Response) -> list[BatchResult]:
        results = _document(response)["results"]
        if len(results) != len(keys):
            raise ValueError(f"a batch of {len(keys)} items got {len(results)} results")
        return [BatchResult.from_document(result, key) for result, key in zip(results, keys, strict=True)]

    return Call("POST", "/v1/batches", read, body=body)


# --- holds and reversals ----------------------------------------------------------------------


def create_hold(
    wallet_id: str,
    amount: int,
    expires_in_seconds: int | None,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Hold]:
    document = movement_fields(check_amount(amount), reference, metadata)
    if expires_in_seconds is not None:
        document["expires_in_seconds"] = check_amount(expires_in_seconds, "expires_in_seconds")
    path = f"/v1/wallets/{_segment(wallet_id)}/holds"
    return Call("POST", path, _hold, body=_body(document), idempotency_key=_key(idempotency_key))


def capture_hold(
    hold_id: str,
    amount: int | None,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body = _body(movement_fields(amount, reference, metadata))
    path = f"/v1/holds/{_segment(hold_id)}/capture"
    return Call("POST", path, _transaction, body=body, idempotency_key=_key(idempotency_key))


def void_hold(hold_id: str, idempotency_key: str | None) -> Call[Hold]:
    path = f"/v1/holds/{_segment(hold_id)}/void"
    return Call("POST", path, _hold, body=_body({}), idempotency_key=_key(idempotency_key))


def get_hold(hold_id: str) -> Call[Hold]:
    return Call("GET", f"/v1/holds/{_segment(hold_id)}", _hold)


def list_holds(
    wallet_id: str, status: HoldStatus | None, limit: int | None, cursor: str | None
) -> Call[Page[Hold]]:
    def read(response: httpx.Response) -> Page[Hold]:
        document = _document(response)
        holds = tuple(Hold.from_document(item) for item in document["data"])
        return Page(holds, document["next_cursor"])

    params = _limit_params(limit, cursor)
    if status is not None:
        params["status"] = status
    return Call("GET", f"/v1/wallets/{_segment(wallet_id)}/holds", read, params=params)


def reverse(
    transaction_id: str,
    amount: int | None,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> Call[Transaction]:
    body = _body(movement_fields(amount, reference, metadata))
    path = f"/v1/transactions/{_segment(transaction_id)}/reverse"
    return Call("POST", path, _transaction, body=body, idempotency_key=_key(idempotency_key))


# --- reads of the ledger ------------------------------------------------------------------


def get_transaction(transaction_id: str) -> Call[Transaction]:
    return Call("GET", f"/v1/transactions/{_segment(transaction_id)}", _transaction)


def list_transactions(wallet_id: str, limit: int | None, cursor: str | None) -> Call[Page[Transaction]]:
    def read(response: httpx.Response) -> Page[Transaction]:
        document = _document(response)
        transactions = tuple(Transaction.from_document(item) for item in document["data"])
        return Page(transactions, document["next_cursor"])

    path = f"/v1/wallets/{_segment(wallet_id)}/transactions"
    return Call("GET", path, read, params=_limit_params(limit, cursor))


def balance_at(wallet_id: str, at: datetime) -> Call[BalanceAt]:
    def read(response: httpx.Response) -> BalanceAt:
        return BalanceAt.from_document(_document(response))

    path = f"/v1/wallets/{_segment(wallet_id)}/balance"
    return Call("GET", path, read, params={"at": rfc3339(at, "at")})


def _statement_params(start: datetime, end: datetime | None) -> dict[str, str]:
    params = {"from": rfc3339(start, "start")}
    if end is not None:
        params["to"] = rfc3339(end, "end")
    return params


def statement(wallet_id: str, start: datetime, end: datetime | None) -> Call[Statement]:
    def read(response: httpx.Response) -> Statement:
        return Statement.from_document(_document(response))

    path = f"/v1/wallets/{_segment(wallet_id)}/statement"
    return Call("GET", path, read, params=_statement_params(start, end))


def statement_csv(wallet_id: str, start: datetime, end: datetime | None) -> Call[str]:
    path = f"/v1/wallets/{_segment(wallet_id)}/statement"
    params = _statement_params(start, end)
    return Call("GET", path, lambda r: r.text, params=params, accept=CSV_MEDIA_TYPE)


def list_events(after: str | None, limit: int | None) -> Call[EventPage]:
    def read(response: httpx.Response) -> EventPage:
        document = _document(response)
        return EventPage(
            tuple(Event.from_document(item) for item in document["data"]), document["next_cursor"]
        )

    return Call("GET", "/v1/events", read, params=_limit_params(limit, after, "after"))


def verify_ledger(deep: bool) -> Call[Verification]:
    def read(response: httpx.Response) -> Verification:
        return Verification.from_document(_document(response))

    return Call("GET", "/v1/ledger/verify", read, params={"deep": "true"} if deep else {})
