"""The numeric limits of the ledger, named once."""

AMOUNT_MIN = 1
AMOUNT_MAX = 10**15
BALANCE_MAX = 9 * 10**18
SLOT_COUNT = 32  # slots per system account; ledger_move_system picks among them
SYSTEM_ACCOUNT_KINDS = ("treasury", "bonus", "revenue")
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200
