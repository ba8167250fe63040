// The expiring credits panel: the chosen wallet's lots (a top-up or bonus given an expiry, and
// the parts of one a transfer carried here), soonest-expiring first: the order debits take from
// them. Only unexpired lots with something left are listed; the rest of the balance never expires.

import { formatAmount, request } from "./api.js";
import { byId, clock, copyableId, counted, element, utcText } from "./dom.js";
import { renderProblem } from "./messages.js";
import { durationText } from "./time.js";

const COLUMNS = ["Remaining", "Of", "Expires at", "Credit (transaction)"];

export function createLotsPanel({ currentWallet }) {
  const body = byId("lots-table").tBodies[0];
  const result = byId("lots-result");
  let requests = 0;

  async function show({ background = false } = {}) {
    const wallet = currentWallet();
    if (wallet === null) return;
    const requestNumber = ++requests;
    const answer = await request("GET", `/v1/wallets/${wallet.id}/lots`, { background });
    if (requestNumber !== requests) return;
    if (!answer.ok) {
      if (!background) renderProblem(result, answer);
      return;
    }
    const lots = answer.data.data;
    byId("lots-table").hidden = lots.length === 0;
    body.replaceChildren(...lots.map((lot) => lotRow(lot, wallet.asset)));
    const remaining = lots.reduce((sum, lot) => sum + BigInt(lot.remaining), 0n);
    byId("lots-summary").replaceChildren(
      lots.length === 0
        ? "No expiring credits: all of this wallet's balance is non-expiring. "
        : `${counted(lots.length, "lot")}, ${formatAmount(remaining)} ${wallet.asset} expiring in all; `,
      "as of ", clock(new Date()), ".",
    );
  }

  return {
    walletChanged: (wallet) => {
      body.replaceChildren();
      if (wallet !== null) show();
    },
    refresh: () => show({ background: true }),
  };
}

function lotRow(lot, asset) {
  const left = Date.parse(lot.expires_at) - Date.now();
  const expires = element("span", {},
    element("time", { dateTime: lot.expires_at }, utcText(lot.expires_at)),
    element("span", { className: "muted" }, left > 0 ? ` (in ${durationText(left)})` : " (due now)"));
  const cells = [
    `${formatAmount(lot.remaining)} ${asset}`,
    formatAmount(lot.amount),
    expires,
    copyableId(lot.transaction_id, "the credit's transaction id"),
  ];
  return element("tr", {}, ...cells.map((cell, index) => element("td", { dataset: { label: COLUMNS[index] } }, cell)));
}
