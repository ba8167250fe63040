// A form whose request carries a visible Idempotency-Key: the money forms, placing a hold, a
// capture, a void, a reversal. One implementation of the rule the page states:
//
// A form keeps its key after a send, so "Send again with the same key" repeats the exact same
// request; changing any field, pressing "New key", pointing the form at something else (another
// wallet, another hold) makes a fresh key (the API would answer a different request with a used
// key by 422 idempotency_key_reused).
//
// A lost answer (the connection dropped, or the demo's "Lose the answer" switch) leaves the form
// locked to the request it sent, kept in sessionStorage so a reload keeps it too: sending it again
// with the same key is the one safe next step, and the service's replay shows whether it had
// already been applied.

import { request } from "./api.js";
import { byId, clock, copyButton, element, paragraph } from "./dom.js";
import { exchangeDetails } from "./exchange.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";

const PENDING_PREFIX = "wallet-demo-pending:"; // sessionStorage: a sent request whose answer was lost

export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost); build a v4 UUID by hand.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// `spec`:
//   id, noun ("top-up"), button (the send button's words), explain (a sentence), className;
//   fields: [{name, label, type?, inputmode?, maxlength?, hint?}], the inputs, in order;
//   build(values, target): a Promise of {sent: {path, bodyText}} (the request for the field
//     values), {invalid: fieldName, message}, or {render(form)} that says why nothing was sent;
//   answered(outcome, form): shows an answer (not a lost one) in form.result;
//   afterSend(): runs after every send that left the page (the ledger may have changed);
//   restored(target): optional, a lost request of this form's scope was read back after a reload.
// `target` is what the form acts on (a hold, a transaction), or null; it is kept with a lost request.
export class KeyedForm {
  constructor(spec) {
    this.spec = spec;
    this.onPendingChange = () => {};
    this.busy = false;
    this.scope = null; // where a lost request is remembered ("<wallet id>:topup"); null: nowhere
    this.target = null;
    this.key = null;
    this.last = null; // the last request answered: {path, bodyText, key, fields, target}
    this.pending = null; // the request whose answer was lost, with `sentAt` and `reloaded`
    this.element = this.build();
    this.setKey(newIdempotencyKey(), null);
  }

  build() {
    const form = byId("keyed-form-template").content.firstElementChild.cloneNode(true);
    const { id, className = "", explain = "", fields, button } = this.spec;
    form.id = id;
    if (className) form.classList.add(...className.split(" "));
    form.querySelector(".explain").textContent = explain;
    form.querySelector(".explain").hidden = !explain;
    form.querySelector(".fields").replaceChildren(...fields.map((field) => fieldElement(id, field)));
    const lose = form.querySelector(".lose input");
    lose.id = `${id}-lose`;
    form.querySelector(".lose label").htmlFor = lose.id;
    for (const name of ["result", "pending-note", "key-line", "context"]) form.querySelector(`.${name}`).id = `${id}-${name}`;
    form.querySelector(".key-line").append(" ", copyButton(() => this.key, `the ${this.spec.noun} Idempotency-Key`));
    form.querySelector(".send").textContent = button;
    for (const control of form.querySelectorAll(".send, .resend")) control.setAttribute("aria-describedby", `${id}-key-line`);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit(event.submitter ?? form.querySelector(".send"));
    });
    form.querySelector(".resend").addEventListener("click", (event) => this.resend(event.currentTarget));
    form.querySelector(".new-key").addEventListener("click", () => this.newKeyPressed());
    form.addEventListener("input", (event) => {
      if (this.fieldNames().includes(event.target.name) && this.last !== null && this.pending === null) {
        this.renewKey("You changed the form, so a new key was made.");
      }
    });
    return form;
  }

  get result() {
    return this.element.querySelector(".result");
  }

  get context() {
    return this.element.querySelector(".context");
  }

  fieldNames() {
    return this.spec.fields.map((field) => field.name);
  }

  field(name) {
    return this.element.elements[name] ?? null;
  }

  values() {
    return Object.fromEntries(this.fieldNames().map((name) => [name, this.field(name).value]));
  }

  // Another place to remember a lost request (another wallet): an empty form with a fresh key,
  // or the lost request of that place, locked. True when there is one.
  load(scope) {
    if (scope === this.scope) return this.pending !== null;
    this.scope = scope;
    this.target = null;
    this.clear();
    this.setPending(scope === null ? null : readPending(scope));
    if (this.pending !== null) {
      this.target = this.pending.target ?? null;
      this.spec.restored?.(this.target);
    }
    return this.pending !== null;
  }

  // Points the form at `target` with `values` in its fields and a fresh key. False (and nothing
  // changes) while a lost request holds the form.
  open(target, values = {}) {
    if (this.pending !== null) return false;
    this.target = target;
    this.clear();
    for (const [name, value] of Object.entries(values)) this.field(name).value = value;
    return true;
  }

  clear() {
    this.element.reset();
    this.result.replaceChildren();
    this.result.className = "result";
    for (const name of this.fieldNames()) this.field(name).removeAttribute("aria-invalid");
    this.setKey(newIdempotencyKey(), null);
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
    if (this.scope !== null) {
      const storageKey = PENDING_PREFIX + this.scope;
      if (pending === null) sessionStorage.removeItem(storageKey);
      else sessionStorage.setItem(storageKey, JSON.stringify(pending));
    }
    if (pending !== null) {
      this.key = pending.key;
      this.element.querySelector(".key").textContent = pending.key;
      for (const name of this.fieldNames()) this.field(name).value = pending.fields[name] ?? "";
    }
    for (const name of this.fieldNames()) this.field(name).readOnly = pending !== null || this.field(name).dataset.fixed === "true";
    this.element.querySelector(".resend").classList.toggle("secondary", pending === null);
    this.element.querySelector(".send").classList.toggle("secondary", pending !== null);
    this.renderPendingNote();
    this.setBusy(this.busy);
    this.onPendingChange(pending !== null);
  }

  // A field the person may not change (a journal is reversed whole): read-only, even unlocked.
  fix(name, fixed) {
    this.field(name).dataset.fixed = String(fixed);
    this.field(name).readOnly = fixed || this.pending !== null;
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
        "and changes nothing; if it was not, it is applied now, once."),
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
    const values = this.values();
    for (const name of this.fieldNames()) this.field(name).setAttribute("aria-invalid", "false");
    await this.whileBusy(button, async () => {
      const built = await this.spec.build(values, this.target);
      if (built.invalid !== undefined) {
        const input = this.field(built.invalid);
        input.setAttribute("aria-invalid", "true");
        renderMessage(this.result, built.message, "error");
        return input;
      }
      if (built.sent === undefined) {
        built.render(this);
        return false;
      }
      return this.send({ ...built.sent, key: this.key, fields: values, target: this.target });
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
  // then gives the focus back: to "Send again" after a lost answer (the next step), to the field
  // `task` names (an element) when one was wrong, else to `button`. `task` resolves to true once
  // a request left the page.
  async whileBusy(button, task) {
    this.setBusy(true);
    let outcome = false;
    try {
      outcome = await task();
    } finally {
      this.setBusy(false);
      let next = button;
      if (this.pending !== null) next = this.element.querySelector(".resend");
      else if (outcome instanceof HTMLElement) next = outcome;
      if (next && !next.disabled) next.focus();
    }
    if (outcome === true) await this.spec.afterSend();
  }

  // Sends one request; true once it left the page (answered or not: the ledger may have changed).
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
    await this.spec.answered(outcome, this);
    this.result.append(exchangeDetails(outcome.exchange));
    return true;
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

// A declined request's answer: the problem in plain words, marked when it is a replay.
export function showDecline(outcome, form) {
  renderProblem(form.result, outcome);
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(false), "replayed"));
}

export function replayNote(succeeded, what = "No money moved this time.") {
  const changed = succeeded ? what : "Nothing changed.";
  return `Replayed: the service sent back its stored answer to the first send (Idempotent-Replayed: true). ${changed}`;
}

function fieldElement(formId, field) {
  const id = `${formId}-${field.name}`;
  const input = element("input", {
    name: field.name,
    id,
    type: field.type ?? "text",
    autocomplete: "off",
    spellcheck: false,
  });
  if (field.inputmode) input.inputMode = field.inputmode;
  if (field.maxlength) input.maxLength = field.maxlength;
  const described = [`${formId}-result`];
  let hint = null;
  if (field.hint) {
    hint = element("p", { className: "hint", id: `${id}-hint` }, field.hint);
    described.unshift(hint.id);
  }
  input.setAttribute("aria-describedby", described.join(" "));
  return element("div", { className: `field ${field.name}` }, element("label", { htmlFor: id }, field.label), input, hint);
}

// The request of this scope whose answer was lost before the page was (re)loaded.
function readPending(scope) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(PENDING_PREFIX + scope) ?? "null");
    if (stored === null || typeof stored.key !== "string" || typeof stored.bodyText !== "string") return null;
    if (typeof stored.path !== "string" || !stored.path.startsWith("/v1/")) return null;
    return { ...stored, fields: stored.fields ?? {}, target: stored.target ?? null, reloaded: true };
  } catch {
    return null;
  }
}
