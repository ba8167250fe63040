// The demo page: signing in, picking a wallet, and the ledger health panel.

import {
  formatAmount,
  hasApiKey,
  paragraph,
  renderMessage,
  renderProblem,
  request,
  setApiKey,
  setProblemHint,
} from "./api.js";
import { createHistory } from "./history.js";
import { createMoneyForms } from "./money.js";

// Only a key typed by the person is kept, and only for this tab; the demo key stays in memory.
const STORAGE_KEY = "wallet-demo-api-key";

const byId = (id) => document.getElementById(id);
const state = { wallet: null, wallets: [], mode: null };

const history = createHistory({ currentWallet: () => state.wallet });
const money = createMoneyForms(byId("money-forms"), {
  currentWallet: () => state.wallet,
  onSent: afterMovement,
});

async function start() {
  const session = await request("GET", "/ui/session");
  if (session.networkError) {
    byId("session-status").textContent = "Could not reach the service. Is it running?";
    return;
  }
  if (session.ok && session.data?.api_key) {
    state.mode = "demo";
    setApiKey(session.data.api_key);
    setProblemHint("unauthenticated", "The demo key changes at each server start: reload the page.");
    byId("session-status").textContent = "Signed in with this server's demo key (admin, made at its start).";
    await enterWorkspace();
    return;
  }
  state.mode = "external";
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored !== null && (await tryKey(stored))) return;
  showSignIn("This server has no demo key: sign in with an API key.");
}

async function tryKey(key) {
  setApiKey(key);
  const assets = await request("GET", "/v1/assets");
  if (!assets.ok) {
    setApiKey(null);
    sessionStorage.removeItem(STORAGE_KEY);
    renderProblem(byId("sign-in-result"), assets);
    return false;
  }
  sessionStorage.setItem(STORAGE_KEY, key);
  byId("session-status").textContent = "Signed in with your API key (kept in this tab only).";
  byId("forget-key").hidden = false;
  await enterWorkspace(assets);
  return true;
}

function showSignIn(status) {
  byId("session-status").textContent = status;
  byId("workspace").hidden = true;
  byId("forget-key").hidden = true;
  byId("sign-in").hidden = false;
  byId("api-key").value = "";
  byId("api-key").focus();
}

onSubmit("sign-in-form", async () => {
  const key = byId("api-key").value.trim();
  if (!key) {
    renderMessage(byId("sign-in-result"), "Paste an API key first.", "error");
    return;
  }
  renderMessage(byId("sign-in-result"), "Checking the key…", "pending");
  await tryKey(key);
});

byId("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(STORAGE_KEY);
  setApiKey(null);
  selectWallet(null);
  renderMessage(byId("sign-in-result"), "The key is forgotten.", "info");
  showSignIn("Signed out: this tab no longer holds an API key.");
});

async function enterWorkspace(assetsAnswer) {
  const assets = assetsAnswer ?? (await request("GET", "/v1/assets"));
  byId("sign-in").hidden = true;
  byId("workspace").hidden = false;
  if (!assets.ok) {
    renderProblem(byId("wallet-result"), assets);
    return;
  }
  const select = byId("create-asset");
  select.replaceChildren(
    ...assets.data.data.map((asset) => new Option(`${asset.code} (${asset.name})`, asset.code)),
  );
  await Promise.all([showOwner(byId("owner-id").value.trim()), refreshHealth()]);
}

// --- wallets --------------------------------------------------------------------------------

function ownerId() {
  const value = byId("owner-id").value.trim();
  if (!value) {
    renderMessage(byId("wallet-result"), "Enter an owner id (1-128 characters).", "error");
    byId("owner-id").focus();
    return null;
  }
  return value;
}

let ownerRequests = 0;

async function showOwner(owner, preferredWalletId = null) {
  const requestNumber = ++ownerRequests;
  const found = await request("GET", `/v1/wallets?owner_id=${encodeURIComponent(owner)}`);
  if (requestNumber !== ownerRequests) return; // a later request has taken over
  if (!found.ok) {
    renderProblem(byId("wallet-result"), found);
    return;
  }
  state.wallets = found.data.data;
  const preferred = state.wallets.find((wallet) => wallet.id === (preferredWalletId ?? state.wallet?.id));
  selectWallet(preferred ?? state.wallets[0] ?? null);
  renderWalletList();
  if (state.wallets.length === 0) {
    renderMessage(byId("wallet-result"), `${owner} has no wallets yet: create one below.`, "info");
  }
}

function renderWalletList() {
  const buttons = state.wallets.map((wallet) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "wallet-choice";
    button.setAttribute("aria-pressed", String(wallet.id === state.wallet?.id));
    button.textContent = `${wallet.asset}: ${formatAmount(wallet.balance)}`;
    button.addEventListener("click", () => {
      selectWallet(wallet);
      renderWalletList();
    });
    return button;
  });
  byId("wallet-list").replaceChildren(...buttons);
}

function selectWallet(wallet) {
  const changed = wallet?.id !== state.wallet?.id;
  state.wallet = wallet;
  byId("wallet-card").hidden = wallet === null;
  byId("money-panel").hidden = wallet === null;
  byId("history-panel").hidden = wallet === null;
  if (wallet === null) return;
  renderWallet(wallet);
  if (changed) {
    money.reset();
    history.newest();
  }
}

function renderWallet(wallet) {
  byId("balance").textContent = formatAmount(wallet.balance);
  byId("balance-asset").textContent = wallet.asset;
  byId("wallet-owner").textContent = wallet.owner_id;
  byId("wallet-id").textContent = wallet.id;
}

// Runs a form's task with its submit button disabled, so a double click sends one request.
function onSubmit(formId, task) {
  byId(formId).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter;
    if (button?.disabled) return;
    if (button) button.disabled = true;
    try {
      await task();
    } finally {
      if (button) button.disabled = false;
    }
  });
}

onSubmit("owner-form", async () => {
  const owner = ownerId();
  if (owner === null) return;
  byId("wallet-result").replaceChildren();
  await showOwner(owner);
});

onSubmit("create-wallet-form", async () => {
  const owner = ownerId();
  if (owner === null) return;
  const asset = byId("create-asset").value;
  const created = await request("POST", "/v1/wallets", {
    bodyText: JSON.stringify({ owner_id: owner, asset }),
  });
  if (!created.ok) {
    renderProblem(byId("wallet-result"), created);
    return;
  }
  const sentence = created.status === 201
    ? `Created a ${asset} wallet for ${owner}.`
    : `${owner} already has a ${asset} wallet; it is shown.`;
  renderMessage(byId("wallet-result"), sentence);
  await showOwner(owner, created.data.id);
  await refreshHealth();
});

async function refreshWallet() {
  if (state.wallet === null) return;
  const answer = await request("GET", `/v1/wallets/${state.wallet.id}`);
  if (!answer.ok) {
    renderProblem(byId("wallet-result"), answer);
    return;
  }
  state.wallet = answer.data;
  state.wallets = state.wallets.map((wallet) => (wallet.id === answer.data.id ? answer.data : wallet));
  renderWallet(answer.data);
  renderWalletList();
}

async function afterMovement() {
  await Promise.all([refreshWallet(), history.newest(), refreshHealth()]);
}

// --- ledger health --------------------------------------------------------------------------

async function refreshHealth() {
  if (!hasApiKey()) return;
  const [verification, totals] = await Promise.all([
    request("GET", "/v1/ledger/verify"),
    request("GET", "/v1/ledger/balances"),
  ]);
  renderVerification(verification);
  renderTotals(totals);
}

function renderVerification(answer) {
  const target = byId("health-verify");
  if (!answer.ok) {
    renderProblem(target, answer);
    return;
  }
  const result = answer.data;
  const checked = `${counted(result.accounts_checked, "account")} and ` +
    `${counted(result.transactions_checked, "transaction")} checked.`;
  if (result.ok) {
    renderMessage(target, `Ledger OK: all four invariants hold. ${checked}`);
    return;
  }
  renderMessage(target, `Ledger NOT OK: ${result.problems.length} problem(s). ${checked}`, "error");
  for (const problem of result.problems) {
    target.append(paragraph(`Invariant ${problem.invariant}: ${problem.detail}`));
  }
}

// One column per asset; rows: user wallets, the three system accounts, and their sum (always 0).
function renderTotals(answer) {
  const table = byId("health-balances");
  if (!answer.ok) {
    table.tHead.replaceChildren();
    table.tBodies[0].replaceChildren();
    byId("health-verify").append(paragraph(`Balances: ${answer.problem.detail ?? answer.status}`));
    return;
  }
  const assets = answer.data.data;
  table.tHead.replaceChildren(tableRow("Account", assets.map((item) => item.asset), "col"));
  const sums = assets.map((item) =>
    [item.user_total, ...Object.values(item.system)].reduce((total, value) => total + BigInt(value), 0n),
  );
  const rows = [
    tableRow("wallets (count)", assets.map((item) => formatAmount(item.wallet_count))),
    tableRow("wallets (total)", assets.map((item) => formatAmount(item.user_total))),
    ...["treasury", "bonus", "revenue"].map((kind) =>
      tableRow(kind, assets.map((item) => formatAmount(item.system[kind]))),
    ),
    tableRow("Sum", sums.map((sum) => (sum === 0n ? "0 ✓" : `${formatAmount(sum)} ✗`))),
  ];
  rows.at(-1).className = "sum-row";
  sums.forEach((sum, index) => {
    rows.at(-1).cells[index + 1].className = sum === 0n ? "sum-ok" : "sum-bad";
  });
  table.tBodies[0].replaceChildren(...rows);
}

function counted(count, noun) {
  return `${formatAmount(count)} ${noun}${count === 1 ? "" : "s"}`;
}

function tableRow(heading, values, headingScope = "row") {
  const row = document.createElement("tr");
  const header = document.createElement("th");
  header.scope = headingScope;
  header.textContent = heading;
  row.append(header);
  for (const value of values) {
    const cell = document.createElement(headingScope === "col" ? "th" : "td");
    if (headingScope === "col") cell.scope = "col";
    cell.textContent = value;
    row.append(cell);
  }
  return row;
}

byId("health-check").addEventListener("click", refreshHealth);

start();
