// The statement panel: the chosen wallet's statement for a period (GET …/statement?from=&to=):
// opening and closing balance, total credits and debits, and the transactions, oldest first; and
// the same statement as a CSV file. The CSV is fetched (the API needs the Authorization header, so
// a plain link cannot do it) and handed to the browser as a download.

import { formatAmount, request } from "./api.js";
import { byId, clock, copyableId, counted, element, utcText } from "./dom.js";
import { exchangeDetails } from "./exchange.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";
import { localInputValue, timestampOfLocalInput } from "./time.js";

const DEFAULT_DAYS = 30;
const DAY_MS = 86_400_000;
const COLUMNS = ["Time", "Type", "Credit", "Debit", "Balance after", "Reference"];
const DOWNLOAD_URL_KEPT_MS = 60_000;

export function createStatementPanel({ currentWallet }) {
  const form = byId("statement-form");
  const from = byId("statement-from");
  const to = byId("statement-to");
  const result = byId("statement-result");
  const csvButton = byId("statement-csv");
  let walletId = null;

  // The query for the fields: {query} or {invalid: input, message}.
  function period() {
    for (const input of [from, to]) input.setAttribute("aria-invalid", "false");
    const query = new URLSearchParams();
    const start = timestampOfLocalInput(from.value);
    if (start === null) return { invalid: from, message: "Enter the start of the period: a date and time." };
    query.set("from", start);
    if (to.value) {
      const end = timestampOfLocalInput(to.value);
      if (end === null) return { invalid: to, message: "Enter the end of the period as a date and time, or leave it empty (now)." };
      query.set("to", end);
    }
    return { query };
  }

  function checked() {
    clearMessages();
    const wallet = currentWallet();
    const asked = period();
    if (asked.invalid) {
      asked.invalid.setAttribute("aria-invalid", "true");
      renderMessage(result, asked.message, "error");
      asked.invalid.focus();
      return null;
    }
    return { wallet, path: `/v1/wallets/${wallet.id}/statement?${asked.query}` };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const asked = checked();
    if (asked === null) return;
    await withButton(event.submitter, async () => {
      const answer = await request("GET", asked.path);
      if (!answer.ok) {
        byId("statement-view").hidden = true;
        renderProblem(result, answer);
        return;
      }
      renderStatement(answer.data, asked.wallet);
    });
  });

  csvButton.addEventListener("click", async () => {
    const asked = checked();
    if (asked === null) return;
    await withButton(csvButton, async () => {
      const answer = await request("GET", asked.path, { accept: "text/csv" });
      if (!answer.ok) {
        renderProblem(result, answer);
        return;
      }
      const name = suggestedName(answer.exchange) ?? fileName(asked.wallet, from.value, to.value);
      download(answer.data, name);
      const rows = answer.data.trimEnd().split("\n").length - 1; // references hold no line breaks
      renderMessage(result, `Saved ${name}: a header row, then ${counted(rows, "row")}, one per entry of the wallet.`);
      result.append(exchangeDetails(answer.exchange));
    });
  });

  return {
    walletChanged(wallet) {
      if (wallet?.id === walletId) return;
      walletId = wallet?.id ?? null;
      byId("statement-view").hidden = true;
      if (!from.value) from.value = localInputValue(new Date(Date.now() - DEFAULT_DAYS * DAY_MS)).slice(0, 10) + "T00:00";
    },
  };
}

function renderStatement(statement, wallet) {
  const opening = BigInt(statement.opening_balance);
  const credits = BigInt(statement.total_credits);
  const debits = BigInt(statement.total_debits);
  const closing = BigInt(statement.closing_balance);
  const totals = [
    ["Opening balance", opening],
    ["Credits", credits],
    ["Debits", debits],
    ["Closing balance", closing],
  ];
  byId("statement-totals").replaceChildren(...totals.flatMap(([term, value]) => [
    element("dt", {}, term),
    element("dd", { dataset: { total: term.split(" ")[0].toLowerCase() } }, `${formatAmount(value)} ${statement.asset}`),
  ]));
  const holds = opening + credits - debits === closing;
  byId("statement-identity").replaceChildren(
    element("span", { className: holds ? "sum-ok" : "sum-bad" },
      `opening + credits − debits = closing: ${formatAmount(opening)} + ${formatAmount(credits)} − ` +
      `${formatAmount(debits)} = ${formatAmount(opening + credits - debits)} ${holds ? "✓" : `, not ${formatAmount(closing)} ✗`}`),
  );
  byId("statement-period").replaceChildren(
    `${wallet.owner_id}'s ${statement.asset} wallet, from ${utcText(statement.from)} to ${utcText(statement.to)}: `,
    `${counted(statement.transactions.length, "transaction")}, oldest first; read at `, clock(new Date()), ".",
  );
  const table = byId("statement-table");
  table.tBodies[0].replaceChildren(...statement.transactions.map((item) => statementRow(item, wallet)));
  table.hidden = statement.transactions.length === 0;
  byId("statement-view").hidden = false;
}

// One transaction as this wallet sees it: what came in or went out, and its balance after.
function statementRow(transaction, wallet) {
  const own = (transaction.entries ?? []).filter((entry) => entry.account === wallet.id);
  let net = own.reduce((sum, entry) => sum + (entry.direction === "credit" ? 1n : -1n) * BigInt(entry.amount), 0n);
  let after = own.at(-1)?.balance_after ?? null;
  if (own.length === 0 && transaction.direction !== undefined) {
    net = (transaction.direction === "credit" ? 1n : -1n) * BigInt(transaction.amount);
    after = transaction.balance_after;
  }
  const cells = [
    element("time", { dateTime: transaction.created_at }, utcText(transaction.created_at)),
    transaction.type,
    net > 0n ? formatAmount(net) : "",
    net < 0n ? formatAmount(-net) : "",
    after === null ? "" : formatAmount(after),
    transaction.reference ?? "",
  ];
  const row = element("tr", { dataset: { transactionId: transaction.id } },
    ...cells.map((cell, index) => element("td", { dataset: { label: COLUMNS[index] } }, cell)));
  row.cells[0].append(" ", copyableId(transaction.id, "the transaction id"));
  return row;
}

// The file name the service suggests (Content-Disposition: attachment; filename="…"), if any.
function suggestedName(exchange) {
  const header = exchange.responseHeaders.find(([name]) => name.toLowerCase() === "content-disposition");
  const match = /filename="([A-Za-z0-9._-]{1,200})"/.exec(header?.[1] ?? "");
  return match === null ? null : match[1];
}

// A name of the page's own: the owner, the asset and the period as typed.
function fileName(wallet, fromValue, toValue) {
  const safe = (text) => text.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "");
  return `statement-${safe(wallet.owner_id)}-${wallet.asset}-${safe(fromValue)}-to-${safe(toValue || "now")}.csv`;
}

// Hands `text` to the browser as a file named `name`.
function download(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const link = element("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_KEPT_MS);
}

async function withButton(button, task) {
  if (button?.disabled) return;
  if (button) button.disabled = true;
  try {
    await task();
  } finally {
    if (button) button.disabled = false;
  }
}
