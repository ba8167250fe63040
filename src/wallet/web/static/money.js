// The four money forms (top up, bonus, spend, transfer), each with its own Idempotency-Key.
//
// The key rule, also stated on the page: a form keeps its key after a send, so "Send again with
// the same key" repeats the exact same request; changing any field of the form, pressing
// "New key", or choosing another wallet makes a fresh key (the API would answer a different
// request with a used key by 422 idempotency_key_reused).

import {
  formatAmount,
  paragraph,
  parseAmount,
  renderMessage,
  renderProblem,
  request,
  UUID_PATTERN,
} from "./api.js";

const KINDS = [
  {
    kind: "topup", title: "Top up", button: "Top up", done: "Topped up",
    explain: "Credits the wallet, debits the asset's treasury account.",
  },
  {
    kind: "bonus", title: "Grant a bonus", button: "Grant bonus", done: "Granted a bonus of",
    explain: "Credits the wallet, debits the asset's bonus account.",
  },
  {
    kind: "spend", title: "Spend", button: "Spend", done: "Spent",
    explain: "Debits the wallet, credits the asset's revenue account.",
  },
  {
    kind: "transfer", title: "Transfer", button: "Transfer", done: "Transferred",
    explain: "Moves money from this wallet to another wallet of the same asset.",
  },
];

export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost); build a v4 UUID by hand.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Builds the forms into `container`. `currentWallet()` returns the selected wallet; `onSent()`
// runs after every answer of the service. Returns {reset} to call when the wallet changes.
export function createMoneyForms(container, { currentWallet, onSent }) {
  const template = document.getElementById("money-form-template");
  const forms = KINDS.map((spec) => new MoneyForm(template, spec, currentWallet, onSent));
  container.replaceChildren(...forms.map((form) => form.element));
  return { reset: () => forms.forEach((form) => form.reset()) };
}

class MoneyForm {
  constructor(template, spec, currentWallet, onSent) {
    this.spec = spec;
    this.currentWallet = currentWallet;
    this.onSent = onSent;
    this.busy = false;
    this.last = null; // the last request sent: {path, bodyText, key}
    this.element = this.build(template);
    this.reset();
  }

  build(template) {
    const form = template.content.firstElementChild.cloneNode(true);
    form.id = `form-${this.spec.kind}`;
    const title = form.querySelector("h3");
    title.id = `${form.id}-title`;
    title.textContent = this.spec.title;
    form.setAttribute("aria-labelledby", title.id);
    form.querySelector(".explain").textContent = this.spec.explain;
    if (this.spec.kind !== "transfer") form.querySelector(".recipient").remove();
    for (const input of form.querySelectorAll("input")) {
      input.id = `${form.id}-${input.name}`;
      input.closest(".field").querySelector("label").htmlFor = input.id;
    }
    const result = form.querySelector(".result");
    result.id = `${form.id}-result`;
    form.elements.amount.setAttribute("aria-describedby", result.id);
    const keyLine = form.querySelector(".key-line");
    keyLine.id = `${form.id}-key`;
    form.querySelector(".send").textContent = this.spec.button;
    form.querySelector(".send").setAttribute("aria-describedby", keyLine.id);
    form.querySelector(".resend").setAttribute("aria-describedby", keyLine.id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(event.submitter ?? form.querySelector(".send"));
    });
    form.querySelector(".resend").addEventListener("click", (event) => this.resend(event.currentTarget));
    form.querySelector(".new-key").addEventListener("click", () => this.renewKey("New key made."));
    form.addEventListener("input", () => {
      if (this.last !== null) this.renewKey("You changed the form, so a new key was made.");
    });
    return form;
  }

  get result() {
    return this.element.querySelector(".result");
  }

  reset() {
    this.element.reset();
    this.result.replaceChildren();
    this.result.className = "result";
    this.setKey(newIdempotencyKey(), null);
  }

  setKey(key, last) {
    this.key = key;
    this.last = last;
    this.element.querySelector(".key").textContent = key;
    this.element.querySelector(".resend").disabled = last === null;
  }

  renewKey(message) {
    this.setKey(newIdempotencyKey(), null);
    renderMessage(this.result, message, "info");
  }

  async submit(button) {
    if (this.busy) return;
    const amountInput = this.element.elements.amount;
    const parsed = parseAmount(amountInput.value);
    amountInput.setAttribute("aria-invalid", String(Boolean(parsed.error)));
    if (parsed.error) {
      renderMessage(this.result, parsed.error, "error");
      amountInput.focus();
      return;
    }
    await this.whileBusy(button, async () => {
      const built = await this.pathAndBody(parsed.amount);
      if (built.error) return renderMessage(this.result, built.error, "error");
      if (built.failed) return renderProblem(this.result, built.failed);
      return this.send({ path: built.path, bodyText: JSON.stringify(built.body), key: this.key });
    });
  }

  async resend(button) {
    if (this.busy || this.last === null) return;
    const last = this.last;
    await this.whileBusy(button, () => this.send(last));
  }

  // Disables the whole form while `task` runs, so a double click or a second Enter sends once;
  // then gives the focus back to the button used, and tells the page the service answered.
  async whileBusy(button, task) {
    this.setBusy(true);
    let answered = false;
    try {
      answered = await task();
    } finally {
      this.setBusy(false);
      if (button && !button.disabled) button.focus();
    }
    if (answered === true) await this.onSent();
  }

  // The request for the form's current fields: {path, body}, or {error} / {failed} when the
  // recipient of a transfer cannot be found.
  async pathAndBody(amount) {
    const wallet = this.currentWallet();
    const body = { amount };
    const reference = this.element.elements.reference.value.trim();
    if (this.spec.kind !== "transfer") {
      if (reference) body.reference = reference;
      return { path: `/v1/wallets/${wallet.id}/${this.spec.kind}`, body };
    }
    const recipient = await resolveRecipient(this.element.elements.recipient.value, wallet);
    if (recipient.walletId === undefined) return recipient;
    const transfer = { from_wallet_id: wallet.id, to_wallet_id: recipient.walletId, amount };
    if (reference) transfer.reference = reference;
    return { path: "/v1/transfers", body: transfer };
  }

  // Sends one request; true when the service answered (the balance may have changed).
  async send(sent) {
    renderMessage(this.result, `Sending with Idempotency-Key ${sent.key}…`, "pending");
    const outcome = await request("POST", sent.path, { bodyText: sent.bodyText, idempotencyKey: sent.key });
    this.setKey(sent.key, sent);
    if (outcome.ok) {
      this.showTransaction(outcome);
    } else {
      renderProblem(this.result, outcome);
      if (outcome.replayed) this.result.prepend(paragraph(replayNote(false), "replayed"));
    }
    return !outcome.networkError;
  }

  showTransaction(outcome) {
    const transaction = outcome.data;
    renderMessage(
      this.result,
      `${this.spec.done} ${formatAmount(transaction.amount)} ${transaction.asset}. ` +
        `Balance after: ${formatAmount(transaction.balance_after)}.`,
    );
    this.result.append(paragraph(`HTTP ${outcome.status} · transaction ${transaction.id}`, "muted"));
    if (outcome.replayed) this.result.prepend(paragraph(replayNote(true), "replayed"));
  }

  setBusy(busy) {
    this.busy = busy;
    this.element.setAttribute("aria-busy", String(busy));
    for (const control of this.element.elements) {
      control.disabled = busy || (control.classList.contains("resend") && this.last === null);
    }
  }
}

function replayNote(succeeded) {
  const what = succeeded ? "No money moved this time." : "Nothing changed.";
  return `Replayed: the service sent back its stored answer to the first send (Idempotent-Replayed: true). ${what}`;
}

// A transfer's recipient typed as a wallet id, or as an owner whose wallet in the same asset is used.
async function resolveRecipient(text, wallet) {
  const value = text.trim();
  if (!value) return { error: "Enter the recipient: an owner id or a wallet id." };
  if (UUID_PATTERN.test(value)) return { walletId: value.toLowerCase() };
  const found = await request("GET", `/v1/wallets?owner_id=${encodeURIComponent(value)}`);
  if (!found.ok) return { failed: found };
  const match = found.data.data.find((item) => item.asset === wallet.asset);
  if (match === undefined) {
    return { error: `${value} has no ${wallet.asset} wallet. Create one in the Wallet panel, or enter a wallet id.` };
  }
  return { walletId: match.id };
}
