// One HTTP exchange as the page sent and received it: the request (the API key masked), the
// answer (status, headers, body exactly as received), and a curl line that repeats it.

import { MASKED_KEY } from "./api.js";
import { copyButton, element } from "./dom.js";

// A <details> whose summary is the request line and the status; open when `open`.
export function exchangeDetails(exchange, { open = false } = {}) {
  const details = element("details", { className: "exchange", open });
  const summary = element("summary", {}, element("code", {}, requestLine(exchange)), " → ", statusWords(exchange));
  const curl = curlLine(exchange);
  details.append(
    summary,
    element("p", { className: "exchange-label" }, "Request"),
    element("pre", { className: "http request" }, requestText(exchange)),
    element("p", { className: "exchange-label" }, "Answer"),
    element("pre", { className: "http response" }, responseText(exchange)),
    element("p", { className: "exchange-label" }, "The same request with curl (first set ", element("code", {}, "KEY=wk_…"), ", your API key)"),
    element("pre", { className: "curl" }, curl),
    copyButton(() => curl, "the curl command"),
  );
  return details;
}

function requestLine(exchange) {
  return `${exchange.method} ${exchange.path}`;
}

function statusWords(exchange) {
  if (exchange.lostReason !== null) return "answer lost";
  const replayed = exchange.responseHeaders.some(
    ([name, value]) => name.toLowerCase() === "idempotent-replayed" && value === "true",
  );
  return `${exchange.status} ${exchange.statusText}${replayed ? " (replayed)" : ""}`.trim();
}

export function requestText(exchange) {
  const lines = [`${requestLine(exchange)} HTTP/1.1`, `Host: ${new URL(exchange.url).host}`];
  for (const [name, value] of exchange.requestHeaders) lines.push(`${name}: ${value}`);
  if (exchange.bodyText !== null) lines.push("", exchange.bodyText);
  return lines.join("\n");
}

export function responseText(exchange) {
  if (exchange.lostReason !== null) return `(no answer) ${exchange.lostReason}`;
  const lines = [`HTTP/1.1 ${exchange.status} ${exchange.statusText}`.trim()];
  for (const [name, value] of exchange.responseHeaders) lines.push(`${name}: ${value}`);
  if (exchange.responseText) lines.push("", exchange.responseText);
  return lines.join("\n");
}

// curl with the page's headers; the key comes from the shell variable KEY, never from the page.
export function curlLine(exchange) {
  const parts = ["curl -i"];
  if (exchange.method !== "GET") parts.push(`-X ${exchange.method}`);
  parts.push(shellQuote(exchange.url));
  for (const [name, value] of exchange.requestHeaders) {
    if (name === "Accept" && value.startsWith("application/json")) continue; // curl's default will do
    const shown = value === `Bearer ${MASKED_KEY}` ? `"${name}: Bearer $KEY"` : shellQuote(`${name}: ${value}`);
    parts.push(`-H ${shown}`);
  }
  if (exchange.bodyText !== null) parts.push(`--data-raw ${shellQuote(exchange.bodyText)}`);
  return parts.join(" ");
}

// Single-quoted for a POSIX shell: nothing inside is expanded.
function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
