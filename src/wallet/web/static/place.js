// Where the page is, in its URL: `?owner=…&wallet=…&limit=…&pages=…`, so that reload, Back and a
// shared link open the same owner, wallet and history page. `pages` is the chain of history
// cursors that led to the page shown (page 1 has none), so "Newer" works from a shared link too.
// The URL never holds an API key.

import { UUID_PATTERN } from "./api.js";

export const PAGE_SIZES = [5, 10, 20, 50];
export const PAGE_SIZE_DEFAULT = 10;
const CURSOR_PATTERN = /^[A-Za-z0-9_-]{1,64}$/; // what GET …/transactions returns as next_cursor
const PAGES_MAX = 1000;

// {owner, wallet, limit, pages}; anything malformed in the URL is dropped, not obeyed.
export function readPlace(search = window.location.search) {
  const query = new URLSearchParams(search);
  const wallet = query.get("wallet");
  const limit = Number(query.get("limit"));
  const pages = (query.get("pages") ?? "").split(",").filter((cursor) => CURSOR_PATTERN.test(cursor));
  return {
    owner: query.get("owner") || null,
    wallet: wallet !== null && UUID_PATTERN.test(wallet) ? wallet.toLowerCase() : null,
    limit: PAGE_SIZES.includes(limit) ? limit : PAGE_SIZE_DEFAULT,
    pages: pages.slice(0, PAGES_MAX),
  };
}

export function placeSearch({ owner, wallet, limit, pages }) {
  const query = new URLSearchParams();
  if (owner) query.set("owner", owner);
  if (wallet) query.set("wallet", wallet);
  if (limit && limit !== PAGE_SIZE_DEFAULT) query.set("limit", String(limit));
  if (pages?.length) query.set("pages", pages.join(","));
  const text = query.toString();
  return text ? `?${text}` : "";
}

// Puts `place` in the address bar: a new history entry when `push` (a person moved), else the
// current one is replaced (the page filled in what the URL left open).
export function writePlace(place, { push }) {
  const search = placeSearch(place);
  if (search === window.location.search) return;
  const target = `${window.location.pathname}${search}`;
  if (push) window.history.pushState(null, "", target);
  else window.history.replaceState(null, "", target);
}

// A link to a wallet of this page (`?wallet=…`), followed without reloading the page.
export function walletHref(walletId) {
  return placeSearch({ wallet: walletId });
}
