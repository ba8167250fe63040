"""Per-asset totals: the sum of the user wallets and each system account's balance.

One statement, so one snapshot: the totals of an asset always sum to zero (invariant 4), even
while money moves. A system account's balance is its own `balance` (always 0) plus its slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wallet.ledger.limits import SYSTEM_ACCOUNT_KINDS
from wallet.types import Connection

TOTALS_BY_ASSET_AND_KIND = """
WITH slotted AS (
    SELECT account_id, sum(balance) AS balance FROM account_slot GROUP BY account_id
)
SELECT s.code AS asset, a.kind, count(a.id) AS account_count,
    coalesce(sum(a.balance + coalesce(slotted.balance, 0)), 0) AS balance
FROM asset s
LEFT JOIN account a ON a.asset = s.code
LEFT JOIN slotted ON slotted.account_id = a.id
GROUP BY s.code, a.kind
ORDER BY s.code, a.kind
"""


@dataclass(slots=True)
class AssetBalances:
    asset: str
    wallet_count: int = 0
    user_total: int = 0
    system: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYSTEM_ACCOUNT_KINDS, 0))

    @property
    def total(self) -> int:
        return self.user_total + sum(self.system.values())

    def to_document(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "wallet_count": self.wallet_count,
            "user_total": self.user_total,
            "system": dict(self.system),
        }


async def asset_balances(connection: Connection) -> list[AssetBalances]:
    """Every asset, in code order, with its user total and system account balances."""
    by_asset: dict[str, AssetBalances] = {}
    for row in await connection.fetch(TOTALS_BY_ASSET_AND_KIND):
        balances = by_asset.setdefault(row["asset"], AssetBalances(row["asset"]))
        kind, balance = row["kind"], int(row["balance"])
        if kind == "user":
            balances.wallet_count = row["account_count"]
            balances.user_total = balance
        elif kind is not None:
            assert kind in balances.system, f"unknown account kind {kind}"
            assert row["account_count"] == 1, f"{row['account_count']} {kind} accounts of {row['asset']}"
            balances.system[kind] = balance
    return list(by_asset.values())
