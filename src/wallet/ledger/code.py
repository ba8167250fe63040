"""The ledger's server-side code: the SQL functions and triggers in ledger/sql/, one concept per
file, installed into the schema `ledger` by `wallet db migrate` (dropped and created again every
time, like repeatable migrations; tables change only by Alembic migrations).

The schema's comment records the checksum of what was installed, so `/readyz` can tell a
database whose functions are not this code's."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from wallet.types import Connection

SQL_DIRECTORY = Path(__file__).parent / "sql"
# In dependency order: a file may use what the files before it define.
FILES = (
    "limits.sql",
    "guards.sql",
    "chains.sql",
    "events.sql",
    "slots.sql",
    "lots.sql",
    "holds.sql",
    "post.sql",
)
SCHEMA = "ledger"


@cache
def source() -> str:
    parts = []
    for name in FILES:
        text = (SQL_DIRECTORY / name).read_text(encoding="utf-8")
        parts.append(f"-- {name}\n{text}")
    return "\n".join(parts)


@cache
def checksum() -> str:
    return "sha256:" + hashlib.sha256(source().encode()).hexdigest()


def install_script() -> str:
    """SQL that replaces the installed code with this code, for one transaction."""
    digest = checksum()
    assert digest.startswith("sha256:") and "'" not in digest
    return (
        f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;\n"
        f"CREATE SCHEMA {SCHEMA};\n"
        f"{source()}\n"
        f"COMMENT ON SCHEMA {SCHEMA} IS '{digest}';\n"
    )


INSTALLED_CHECKSUM = "SELECT obj_description(to_regnamespace('ledger'), 'pg_namespace')"


async def installed_checksum(connection: Connection) -> str | None:
    """The checksum of the code installed in the database (None: none is)."""
    value = await connection.fetchval(INSTALLED_CHECKSUM)
    assert value is None or isinstance(value, str)
    return value
