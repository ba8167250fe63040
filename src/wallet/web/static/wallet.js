// The wallet panel: find wallets by owner or by wallet id, pick one, create one, and the card
// with the picked wallet's balance (and, where the API sends them, held, available and the next
// expiry), read again after every action and periodically, with the time it was read.

import { formatAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, copyableId, element, utcText } from "./dom.js";
import { rememberWallets } from "./directory.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";
import { durationText } from "./time.js";

export const DEFAULT_OWNER = "demo-alice";

// `go(place, {push})` is the page's navigation (app.js): the panel asks it to show a place.
export function createWalletPanel({ go }) {
  const state = { owner: null, wallets: [], wallet: null, asOf: null };
  const result = byId("wallet-result");
  let requests = 0; // show() calls: an answer to an older one is dropped
  let refreshes = 0; // refresh() calls: likewise


  // Shows `place` ({owner, wallet}): the wallet by id, else the owner's wallets (an owner that
  // looks like a wallet id is tried as one first). Resolves to the wallet shown, or null.
  async function show(place, { background = false } = {}) {
    const requestNumber = ++requests;
    const byWalletId = place.wallet ?? (UUID_PATTERN.test(place.owner ?? "") ? place.owner : null);
    let owner = place.owner ?? DEFAULT_OWNER;
    let preferred = place.wallet ?? state.wallet?.id ?? null;
    if (byWalletId !== null) {
      const found = await request("GET", `/v1/wallets/${byWalletId.toLowerCase()}`, { background });
      if (requestNumber !== requests) return state.wallet;
      if (found.ok) {
        owner = found.data.owner_id;
        preferred = found.data.id;
      } else if (place.wallet || found.status !== 404) {
        renderProblem(result, found);
        select(null);
        return null;
      }
    }
    const listed = await request("GET", `/v1/wallets?owner_id=${encodeURIComponent(owner)}`, { background });
    if (requestNumber !== requests) return state.wallet;
    if (!listed.ok) {
      renderProblem(result, listed);
      return state.wallet;
    }
    setOwner(owner, listed.data.data);
    select(state.wallets.find((wallet) => wallet.id === preferred) ?? state.wallets[0] ?? null);
    if (state.wallets.length === 0) explainNoWallets(owner);
    return state.wallet;
  }

  function explainNoWallets(owner) {
    const sentence = UUID_PATTERN.test(owner)
      ? `No wallet has the id ${owner}, and no owner of that name has wallets. ` +
        "To make a wallet for an owner named so, use Create wallet below."
      : `${owner} has no wallets yet: create one below.`;
    renderMessage(result, sentence, "info");
  }

  function setOwner(owner, wallets) {
    state.owner = owner;
    state.wallets = wallets;
    state.asOf = new Date();
    rememberWallets(wallets);
    byId("lookup").value = owner;
    byId("create-owner").textContent = owner;
    byId("wallets-heading").textContent = `Wallets of ${owner}`;
    byId("wallets-heading").hidden = false;
    byId("create-wallet-form").hidden = false;
    renderList();
  }

  function select(wallet) {
    if (wallet?.id !== state.wallet?.id) byId("wallet-event-read").hidden = true;
    state.wallet = wallet;
    byId("wallet-card").hidden = wallet === null;
    if (wallet !== null) renderCard();
    renderList();
  }

  function renderList() {
    const buttons = state.wallets.map((wallet) => {
      const button = element("button", {
        type: "button",
        className: "wallet-choice",
        textContent: `${wallet.asset}: ${formatAmount(wallet.balance)}`,
        attributes: { "aria-pressed": String(wallet.id === state.wallet?.id) },
      });
      button.addEventListener("click", () => {
        clearMessages();
        go({ owner: state.owner, wallet: wallet.id }, { push: true });
      });
      return button;
    });
    byId("wallet-list").replaceChildren(...buttons);
  }

  function renderCard() {
    const wallet = state.wallet;
    byId("balance").textContent = formatAmount(wallet.balance);
    byId("balance-asset").textContent = wallet.asset;
    byId("balance-as-of").replaceChildren("as of ", clock(state.asOf));
    byId("wallet-owner").textContent = wallet.owner_id;
    byId("wallet-id").replaceChildren(copyableId(wallet.id, "the wallet id"));
    byId("wallet-facts-extra").replaceChildren(...extraFacts(wallet));
  }

  // Reads the wallet and its owner's list again (cheap reads by id and by owner); `event`: the
  // event of the feed about this wallet that asked for it, said on the card.
  async function refresh({ event = null } = {}) {
    const wallet = state.wallet;
    if (wallet === null) return;
    const requestNumber = requests;
    const refreshNumber = ++refreshes;
    const [answer, listed] = await Promise.all([
      request("GET", `/v1/wallets/${wallet.id}`, { background: true }),
      request("GET", `/v1/wallets?owner_id=${encodeURIComponent(wallet.owner_id)}`, { background: true }),
    ]);
    if (requestNumber !== requests || refreshNumber !== refreshes || state.wallet?.id !== wallet.id) return;
    if (!answer.ok) return;
    state.asOf = new Date();
    state.wallet = answer.data;
    if (listed.ok) {
      state.wallets = listed.data.data.map((item) => (item.id === answer.data.id ? answer.data : item));
    }
    renderCard();
    renderList();
    if (event !== null) {
      byId("wallet-event-read").hidden = false;
      byId("wallet-event-read").replaceChildren("Read again at ", clock(state.asOf),
        ` when the event feed brought ${event.type} for this wallet.`);
    }
  }

  byId("lookup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const text = byId("lookup").value.trim();
    if (!text) {
      renderMessage(result, "Enter an owner id or a wallet id.", "error");
      byId("lookup").focus();
      return;
    }
    await withButton(event.submitter, () => go({ owner: text, wallet: null }, { push: true }));
  });

  byId("create-wallet-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    await withButton(event.submitter, createWallet);
  });

  async function createWallet() {
    const owner = state.owner;
    const asset = byId("create-asset").value;
    const created = await request("POST", "/v1/wallets", { bodyText: JSON.stringify({ owner_id: owner, asset }) });
    if (!created.ok) {
      renderProblem(result, created);
      return;
    }
    await go({ owner, wallet: created.data.id }, { push: true });
    const sentence = created.status === 201
      ? `Created a ${asset} wallet for ${owner}.`
      : `${owner} already has a ${asset} wallet; it is shown.`;
    renderMessage(result, sentence);
  }

  function setAssets(assets) {
    byId("create-asset").replaceChildren(
      ...assets.map((asset) => new Option(`${asset.code} (${asset.name})`, asset.code)),
    );
  }

  return {
    show,
    refresh,
    setAssets,
    current: () => state.wallet,
    owner: () => state.owner,
  };
}

// Facts of the v1.1 Wallet object, shown when the service sends them: `available` (balance less
// what pending holds reserve) is what a spend, a transfer or a new hold can use.
function extraFacts(wallet) {
  const facts = [];
  if (wallet.held !== undefined) facts.push(["held", "Held", formatAmount(wallet.held)]);
  if (wallet.available !== undefined) facts.push(["available", "Available", formatAmount(wallet.available)]);
  if (wallet.next_expiry !== undefined) {
    const expiry = wallet.next_expiry;
    const left = expiry === null ? 0 : Date.parse(expiry.expires_at) - Date.now();
    facts.push([
      "next-expiry",
      "Next expiry",
      expiry === null
        ? "none"
        : `${formatAmount(expiry.amount)} ${wallet.asset} on ${utcText(expiry.expires_at)}` +
          (left > 0 ? ` (in ${durationText(left)})` : ""),
    ]);
  }
  return facts.flatMap(([name, term, value]) => [element("dt", {}, term), element("dd", { id: `wallet-${name}` }, value)]);
}

// Runs `task` with the submit button disabled, so a double click sends one request.
async function withButton(button, task) {
  if (button?.disabled) return;
  if (button) button.disabled = true;
  try {
    await task();
  } finally {
    if (button) button.disabled = false;
  }
}
