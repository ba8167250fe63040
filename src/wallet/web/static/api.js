// Talking to the wallet API: one fetch wrapper, exact integers, problems in plain words.

export const AMOUNT_MIN = 1n;
export const AMOUNT_MAX = 10n ** 15n;

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

// JSON.parse that keeps integers beyond 2^53 exact (as BigInt): balances go up to 9 × 10^18.
function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context?.source ?? "")) {
      return BigInt(context.source);
    }
    return value;
  });
}

const numberFormat = new Intl.NumberFormat("en-US");

export function formatAmount(value) {
  return numberFormat.format(typeof value === "bigint" ? value : BigInt(value));
}

// An amount typed by a person: a whole number in range, or an error sentence.
export function parseAmount(text) {
  const trimmed = text.trim();
  if (!/^\d{1,16}$/.test(trimmed)) {
    return { error: "Enter a whole number from 1 to 1,000,000,000,000,000: digits only, no sign, decimals or spaces." };
  }
  const amount = BigInt(trimmed);
  if (amount < AMOUNT_MIN || amount > AMOUNT_MAX) {
    return { error: "The amount must be from 1 to 1,000,000,000,000,000 (10^15)." };
  }
  return { amount: Number(amount) };
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The API key lives here, in memory; callers decide whether it also goes to sessionStorage.
let apiKey = null;

export function setApiKey(key) {
  apiKey = key;
}

export function hasApiKey() {
  return apiKey !== null;
}

// Sends one request. Resolves to {ok, status, replayed, data, problem}; never throws.
// `bodyText` is sent as is, so a resend can repeat a request byte for byte.
export async function request(method, path, { bodyText = null, idempotencyKey = null } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (apiKey !== null) headers.Authorization = `Bearer ${apiKey}`;
  if (bodyText !== null) headers["Content-Type"] = "application/json";
  if (idempotencyKey !== null) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, { method, headers, body: bodyText, cache: "no-store" });
  } catch (error) {
    const problem = { code: "network", detail: String(error), status: 0, title: "Network error" };
    return { ok: false, status: 0, replayed: false, data: null, problem, networkError: true };
  }
  const text = await response.text();
  let document = null;
  try {
    document = text ? parseJson(text) : null;
  } catch {
    document = { code: "unreadable", title: "Unreadable answer", detail: text.slice(0, 200) };
  }
  const replayed = response.headers.get("Idempotent-Replayed") === "true";
  if (response.ok) {
    return { ok: true, status: response.status, replayed, data: document, problem: null };
  }
  const problem = document && typeof document === "object" ? document : { detail: String(text) };
  return { ok: false, status: response.status, replayed, data: null, problem };
}

// Shows a failed request in `target`: the plain sentence, then the API's detail and code.
export function renderProblem(target, result) {
  target.replaceChildren();
  target.className = "result error";
  const sentence = result.networkError
    ? "Could not reach the service. Is it running?"
    : describeProblem(result.problem);
  target.append(paragraph(sentence, "headline"));
  if (result.problem.detail) target.append(paragraph(`Detail: ${result.problem.detail}`));
  for (const item of result.problem.errors ?? []) {
    target.append(paragraph(`${item.loc.join(".")}: ${item.msg}`));
  }
  const facts = [];
  if (result.problem.code) facts.push(`code ${result.problem.code}`);
  if (result.status) facts.push(`HTTP ${result.status}`);
  if (result.replayed) facts.push("Idempotent-Replayed: true");
  if (facts.length) target.append(paragraph(facts.join(" · "), "muted"));
}

export function renderMessage(target, text, kind = "ok") {
  target.replaceChildren(paragraph(text, "headline"));
  target.className = `result ${kind}`;
}

export function paragraph(text, className = "") {
  const element = document.createElement("p");
  element.textContent = text;
  if (className) element.className = className;
  return element;
}
