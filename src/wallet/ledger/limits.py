"""The numeric limits of the ledger, named once. The SQL side has the same values in
ledger/sql/limits.sql and in the schema's CHECK constraints; tests/ledger/test_limits.py checks
that all three agree."""

AMOUNT_MIN = 1
AMOUNT_MAX = 10**15  # one posting
BALANCE_MAX = 9 * 10**18  # any stored balance: a wallet, or a slot of a system account
POSTINGS_MAX = 64  # postings of one transaction (a journal)
TRANSACTION_AMOUNT_MAX = POSTINGS_MAX * AMOUNT_MAX  # a journal's amount is the sum of its postings
SLOT_COUNT = 32  # slots per system account; the posting core picks one per group
SYSTEM_ACCOUNT_KINDS = ("treasury", "bonus", "revenue", "breakage")
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200
GROUP_SIZE_MAX = 1000  # items of one call of the posting core
BATCH_SIZE_MAX = 1000  # items of one POST /v1/batches
HOLD_EXPIRY_SECONDS_DEFAULT = 900  # a hold's life when the request names none
HOLD_EXPIRY_SECONDS_MAX = 30 * 24 * 3600
LOT_EXPIRY_YEARS_MAX = 10  # a credit's expires_at is at most this far ahead
