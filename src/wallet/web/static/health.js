// The ledger health panel, for operations: the invariants the service checks, whether each holds,
// the account (or transaction) behind each problem with a link to it, each asset's balances, and
// when it was last checked. It runs only when asked ("Check now"): verify reads the whole ledger.

import { formatAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, counted, element } from "./dom.js";
import { walletById } from "./directory.js";
import { clearMessages, renderProblem } from "./messages.js";
import { walletHref } from "./place.js";

// The invariants of the API contract that GET /v1/ledger/verify checks, by the number its
// problems carry.
export const INVARIANTS = new Map([
  [1, "Every transaction's entries balance: sum of debits = sum of credits."],
  [2, "Every account's stored balance = credits − debits of its entries."],
  [3, "No user wallet balance is ever negative."],
  [4, "For each asset, the balances of all accounts (user and system) sum to zero."],
  [5, "For each wallet, held = the sum of its pending, unexpired holds, and held ≤ balance."],
  [6, "For each wallet, the remaining amounts of its unexpired lots sum to at most its balance."],
  [7, "No transaction is reversed by more than its amount."],
  [8, "Events: one transaction.posted per transaction."],
]);
const SYSTEM_ACCOUNTS = ["treasury", "bonus", "revenue"];
const ELAPSED_TICK_MS = 1000;

export function createHealthPanel() {
  const button = byId("health-check");
  renderInvariants(null);

  async function check() {
    clearMessages();
    const started = Date.now();
    const progress = showProgress(started);
    try {
      const [verification, totals] = await Promise.all([
        request("GET", "/v1/ledger/verify"),
        request("GET", "/v1/ledger/balances"),
      ]);
      await renderVerification(verification);
      renderTotals(totals);
      byId("health-checked").replaceChildren(
        "Last checked at ", clock(new Date(started)), ` (took ${((Date.now() - started) / 1000).toFixed(1)} s).`,
      );
    } finally {
      progress.stop();
    }
  }

  function showProgress(started) {
    const box = byId("health-progress");
    const elapsed = byId("health-elapsed");
    button.disabled = true;
    box.hidden = false;
    elapsed.textContent = "0 s";
    const timer = setInterval(() => {
      elapsed.textContent = `${Math.round((Date.now() - started) / 1000)} s`;
    }, ELAPSED_TICK_MS);
    return {
      stop() {
        clearInterval(timer);
        box.hidden = true;
        button.disabled = false;
        button.focus();
      },
    };
  }

  button.addEventListener("click", check);
  return { check };
}

// The list of invariants; after a check, each says whether it holds.
function renderInvariants(problems) {
  const items = [...INVARIANTS].map(([number, text]) => {
    const found = problems?.filter((problem) => problem.invariant === number).length ?? 0;
    const verdict = problems === null ? null
      : found === 0 ? element("span", { className: "sum-ok" }, " holds ✓")
        : element("span", { className: "sum-bad" }, ` broken: ${counted(found, "problem")} ✗`);
    return element("li", { value: number, dataset: { invariant: String(number) } }, text, verdict);
  });
  byId("invariants").replaceChildren(...items);
}

async function renderVerification(answer) {
  const target = byId("health-verify");
  if (!answer.ok) {
    renderInvariants(null);
    renderProblem(target, answer);
    return;
  }
  const verification = answer.data;
  renderInvariants(verification.problems);
  const checked = `${counted(verification.accounts_checked, "account")} and ` +
    `${counted(verification.transactions_checked, "transaction")} checked.`;
  const headline = verification.ok
    ? `Ledger OK: every invariant holds. ${checked}`
    : `Ledger NOT OK: ${counted(verification.problems.length, "problem")}. ${checked}`;
  const rows = await Promise.all(verification.problems.map(problemItem));
  target.className = `report ${verification.ok ? "ok" : "error"}`;
  target.replaceChildren(element("p", { className: "headline" }, headline));
  if (rows.length) target.append(element("ul", { className: "problems" }, ...rows));
}

// One problem: its invariant (or, for the ledger's own bookkeeping, the check that found it),
// what it is about (by name, with a link), and the service's detail.
async function problemItem(problem) {
  return element("li", { className: "problem" },
    ...problemName(problem),
    ": ", ...(await subjectOf(problem)), problem.detail ? ` — ${problem.detail}` : "");
}

function problemName(problem) {
  if (problem.invariant === undefined && problem.check !== undefined) {
    return [element("strong", {}, `Check ${problem.check}`)];
  }
  const known = INVARIANTS.has(problem.invariant);
  return [element("strong", {}, `Invariant ${problem.invariant}`), known ? "" : " (not known to this page)"];
}

async function subjectOf(problem) {
  if (problem.account_id) {
    const wallet = await walletById(problem.account_id);
    if (wallet !== null) return ["account ", walletLink(wallet)];
    return ["system account ", element("code", {}, problem.account_id)];
  }
  if (problem.transaction_id) {
    const found = UUID_PATTERN.test(problem.transaction_id)
      ? await request("GET", `/v1/transactions/${problem.transaction_id}`, { background: true })
      : { ok: false };
    const wallet = found.ok ? await walletById(found.data.wallet_id) : null;
    const of = wallet === null ? [] : [" of ", walletLink(wallet)];
    return ["transaction ", element("code", {}, problem.transaction_id), ...of];
  }
  if (problem.asset) return [`asset ${problem.asset}`];
  return ["the ledger"];
}

function walletLink(wallet) {
  return element("a", { href: walletHref(wallet.id), dataset: { place: "" } }, `${wallet.owner_id}'s ${wallet.asset} wallet`);
}

// One column per asset; rows: user wallets, the system accounts, and their sum (always 0).
function renderTotals(answer) {
  const table = byId("health-balances");
  table.hidden = !answer.ok;
  if (!answer.ok) return;
  const assets = answer.data.data;
  table.tHead.replaceChildren(tableRow("Account", assets.map((item) => item.asset), "col"));
  const sums = assets.map((item) =>
    [item.user_total, ...Object.values(item.system)].reduce((total, value) => total + BigInt(value), 0n),
  );
  const kinds = [...new Set([...SYSTEM_ACCOUNTS, ...assets.flatMap((item) => Object.keys(item.system))])];
  const rows = [
    tableRow("wallets (count)", assets.map((item) => formatAmount(item.wallet_count))),
    tableRow("wallets (total)", assets.map((item) => formatAmount(item.user_total))),
    ...kinds.map((kind) => tableRow(kind, assets.map((item) => formatAmount(item.system[kind] ?? 0)))),
    tableRow("Sum", sums.map((sum) => (sum === 0n ? "0 ✓" : `${formatAmount(sum)} ✗`))),
  ];
  rows.at(-1).className = "sum-row";
  sums.forEach((sum, index) => {
    rows.at(-1).cells[index + 1].className = sum === 0n ? "sum-ok" : "sum-bad";
  });
  table.tBodies[0].replaceChildren(...rows);
}

function tableRow(heading, values, headingScope = "row") {
  const cellTag = headingScope === "col" ? "th" : "td";
  return element("tr", {},
    element("th", { scope: headingScope, textContent: heading }),
    ...values.map((value) => element(cellTag, headingScope === "col" ? { scope: "col", textContent: value } : { textContent: value })));
}
