// The history panel: a wallet's transactions, newest first, a page at a time (the API's keyset
// `next_cursor`), as its owner sees them: the other side of a transfer by its owner's name, and
// no other wallet's balance. A reversible transaction has a "Reverse…" button (reverse.js).

import { formatAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, copyableId, element, paragraph, utcText } from "./dom.js";
import { walletById } from "./directory.js";
import { renderProblem } from "./messages.js";
import { PAGE_SIZE_DEFAULT } from "./place.js";
import { REVERSIBLE_TYPES } from "./reverse.js";

const ENTRY_COLUMNS = ["Side", "Account", "Amount", "Balance after"];
// Names of the types this page knows; any other type is shown as the API names it.
const TYPE_NAMES = {
  topup: "Top up", bonus: "Bonus", spend: "Spend", transfer: "Transfer",
  journal: "Journal", reversal: "Reversal", expiry: "Expiry",
};

// `placeChanged()` tells the page the history moved to another page (for the URL);
// `reverse(transaction)` opens the reversal form for a row.
export function createHistoryPanel({ currentWallet, placeChanged, reverse }) {
  const list = byId("history-list");
  const result = byId("history-result");
  const pageLabel = byId("history-page");
  const newer = byId("history-newer");
  const older = byId("history-older");
  const pageSize = byId("page-size");
  // pages: the cursors that led to the page shown, oldest step first (page 1: none).
  const state = { limit: PAGE_SIZE_DEFAULT, pages: [], nextCursor: null };
  let requests = 0;

  async function show({ background = false } = {}) {
    const wallet = currentWallet();
    if (wallet === null) return;
    const requestNumber = ++requests;
    const query = new URLSearchParams({ limit: String(state.limit) });
    if (state.pages.length) query.set("cursor", state.pages.at(-1));
    const page = await request("GET", `/v1/wallets/${wallet.id}/transactions?${query}`, { background });
    const items = page.ok ? await Promise.all(page.data.data.map((item) => renderTransaction(item, wallet, reverse))) : [];
    if (requestNumber !== requests) return; // a later request has taken over
    if (!page.ok) {
      renderProblem(result, page);
      return;
    }
    state.nextCursor = page.data.next_cursor;
    list.replaceChildren(...items);
    if (items.length === 0) list.append(element("li", { className: "empty" }, "No transactions on this page."));
    const count = items.length;
    pageLabel.replaceChildren(
      `Page ${state.pages.length + 1}: ${count} transaction${count === 1 ? "" : "s"}` +
        (state.nextCursor === null ? ", no older ones" : "") + "; as of ",
      clock(new Date()),
    );
    newer.disabled = state.pages.length === 0;
    older.disabled = state.nextCursor === null;
  }

  // A pager button that disables itself would drop the focus to <body>: hand it to the other one.
  async function move(change, used) {
    change();
    await show();
    placeChanged();
    if (used.disabled) (used === older ? newer : older).focus();
    if (document.activeElement === document.body) byId("history-title").focus();
  }

  older.addEventListener("click", () => {
    if (state.nextCursor === null) return;
    move(() => state.pages.push(state.nextCursor), older);
  });
  newer.addEventListener("click", () => move(() => state.pages.pop(), newer));
  pageSize.addEventListener("change", () => {
    state.limit = Number(pageSize.value);
    state.pages = [];
    show().then(placeChanged);
  });

  return {
    // Shows the wallet's history at `limit` and `pages` (from the URL), or its newest page.
    open({ limit = PAGE_SIZE_DEFAULT, pages = [] } = {}) {
      state.limit = limit;
      state.pages = [...pages];
      pageSize.value = String(limit);
      return show();
    },
    refresh: () => show({ background: true }),
    place: () => ({ limit: state.limit, pages: [...state.pages] }),
  };
}

async function renderTransaction(transaction, wallet, reverse) {
  const names = await accountNames(transaction, wallet);
  const own = transaction.entries.filter((entry) => entry.account === wallet.id);
  const others = [...new Set(transaction.entries.filter((entry) => !own.includes(entry)).map((entry) => entry.account))];
  const net = own.reduce((sum, entry) => sum + (entry.direction === "credit" ? 1n : -1n) * BigInt(entry.amount), 0n);
  const credit = net >= 0n;
  const item = element("li", { className: `transaction ${credit ? "credit" : "debit"}` });
  const side = others.length === 1 ? `${credit ? "from" : "to"} ${names.get(others[0])}` : `with ${others.length} accounts`;
  const after = own.at(-1)?.balance_after;
  item.append(
    element("p", { className: "transaction-head" },
      element("span", { className: "type" }, TYPE_NAMES[transaction.type] ?? transaction.type),
      element("span", { className: "amount" }, `${credit ? "+" : "−"}${formatAmount(credit ? net : -net)} ${transaction.asset}`),
      element("span", {}, side),
      element("span", {}, `balance after ${after === undefined || after === null ? "?" : formatAmount(after)}`)),
    facts(transaction),
    entriesTable(transaction, wallet, names),
  );
  if (REVERSIBLE_TYPES.has(transaction.type)) {
    const button = element("button", { type: "button", className: "secondary small-button reverse" }, "Reverse…");
    const name = TYPE_NAMES[transaction.type].toLowerCase();
    button.setAttribute("aria-label", `Reverse this ${name} of ${formatAmount(transaction.amount)} ${transaction.asset}`);
    button.addEventListener("click", () => reverse(transaction));
    item.querySelector(".transaction-head").append(button);
  }
  return item;
}

function facts(transaction) {
  const line = paragraph("", "muted small");
  line.append(element("time", { dateTime: transaction.created_at }, utcText(transaction.created_at)), " · id ",
    copyableId(transaction.id, "the transaction id"));
  if (transaction.reference) line.append(` · reference ${transaction.reference}`);
  if (transaction.reverses) line.append(" · reverses ", element("code", {}, transaction.reverses));
  if (transaction.hold_id) line.append(" · hold ", element("code", {}, transaction.hold_id));
  return line;
}

// account → what the owner of `wallet` sees: "this wallet", "demo-bob's wallet", "treasury:GOLD".
async function accountNames(transaction, wallet) {
  const accounts = [...new Set(transaction.entries.map((entry) => entry.account))];
  const named = await Promise.all(accounts.map(async (account) => {
    if (account === wallet.id) return [account, "this wallet"];
    if (!UUID_PATTERN.test(account)) return [account, account];
    const other = await walletById(account);
    return [account, other === null ? `wallet ${account}` : `${other.owner_id}'s wallet`];
  }));
  return new Map(named);
}

function entriesTable(transaction, wallet, names) {
  const head = element("thead", {}, row(ENTRY_COLUMNS, "th"));
  const body = element("tbody");
  for (const entry of transaction.entries) {
    body.append(row([
      entry.direction,
      names.get(entry.account),
      formatAmount(entry.amount),
      balanceShown(entry, wallet),
    ]));
  }
  const caption = element("caption", { className: "visually-hidden" }, `Entries of transaction ${transaction.id}`);
  return element("table", { className: "entries" }, caption, head, body);
}

// Only this wallet's balance: another owner's balance is not this owner's business.
function balanceShown(entry, wallet) {
  if (entry.account === wallet.id && entry.balance_after !== null) return formatAmount(entry.balance_after);
  return entry.balance_after === null ? "— (system)" : "— (not shown)";
}

function row(cells, cellTag = "td") {
  const tableRow = element("tr");
  for (const text of cells) {
    const cell = element(cellTag, { textContent: text, dataset: { label: ENTRY_COLUMNS[tableRow.cells.length] } });
    if (cellTag === "th") cell.scope = "col";
    tableRow.append(cell);
  }
  return tableRow;
}
