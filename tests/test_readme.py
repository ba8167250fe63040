"""The README's curl tour works as pasted, against a real server on a fresh database."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from support import start_server, wallet_command

README = Path(__file__).resolve().parent.parent / "README.md"


def _tour_script() -> str:
    text = README.read_text()
    section = text[text.index("## A tour with curl") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the tour's sh block is missing"
    return match.group(1)


def test_readme_tour_runs_as_pasted(create_database: Callable[[], str], tmp_path: Path) -> None:
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    server = start_server(database_url, tmp_path / "server.log")
    try:
        script = _tour_script()
        script = script.replace("URL=http://127.0.0.1:8000", f"URL={server.base_url}", 1)
        script = script.replace("KEY=wk_paste_the_admin_key_here", f"KEY={server.admin_key}", 1)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        output = result.stdout
        assert '"code":"insufficient_funds"' in output
        assert "idempotent-replayed: true" in output.lower()
        assert output.count('"ok":true') == 2
        assert '"type":"transaction.posted"' in output
        assert re.search(r'"at":"[^"]+","balance":35\}', output)  # Alice's, between capture and refund
        assert '"opening_balance":0,"closing_balance":39,' in output
        assert "created_at,transaction_id,type,direction,amount,balance_after,reference\n" in output
        with server.client() as client:
            owners = {
                owner: client.get("/v1/wallets", params={"owner_id": owner}).json()["data"][0]["balance"]
                for owner in ("user-42", "user-43")
            }
            assets = client.get("/v1/ledger/balances").json()["data"]
            carol = client.get("/v1/wallets", params={"owner_id": "user-44"}).json()["data"][0]
        assert owners == {"user-42": 39, "user-43": 45}
        (gold,) = (asset for asset in assets if asset["asset"] == "GOLD")
        assert gold["system"] == {"treasury": -100, "bonus": -25, "revenue": 41, "breakage": 0}
        assert carol["balance"] == 50 and carol["next_expiry"]["amount"] == 50
    finally:
        server.stop()
