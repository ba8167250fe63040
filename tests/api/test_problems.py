"""Problem codes: one table (api/problems.py) gives each its status and title; every code the
ledger raises or stores is in it, with a fixed status."""

from __future__ import annotations

import re
from pathlib import Path

from wallet.api.problems import PROBLEM_TYPES, Problem, status_of
from wallet.ledger import errors

SQL_DIRECTORY = Path(errors.__file__).parent / "sql"


def _subclasses(cls: type[errors.LedgerError]) -> set[type[errors.LedgerError]]:
    found: set[type[errors.LedgerError]] = set(cls.__subclasses__())
    for subclass in list(found):
        found |= _subclasses(subclass)
    return found


def test_every_ledger_error_has_a_problem_type_with_a_fixed_status() -> None:
    codes = {error.code for error in _subclasses(errors.LedgerError)}
    assert codes, "no LedgerError subclass found"
    for code in codes:
        assert code in PROBLEM_TYPES, code
        assert 400 <= status_of(code) < 500, code


def test_every_decline_the_posting_core_stores_has_a_problem_type() -> None:
    source = "\n".join(path.read_text() for path in SQL_DIRECTORY.glob("*.sql"))
    stored = set(re.findall(r"code\s*:= '([a-z_]+)'", source)) - {"deferred"}
    assert {"insufficient_funds", "wallet_not_found", "asset_mismatch", "balance_limit_exceeded"} <= stored
    for code in stored:
        assert code in PROBLEM_TYPES, code
        assert status_of(code) in (404, 409, 422), code


def test_a_problem_with_the_wrong_status_for_its_code_is_a_bug() -> None:
    problem = Problem(409, "insufficient_funds", "x")
    assert problem.status == 409
    try:
        Problem(400, "insufficient_funds", "x")
    except AssertionError:
        return
    raise AssertionError("a 400 insufficient_funds was made")
