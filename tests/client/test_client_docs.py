"""docs/client.md's tour runs as written, against the suite's server (its URL and a fresh owner
put in place of the ones it names)."""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from pathlib import Path

from support import Server

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def test_the_tour_runs_as_written(server: Server) -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    tour = blocks[0]
    assert "http://127.0.0.1:8000" in tour and '"user-42"' in tour
    code = tour.replace("http://127.0.0.1:8000", server.base_url).replace("user-42", f"user-{uuid.uuid4()}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(GUIDE), "exec"), {"api_key": server.admin_key})
    first, second = printed.getvalue().splitlines()
    assert first == "700 False"
    assert second.startswith("409 insufficient_funds ")
