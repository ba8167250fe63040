\set wallet random(1, :wallets)
\set tail random(0, 1152921504606846975)
\set head random(0, 4095)
WITH debit AS (
    UPDATE reference_wallet SET balance = balance - 1
    WHERE id = :wallet AND balance >= 1
    RETURNING id, balance
), posted AS (
    INSERT INTO reference_transaction (id, wallet_id, amount)
    SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || '7' || lpad(to_hex(:head::bigint), 3, '0') || '8'
            || lpad(to_hex(:tail::bigint), 15, '0'))::uuid, id, 1
    FROM debit
    RETURNING id, wallet_id
), entries AS (
    INSERT INTO reference_entry (transaction_id, side, account, amount, balance_after)
    SELECT posted.id, 0, posted.wallet_id, 1, debit.balance FROM posted, debit
    UNION ALL
    SELECT posted.id, 1, 0, 1, NULL FROM posted
)
INSERT INTO reference_idempotency (key, response)
SELECT 'reference-' || :client_id || '-' || :tail,
    json_build_object('id', posted.id, 'wallet_id', posted.wallet_id, 'amount', 1,
        'balance_after', debit.balance, 'created_at', now())::text
FROM posted, debit;
