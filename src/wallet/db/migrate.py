"""Alembic migrations, run programmatically: `wallet db migrate` and the readiness check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlalchemy_url(database_url: str) -> str:
    scheme, _, rest = database_url.partition("://")
    assert scheme in ("postgresql", "postgres"), scheme
    return "postgresql+psycopg://" + rest


def _config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (an older one only for tests of a migration: the
    ledger's functions are installed with the newest)."""
    command.upgrade(_config(database_url), revision)


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head
