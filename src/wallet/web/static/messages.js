// What the page tells a person after an action: one action's messages at a time, API problems in
// plain words followed by the API's own detail and code.

import { paragraph } from "./dom.js";

// What each problem `code` of the API means for a person using this page.
const PROBLEM_SENTENCES = {
  insufficient_funds: "The wallet does not hold enough for this.",
  wallet_not_found: "There is no wallet with that id.",
  asset_not_found: "There is no such asset.",
  transaction_not_found: "There is no such transaction.",
  asset_mismatch: "Both wallets must hold the same asset.",
  same_wallet: "A transfer needs two different wallets.",
  balance_limit_exceeded: "This would take the balance past its limit of 9 × 10^18.",
  idempotency_key_reused:
    "This Idempotency-Key was already used for a different request. Press New key and send again.",
  idempotency_key_missing: "The request had no Idempotency-Key.",
  idempotency_key_invalid: "The Idempotency-Key is not valid (1-255 printable characters).",
  unauthenticated: "The API key is unknown or revoked.",
  forbidden: "This API key is not allowed to do this (it lacks the scope).",
  validation_error: "The request is not valid.",
  malformed_json: "The request body is not valid JSON.",
  payload_too_large: "The request is too large.",
  unsupported_media_type: "The request was not sent as JSON.",
  asset_conflict: "An asset with this code exists with another name.",
  not_found: "The service has no such path.",
  method_not_allowed: "The service does not take this method here.",
  unavailable: "The database is busy or unreachable. Try again shortly with the same key.",
  internal_error: "The service failed unexpectedly; the error has been logged.",
  hold_not_found: "There is no such hold.",
  hold_not_pending: "The hold is no longer pending (captured, voided or expired): it cannot be captured or voided.",
  capture_exceeds_hold: "A capture cannot take more than the hold reserved.",
  reversal_exceeds_original: "This would reverse more than is left of the original transaction.",
  not_reversible: "This kind of transaction cannot be reversed (a reversal or an expiry).",
  statement_too_large: "The period holds too many transactions for one statement: choose a shorter one.",
};

// Extra advice for a code, depending on how the page signed in.
const problemHints = {};

export function setProblemHint(code, hint) {
  problemHints[code] = hint;
}

export function describeProblem(problem) {
  const sentence = PROBLEM_SENTENCES[problem.code] ?? problem.title ?? "The request failed.";
  return problemHints[problem.code] ? `${sentence} ${problemHints[problem.code]}` : sentence;
}

// Result boxes (class "result") hold the messages of the latest action. Every action starts
// with this, so an earlier action's message never stays up next to a newer one.
export function clearMessages() {
  for (const box of document.querySelectorAll(".result")) {
    box.replaceChildren();
    box.className = "result";
  }
}

// Shows a failed request in `target`: the plain sentence, then what the API said (its detail,
// when it adds something to the sentence and the title), its code and status.
export function renderProblem(target, result) {
  const problem = result.problem ?? {};
  if (result.lost) {
    renderMessage(target, "No answer from the service: is it running?", "error");
    target.append(paragraph(problem.detail, "muted"));
    return;
  }
  const sentence = describeProblem(problem);
  renderMessage(target, sentence, "error");
  if (problem.detail && !sameWords(problem.detail, sentence) && !sameWords(problem.detail, problem.title ?? "")) {
    target.append(paragraph(`The service says: ${problem.detail}`));
  }
  for (const item of problem.errors ?? []) {
    target.append(paragraph(`${item.loc.join(".")}: ${item.msg}`));
  }
  const facts = [];
  if (problem.code) facts.push(`code ${problem.code}`);
  if (result.status) facts.push(`HTTP ${result.status}`);
  if (result.replayed) facts.push("Idempotent-Replayed: true");
  if (facts.length) target.append(paragraph(facts.join(" · "), "muted"));
}

function sameWords(first, second) {
  const words = (text) => text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, " ").trim();
  return words(first) === words(second);
}

export function renderMessage(target, text, kind = "ok") {
  target.replaceChildren(paragraph(text, "headline"));
  target.className = `result ${kind}`;
}
