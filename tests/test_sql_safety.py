"""No SQL is built from strings: every query the package sends is a string literal, with the values
passed as parameters ($1, $2, ...). The check reads every module under src/wallet with `ast` and
flags any call of a database method (execute, executemany, fetch, fetchrow, fetchval, prepare,
cursor, copy_*) whose query is not a plain string literal or a name bound only to one: no
f-string, no `%`, no `.format`, no concatenation, no parameter or variable built at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parent.parent / "src" / "wallet"
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor"}
SQL_CALLS_IN_SOURCE_MIN = 20  # the package has many more; fewer means the scan went blind


def is_query_call(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    return node.func.attr in QUERY_METHODS or node.func.attr.startswith("copy")


def literal_names(tree: ast.AST) -> set[str]:
    """Names whose every binding in the module is `NAME = "a string literal"`."""
    literal_targets: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and is_string_literal(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            literal_targets.update(id(target) for target in targets if isinstance(target, ast.Name))
    literal: set[str] = set()
    other: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            (literal if id(node) in literal_targets else other).add(node.id)
        elif isinstance(node, ast.arg):
            other.add(node.arg)
    return literal - other


def is_string_literal(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def is_package_code(node: ast.AST | None) -> bool:
    """`code.install_script()`: the ledger's functions, read from the package's own .sql files
    (wallet/ledger/sql/), with no value from outside in them."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "install_script"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "code"
        and not node.args
        and not node.keywords
    )


def query_argument(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    return next((keyword.value for keyword in call.keywords if keyword.arg == "query"), None)


def unsafe_queries(source: str, filename: str = "<source>") -> tuple[list[str], int]:
    """The calls whose query is not a literal ("file:line method"), and how many calls were seen."""
    tree = ast.parse(source, filename)
    literals = literal_names(tree)
    flagged, seen = [], 0
    for node in ast.walk(tree):
        if not is_query_call(node):
            continue
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if node.func.attr == "cursor" and not node.args and not node.keywords:
            continue  # a DB-API cursor being made: no SQL yet
        seen += 1
        query = query_argument(node)
        if is_string_literal(query) or (isinstance(query, ast.Name) and query.id in literals):
            continue
        if is_package_code(query):
            continue
        flagged.append(f"{filename}:{node.lineno} {node.func.attr}")
    return flagged, seen


def test_every_query_in_the_package_is_a_string_literal() -> None:
    modules = sorted(SOURCE_ROOT.rglob("*.py"))
    assert modules
    flagged, seen = [], 0
    for module in modules:
        module_flagged, module_seen = unsafe_queries(module.read_text(), str(module.relative_to(SOURCE_ROOT)))
        flagged += module_flagged
        seen += module_seen
    assert flagged == []
    assert seen >= SQL_CALLS_IN_SOURCE_MIN, seen


UNSAFE = [
    pytest.param('await connection.execute(f"DELETE FROM account WHERE id = {wallet_id}")', id="f-string"),
    pytest.param('await connection.fetch("SELECT * FROM account WHERE id = %s" % wallet_id)', id="percent"),
    pytest.param('await connection.fetchval("SELECT {}".format(column))', id="format"),
    pytest.param('await connection.fetchrow("SELECT * FROM " + table)', id="concatenation"),
    pytest.param(
        'query = "SELECT " + column\nawait connection.fetch(query)', id="name-bound-to-concatenation"
    ),
    pytest.param(
        'QUERY = "SELECT 1"\nQUERY = f"SELECT {x}"\nawait connection.fetch(QUERY)', id="name-rebound"
    ),
    pytest.param("async def run(connection, sql):\n    await connection.execute(sql)", id="parameter"),
    pytest.param("await connection.executemany(build_query(), rows)", id="call-result"),
    pytest.param('await connection.copy_from_query(f"SELECT {x}", output="f")', id="copy"),
    pytest.param('await connection.execute(query=f"SELECT {x}")', id="keyword"),
    pytest.param('query = "SELECT 1"\nquery += where\nawait connection.fetch(query)', id="augmented"),
]


@pytest.mark.parametrize("source", UNSAFE)
def test_a_query_built_at_run_time_is_flagged(source: str) -> None:
    flagged, seen = unsafe_queries(source)
    assert seen == 1 and len(flagged) == 1, flagged


SAFE = [
    pytest.param('await connection.execute("SELECT 1")', id="literal"),
    pytest.param('await connection.fetchval("""SELECT $1::int""", value)', id="triple-quoted"),
    pytest.param('QUERY = "SELECT $1"\nawait connection.fetch(QUERY, value)', id="name-bound-to-literal"),
    pytest.param('await connection.fetch("SELECT " "$1", value)', id="implicit-concatenation-of-literals"),
]


@pytest.mark.parametrize("source", SAFE)
def test_a_literal_query_is_not_flagged(source: str) -> None:
    assert unsafe_queries(source) == ([], 1)
