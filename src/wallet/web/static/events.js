// The recent events panel: follows the ledger's event feed (GET /v1/events, admin scope) by its
// next_cursor, every EVENTS_POLL_INTERVAL_MS while the tab is visible, and shows the newest
// EVENTS_SHOWN_MAX events, newest on top. An event about the chosen wallet (a transaction with
// one of its entries, a hold of it) makes the page read the wallet again at once.
//
// A feed with no `after` starts at the oldest event kept: the panel first reads up to the newest
// (CATCH_UP_PAGES_PER_POLL pages of EVENTS_PAGE_SIZE at a time), showing the last of those as the
// recent ones; only events that arrive after that refresh the wallet.

import { formatAmount, request, UUID_PATTERN } from "./api.js";
import { byId, clock, counted, element, utcText } from "./dom.js";
import { ownerName } from "./directory.js";
import { describeProblem } from "./messages.js";

const EVENTS_POLL_INTERVAL_MS = 2000;
const EVENTS_PAGE_SIZE = 1000; // the API's limit
const CATCH_UP_PAGES_PER_POLL = 5;
const EVENTS_SHOWN_MAX = 50;
const TYPE_NAMES = {
  topup: "Top up", bonus: "Bonus", spend: "Spend", transfer: "Transfer",
  journal: "Journal", reversal: "Reversal", expiry: "Expiry",
};

// `walletEvent(event)` runs when events about the current wallet arrive (the newest of a read), so
// the page reads the wallet again.
export function createEventsPanel({ currentWallet, walletEvent }) {
  const list = byId("events-list");
  const status = byId("events-status");
  const state = { cursor: null, caughtUp: false, seen: 0, stopped: true, polling: false, timer: null };

  async function poll() {
    if (state.stopped || state.polling || document.hidden) return;
    state.polling = true;
    try {
      for (let page = 0; page < CATCH_UP_PAGES_PER_POLL && !state.stopped; page++) {
        const full = await readPage();
        if (!full) break;
      }
    } finally {
      state.polling = false;
    }
  }

  // Reads one page of the feed; true when it was full (there may be more right away).
  async function readPage() {
    const query = new URLSearchParams({ limit: String(EVENTS_PAGE_SIZE) });
    if (state.cursor !== null) query.set("after", state.cursor);
    const answer = await request("GET", `/v1/events?${query}`, { background: true });
    if (!answer.ok) {
      cannotRead(answer);
      return false;
    }
    const events = answer.data.data;
    state.cursor = answer.data.next_cursor;
    state.seen += events.length;
    const wallet = currentWallet();
    const about = (event) => wallet !== null && concerns(event, wallet.id);
    const newest = events.slice(-EVENTS_SHOWN_MAX).reverse();
    const items = await Promise.all(newest.map((event) => eventItem(event, about(event))));
    list.prepend(...items);
    while (list.children.length > EVENTS_SHOWN_MAX) list.lastElementChild.remove();
    const full = events.length === EVENTS_PAGE_SIZE;
    const wasCaughtUp = state.caughtUp;
    if (!full) state.caughtUp = true;
    const newestAbout = events.findLast(about);
    if (wasCaughtUp && newestAbout !== undefined) walletEvent(newestAbout);
    renderStatus();
    return full;
  }

  function cannotRead(answer) {
    if (answer.status === 403 || answer.status === 401) {
      // The page's key cannot read the feed: say so, and stop asking.
      stop();
      status.replaceChildren(
        `${describeProblem(answer.problem ?? {})} The event feed (GET /v1/events) needs an API key with the admin ` +
          "scope, and this page's key cannot read it, so this panel stays empty. Sign in with an admin key to follow it.",
      );
      status.className = "events-status warning";
      return;
    }
    status.replaceChildren(`Could not read the feed (${answer.lost ? "no answer" : `HTTP ${answer.status}`}) at `,
      clock(new Date()), "; trying again.");
    status.className = "events-status warning";
  }

  function renderStatus() {
    status.className = "events-status muted";
    const where = state.caughtUp ? "following the feed" : "catching up with the feed";
    status.replaceChildren(
      `${where[0].toUpperCase()}${where.slice(1)}: ${counted(state.seen, "event")} read since the page opened, ` +
        `the newest ${Math.min(EVENTS_SHOWN_MAX, list.children.length)} shown; last read at `,
      clock(new Date()), ".",
    );
    byId("events-empty").hidden = list.children.length > 0;
  }

  function stop() {
    state.stopped = true;
    clearInterval(state.timer);
    state.timer = null;
  }

  return {
    // Follows the feed from its oldest kept event (signed in), or stops (signed out).
    start() {
      stop();
      state.cursor = null;
      state.caughtUp = false;
      state.seen = 0;
      state.stopped = false;
      list.replaceChildren();
      status.textContent = "Reading the event feed…";
      poll();
      state.timer = setInterval(poll, EVENTS_POLL_INTERVAL_MS);
    },
    stop,
    // Another wallet was chosen: mark the shown events about it.
    walletChanged(wallet) {
      for (const item of list.children) {
        item.classList.toggle("about-current", wallet !== null && item.dataset.wallets.split(" ").includes(wallet.id));
      }
    },
  };
}

// The wallets an event is about: a transaction's wallet entries, a hold's wallet.
function walletsOf(event) {
  if (event.type === "transaction.posted") {
    return [...new Set((event.data.entries ?? []).map((entry) => entry.account).filter((account) => UUID_PATTERN.test(account)))];
  }
  return event.data.wallet_id ? [event.data.wallet_id] : [];
}

function concerns(event, walletId) {
  return walletsOf(event).includes(walletId);
}

async function eventItem(event, aboutCurrent) {
  const wallets = walletsOf(event);
  const owners = await Promise.all(wallets.map((id) => ownerName(id)));
  const item = element("li", {
    className: `event${aboutCurrent ? " about-current" : ""}`,
    dataset: { wallets: wallets.join(" "), eventId: event.id, type: event.type },
  });
  item.append(
    element("p", { className: "event-head" },
      element("span", { className: "event-type" }, event.type),
      element("span", {}, summary(event)),
      element("span", { className: "muted" }, owners.length ? `· ${owners.join(", ")}` : ""),
      aboutCurrent ? element("span", { className: "this-wallet" }, "· this wallet") : null),
    element("p", { className: "muted small" },
      element("time", { dateTime: event.created_at }, utcText(event.created_at)), " · event ", element("code", {}, event.id)),
  );
  return item;
}

function summary(event) {
  const data = event.data;
  const amount = data.amount === undefined ? "" : `${formatAmount(data.amount)} ${data.asset}`;
  if (event.type === "transaction.posted") return `${TYPE_NAMES[data.type] ?? data.type} ${amount}`;
  if (event.type === "hold.captured") return `hold of ${amount}, captured ${formatAmount(data.captured_amount)}`;
  return `hold of ${amount}`;
}
