// Who owns a wallet id: the page names the other side of a transfer, and the account of a ledger
// problem, by its owner. Owner and asset of a wallet never change, so answers are kept for the
// page's lifetime (its balance is not used from here).

import { request, UUID_PATTERN } from "./api.js";

const known = new Map(); // wallet id → Promise of the Wallet object, or null when there is none

// The Wallet with this id, or null (no such wallet, a system account, or no answer).
export function walletById(walletId) {
  if (!UUID_PATTERN.test(walletId)) return Promise.resolve(null);
  if (!known.has(walletId)) {
    const found = request("GET", `/v1/wallets/${walletId}`, { background: true }).then((answer) => {
      if (!answer.ok) known.delete(walletId); // ask again next time: it may exist by then
      return answer.ok ? answer.data : null;
    });
    known.set(walletId, found);
  }
  return known.get(walletId);
}

// Remembers wallets the page read anyway (a list of an owner's wallets).
export function rememberWallets(wallets) {
  for (const wallet of wallets) known.set(wallet.id, Promise.resolve(wallet));
}

// "demo-bob" for a wallet id; the id itself when its owner cannot be found.
export async function ownerName(walletId) {
  const wallet = await walletById(walletId);
  return wallet === null ? walletId : wallet.owner_id;
}
