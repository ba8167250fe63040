// The demo page: signs in, then wires the panels together. Each panel is one module that builds
// its own part of the page. A new panel slots in by being created here; one that shows something
// of the chosen wallet goes into `panelsOfTheWallet` and may answer `walletChanged(wallet)` (another
// wallet was chosen), `refresh()` (read again) and `walletRead(wallet)` (the card read it again).
//
// Freshness: the wallet card, its owner's wallet list, the history, the holds and the lots are
// read again after every action, every REFRESH_INTERVAL_MS while the tab is visible, and at once
// when the event feed brings an event about the wallet, each with the time it was read. These are
// cheap reads (a wallet by id, an owner's wallets, one page of each list); the ledger-wide verify
// runs only when the health panel's "Check now" is pressed.

import { request } from "./api.js";
import { createCallsPanel } from "./calls.js";
import { byId } from "./dom.js";
import { createEventsPanel } from "./events.js";
import { createHealthPanel } from "./health.js";
import { createHistoryPanel } from "./history.js";
import { createHoldsPanel } from "./holds.js";
import { createLotsPanel } from "./lots.js";
import { renderProblem } from "./messages.js";
import { createMoneyPanel } from "./money.js";
import { readPlace, writePlace } from "./place.js";
import { createReversePanel } from "./reverse.js";
import { startSession } from "./session.js";
import { createStatementPanel } from "./statement.js";
import { createWalletPanel } from "./wallet.js";

const REFRESH_INTERVAL_MS = 5000;

const WALLET_PANEL_IDS = ["money-panel", "holds-panel", "lots-panel", "history-panel", "statement-panel"];

const wallets = createWalletPanel({ go });
const currentWallet = () => wallets.current();
const money = createMoneyPanel({ currentWallet, afterSend: refresh });
const holds = createHoldsPanel({ currentWallet, afterChange: refresh });
const lots = createLotsPanel({ currentWallet });
const reverse = createReversePanel({ currentWallet, afterChange: refresh });
const history = createHistoryPanel({
  currentWallet,
  placeChanged: () => writePlace(currentPlace(), { push: true }),
  reverse: (transaction) => reverse.open(transaction),
});
const statement = createStatementPanel({ currentWallet });
const events = createEventsPanel({ currentWallet, walletEvent: refreshSoon });
const panelsOfTheWallet = [money, holds, lots, reverse, history, statement, events];
createHealthPanel();
createCallsPanel();

function currentPlace() {
  return { owner: wallets.owner(), wallet: wallets.current()?.id ?? null, ...history.place() };
}

// Shows `place` ({owner, wallet, limit, pages}); `push`: a new entry in the browser's history.
let navigations = 0;
async function go(place, { push }) {
  const navigation = ++navigations;
  const wallet = await wallets.show(place);
  if (navigation !== navigations) return; // a later navigation has taken over
  for (const id of WALLET_PANEL_IDS) byId(id).hidden = wallet === null;
  for (const panel of panelsOfTheWallet) panel.walletChanged?.(wallet);
  if (wallet !== null) {
    // The URL's history page belongs to the wallet it names; another wallet starts at its newest.
    const pages = wallet.id === place.wallet ? place.pages : [];
    await history.open({ limit: place.limit ?? history.place().limit, pages });
  }
  if (navigation === navigations) writePlace(currentPlace(), { push });
}

// Reads the chosen wallet, its owner's list and the history page again; `event`: the event of
// the feed about the wallet that asked for it.
async function refresh({ event = null } = {}) {
  await Promise.all([wallets.refresh({ event }), ...panelsOfTheWallet.map((panel) => panel.refresh?.())]);
  const wallet = wallets.current();
  if (wallet !== null) panelsOfTheWallet.forEach((panel) => panel.walletRead?.(wallet));
}

// A refresh the page starts by itself (the timer, an event of the wallet): one at a time, and one
// more after it when asked again meanwhile (the event may have come after its reads).
let backgroundRefresh = null;
let refreshAgain = null; // {event} of a refresh asked for while one ran
function refreshSoon(event = null) {
  if (wallets.current() === null) return;
  if (backgroundRefresh !== null) {
    refreshAgain = { event: event ?? refreshAgain?.event ?? null };
    return;
  }
  backgroundRefresh = refresh({ event }).finally(() => {
    backgroundRefresh = null;
    const again = refreshAgain;
    refreshAgain = null;
    if (again !== null) refreshSoon(again.event);
  });
}

function refreshPeriodically() {
  setInterval(() => {
    if (!document.hidden && backgroundRefresh === null) refreshSoon();
  }, REFRESH_INTERVAL_MS);
}

async function signedIn(assetsAnswer) {
  const assets = assetsAnswer ?? (await request("GET", "/v1/assets"));
  byId("sign-in").hidden = true;
  byId("workspace").hidden = false;
  if (!assets.ok) {
    renderProblem(byId("wallet-result"), assets);
    return;
  }
  wallets.setAssets(assets.data.data);
  await go(readPlace(), { push: false });
  events.start();
}

function signedOut() {
  events.stop();
  byId("workspace").hidden = true;
}

// Back and Forward; links to a wallet of this page (data-place) are followed without a reload.
window.addEventListener("popstate", () => go(readPlace(), { push: false }));
document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a[data-place]");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  go(readPlace(new URL(link.href).search), { push: true }).then(() => {
    byId("wallet-panel").scrollIntoView();
    byId("wallet-title").focus();
  });
});

refreshPeriodically();
startSession({ signedIn, signedOut });
