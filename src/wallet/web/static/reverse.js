// Reversing a transaction from its history row: a refund of a spend, a chargeback of a top-up, a
// transfer sent back, a journal undone whole. A keyed form (keyed.js) under the history controls,
// its amount prefilled with what is left to reverse.
//
// What is left: the API has no field for it, but every reversal of a transaction mirrors its
// entries, so it is in the history of each wallet the original touched, and newer than the
// original. The page reads this wallet's history from the newest transaction back to the original
// (at most REVERSAL_SEARCH_PAGES_MAX pages) and subtracts the amounts of the transactions whose
// `reverses` is the original. Should the original be deeper than that, the amount is the original's
// and the page says so; the service refuses more than is left (409 reversal_exceeds_original).

import { formatAmount, parseAmount, request } from "./api.js";
import { byId, copyableId, element, paragraph, utcText } from "./dom.js";
import { KeyedForm, replayNote, showDecline } from "./keyed.js";
import { clearMessages, renderMessage, renderProblem } from "./messages.js";

export const REVERSIBLE_TYPES = new Set(["topup", "bonus", "spend", "transfer", "journal"]);
const REVERSAL_SEARCH_PAGE_SIZE = 200; // the API's page size limit
const REVERSAL_SEARCH_PAGES_MAX = 10;
const TYPE_NOUNS = { topup: "top-up", bonus: "bonus", spend: "spend", transfer: "transfer", journal: "journal" };

export function createReversePanel({ currentWallet, afterChange }) {
  const box = byId("reverse-box");
  const title = byId("reverse-title");
  const form = new KeyedForm({
    id: "form-reverse",
    noun: "reversal",
    button: "Reverse",
    explain: "Posts a reversal: the original's entries mirrored (each debit a credit and back) for the amount.",
    fields: [
      { name: "amount", label: "Amount to reverse", inputmode: "numeric" },
      { name: "reference", label: "Reference (optional)", maxlength: 128 },
    ],
    build: (values, target) => reversalRequest(values, target),
    answered: (outcome, keyed) => (outcome.ok ? showReversed(outcome, keyed) : showDecline(outcome, keyed)),
    afterSend: afterChange,
    restored: (target) => target && showBox(target),
  });
  byId("reverse-form").replaceChildren(form.element);
  let walletId = null;
  let opening = 0; // open() calls: a slower, older one does not overwrite a newer one

  byId("reverse-close").addEventListener("click", () => {
    clearMessages();
    box.hidden = true;
  });

  function showBox(target) {
    const noun = TYPE_NOUNS[target.type] ?? target.type;
    title.textContent = `Reverse the ${noun} of ${formatAmount(target.amount)} ${target.asset}`;
    form.fix("amount", target.type === "journal");
    form.context.replaceChildren(
      paragraph("", "muted small"),
      ...leftLines(target, noun),
    );
    form.context.firstChild.append(`${utcText(target.created_at)} · id `, copyableId(target.id, "the transaction id"));
    box.hidden = false;
  }

  // Opens the form for `transaction` (a row of this wallet's history), amount = what is left.
  async function open(transaction) {
    clearMessages();
    const wallet = currentWallet();
    if (wallet === null) return;
    if (form.pending !== null) {
      showBox(form.target);
      renderMessage(form.result, "The answer to a reversal was lost: send it again with the same key (or drop it " +
        "with New key) before starting another.", "error");
      form.element.querySelector(".resend").focus();
      return;
    }
    const openingNumber = ++opening;
    renderMessage(byId("history-result"), "Finding what is left to reverse…", "pending");
    const found = await reversedSoFar(transaction, wallet);
    if (openingNumber !== opening || currentWallet()?.id !== wallet.id) return;
    byId("history-result").replaceChildren();
    byId("history-result").className = "result";
    if (found.problem) {
      renderProblem(byId("history-result"), found.problem);
      return;
    }
    const target = {
      id: transaction.id,
      wallet_id: wallet.id,
      type: transaction.type,
      asset: transaction.asset,
      amount: String(transaction.amount),
      created_at: transaction.created_at,
      reversed: found.reversed === null ? null : String(found.reversed),
      reversals: found.reversals,
    };
    const left = found.reversed === null ? BigInt(transaction.amount) : BigInt(transaction.amount) - found.reversed;
    if (!form.open(target, { amount: left > 0n ? formatAmount(left) : "" })) return;
    showBox(target);
    const amount = form.field("amount");
    (amount.readOnly ? form.element.querySelector(".send") : amount).focus();
  }

  return {
    open,
    walletChanged(wallet) {
      if (wallet?.id === walletId) return;
      walletId = wallet?.id ?? null;
      box.hidden = true;
      form.load(wallet === null ? null : `${wallet.id}:reverse`);
    },
  };
}

// The sum of the original's reversals found in the wallet's history: {reversed (BigInt), reversals},
// {reversed: null} when the original was not reached, or {problem} when a read failed.
async function reversedSoFar(original, wallet) {
  let reversed = 0n;
  let reversals = 0;
  let cursor = null;
  for (let page = 0; page < REVERSAL_SEARCH_PAGES_MAX; page++) {
    const query = new URLSearchParams({ limit: String(REVERSAL_SEARCH_PAGE_SIZE) });
    if (cursor !== null) query.set("cursor", cursor);
    const answer = await request("GET", `/v1/wallets/${wallet.id}/transactions?${query}`);
    if (!answer.ok) return { problem: answer };
    for (const item of answer.data.data) {
      if (item.id === original.id) return { reversed, reversals };
      if (item.reverses === original.id) {
        reversed += BigInt(item.amount);
        reversals += 1;
      }
    }
    cursor = answer.data.next_cursor;
    if (cursor === null) break;
  }
  return { reversed: null, reversals };
}

function leftLines(target, noun) {
  const lines = [];
  if (target.reversed === null) {
    lines.push(paragraph(`This ${noun} is older than the newest ` +
      `${formatAmount(REVERSAL_SEARCH_PAGE_SIZE * REVERSAL_SEARCH_PAGES_MAX)} transactions of this wallet, so the ` +
      "page did not look for its reversals: the amount is the original's. If part of it was reversed already, the " +
      "service refuses more than is left (409 reversal_exceeds_original).", "warning"));
  } else {
    const left = BigInt(target.amount) - BigInt(target.reversed);
    const found = target.reversals === 0
      ? "Not reversed yet"
      : `Already reversed: ${formatAmount(target.reversed)} in ${target.reversals} reversal${target.reversals === 1 ? "" : "s"}`;
    lines.push(paragraph(`${found}; left to reverse: ${formatAmount(left)} ${target.asset}` +
      " (from this wallet's history, read just now).", left > 0n ? "" : "warning"));
  }
  if (target.type === "journal") lines.push(paragraph("A journal is reversed whole only: the amount is fixed.", "muted"));
  return lines;
}

function reversalRequest(values, target) {
  const parsed = parseAmount(values.amount);
  if (parsed.error) return { invalid: "amount", message: parsed.error };
  const payload = { amount: parsed.amount };
  if (values.reference.trim()) payload.reference = values.reference.trim();
  return { sent: { path: `/v1/transactions/${target.id}/reverse`, bodyText: JSON.stringify(payload) } };
}

function showReversed(outcome, form) {
  const transaction = outcome.data;
  const noun = TYPE_NOUNS[form.last.target.type] ?? form.last.target.type;
  renderMessage(form.result, `Reversed ${formatAmount(transaction.amount)} ${transaction.asset} of the ${noun}.`);
  if (outcome.replayed) form.result.prepend(paragraph(replayNote(true), "replayed"));
  // This wallet's balance then (a transfer's reversal also names the other wallet's: not shown).
  const own = transaction.entries.filter((entry) => entry.account === form.last.target.wallet_id).at(-1);
  if (own !== undefined) {
    form.result.append(element("p", { className: "balance-then" },
      `This wallet's balance right after the reversal (then, ${utcText(transaction.created_at)}): `,
      element("strong", {}, formatAmount(own.balance_after))));
  }
  form.result.append(
    element("p", { className: "muted" }, `HTTP ${outcome.status} · reversal `, element("code", {}, transaction.id)),
  );
}
