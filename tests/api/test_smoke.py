from support import Server, assert_ledger_ok, balance, new_wallet, topup


def test_topup_then_spend_leaves_seventy(server: Server) -> None:
    with server.client() as client:
        wallet_id = new_wallet(client)
        assert topup(client, wallet_id, 100).status_code == 201
        spent = client.post(
            f"/v1/wallets/{wallet_id}/spend", json={"amount": 30}, headers={"Idempotency-Key": "s-1"}
        )
        assert spent.status_code == 201, spent.text
        assert spent.json()["balance_after"] == 70
        assert balance(client, wallet_id) == 70
        assert_ledger_ok(client)
