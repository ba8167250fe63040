// Talking to the wallet API: one fetch wrapper that records every exchange exactly as sent and
// received, exact integers, amounts in the page's own format.

export const AMOUNT_MIN = 1n;
export const AMOUNT_MAX = 10n ** 15n;

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

const AMOUNT_RULE = "Enter a whole number from 1 to 1,000,000,000,000,000, as digits (1000) or " +
  "with commas between thousands (1,000): no sign, decimals or spaces.";

// An amount typed by a person, in the format the page prints (1,000) or as plain digits (1000):
// {amount} in range, or {error} with a sentence.
export function parseAmount(text) {
  const trimmed = text.trim();
  if (!/^(\d{1,16}|\d{1,3}(,\d{3}){1,5})$/.test(trimmed)) return { error: AMOUNT_RULE };
  const amount = BigInt(trimmed.replaceAll(",", ""));
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

// Shown instead of the key wherever the page displays a request.
export const MASKED_KEY = "•••••••• (this page's API key, masked)";

const exchangeListeners = [];

// `listener(exchange)` runs after every request the page makes (see `request`).
export function onExchange(listener) {
  exchangeListeners.push(listener);
}

// Sends one request and resolves to {ok, status, replayed, data, problem, lost, exchange}; never
// throws. `bodyText` is sent as is, so a resend repeats a request byte for byte.
// `loseResponse`: the request goes to the service and is answered, but the page throws the
// answer away unread, as if the connection had dropped (the demo's "lose the answer" switch).
// `background`: a refresh the page makes by itself, not an action of the person (not logged).
// `lost` is true when no answer reached the page: the request may or may not have been applied.
// `accept`: the media type asked for; an answer that is not JSON (a CSV) is `data` as text.
export async function request(
  method,
  path,
  { bodyText = null, idempotencyKey = null, loseResponse = false, background = false, accept = "application/json" } = {},
) {
  const headers = { Accept: `${accept}, application/problem+json` };
  if (apiKey !== null) headers.Authorization = `Bearer ${apiKey}`;
  if (bodyText !== null) headers["Content-Type"] = "application/json";
  if (idempotencyKey !== null) headers["Idempotency-Key"] = idempotencyKey;
  const exchange = newExchange(method, path, headers, bodyText, background);
  let response;
  try {
    response = await fetch(path, { method, headers, body: bodyText, cache: "no-store" });
  } catch (error) {
    return finish(exchange, lostResult(exchange, `The connection failed: ${error}`));
  }
  if (loseResponse) {
    await response.body?.cancel();
    return finish(exchange, lostResult(exchange, "The page threw the answer away unread (Lose the answer was on)."));
  }
  const text = await response.text();
  Object.assign(exchange, {
    status: response.status,
    statusText: response.statusText,
    responseHeaders: [...response.headers],
    responseText: text,
  });
  return finish(exchange, readAnswer(response, text, exchange));
}

function newExchange(method, path, headers, bodyText, background) {
  const shownHeaders = Object.entries(headers).map(([name, value]) =>
    name === "Authorization" ? [name, `Bearer ${MASKED_KEY}`] : [name, value],
  );
  return {
    method,
    path,
    url: new URL(path, window.location.href).href,
    requestHeaders: shownHeaders,
    bodyText,
    background,
    sentAt: new Date(),
    status: 0,
    statusText: "",
    responseHeaders: [],
    responseText: null,
    lostReason: null,
  };
}

function lostResult(exchange, reason) {
  exchange.lostReason = reason;
  const problem = { code: "lost", title: "The answer was lost", detail: reason, status: 0 };
  return { ok: false, status: 0, replayed: false, data: null, problem, lost: true };
}

function readAnswer(response, text, exchange) {
  let document = null;
  const mediaType = response.headers.get("Content-Type") ?? "";
  if (response.ok && text && !/json/i.test(mediaType)) {
    return { ok: true, status: response.status, replayed: false, lost: false, data: text, problem: null };
  }
  try {
    document = text ? parseJson(text) : null;
  } catch {
    document = { code: "unreadable", title: "Unreadable answer", detail: text.slice(0, 200) };
  }
  const replayed = response.headers.get("Idempotent-Replayed") === "true";
  const result = { ok: response.ok, status: response.status, replayed, lost: false };
  if (response.ok) return { ...result, data: document, problem: null };
  const problem = document && typeof document === "object" ? document : { detail: String(text) };
  return { ...result, data: null, problem };
}

function finish(exchange, result) {
  exchange.durationMs = Date.now() - exchange.sentAt.getTime();
  result.exchange = exchange;
  for (const listener of exchangeListeners) listener(exchange);
  return result;
}
