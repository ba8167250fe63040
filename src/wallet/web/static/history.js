// A wallet's transactions, newest first, a page at a time (the API's keyset `next_cursor`).

import { formatAmount, paragraph, renderProblem, request } from "./api.js";

const ENTRY_COLUMNS = ["Side", "Account", "Amount", "Balance after"];
const TYPE_NAMES = { topup: "Top up", bonus: "Bonus", spend: "Spend", transfer: "Transfer" };

export function createHistory({ currentWallet }) {
  const list = document.getElementById("history-list");
  const result = document.getElementById("history-result");
  const pageLabel = document.getElementById("history-page");
  const newer = document.getElementById("history-newer");
  const older = document.getElementById("history-older");
  const pageSize = document.getElementById("page-size");
  // cursors[i] is the cursor that fetches page i + 1 (null: the newest page).
  let cursors = [null];
  let nextCursor = null;
  let requests = 0;

  async function show(pageIndex) {
    const wallet = currentWallet();
    if (wallet === null) return;
    const requestNumber = ++requests;
    const query = new URLSearchParams({ limit: pageSize.value });
    if (cursors[pageIndex] !== null) query.set("cursor", cursors[pageIndex]);
    const page = await request("GET", `/v1/wallets/${wallet.id}/transactions?${query}`);
    if (requestNumber !== requests) return; // a later request has taken over
    if (!page.ok) {
      renderProblem(result, page);
      return;
    }
    result.replaceChildren();
    result.className = "result";
    cursors = cursors.slice(0, pageIndex + 1);
    nextCursor = page.data.next_cursor;
    list.replaceChildren(...page.data.data.map((transaction) => renderTransaction(transaction, wallet)));
    if (page.data.data.length === 0) list.append(emptyItem());
    const count = page.data.data.length;
    pageLabel.textContent = `Page ${pageIndex + 1}: ${count} transaction${count === 1 ? "" : "s"}` +
      (nextCursor === null ? ", no older ones." : ".");
    newer.disabled = pageIndex === 0;
    older.disabled = nextCursor === null;
  }

  newer.addEventListener("click", () => show(Math.max(cursors.length - 2, 0)));
  older.addEventListener("click", () => {
    if (nextCursor === null) return;
    cursors.push(nextCursor);
    show(cursors.length - 1);
  });
  pageSize.addEventListener("change", () => newest());

  function newest() {
    cursors = [null];
    return show(0);
  }

  return { newest };
}

function emptyItem() {
  const item = document.createElement("li");
  item.className = "empty";
  item.textContent = "No transactions yet.";
  return item;
}

function renderTransaction(transaction, wallet) {
  const own = transaction.entries.find((entry) => entry.account === wallet.id);
  const counter = transaction.entries.find((entry) => entry !== own);
  const item = document.createElement("li");
  item.className = `transaction ${own?.direction ?? ""}`;
  const head = document.createElement("p");
  head.className = "transaction-head";
  const sign = own?.direction === "credit" ? "+" : "−";
  const direction = own?.direction === "credit" ? "from" : "to";
  head.append(
    span(TYPE_NAMES[transaction.type] ?? transaction.type, "type"),
    span(`${sign}${formatAmount(transaction.amount)} ${transaction.asset}`, "amount"),
    span(`${direction} ${counter ? accountName(counter.account, wallet) : "?"}`),
    span(`balance after ${own ? formatAmount(own.balance_after) : "?"}`),
  );
  const time = document.createElement("time");
  time.dateTime = transaction.created_at;
  time.textContent = transaction.created_at.replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const facts = paragraph("", "muted small");
  facts.append(time, ` · id ${transaction.id}`);
  if (transaction.reference) facts.append(` · reference ${transaction.reference}`);
  item.append(head, facts, entriesTable(transaction, wallet));
  return item;
}

function entriesTable(transaction, wallet) {
  const table = document.createElement("table");
  table.className = "entries";
  const caption = document.createElement("caption");
  caption.className = "visually-hidden";
  caption.textContent = `Entries of transaction ${transaction.id}`;
  const head = document.createElement("thead");
  head.append(row(ENTRY_COLUMNS, "th"));
  const body = document.createElement("tbody");
  for (const entry of transaction.entries) {
    const balance = entry.balance_after === null ? "— (system)" : formatAmount(entry.balance_after);
    body.append(row([entry.direction, accountName(entry.account, wallet), formatAmount(entry.amount), balance]));
  }
  table.append(caption, head, body);
  return table;
}

function accountName(account, wallet) {
  return account === wallet.id ? "this wallet" : account;
}

function row(cells, cellTag = "td") {
  const tableRow = document.createElement("tr");
  for (const text of cells) {
    const cell = document.createElement(cellTag);
    if (cellTag === "th") cell.scope = "col";
    cell.textContent = text;
    cell.dataset.label = ENTRY_COLUMNS[tableRow.cells.length];
    tableRow.append(cell);
  }
  return tableRow;
}

function span(text, className = "") {
  const element = document.createElement("span");
  element.textContent = text;
  if (className) element.className = className;
  return element;
}
