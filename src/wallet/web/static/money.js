// The money panel: top up, bonus, spend and transfer, one tab each, each form with its own
// Idempotency-Key.
//
// The key rule, also stated on the page: a form keeps its key after a send, so "Send again with
// the same key" repeats the exact same request; changing any field, pressing "New key", or
// choosing another wallet makes a fresh key (the API would answer a different request with a used
// key by 422 idempotency_key_reused).
//
// A lost answer (the connection dropped, or the demo's "Lose the answer" switch) leaves the form
// locked to the request it sent, kept in sessionStorage so a reload keeps it too: sending it again
// with the same key is the one safe next step, and the service's replay shows whether it had
// already been applied.

import { formatAmount, parseAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, copyButton, element, paragraph, utcText } from "./dom.js";
import { ownerName, walletById } from "./directory.js";
import { exchangeDetails } from "./exchange.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";

const KINDS = [
  {
    kind: "topup", tab: "Top up", button: "Top up", done: "Topped up", noun: "top-up",
    explain: "Credits the wallet, debits the asset's treasury account.",
  },
  {
    kind: "bonus", tab: "Bonus", button: "Grant bonus", done: "Granted a bonus of", noun: "bonus",
    explain: "Credits the wallet, debits the asset's bonus account.",
  },
  {
    kind: "spend", tab: "Spend", button: "Spend", done: "Spent", noun: "spend",
    explain: "Debits the wallet, credits the asset's revenue account.",
  },
  {
    kind: "transfer", tab: "Transfer", button: "Transfer", done: "Transferred", noun: "transfer",
    explain: "Moves money from this wallet to another wallet of the same asset.",
  },
];
const PENDING_PREFIX = "wallet-demo-pending:"; // sessionStorage: a sent request whose answer was lost
const TEXT_FIELDS = ["recipient", "amount", "reference"];

export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost); build a v4 UUID by hand.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Builds the tabs and forms. `afterSend()` runs after every send, answered or not (the balance
// may have changed). Returns {walletChanged(wallet), walletRead(wallet), show(kind)}.
export function createMoneyPanel({ currentWallet, afterSend }) {
  const template = byId("money-form-template");
  const forms = KINDS.map((spec) => new MoneyForm(template, spec, currentWallet, afterSend));
  const tabs = new Tabs(byId("money-tabs"), forms);
  byId("money-forms").replaceChildren(...forms.map((form) => form.element));
  tabs.select(forms[0]);
  return {
    walletChanged: (wallet) => forms.forEach((form) => form.load(wallet)),
    walletRead: (wallet) => forms.forEach((form) => form.walletRead(wallet)),
    show: (kind) => tabs.select(forms.find((form) => form.spec.kind === kind)),
  };
}

// The ARIA tabs pattern: arrow keys, Home and End move between tabs; one form shows at a time.
class Tabs {
  constructor(list, forms) {
    this.forms = forms;
    this.buttons = forms.map((form) => {
      const tab = element("button", {
        type: "button",
        id: `tab-${form.spec.kind}`,
        className: "tab",
        attributes: { role: "tab", "aria-controls": form.element.id },
      }, form.spec.tab, element("span", { className: "tab-flag", hidden: true }, " · answer lost"));
      tab.addEventListener("click", () => this.select(form));
      form.element.setAttribute("aria-labelledby", tab.id);
      form.onPendingChange = (pending) => {
        tab.querySelector(".tab-flag").hidden = !pending;
      };
      return tab;
    });
    list.replaceChildren(...this.buttons);
    list.addEventListener("keydown", (event) => this.key(event));
  }

  select(chosen) {
    this.forms.forEach((form, index) => {
      const selected = form === chosen;
      form.element.hidden = !selected;
      this.buttons[index].setAttribute("aria-selected", String(selected));
      this.buttons[index].tabIndex = selected ? 0 : -1;
    });
  }

  key(event) {
    const index = this.buttons.indexOf(document.activeElement);
    if (index < 0) return;
    const last = this.buttons.length - 1;
    const moves = { ArrowRight: index === last ? 0 : index + 1, ArrowLeft: index === 0 ? last : index - 1, Home: 0, End: last };
    if (!(event.key in moves)) return;
    event.preventDefault();
    this.select(this.forms[moves[event.key]]);
    this.buttons[moves[event.key]].focus();
  }
}

class MoneyForm {
  constructor(template, spec, currentWallet, afterSend) {
    this.spec = spec;
    this.currentWallet = currentWallet;
    this.afterSend = afterSend;
    this.onPendingChange = () => {};
    this.busy = false;
    this.wallet = null;
    this.last = null; // the last request answered: {path, bodyText, key, fields}
    this.pending = null; // the request whose answer was lost, with `sentAt` and `reloaded`
    this.shown = null; // the transaction the result shows: its balance then, for "balance now"
    this.element = this.build(template);
  }

  build(template) {
    const form = template.content.firstElementChild.cloneNode(true);
    form.id = `form-${this.spec.kind}`;
    form.querySelector(".explain").textContent = this.spec.explain;
    if (this.spec.kind !== "transfer") form.querySelector(".recipient").remove();
    for (const input of form.querySelectorAll("input")) {
      input.id = `${form.id}-${input.name}`;
      const label = input.closest(".field, .lose")?.querySelector("label");
      if (label) label.htmlFor = input.id;
    }
    for (const name of ["result", "pending-note", "key-line"]) form.querySelector(`.${name}`).id = `${form.id}-${name}`;
    form.elements.amount.setAttribute("aria-describedby", `${form.id}-result`);
    form.querySelector(".key-line").append(" ", copyButton(() => this.key, `the ${this.spec.noun} Idempotency-Key`));
    form.querySelector(".send").textContent = this.spec.button;
    for (const button of form.querySelectorAll(".send, .resend")) button.setAttribute("aria-describedby", `${form.id}-key-line`);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(event.submitter ?? form.querySelector(".send"));
    });
    form.querySelector(".resend").addEventListener("click", (event) => this.resend(event.currentTarget));
    form.querySelector(".new-key").addEventListener("click", () => this.newKeyPressed());
    form.addEventListener("input", (event) => {
      if (TEXT_FIELDS.includes(event.target.name) && this.last !== null && this.pending === null) {
        this.renewKey("You changed the form, so a new key was made.");
      }
    });
    return form;
  }

  get result() {
    return this.element.querySelector(".result");
  }

  field(name) {
    return this.element.elements[name] ?? null;
  }

  // A new wallet: an empty form with a fresh key, or the request still pending for this wallet.
  load(wallet) {
    if (wallet?.id === this.wallet?.id) return;
    this.wallet = wallet;
    this.element.reset();
    this.result.replaceChildren();
    this.result.className = "result";
    this.shown = null;
    this.setKey(newIdempotencyKey(), null);
    this.setPending(wallet === null ? null : readPending(wallet.id, this.spec.kind));
  }

  setKey(key, last) {
    this.key = key;
    this.last = last;
    this.element.querySelector(".key").textContent = key;
    this.setBusy(this.busy);
  }

  renewKey(message) {
    this.setKey(newIdempotencyKey(), null);
    renderMessage(this.result, message, "info");
  }

  newKeyPressed() {
    clearMessages();
    const dropped = this.pending;
    this.setPending(null);
    this.renewKey(dropped === null
      ? "New key made."
      : `New key made. The lost request (key ${dropped.key}) was dropped: if it reached the service, ` +
        "it was applied; the history shows whether it was.");
  }

  // `pending` (or null): remembered in sessionStorage, shown in the note, the form locked to it.
  setPending(pending) {
    this.pending = pending;
    if (this.wallet !== null) {
      const storageKey = pendingStorageKey(this.wallet.id, this.spec.kind);
      if (pending === null) sessionStorage.removeItem(storageKey);
      else sessionStorage.setItem(storageKey, JSON.stringify(pending));
    }
    if (pending !== null) {
      this.key = pending.key;
      this.element.querySelector(".key").textContent = pending.key;
      for (const name of TEXT_FIELDS) if (this.field(name)) this.field(name).value = pending.fields[name] ?? "";
    }
    for (const name of TEXT_FIELDS) if (this.field(name)) this.field(name).readOnly = pending !== null;
    this.element.querySelector(".resend").classList.toggle("secondary", pending === null);
    this.element.querySelector(".send").classList.toggle("secondary", pending !== null);
    this.renderPendingNote();
    this.setBusy(this.busy);
    this.onPendingChange(pending !== null);
  }

  renderPendingNote() {
    const note = this.element.querySelector(".pending-note");
    note.hidden = this.pending === null;
    if (this.pending === null) return note.replaceChildren();
    const sentAt = new Date(this.pending.sentAt);
    note.replaceChildren(
      element("p", { className: "headline" }, `The answer was lost: this ${this.spec.noun} may or may not have happened.`),
      element("p", {}, "The request (Idempotency-Key ", element("code", {}, this.pending.key), ", sent at ", clock(sentAt),
        ") left the page, but no answer came back, so the page cannot know whether the service applied it."),
      element("p", {}, element("strong", {}, "Sending again with the same key is safe: "),
        "if the first send was applied, the service answers with its stored response (Idempotent-Replayed: true) " +
        "and moves no money; if it was not, it is applied now, once."),
      paragraph(this.pending.reloaded
        ? "The page was reloaded since; this tab kept the request and its key. The form stays locked to it " +
          "until you send it again, or drop it with New key."
        : "The form stays locked to this request until you send it again, or drop it with New key.", "muted"),
    );
  }

  async submit(button) {
    if (this.busy) return;
    clearMessages();
    if (this.pending !== null) return this.resend(this.element.querySelector(".resend"));
    const amountInput = this.field("amount");
    const parsed = parseAmount(amountInput.value);
    amountInput.setAttribute("aria-invalid", String(Boolean(parsed.error)));
    if (parsed.error) {
      renderMessage(this.result, parsed.error, "error");
      amountInput.focus();
      return;
    }
    await this.whileBusy(button, async () => {
      const built = await this.requestFor(parsed.amount);
      if (built.sent === undefined) return built.render();
      return this.send(built.sent);
    });
  }

  async resend(button) {
    if (this.busy) return;
    const sent = this.pending ?? this.last;
    if (sent === null) return;
    clearMessages();
    await this.whileBusy(button, () => this.send(sent));
  }

  // Disables the whole form while `task` runs, so a double click or a second Enter sends once;
  // then gives the focus back (to "Send again" after a lost answer: the next step).
  async whileBusy(button, task) {
    this.setBusy(true);
    let sent = false;
    try {
      sent = (await task()) === true;
    } finally {
      this.setBusy(false);
      const next = this.pending !== null ? this.element.querySelector(".resend") : button;
      if (next && !next.disabled) next.focus();
    }
    if (sent) await this.afterSend();
  }

  // The request for the form's fields: {sent: {path, bodyText, key, fields}}, or {render} that
  // explains why there is none (a transfer's recipient was not found).
  async requestFor(amount) {
    const wallet = this.currentWallet();
    const body = { amount };
    const fields = Object.fromEntries(TEXT_FIELDS.map((name) => [name, this.field(name)?.value ?? ""]));
    const reference = fields.reference.trim();
    let path = `/v1/wallets/${wallet.id}/${this.spec.kind}`;
    let payload = body;
    if (this.spec.kind === "transfer") {
      const recipient = await this.resolveRecipient(fields.recipient, wallet);
      if (recipient.walletId === undefined) return recipient;
      path = "/v1/transfers";
      payload = { from_wallet_id: wallet.id, to_wallet_id: recipient.walletId, amount };
    }
    if (reference) payload.reference = reference;
    return { sent: { path, bodyText: JSON.stringify(payload), key: this.key, fields } };
  }

  // Sends one request; true once it left the page (answered or not: the balance may have moved).
  async send(sent) {
    renderMessage(this.result, `Sending with Idempotency-Key ${sent.key}…`, "pending");
    const lose = this.field("lose");
    const loseResponse = lose.checked;
    lose.checked = false; // the switch loses one answer, so the retry gets through
    const outcome = await request("POST", sent.path, { bodyText: sent.bodyText, idempotencyKey: sent.key, loseResponse });
    if (outcome.lost) {
      this.last = null;
      this.setPending({ ...sent, sentAt: new Date().toISOString(), reloaded: false });
      this.result.replaceChildren(exchangeDetails(outcome.exchange));
      this.result.className = "result plain";
      return true;
    }
    this.setPending(null);
    this.setKey(sent.key, sent);
    if (outcome.ok) await this.showTransaction(outcome);
    else this.showDecline(outcome);
    this.result.append(exchangeDetails(outcome.exchange));
    return true;
  }

  async showTransaction(outcome) {
    const transaction = outcome.data;
    this.shown = transaction;
    const credited = transaction.entries.find((entry) => entry.direction === "credit");
    const recipient = this.spec.kind === "transfer" && credited ? ` to ${await ownerName(credited.account)}` : "";
    renderMessage(this.result, `${this.spec.done} ${formatAmount(transaction.amount)} ${transaction.asset}${recipient}.`);
    if (outcome.replayed) this.result.prepend(paragraph(replayNote(true), "replayed"));
    this.result.append(
      element("p", { className: "balance-then" },
        `Balance right after this ${this.spec.noun} (then, ${utcText(transaction.created_at)}): `,
        element("strong", {}, formatAmount(transaction.balance_after))),
      element("p", { className: "balance-now", hidden: true }),
      element("p", { className: "muted" }, `HTTP ${outcome.status} · transaction `, element("code", {}, transaction.id)),
    );
  }

  showDecline(outcome) {
    this.shown = null;
    renderProblem(this.result, outcome);
    if (outcome.replayed) this.result.prepend(paragraph(replayNote(false), "replayed"));
  }

  // The card read the wallet again: when its balance differs from the one shown as "then", say
  // what it is now (a late replay, or money that moved since).
  walletRead(wallet) {
    const line = this.result.querySelector(".balance-now");
    if (line === null || this.shown === null || wallet.id !== this.shown.wallet_id) return;
    const differs = BigInt(wallet.balance) !== BigInt(this.shown.balance_after);
    line.hidden = !differs;
    line.replaceChildren(`Balance now: ${formatAmount(wallet.balance)} (as of `, clock(new Date()), ").");
  }

  // A transfer's recipient typed as a wallet id, or as an owner whose wallet in the same asset is
  // used: {walletId}, or {render} explaining what is missing (with a way to create it here, so
  // the sender stays selected).
  async resolveRecipient(text, wallet) {
    const value = text.trim();
    const say = (sentence) => ({ render: () => renderMessage(this.result, sentence, "error") });
    if (!value) return say("Enter the recipient: an owner id or a wallet id.");
    if (UUID_PATTERN.test(value) && (await walletById(value.toLowerCase())) !== null) {
      return { walletId: value.toLowerCase() };
    }
    const found = await request("GET", `/v1/wallets?owner_id=${encodeURIComponent(value)}`);
    if (!found.ok) return { render: () => renderProblem(this.result, found) };
    const match = found.data.data.find((item) => item.asset === wallet.asset);
    if (match !== undefined) return { walletId: match.id };
    if (UUID_PATTERN.test(value)) return { walletId: value.toLowerCase() }; // the API will say 404
    return { render: () => this.offerRecipientWallet(value, wallet.asset) };
  }

  offerRecipientWallet(owner, asset) {
    renderMessage(this.result, `${owner} has no ${asset} wallet yet.`, "error");
    const create = element("button", { type: "button", className: "secondary" }, `Create a ${asset} wallet for ${owner}`);
    create.addEventListener("click", async () => {
      clearMessages();
      create.disabled = true;
      const created = await request("POST", "/v1/wallets", { bodyText: JSON.stringify({ owner_id: owner, asset }) });
      if (!created.ok) return renderProblem(this.result, created);
      renderMessage(this.result, `Created a ${asset} wallet for ${owner}. Press ${this.spec.button} to send.`);
      this.result.append(exchangeDetails(created.exchange));
      this.element.querySelector(".send").focus();
    });
    this.result.append(paragraph("The transfer was not sent. Create the wallet here, then send:", ""), create);
  }

  setBusy(busy) {
    this.busy = busy;
    this.element.setAttribute("aria-busy", String(busy));
    // "Send again" once there is a request to repeat; while an answer is lost, only that (or New key).
    for (const control of this.element.elements) {
      let usable = true;
      if (control.classList.contains("resend")) usable = this.last !== null || this.pending !== null;
      if (control.classList.contains("send")) usable = this.pending === null;
      control.disabled = busy || !usable;
    }
  }
}

function replayNote(succeeded) {
  const what = succeeded ? "No money moved this time." : "Nothing changed.";
  return `Replayed: the service sent back its stored answer to the first send (Idempotent-Replayed: true). ${what}`;
}

function pendingStorageKey(walletId, kind) {
  return `${PENDING_PREFIX}${walletId}:${kind}`;
}

// The request of this wallet and form whose answer was lost before the page was (re)loaded.
function readPending(walletId, kind) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(pendingStorageKey(walletId, kind)) ?? "null");
    if (stored === null || typeof stored.key !== "string" || typeof stored.bodyText !== "string") return null;
    if (typeof stored.path !== "string" || !stored.path.startsWith("/v1/")) return null;
    return { ...stored, fields: stored.fields ?? {}, reloaded: true };
  } catch {
    return null;
  }
}
