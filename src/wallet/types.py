"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A database connection: a plain one (CLI) or one borrowed from the pool (API).
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
