"""Domain errors of the ledger. Faces translate `code` into a status, exit code or message."""

from __future__ import annotations


class LedgerError(Exception):
    code: str = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AssetNotFound(LedgerError):
    code = "asset_not_found"


class AssetConflict(LedgerError):
    code = "asset_conflict"


class WalletNotFound(LedgerError):
    code = "wallet_not_found"


class TransactionNotFound(LedgerError):
    code = "transaction_not_found"


class BalanceLimitExceeded(LedgerError):
    code = "balance_limit_exceeded"


class SameAccount(LedgerError):
    """A posting that would debit and credit one account; the faces refuse it before the core."""

    code = "same_account"


class HoldNotFound(LedgerError):
    code = "hold_not_found"
