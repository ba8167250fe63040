// The money panel: top up, bonus, spend and transfer, one tab each, each form with its own
// Idempotency-Key (keyed.js states the key rule and how a lost answer is handled). Top-up and
// bonus take an optional expiry: the credit becomes a lot that expires then.

import { formatAmount, parseAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, element, paragraph, utcText } from "./dom.js";
import { ownerName, walletById } from "./directory.js";
import { exchangeDetails } from "./exchange.js";
import { KeyedForm, replayNote, showDecline } from "./keyed.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";
import { timestampOfLocalInput } from "./time.js";

const KINDS = [
  {
    kind: "topup", tab: "Top up", button: "Top up", done: "Topped up", noun: "top-up", expires: true,
    explain: "Credits the wallet, debits the asset's treasury account.",
  },
  {
    kind: "bonus", tab: "Bonus", button: "Grant bonus", done: "Granted a bonus of", noun: "bonus", expires: true,
    explain: "Credits the wallet, debits the asset's bonus account.",
  },
  {
    kind: "spend", tab: "Spend", button: "Spend", done: "Spent", noun: "spend",
    explain: "Debits the wallet (its soonest-expiring credits first), credits the asset's revenue account.",
  },
  {
    kind: "transfer", tab: "Transfer", button: "Transfer", done: "Transferred", noun: "transfer",
    explain: "Moves money from this wallet to another wallet of the same asset (expiring credits keep their expiry).",
  },
];
const RECIPIENT_FIELD = { name: "recipient", label: "To (owner or wallet id)" };
const AMOUNT_FIELD = { name: "amount", label: "Amount", inputmode: "numeric" };
const REFERENCE_FIELD = { name: "reference", label: "Reference (optional)", maxlength: 128 };
const EXPIRES_FIELD = {
  name: "expires",
  label: "Expires at (optional)",
  type: "datetime-local",
  hint: "Your local time; sent as RFC 3339 with your offset. Empty: the credit never expires.",
};
const EXPIRES_RULE = "Enter the expiry as a date and time (or leave it empty: the credit never expires).";

// Builds the tabs and forms. `afterSend()` runs after every send, answered or not (the balance
// may have changed). Returns {walletChanged(wallet), walletRead(wallet), show(kind)}.
export function createMoneyPanel({ currentWallet, afterSend }) {
  const forms = KINDS.map((spec) => moneyForm(spec, currentWallet, afterSend));
  const tabs = new Tabs(byId("money-tabs"), forms);
  byId("money-forms").replaceChildren(...forms.map((form) => form.element));
  tabs.select(forms[0]);
  return {
    walletChanged: (wallet) => forms.forEach((form) => form.load(wallet === null ? null : `${wallet.id}:${form.spec.kind}`)),
    walletRead: (wallet) => forms.forEach((form) => walletRead(form, wallet)),
    show: (kind) => tabs.select(forms.find((form) => form.spec.kind === kind)),
  };
}

function moneyForm(spec, currentWallet, afterSend) {
  const fields = [
    ...(spec.kind === "transfer" ? [RECIPIENT_FIELD] : []),
    AMOUNT_FIELD,
    REFERENCE_FIELD,
    ...(spec.expires ? [EXPIRES_FIELD] : []),
  ];
  const form = new KeyedForm({
    ...spec,
    id: `form-${spec.kind}`,
    className: "money-form",
    fields,
    build: (values) => requestFor(spec, values, currentWallet(), form),
    answered: (outcome) => (outcome.ok ? showTransaction(spec, outcome, form) : declined(outcome, form)),
    afterSend,
  });
  form.element.setAttribute("role", "tabpanel");
  form.shown = null; // the transaction the result shows: its balance then, for "balance now"
  return form;
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
      tab.querySelector(".tab-flag").hidden = form.pending === null;
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

// The request for the form's fields: {sent: {path, bodyText}}, {invalid, message}, or {render}
// that explains why there is none (a transfer's recipient was not found).
async function requestFor(spec, values, wallet, form) {
  const parsed = parseAmount(values.amount);
  if (parsed.error) return { invalid: "amount", message: parsed.error };
  let path = `/v1/wallets/${wallet.id}/${spec.kind}`;
  let payload = { amount: parsed.amount };
  if (spec.kind === "transfer") {
    const recipient = await resolveRecipient(values.recipient, wallet, form);
    if (recipient.walletId === undefined) return recipient;
    path = "/v1/transfers";
    payload = { from_wallet_id: wallet.id, to_wallet_id: recipient.walletId, amount: parsed.amount };
  }
  const reference = values.reference.trim();
  if (reference) payload.reference = reference;
  if (spec.expires && values.expires.trim()) {
    const expiresAt = timestampOfLocalInput(values.expires.trim());
    if (expiresAt === null) return { invalid: "expires", message: EXPIRES_RULE };
    payload.expires_at = expiresAt;
  }
  return { sent: { path, bodyText: JSON.stringify(payload) } };
}

async function showTransaction(spec, outcome, form) {
  const transaction = outcome.data;
  form.shown = transaction;
  const credited = transaction.entries.find((entry) => entry.direction === "credit");
  const recipient = spec.kind === "transfer" && credited ? ` to ${await ownerName(credited.account)}` : "";
  renderMessage(form.result, `${spec.done} ${formatAmount(transaction.amount)} ${transaction.asset}${recipient}.`);
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(true), "replayed"));
  form.result.append(
    element("p", { className: "balance-then" },
      `Balance right after this ${spec.noun} (then, ${utcText(transaction.created_at)}): `,
      element("strong", {}, formatAmount(transaction.balance_after))),
    element("p", { className: "balance-now", hidden: true }),
    element("p", { className: "muted" }, `HTTP ${outcome.status} · transaction `, element("code", {}, transaction.id)),
  );
}

function declined(outcome, form) {
  form.shown = null;
  showDecline(outcome, form);
}

// The card read the wallet again: when its balance differs from the one shown as "then", say
// what it is now (a late replay, or money that moved since).
function walletRead(form, wallet) {
  const line = form.result.querySelector(".balance-now");
  if (line === null || form.shown === null || wallet.id !== form.shown.wallet_id) return;
  const differs = BigInt(wallet.balance) !== BigInt(form.shown.balance_after);
  line.hidden = !differs;
  line.replaceChildren(`Balance now: ${formatAmount(wallet.balance)} (as of `, clock(new Date()), ").");
}

// A transfer's recipient typed as a wallet id, or as an owner whose wallet in the same asset is
// used: {walletId}, or {render} explaining what is missing (with a way to create it here, so
// the sender stays selected).
async function resolveRecipient(text, wallet, form) {
  const value = text.trim();
  if (!value) return { invalid: "recipient", message: "Enter the recipient: an owner id or a wallet id." };
  if (UUID_PATTERN.test(value) && (await walletById(value.toLowerCase())) !== null) {
    return { walletId: value.toLowerCase() };
  }
  const found = await request("GET", `/v1/wallets?owner_id=${encodeURIComponent(value)}`);
  if (!found.ok) return { render: () => renderProblem(form.result, found) };
  const match = found.data.data.find((item) => item.asset === wallet.asset);
  if (match !== undefined) return { walletId: match.id };
  if (UUID_PATTERN.test(value)) return { walletId: value.toLowerCase() }; // the API will say 404
  return { render: () => offerRecipientWallet(form, value, wallet.asset) };
}

function offerRecipientWallet(form, owner, asset) {
  renderMessage(form.result, `${owner} has no ${asset} wallet yet.`, "error");
  const create = element("button", { type: "button", className: "secondary" }, `Create a ${asset} wallet for ${owner}`);
  create.addEventListener("click", async () => {
    clearMessages();
    create.disabled = true;
    const created = await request("POST", "/v1/wallets", { bodyText: JSON.stringify({ owner_id: owner, asset }) });
    if (!created.ok) return renderProblem(form.result, created);
    renderMessage(form.result, `Created a ${asset} wallet for ${owner}. Press ${form.spec.button} to send.`);
    form.result.append(exchangeDetails(created.exchange));
    form.element.querySelector(".send").focus();
  });
  form.result.append(paragraph("The transfer was not sent. Create the wallet here, then send:", ""), create);
}
