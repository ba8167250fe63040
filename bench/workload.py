"""What the load generator sends: API keys, the files of paths wrk picks from, primed replay keys."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import ledger_data
from bench.load import Load
from bench.settings import BenchSettings
from wallet import idempotency, keys
from wallet.ledger import history, posting, statements
from wallet.ledger.limits import PAGE_SIZE_DEFAULT
from wallet.ledger.transactions import timestamp_text
from wallet.types import Connection

SPEND_BODY = '{"amount":1}'
JOURNAL_POSTINGS = 5  # each between two random wallets
BATCH_ITEMS = 100  # spends of 1, each on a random wallet
HISTORY_PAGES = 1000  # the first page and 999 pages at random depths
BALANCE_READS = 1000  # balances at random depths: at an entry's time, or between two entries
STATEMENT_READS = 1000  # statements of windows at random depths
# A history wallet's transactions are one millisecond apart (ledger_data.HISTORY_STEP), so a
# calendar month of its history would hold 2.6 billion: a "1-month statement" here is a window
# of as many transactions as a month of a wallet that moves about three times a day.
STATEMENT_TRANSACTIONS = 100
RANDOM_SEED = 20_261_126


@dataclass(frozen=True, slots=True)
class Workload:
    api_key: str  # the secret wrk sends
    pgbench_api_key_id: uuid.UUID
    loads: dict[str, Load]
    history_entries: dict[str, int]  # entries on each history wallet's account


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


async def _history_paths(connection: Connection, number: int, rng: random.Random) -> tuple[list[str], int]:
    """The first page of a history wallet and pages starting at random depths: a cursor is the
    position of the entry the page starts after (ledger_data.history_created_at)."""
    wallet = ledger_data.history_wallet_id(number)
    entries = await connection.fetchval("SELECT entry_count FROM account WHERE id = $1", wallet)
    assert isinstance(entries, int) and entries >= 2, entries
    base = f"/v1/wallets/{wallet}/transactions?limit={PAGE_SIZE_DEFAULT}"
    paths = [base]
    positions = [rng.randint(2, entries) for _ in range(HISTORY_PAGES - 1)]
    exists = await connection.fetchval(
        """
        SELECT count(*) FROM entry
        WHERE account_id = $1 AND balance_after IS NOT NULL AND created_at = $2 AND account_sequence = $3
        """,
        wallet,
        ledger_data.history_created_at(positions[0]),
        positions[0],
    )
    assert exists == 1, "the history wallet's entries are not where ledger_data put them"
    for sequence in positions:
        cursor = history.encode_cursor(history.Position(ledger_data.history_created_at(sequence), sequence))
        paths.append(f"{base}&cursor={cursor}")
    return paths, entries


async def _balance_paths(connection: Connection, number: int, entries: int, rng: random.Random) -> list[str]:
    """Balances of a history wallet at random depths: at the time of its transaction n (its
    balance then is n, each top-up being 1), or half a step after it."""
    wallet = ledger_data.history_wallet_id(number)
    paths = []
    for index in range(BALANCE_READS):
        sequence = rng.randint(1, entries)
        at = ledger_data.history_created_at(sequence) + rng.choice((0, 1)) * ledger_data.HISTORY_STEP / 2
        if index == 0:
            found = await statements.balance_at(connection, wallet, at)
            assert found.balance == sequence, "the history's balances are not where ledger_data put them"
        paths.append(f"/v1/wallets/{wallet}/balance?at={timestamp_text(at)}")
    return paths


async def _statement_paths(
    connection: Connection, number: int, entries: int, rng: random.Random
) -> list[str]:
    """Statements of a history wallet, each a window of STATEMENT_TRANSACTIONS transactions at
    a random depth: [the time of transaction n, that of n + STATEMENT_TRANSACTIONS)."""
    wallet = ledger_data.history_wallet_id(number)
    paths = []
    for index in range(STATEMENT_READS):
        sequence = rng.randint(1, entries - STATEMENT_TRANSACTIONS)
        start = ledger_data.history_created_at(sequence)
        end = ledger_data.history_created_at(sequence + STATEMENT_TRANSACTIONS)
        if index == 0:
            found = await statements.statement(connection, wallet, start, end)
            assert len(found.transactions) == STATEMENT_TRANSACTIONS and found.opening_balance == sequence - 1
        paths.append(f"/v1/wallets/{wallet}/statement?from={timestamp_text(start)}&to={timestamp_text(end)}")
    return paths


async def _prime_replays(connection: Connection, api_key_id: uuid.UUID, count: int) -> list[str]:
    """`count` spends of 1, one per wallet, posted once with keys replay-N through posting.post
    with the fingerprint the service computes for POST /v1/wallets/{id}/spend {"amount":1}; wrk
    then sends exactly those requests again."""
    numbers = list(range(1, count + 1))
    paths = [f"/v1/wallets/{ledger_data.wallet_id(number)}/spend" for number in numbers]
    keys_sent = [f"replay-{number}" for number in numbers]
    body = idempotency.canonical_json({"amount": 1})
    requests = [
        posting.Request(
            api_key_id,
            key,
            idempotency.fingerprint("POST", path, body),
            posting.spend(ledger_data.wallet_id(number), 1, None, None),
        )
        for number, key, path in zip(numbers, keys_sent, paths, strict=True)
    ]
    await ledger_data.post_all(connection, requests)
    return [f"{key} {path}" for key, path in zip(keys_sent, paths, strict=True)]


async def prepare(connection: Connection, settings: BenchSettings, directory: Path) -> Workload:
    rng = random.Random(RANDOM_SEED)
    api_key, secret = await keys.create(connection, f"bench-{uuid.uuid4().hex[:8]}", {keys.Scope.ADMIN})
    pgbench_key, _ = await keys.create(
        connection, f"bench-pgbench-{uuid.uuid4().hex[:8]}", {keys.Scope.ADMIN}
    )
    wallets = [str(ledger_data.wallet_id(number)) for number in range(1, settings.wallet_count + 1)]
    big, entries_big = await _history_paths(connection, ledger_data.HISTORY_BIG_NUMBER, rng)
    small, entries_small = await _history_paths(connection, ledger_data.HISTORY_SMALL_NUMBER, rng)
    reads = {
        f"{kind} {size}": await make(connection, number, entries, rng)
        for kind, make in (("balance at", _balance_paths), ("statement", _statement_paths))
        for size, number, entries in (
            ("small", ledger_data.HISTORY_SMALL_NUMBER, entries_small),
            ("big", ledger_data.HISTORY_BIG_NUMBER, entries_big),
        )
    }
    replays = await _prime_replays(connection, api_key.id, settings.replay_key_count)
    spend_paths = [f"/v1/wallets/{wallet}/spend" for wallet in wallets]
    wallets_file = _write_lines(directory / "wallets.txt", wallets)
    loads = {
        "spend": Load("post", _write_lines(directory / "spend.txt", spend_paths), SPEND_BODY),
        "topup": Load(
            "post",
            _write_lines(directory / "topup.txt", [f"/v1/wallets/{wallet}/topup" for wallet in wallets]),
            SPEND_BODY,
        ),
        "spend one wallet": Load(
            "post", _write_lines(directory / "spend_one.txt", spend_paths[:1]), SPEND_BODY
        ),
        "transfer": Load("transfer", wallets_file),
        "journal": Load("journal", wallets_file, str(JOURNAL_POSTINGS)),
        "batch": Load("batch", wallets_file, str(BATCH_ITEMS)),
        "replay": Load("replay", _write_lines(directory / "replay.txt", replays), SPEND_BODY),
        "wallet read": Load(
            "get", _write_lines(directory / "read.txt", [f"/v1/wallets/{w}" for w in wallets])
        ),
        "history small": Load("get", _write_lines(directory / "history_small.txt", small)),
        "history big": Load("get", _write_lines(directory / "history_big.txt", big)),
        **{
            scenario: Load("get", _write_lines(directory / f"{scenario.replace(' ', '_')}.txt", paths))
            for scenario, paths in reads.items()
        },
    }
    return Workload(secret, pgbench_key.id, loads, {"small": entries_small, "big": entries_big})
