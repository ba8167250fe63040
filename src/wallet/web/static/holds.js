// The holds panel: place a hold on the chosen wallet, list its holds (newest first, by status),
// capture part or all of a pending one, or void it. A pending hold counts down to its expiry
// and reads "expired" from then on, as the API does, without waiting for a reload. Placing,
// capturing and voiding are keyed forms (keyed.js): the key shown, a lost answer retried safely.

import { formatAmount, parseAmount, request } from "./api.js";
import { byId, clock, copyableId, counted, element, paragraph, utcText } from "./dom.js";
import { KeyedForm, replayNote, showDecline } from "./keyed.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";
import { durationText } from "./time.js";

const HOLDS_PAGE_SIZE = 10; // holds a page shows; "Show older" adds as many
const HOLDS_SHOWN_MAX = 200; // the API's page size limit
const TICK_MS = 250;
const EXPIRES_IN_SECONDS_MAX = 2_592_000;
const EXPIRES_IN_RULE = "Enter the seconds until the hold expires, a whole number from 1 to 2,592,000 " +
  "(30 days), or leave it empty for the service's default of 900 (15 minutes).";
const STATUS_WORDS = { pending: "Pending", captured: "Captured", voided: "Voided", expired: "Expired" };

// `afterChange()` reads the wallet (and every panel of it) again: after a send, and when a
// pending hold's countdown reaches its expiry (it no longer counts in `held`).
export function createHoldsPanel({ currentWallet, afterChange }) {
  const list = byId("holds-list");
  const status = byId("hold-status");
  const more = byId("holds-more");
  const result = byId("holds-result");
  const state = { limit: HOLDS_PAGE_SIZE, nextCursor: null };
  let walletId = null; // the wallet the panel shows
  let requests = 0;

  const place = new KeyedForm({
    id: "form-hold",
    noun: "hold",
    button: "Place hold",
    explain: "Reserves part of the wallet's available funds: no money moves, available goes down until " +
      "the hold is captured (spent), voided or expires.",
    fields: [
      { name: "amount", label: "Amount", inputmode: "numeric" },
      {
        name: "expires_in", label: "Expires in seconds (optional)", inputmode: "numeric",
        hint: "1 to 2,592,000 (30 days); empty: the service's default, 900 (15 minutes).",
      },
      { name: "reference", label: "Reference (optional)", maxlength: 128 },
    ],
    build: (values) => placeRequest(values, currentWallet()),
    answered: (outcome, form) => (outcome.ok ? showPlaced(outcome, form) : showDecline(outcome, form)),
    afterSend: afterChange,
  });
  byId("hold-place").replaceChildren(place.element);
  const actions = createHoldActions({ afterChange, tick });

  async function show({ background = false } = {}) {
    const wallet = currentWallet();
    if (wallet === null) return;
    const requestNumber = ++requests;
    const query = new URLSearchParams({ limit: String(state.limit) });
    if (status.value) query.set("status", status.value);
    const page = await request("GET", `/v1/wallets/${wallet.id}/holds?${query}`, { background });
    if (requestNumber !== requests) return; // a later request has taken over
    if (!page.ok) {
      if (!background) renderProblem(result, page);
      return;
    }
    state.nextCursor = page.data.next_cursor;
    const holds = page.data.data;
    list.replaceChildren(...holds.map((hold) => holdItem(hold, actions)));
    if (holds.length === 0) {
      list.append(element("li", { className: "empty" }, status.value ? `No ${status.value} holds.` : "No holds yet."));
    }
    more.hidden = state.nextCursor === null || state.limit >= HOLDS_SHOWN_MAX;
    byId("holds-as-of").replaceChildren(`${counted(holds.length, "hold")} shown; as of `, clock(new Date()));
    tick();
  }

  // Every countdown of the panel, again; a pending hold whose expiry has come reads "expired",
  // and the wallet is read again (it no longer counts in `held`).
  let expiredSeen = new Set();
  function tick() {
    const now = Date.now();
    let newlyExpired = false;
    for (const countdown of byId("holds-panel").querySelectorAll(".countdown")) {
      const left = Date.parse(countdown.dataset.expiresAt) - now;
      const text = left > 0 ? `expires in ${durationText(left)}` : "expired";
      if (countdown.textContent !== text) countdown.textContent = text;
      const item = countdown.closest(".hold");
      if (left > 0 || item === null || item.dataset.status !== "pending") continue;
      item.dataset.status = "expired";
      item.querySelector(".status").textContent = STATUS_WORDS.expired; // the status says it now
      item.querySelector(".hold-actions")?.remove();
      countdown.remove();
      if (!expiredSeen.has(item.dataset.holdId)) newlyExpired = true;
      expiredSeen.add(item.dataset.holdId);
    }
    if (newlyExpired) afterChange();
  }
  setInterval(tick, TICK_MS);

  status.addEventListener("change", () => {
    clearMessages();
    state.limit = HOLDS_PAGE_SIZE;
    show();
  });
  more.addEventListener("click", () => {
    state.limit = Math.min(HOLDS_SHOWN_MAX, state.limit + HOLDS_PAGE_SIZE);
    show();
  });

  return {
    walletChanged(wallet) {
      if (wallet?.id !== walletId) {
        walletId = wallet?.id ?? null;
        place.load(wallet === null ? null : `${wallet.id}:hold`);
        actions.walletChanged(wallet);
        state.limit = HOLDS_PAGE_SIZE;
        expiredSeen = new Set();
        list.replaceChildren();
      }
      if (wallet !== null) show();
    },
    refresh: () => show({ background: true }),
  };
}

function placeRequest(values, wallet) {
  const parsed = parseAmount(values.amount);
  if (parsed.error) return { invalid: "amount", message: parsed.error };
  const payload = { amount: parsed.amount };
  const expiresIn = values.expires_in.trim().replaceAll(",", "");
  if (expiresIn) {
    const seconds = Number(expiresIn);
    if (!/^\d{1,7}$/.test(expiresIn) || seconds < 1 || seconds > EXPIRES_IN_SECONDS_MAX) {
      return { invalid: "expires_in", message: EXPIRES_IN_RULE };
    }
    payload.expires_in_seconds = seconds;
  }
  const reference = values.reference.trim();
  if (reference) payload.reference = reference;
  return { sent: { path: `/v1/wallets/${wallet.id}/holds`, bodyText: JSON.stringify(payload) } };
}

function showPlaced(outcome, form) {
  const hold = outcome.data;
  renderMessage(form.result, `Placed a hold of ${formatAmount(hold.amount)} ${hold.asset}.`);
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(true, "No second hold was placed."), "replayed"));
  form.result.append(
    element("p", {}, `It expires at ${utcText(hold.expires_at)} (`, countdown(hold.expires_at), ")."),
    element("p", { className: "muted" }, `HTTP ${outcome.status} · hold `, element("code", {}, hold.id)),
  );
}

function countdown(expiresAt) {
  return element("span", { className: "countdown", dataset: { expiresAt } }, "");
}

// What the page shows of a hold now: a pending hold past its expiry is expired, as in the API.
function statusNow(hold) {
  return hold.status === "pending" && Date.parse(hold.expires_at) <= Date.now() ? "expired" : hold.status;
}

function holdItem(hold, actions) {
  const status = statusNow(hold);
  const item = element("li", { className: "hold", dataset: { holdId: hold.id, status } });
  const amount = `${formatAmount(hold.amount)} ${hold.asset}`;
  const head = element("p", { className: "hold-head" },
    element("span", { className: "status" }, STATUS_WORDS[status] ?? status),
    element("span", { className: "amount" }, amount));
  if (hold.status === "pending") head.append(countdown(hold.expires_at));
  if (hold.status === "captured") {
    const released = BigInt(hold.amount) - BigInt(hold.captured_amount);
    head.append(element("span", {}, `captured ${formatAmount(hold.captured_amount)}, released ${formatAmount(released)}`));
  }
  const facts = paragraph("", "muted small");
  facts.append(`placed ${utcText(hold.created_at)} · id `, copyableId(hold.id, "the hold id"));
  if (hold.status !== "pending") facts.append(` · expiry was ${utcText(hold.expires_at)}`);
  if (hold.reference) facts.append(` · reference ${hold.reference}`);
  if (hold.transaction_id) facts.append(" · capture ", element("code", {}, hold.transaction_id));
  item.append(head, facts);
  if (status === "pending") {
    const capture = element("button", { type: "button", className: "secondary" }, "Capture…");
    const voiding = element("button", { type: "button", className: "secondary" }, "Void…");
    capture.setAttribute("aria-label", `Capture hold of ${amount}`);
    voiding.setAttribute("aria-label", `Void hold of ${amount}`);
    capture.addEventListener("click", () => actions.open("capture", hold));
    voiding.addEventListener("click", () => actions.open("void", hold));
    item.append(element("div", { className: "buttons hold-actions" }, capture, voiding));
  }
  return item;
}

// The capture and void forms, one shown at a time under the list, pointed at one hold. The hold
// they act on is kept with a lost request, so after a reload the form comes back locked to it.
function createHoldActions({ afterChange, tick }) {
  const box = byId("hold-action");
  const title = byId("hold-action-title");
  const capture = new KeyedForm({
    id: "form-capture",
    noun: "capture",
    button: "Capture",
    explain: "Spends part or all of what the hold reserved (a spend transaction); the rest is released.",
    fields: [
      { name: "amount", label: "Amount to capture", inputmode: "numeric" },
      { name: "reference", label: "Reference (optional)", maxlength: 128 },
    ],
    build: (values, target) => {
      const parsed = parseAmount(values.amount);
      if (parsed.error) return { invalid: "amount", message: parsed.error };
      const payload = { amount: parsed.amount };
      if (values.reference.trim()) payload.reference = values.reference.trim();
      return { sent: { path: `/v1/holds/${target.id}/capture`, bodyText: JSON.stringify(payload) } };
    },
    answered: (outcome, form) => (outcome.ok ? showCaptured(outcome, form) : showDecline(outcome, form)),
    afterSend: afterChange,
    restored: (target) => target && show("capture", target),
  });
  const voiding = new KeyedForm({
    id: "form-void",
    noun: "void",
    button: "Void hold",
    explain: "Ends the hold without spending: what it reserved is available again.",
    fields: [],
    build: (values, target) => ({ sent: { path: `/v1/holds/${target.id}/void`, bodyText: "{}" } }),
    answered: (outcome, form) => (outcome.ok ? showVoided(outcome, form) : showDecline(outcome, form)),
    afterSend: afterChange,
    restored: (target) => target && show("void", target),
  });
  const forms = { capture, void: voiding };
  byId("hold-action-forms").replaceChildren(capture.element, voiding.element);
  byId("hold-action-close").addEventListener("click", () => {
    clearMessages();
    box.hidden = true;
  });

  function show(kind, target) {
    for (const [name, form] of Object.entries(forms)) form.element.hidden = name !== kind;
    const form = forms[kind];
    title.textContent = `${kind === "capture" ? "Capture" : "Void"} hold ${target.id}`;
    form.context.replaceChildren(paragraph("", "hold-target"));
    form.context.firstChild.append(
      `A hold of ${formatAmount(target.amount)} ${target.asset}; `, countdown(target.expires_at), ".");
    box.hidden = false;
    tick();
  }

  return {
    walletChanged(chosen) {
      box.hidden = true;
      for (const [kind, form] of Object.entries(forms)) form.load(chosen === null ? null : `${chosen.id}:${kind}`);
    },
    // Points the `kind` form at `hold`, unless a lost request holds it (then that is shown).
    open(kind, hold) {
      clearMessages();
      const form = forms[kind];
      const target = { id: hold.id, amount: String(hold.amount), asset: hold.asset, expires_at: hold.expires_at };
      if (!form.open(target, kind === "capture" ? { amount: formatAmount(hold.amount) } : {})) {
        show(kind, form.target);
        renderMessage(byId("holds-result"), `The answer to a ${form.spec.noun} was lost: send it again with the same ` +
          "key (or drop it with New key) before starting another.", "error");
        form.element.querySelector(".resend").focus();
        return;
      }
      show(kind, target);
      (form.field("amount") ?? form.element.querySelector(".send")).focus();
    },
  };
}

function showCaptured(outcome, form) {
  const transaction = outcome.data;
  form.context.replaceChildren(paragraph("This hold is captured now."));
  const held = BigInt(form.last.target.amount);
  const released = held - BigInt(transaction.amount);
  renderMessage(form.result, `Captured ${formatAmount(transaction.amount)} ${transaction.asset} of the hold` +
    (released > 0n ? ` (the other ${formatAmount(released)} released).` : "."));
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(true), "replayed"));
  form.result.append(
    element("p", { className: "balance-then" }, `Balance right after the capture (then, ${utcText(transaction.created_at)}): `,
      element("strong", {}, formatAmount(transaction.balance_after))),
    element("p", { className: "muted" }, `HTTP ${outcome.status} · spend transaction `, element("code", {}, transaction.id)),
  );
}

function showVoided(outcome, form) {
  const hold = outcome.data;
  form.context.replaceChildren(paragraph("This hold is voided now."));
  renderMessage(form.result, `Voided the hold: ${formatAmount(hold.amount)} ${hold.asset} available again.`);
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(true, "Nothing changed this time."), "replayed"));
  form.result.append(element("p", { className: "muted" }, `HTTP ${outcome.status} · hold `, element("code", {}, hold.id)));
}
